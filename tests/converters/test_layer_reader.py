"""``converters.rootfs._read_members`` lists a layer's entries exactly as its definition
does: ``tarfile``'s ``getmembers`` through :class:`BoundedTarInfo`, then the end check
(``_tarfile_members`` below, the reader the squash used before it read the usual header
itself). Compared on every field, offset, PAX record and class of every entry, or on the
error: for the shared images' layers, for tars in each format ``tarfile`` writes (GNU
long names, PAX records, global headers, ustar prefixes, old V7 directories, every entry
type), for those tars cut at every block and for their headers damaged at random, with
the pure-Python header codec and with the C one."""

from __future__ import annotations

import gzip
import io
import random
import signal
import tarfile
from pathlib import Path
from typing import Callable

import hostilebuild as hb
import pytest
from fuzz.fuzzlib import HEADER_FIELDS, fix_checksums

from converters.errors import BadLayer
from converters.rootfs import LayerTar, _check_end, _read_members, open_tar

SHARED = Path(__file__).resolve().parents[3] / "shared" / "images" / "oci-layout" / "blobs" / "sha256"


def _tarfile_members(layer: LayerTar) -> list[tarfile.TarInfo]:
    """The definition: every member as tarfile lists it, then :func:`_check_end`."""
    layer.file.seek(0, 2)
    if layer.file.tell() == 0:
        return []
    layer.file.seek(0)
    try:
        with open_tar(layer.file) as tf:
            members = tf.getmembers()
            end = tf.offset
    except tarfile.TarError as err:
        raise BadLayer(layer.name, f"not a valid tar: {err}") from err
    _check_end(layer, end, members[-1].name if members else None)
    return members


def _too_slow(signum: int, frame: object) -> None:
    raise TimeoutError("reading the layer takes over 10 s: a loop that does not advance?")


def _listing(read: Callable[[LayerTar], list[tarfile.TarInfo]], data: bytes) -> object:
    """What ``read`` makes of ``data``: each entry's fields, or the error it raises
    (a read that does not end within 10 s fails the test)."""
    previous = signal.signal(signal.SIGALRM, _too_slow)
    signal.alarm(10)
    try:
        members = read(LayerTar("layer", io.BytesIO(data)))
    except BadLayer as err:
        return ("error", str(err))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return [(*(getattr(m, f) for f in HEADER_FIELDS), m.offset, m.offset_data, m.pax_headers, m.sparse,
             type(m).__name__) for m in members]


def _same(data: bytes) -> None:
    assert _listing(_read_members, data) == _listing(_tarfile_members, data)


