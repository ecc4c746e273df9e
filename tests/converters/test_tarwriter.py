"""TarWriter writes exactly the bytes tarfile's PAX writer writes, for the entries its
fast path encodes itself and for those it hands to tarfile (long or non-ASCII names,
xattrs, large ids, fractional times), and GNU tar reads the result back."""

from __future__ import annotations

import io
import random
import shutil
import subprocess
import tarfile

import pytest

from converters import native, tarwriter
from converters.tarwriter import TarWriter


def _entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **fields: object) -> tuple:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.mode, info.uid, info.gid, info.mtime, info.uname, info.gname = 0o644, 0, 0, 1_700_000_000, "", ""
    for key, value in fields.items():
        setattr(info, key, value)
    return info, data


ENTRIES = [
    _entry("rootfs", tarfile.DIRTYPE, mode=0o755),
    _entry("rootfs/etc/", tarfile.DIRTYPE, mode=0o1777),
    _entry("rootfs/etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n", uname="root", gname="root"),
    _entry("rootfs/bin/su", data=b"x" * 513, mode=0o4755, uid=1000, gid=1000),
    _entry("rootfs/link", tarfile.SYMTYPE, linkname="/etc/passwd"),
    _entry("rootfs/hard", tarfile.LNKTYPE, linkname="rootfs/etc/passwd"),
    _entry("rootfs/dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666),
    _entry("rootfs/dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0),
    _entry("rootfs/fifo", tarfile.FIFOTYPE),
    _entry("rootfs/" + "d" * 120 + "/file", data=b"long name"),
    _entry("rootfs/caf\u00e9", data=b"utf-8 name"),
    _entry("rootfs/bad-\udcff-name", data=b"undecodable byte"),
    _entry("rootfs/link2", tarfile.SYMTYPE, linkname="t" * 150),
    _entry("rootfs/xattr", data=b"x", pax_headers={"SCHILY.xattr.user.test": "hello"}),
    _entry("rootfs/bigid", uid=10_000_000, gid=3),
    _entry("rootfs/owner-names", uname="u" * 40, gname="\u00e9quipe"),
    _entry("rootfs/fraction", mtime=1_700_000_000.5),
    _entry("rootfs/old", mtime=0),
    _entry("rootfs/empty", data=b""),
    _entry("rootfs/block", data=b"z" * 1024),
]


def _tarfile_bytes() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as tar:
        for info, data in ENTRIES:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return out.getvalue()


def _tarwriter_bytes() -> bytes:
    out = io.BytesIO()
    with TarWriter(out) as tar:
        for info, data in ENTRIES:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return out.getvalue()


@pytest.mark.usefixtures("codec")
def test_the_bytes_are_tarfiles() -> None:
    assert _tarwriter_bytes() == _tarfile_bytes()


@pytest.mark.usefixtures("codec")
def test_gnu_tar_lists_every_entry(tmp_path: object) -> None:
    if shutil.which("tar") is None:
        pytest.skip("GNU tar is not installed")
    listing = subprocess.run(["tar", "-tf", "-"], input=_tarwriter_bytes(), capture_output=True, check=True)
    names = listing.stdout.decode("utf-8", "surrogateescape").splitlines()
    assert len(names) == len(ENTRIES)
    assert names[9] == "rootfs/" + "d" * 120 + "/file"


@pytest.mark.usefixtures("codec")
def test_short_data_is_an_error() -> None:
    info, _ = _entry("rootfs/short", data=b"12345")
    with pytest.raises(OSError, match="unexpected end of data"):
        TarWriter(io.BytesIO()).addfile(info, io.BytesIO(b"12"))


def test_native_encode_is_the_python_definition(monkeypatch: pytest.MonkeyPatch) -> None:
    """``_tarheader.encode`` returns the header ``_ustar_header``'s Python code builds, byte
    for byte, and None wherever that code returns None or raises (a pax record needed, a
    value out of range, a field of another type)."""
    if native.built is None:
        pytest.skip("converters._tarheader is not built")
    rng = random.Random(11)
    names = ["rootfs/a", "rootfs/" + "n" * 93, "rootfs/" + "n" * 94, "caf\u00e9", "bad-\udcff", "", "dir/"]
    numbers = [0, 1, 0o644, 0o104755, -1, 2**21 - 1, 2**21, 2**33 - 1, 2**33, 2**70, True, 1.5, None, "7"]
    kinds = [tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE,
             tarfile.BLKTYPE, tarfile.FIFOTYPE, b"", b"00"]
    owners = ["", "root", "u" * 32, "u" * 33, "\u00e9", 5]
    encoded = 0
    for _ in range(20000):
        fields = (rng.choice(names), rng.choice(numbers), rng.choice(numbers), rng.choice(numbers),
                  rng.choice(numbers), rng.choice(numbers), rng.choice(kinds), rng.choice(names),
                  rng.choice(owners), rng.choice(owners), rng.choice(numbers), rng.choice(numbers))
        info = tarfile.TarInfo()
        (info.name, info.mode, info.uid, info.gid, info.size, info.mtime, info.type, info.linkname, info.uname,
         info.gname, info.devmajor, info.devminor) = fields
        monkeypatch.setattr(native, "tarheader", None)
        try:
            expected = tarwriter._ustar_header(info) if info.type in tarwriter._FAST_TYPES else None
        except (TypeError, ValueError, AttributeError, OverflowError):
            expected = None
        name = fields[0] + "/" if info.type == tarfile.DIRTYPE and not fields[0].endswith("/") else fields[0]
        got = native.built.encode(name, *fields[1:])  # the caller adds a directory's slash
        assert got == expected, fields
        encoded += got is not None
    assert encoded > 20
    monkeypatch.setattr(native, "tarheader", native.built)
    info, _ = ENTRIES[2]
    assert tarwriter._ustar_header(info) == info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    with pytest.raises(TypeError):
        native.built.encode("too", "few")


@pytest.mark.usefixtures("codec")
@pytest.mark.parametrize("blocks", range(tarfile.RECORDSIZE // tarfile.BLOCKSIZE))
def test_end_blocks_and_record_padding_are_tarfiles_wherever_the_entries_end(blocks: int) -> None:
    """Two zero blocks end the archive, then zeros to a whole record, wherever the last
    entry ends in its record (with 19 blocks of entries, one zero block would fill the
    record: GNU tar then warns of a lone zero block)."""
    entries = [_entry("rootfs/f", data=b"x" * (blocks * tarfile.BLOCKSIZE))]
    out = io.BytesIO()
    with TarWriter(out) as writer:
        for info, data in entries:
            writer.addfile(info, io.BytesIO(data))
    expected = io.BytesIO()
    with tarfile.open(fileobj=expected, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data))
    assert out.getvalue() == expected.getvalue()
    assert len(out.getvalue()) == (2 if blocks >= 18 else 1) * tarfile.RECORDSIZE
