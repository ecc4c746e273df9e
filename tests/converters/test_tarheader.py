"""BoundedTarInfo.frombuf decodes a header exactly as tarfile.TarInfo.frombuf does (the
same fields, or the same error), for every header of real layer tars and for headers
mutated at random (numbers in every form tar writers use, base-256, bad checksums,
prefixes, old V7 directories, GNU sparse entries), with the pure-Python codec and with
the C accelerator; and the accelerator's decoder is the Python one, field for field."""

from __future__ import annotations

import io
import os
import random
import shutil
import sysconfig
import tarfile
from pathlib import Path

import pytest
from fuzz.fuzzlib import decode_header as _decode

from converters import native, rootfs
from converters.rootfs import BoundedTarInfo

BUILT = native.built

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


@pytest.mark.usefixtures("codec")
def test_real_headers_decode_the_same() -> None:
    headers = _headers()
    assert len(headers) > 10
    for buf in headers:
        assert _decode(BoundedTarInfo, buf) == _decode(tarfile.TarInfo, buf)


@pytest.mark.usefixtures("codec")
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


def _plain_octal(field: bytes) -> bool:
    """What the C decoder takes as a number: up to the first NUL, stripped, only 0-7."""
    return all(48 <= c <= 55 for c in field.split(b"\0", 1)[0].strip())


def test_native_decode_is_the_python_definition() -> None:
    """``_tarheader.decode`` returns exactly ``rootfs._decode``'s fields, and declines
    (None) only headers the Python code declines too or whose numbers are not plain
    octal (signs, underscores: ``int(..., 8)`` forms), which then go to tarfile."""
    if BUILT is None:
        pytest.skip("converters._tarheader is not built")
    rng = random.Random(7)
    headers = _headers()
    pieces = b"\x80\xff \0\t78/x-_+LS05\xe9"
    cases = list(headers) + [bytes(512), bytes(511), b"", b"\0" * 511 + b"1"]
    for _ in range(20000):
        buf = bytearray(rng.choice(headers))
        for _ in range(rng.randint(1, 5)):
            buf[rng.randrange(512)] = rng.choice(pieces)
        cases.append(_with_checksum(buf) if rng.random() < 0.8 else bytes(buf))
    ustar = tarfile.TarInfo("file").tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")
    int_only = [_with_checksum(bytearray(ustar[:100] + mode + ustar[108:]))  # forms only int(..., 8) reads
                for mode in (b"+000644\0", b"0_00644\0", b"0o00644\0", b"-000001\0")]
    assert all(rootfs._decode(buf, "utf-8", "surrogateescape") is not None for buf in int_only)
    cases += int_only
    declined = 0
    for buf in cases:
        native_fields = BUILT.decode(buf)
        python_fields = rootfs._decode(buf, "utf-8", "surrogateescape")
        if native_fields is None and python_fields is not None:
            assert not all(_plain_octal(buf[start:end]) for start, end in rootfs._NUMBER_FIELDS), buf
            declined += 1
        else:
            assert native_fields == python_fields, buf
    assert sum(BUILT.decode(buf) is not None for buf in cases) > 10000
    assert len(int_only) <= declined < 1000
    with pytest.raises(TypeError):
        BUILT.decode("not bytes")
    assert BUILT.decode(memoryview(headers[0])) == BUILT.decode(headers[0])


def test_native_codec_is_built_where_it_can_be() -> None:
    """With a C compiler and the Python headers (``scripts/setup.sh`` installs them), the
    install builds the accelerator: a build that silently fell back would go unseen."""
    include = sysconfig.get_paths()["include"]
    if shutil.which("cc") is None or not Path(include, "Python.h").is_file():
        pytest.skip(f"no C compiler or no {include}/Python.h: the pure-Python codec is used")
    assert BUILT is not None, "converters._tarheader was not built: run scripts/setup.sh (pip install -e .)"
    assert native.tarheader is BUILT or os.environ.get("DOCKER2ACI_PURE_PYTHON") == "1"