def _entries(tar: tarfile.TarFile, prefix: str = "") -> None:
    """One entry of each kind, non-ASCII names and, but in ustar format, long names and
    links and owners that need more than a ustar field."""
    def add(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **fields: object) -> None:
        info = tarfile.TarInfo(prefix + name)
        info.type, info.size, info.mtime = kind, len(data), 1_700_000_000
        for key, value in fields.items():
            setattr(info, key, value)
        tar.addfile(info, io.BytesIO(data) if data else None)

    add("etc", tarfile.DIRTYPE, mode=0o755)
    add("etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n")
    add("etc/empty")
    add("etc/block", data=b"x" * 512)
    add("bin/sh", data=b"\x7fELF" * 300, mode=0o4755)
    add("bin/ash", tarfile.LNKTYPE, linkname=(prefix if tar.format != tarfile.USTAR_FORMAT else "") + "bin/sh")
    add("usr/bin/env", tarfile.SYMTYPE, linkname="../../bin/sh")
    add("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3)
    add("dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0)
    add("run/fifo", tarfile.FIFOTYPE)
    add("caf\u00e9/\u00fc", data=b"utf-8")
    if tar.format != tarfile.USTAR_FORMAT:
        add("d" * 120 + "/long-name", data=b"long")
        add("long-link", tarfile.SYMTYPE, linkname="t" * 150)
        add("big-owner", data=b"o", uid=8 ** 8, gid=3, uname="u" * 40)
    add("a/.wh.b")
    add("c/.wh..wh..opq")


def _tar(format_: int, prefix: str = "", pax: dict[str, str] | None = None, end: bool = True) -> bytes:
    out = io.BytesIO()
    tar = tarfile.open(fileobj=out, mode="w", format=format_, pax_headers=pax or {}, encoding="utf-8")
    _entries(tar, prefix)
    members_end = tar.offset
    tar.close()
    return out.getvalue() if end else out.getvalue()[:members_end]  # without the end-of-archive blocks


def _xattr_tar() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("usr/bin/ping")
        info.size, info.pax_headers = 4, {"SCHILY.xattr.security.capability": "\x01\x00", "mtime": "1.5"}
        tar.addfile(info, io.BytesIO(b"ping"))
        tar.addfile(tarfile.TarInfo("after"))
    return out.getvalue()


_POSIX_MAGIC = {257: b"ustar\x0000"}  # hostilebuild.raw_header writes GNU's


def _v7_directory() -> bytes:
    """An old V7 tar's directory: a regular-file header whose name ends in ``/`` (no magic)."""
    return hb.raw_header(b"old/", tarfile.AREGTYPE, 0, extra={257: bytes(8)}) + bytes(1024)


def _ustar_header(name: bytes, kind: bytes, size: bytes = b"0", prefix: bytes = b"") -> bytes:
    """A POSIX ustar header with a size field written as given (a sign ``tarfile`` never
    writes) and a ustar prefix."""
    return hb.raw_header(name, kind, 0, extra={**_POSIX_MAGIC, 124: size.ljust(12, b"\0"), 345: prefix})


def _samples() -> dict[str, bytes]:
    samples = {
        "gnu": _tar(tarfile.GNU_FORMAT),
        "pax": _tar(tarfile.PAX_FORMAT),
        "ustar-prefix": _tar(tarfile.USTAR_FORMAT, prefix="p" * 70 + "/" + "q" * 30 + "/"),
        "pax-global-first": _tar(tarfile.PAX_FORMAT, pax={"uid": "77", "comment": "global"}),
        # a global header in the middle applies to the entries after it only
        "pax-global-middle": (_tar(tarfile.GNU_FORMAT, end=False)
                              + _tar(tarfile.PAX_FORMAT, prefix="later/", pax={"gid": "99", "uname": "g"})),
        "xattrs": _xattr_tar(),
        "v7-directory": _v7_directory(),
        # the directory's name is all in the ustar prefix: tarfile strips the "/" it joins with
        "ustar-directory-in-prefix": _ustar_header(b"", tarfile.DIRTYPE, prefix=b"dir") + bytes(1024),
        # octal fields with a sign, which int() reads (the pure-Python codec, as tarfile)
        "negative-size-file": _ustar_header(b"f", tarfile.REGTYPE, b"-1000") + bytes(1024),
        "negative-size-symlink": _ustar_header(b"l", tarfile.SYMTYPE, b"-1") + bytes(1024),
        "empty-archive": bytes(10240),
        "empty-file": b"",
    }
    if SHARED.is_dir():
        for blob in sorted(SHARED.iterdir()):
            data = blob.read_bytes()
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            if len(data) >= 512 and data[257:262] == b"ustar":
                samples[f"shared-{blob.name[:12]}"] = data
    return samples


SAMPLES = _samples()
EXPECTED = {
    "negative-size-file": ("error", "layer layer: not a valid tar: size -512 in the header of 'f' is out of range"),
    "negative-size-symlink": ("error", "layer layer: not a valid tar: size -1 in the header of 'l' is out of range"),
}
"""What the samples that must be refused give (the others must give entries)."""


@pytest.mark.usefixtures("codec")
@pytest.mark.parametrize("name", SAMPLES)
def test_whole_layers_are_read_as_tarfile_reads_them(name: str) -> None:
    listing = _listing(_read_members, SAMPLES[name])
    assert listing == _listing(_tarfile_members, SAMPLES[name])
    if name in EXPECTED:
        assert listing == EXPECTED[name]
    elif name not in ("empty-archive", "empty-file"):
        assert isinstance(listing, list) and listing, "a sample without entries tests nothing"


def test_the_samples_hold_what_the_fallback_is_for() -> None:
    """The samples reach tarfile's side: PAX and GNU extension headers, global headers."""
    kinds = set()
    for data in SAMPLES.values():
        kinds.update(data[offset + 156:offset + 157] for offset in range(0, len(data) - 511, 512)
                     if data[offset + 257:offset + 262] == b"ustar")
    assert {tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK} <= kinds
    global_middle = _listing(_read_members, SAMPLES["pax-global-middle"])
    assert isinstance(global_middle, list)
    gids = {entry[0].split("/")[0]: entry[3] for entry in global_middle}
    assert gids["later"] == 99 and gids["etc"] == 0


@pytest.mark.usefixtures("codec")
@pytest.mark.parametrize("name", ["gnu", "pax", "pax-global-middle", "xattrs"])
def test_layers_cut_anywhere_fail_or_end_as_with_tarfile(name: str) -> None:
    data = SAMPLES[name]
    cuts = set(range(0, len(data), 512)) | set(random.Random(name).sample(range(len(data)), 60))
    errors = 0
    for cut in sorted(cuts):
        listing = _listing(_read_members, data[:cut])
        assert listing == _listing(_tarfile_members, data[:cut]), f"cut at byte {cut}"
        errors += isinstance(listing, tuple)
    assert errors > 10  # data cut short: "unexpected end of data", headers cut short


@pytest.mark.usefixtures("codec")
@pytest.mark.parametrize("seed", range(3))
def test_layers_with_damaged_headers_fail_or_end_as_with_tarfile(seed: int) -> None:
    rng = random.Random(seed)
    pieces = [b"\x80", b"\xff", b" ", b"\0", b"7", b"9", b"/", b"x", b"L", b"K", b"S", b"g", b"x", b"0", b"5", b"\xe9"]
    names = [n for n in SAMPLES if n != "empty-file"]
    outcomes = set()
    for _ in range(400):
        data = bytearray(SAMPLES[rng.choice(names)])
        headers = [o for o in range(0, len(data) - 511, 512) if data[o + 257:o + 262] == b"ustar"] or [0]
        for _ in range(rng.randint(1, 3)):
            data[rng.choice(headers) + rng.randrange(512)] = rng.choice(pieces)[0]
        damaged = fix_checksums(bytes(data)) if rng.random() < 0.8 else bytes(data)
        listing = _listing(_read_members, damaged)
        assert listing == _listing(_tarfile_members, damaged)
        outcomes.add("error" if isinstance(listing, tuple) else "read")
    assert outcomes == {"error", "read"}


def test_data_cut_short_names_the_layer() -> None:
    data = SAMPLES["gnu"]
    cut = data.index(b"\x7fELF") + 100  # inside bin/sh's data
    with pytest.raises(BadLayer, match="layer: not a valid tar: unexpected end of data"):
        _read_members(LayerTar("layer", io.BytesIO(data[:cut])))
