"""BoundedTarInfo.frombuf decodes a header exactly as tarfile.TarInfo.frombuf does (the
same fields, or the same error), for every header of real layer tars and for headers
mutated at random (numbers in every form tar writers use, base-256, bad checksums,
prefixes, old V7 directories, GNU sparse entries)."""

from __future__ import annotations

import io
import random
import tarfile
from pathlib import Path

import pytest
from fuzz.fuzzlib import decode_header as _decode

from converters.rootfs import BoundedTarInfo

SHARED = Path(__file__).resolve().parents[3] / "shared" / "images" / "oci-layout" / "blobs" / "sha256"


def _headers() -> list[bytes]:
    """Every header block of the shared image's layers and of a tar made here."""
    import gzip

    blocks = []
    if SHARED.is_dir():
        for blob in sorted(SHARED.iterdir()):
            data = blob.read_bytes()
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            try:
                with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                    blocks += [data[m.offset:m.offset + 512] for m in tar.getmembers()]
            except tarfile.TarError:
                continue
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, kind in (("a" * 99, tarfile.REGTYPE), ("dir/", tarfile.DIRTYPE), ("dev", tarfile.CHRTYPE)):
            info = tarfile.TarInfo(name)
            info.type, info.uid, info.mtime, info.devmajor = kind, 2**22, 2**34, 5
            tar.addfile(info)
    data = out.getvalue()
    blocks += [data[i:i + 512] for i in range(0, len(data) - 1024, 512)]
    return blocks


def _with_checksum(buf: bytearray) -> bytes:
    buf[148:156] = b" " * 8
    buf[148:155] = b"%06o\0" % sum(buf)
    return bytes(buf)


def test_real_headers_decode_the_same() -> None:
    headers = _headers()
    assert len(headers) > 10
    for buf in headers:
        assert _decode(BoundedTarInfo, buf) == _decode(tarfile.TarInfo, buf)


@pytest.mark.parametrize("seed", range(4))
def test_mutated_headers_decode_the_same(seed: int) -> None:
    rng = random.Random(seed)
    headers = _headers()
    pieces = [b"\x80", b"\xff", b" ", b"\0", b"7", b"8", b"/", b"x", b"-", b"_", b"L", b"S", b"0", b"5", b"\xe9"]
    for _ in range(3000):
        buf = bytearray(rng.choice(headers))
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(512)] = rng.choice(pieces)[0]
        mutated = _with_checksum(buf) if rng.random() < 0.8 else bytes(buf)
        assert _decode(BoundedTarInfo, mutated) == _decode(tarfile.TarInfo, mutated)
    for special in (b"", bytes(511), bytes(512)):
        assert _decode(BoundedTarInfo, special) == _decode(tarfile.TarInfo, special)
