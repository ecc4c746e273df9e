"""Regression tests for what the fuzz targets of ``tests/fuzz/`` found.

Each case is an input that once escaped with an undocumented exception (or worse); it
must now give the documented error.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from converters.errors import BadLayer, UnsafeEntry
from converters.rootfs import MAX_DEVICE_NUMBER, MAX_MEMBER_BYTES, LayerTar, RootfsTree
from converters.tarwriter import TarWriter
from docker2aci.errors import SourceError
from docker2aci.sources.files import TarTree


def _tar(*entries: tuple[str, bytes, bytes]) -> bytes:
    """A tar of ``(name, type, data)`` entries."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _base256(value: int, width: int = 12) -> bytes:
    """A tar number field in GNU base-256 (negative numbers start with 0xff)."""
    raw = (value % (1 << (8 * width - 1))).to_bytes(width, "big") if value >= 0 else \
        (value + (1 << (8 * width))).to_bytes(width, "big")
    return bytes([raw[0] | 0x80]) + raw[1:] if value >= 0 else raw


def _with_size(tar: bytes, offset: int, size_field: bytes) -> bytes:
    """``tar`` with the size field of the header at ``offset`` replaced (checksum fixed)."""
    out = bytearray(tar)
    header = out[offset:offset + 512]
    header[124:136] = size_field
    header[148:156] = b" " * 8
    header[148:155] = b"%06o\0" % sum(header)
    out[offset:offset + 512] = header
    return bytes(out)


CASES = [
    pytest.param(_with_size(_tar(("f" * 120, tarfile.REGTYPE, b"data")), 0, _base256(-1099511627776)),
                 id="gnu-longname-negative-size"),  # read(-n): the rest of the layer read as the name
    pytest.param(_with_size(_tar(("a", tarfile.REGTYPE, b"x"), ("b", tarfile.REGTYPE, b"y")), 0, _base256(-1024)),
                 id="regular-file-negative-size"),  # found: ValueError "negative seek value" from tarfile
    pytest.param(_with_size(_tar(("a", tarfile.REGTYPE, b"x"), ("b", tarfile.REGTYPE, b"y")), 0,
                            _base256(1 << 80)),
                 id="size-past-any-offset"),  # found: OverflowError / ValueError from tarfile's seek
    pytest.param(_with_size(_tar(("a", tarfile.REGTYPE, b"x")), 0, _base256(MAX_MEMBER_BYTES + 1)),
                 id="size-just-over-the-limit"),
]


def _squash_refuses_or_reads(data: bytes) -> None:
    """Squash a one-layer image: an out-of-range size is a BadLayer saying so, unless a
    tarfile patched against the 2025 tar CVEs handles the bad record itself (Debian 12's
    3.11.2 now): it stops at it, and the layer is refused as damaged there, or nothing
    but BadLayer may come out and what was read lists as usual."""
    try:
        tree = RootfsTree.from_layers([LayerTar("layer", io.BytesIO(data))])
    except BadLayer as err:
        assert "out of range" in str(err) or "the layer is damaged" in str(err)
    else:
        assert isinstance(list(tree.paths()), list)


@pytest.mark.parametrize("data", CASES)
def test_squash_refuses_out_of_range_sizes(data: bytes) -> None:
    """Found by fuzz_tar: an out-of-range member size is a bad layer, not a ValueError."""
    _squash_refuses_or_reads(data)


@pytest.mark.parametrize("data", CASES)
def test_archive_reader_refuses_out_of_range_sizes(data: bytes, tmp_path: Path) -> None:
    """Found by fuzz_archive: the same headers in a ``docker save`` archive are a SourceError."""
    path = tmp_path / "archive.tar"
    path.write_bytes(data)
    with pytest.raises(SourceError, match="out of range"):
        TarTree(str(path), "archive.tar")


def test_pax_negative_size_is_refused() -> None:
    """A PAX ``size`` record can be negative too (tarfile takes ``int()`` of it)."""
    # built by hand: tarfile's own writer treats a user-given PAX size differently across 3.11.x
    record = b"14 size=-1536\n"  # the length counts itself
    pax = tarfile.TarInfo("././@PaxHeader")
    pax.type, pax.size = tarfile.XHDTYPE, len(record)
    member = tarfile.TarInfo("a")
    member.size = 1
    data = (pax.tobuf(tarfile.USTAR_FORMAT) + record.ljust(512, b"\0") + member.tobuf(tarfile.USTAR_FORMAT)
            + b"x".ljust(512, b"\0") + tarfile.TarInfo("b").tobuf(tarfile.USTAR_FORMAT) + bytes(1024))
    _squash_refuses_or_reads(data)


def test_sizes_in_range_still_read() -> None:
    """A base-256 size that is in range is read as tarfile reads it."""
    data = _with_size(_tar(("a", tarfile.REGTYPE, b"x")), 0, _base256(1))
    tree = RootfsTree.from_layers([LayerTar("layer", io.BytesIO(data))])
    assert tree.read_file("a", 10) == b"x"


@pytest.mark.parametrize(("major", "minor"), [
    pytest.param(-1, 0, id="negative-major"),  # found by fuzz_squash: ValueError from tarfile when writing the ACI
    pytest.param(0, -(1 << 32), id="negative-minor"),
    pytest.param(MAX_DEVICE_NUMBER + 1, 0, id="major-over-the-ustar-field"),
])
def test_squash_refuses_device_numbers_a_header_cannot_hold(major: int, minor: int) -> None:
    """Found by fuzz_squash: a device whose numbers do not fit the ACI's tar header is an
    unsafe entry, refused while squashing, not a ValueError while writing."""
    tar = _tar(("dev/x", tarfile.CHRTYPE, b""))
    header = bytearray(tar[:512])
    header[329:337] = _base256(major, 8)
    header[337:345] = _base256(minor, 8)
    data = _with_size(bytes(header) + tar[512:], 0, header[124:136])
    with pytest.raises(UnsafeEntry, match="device number"):
        RootfsTree.from_layers([LayerTar("layer", io.BytesIO(data))])


def test_device_numbers_in_range_are_written() -> None:
    """The largest numbers a header holds still make it into the ACI."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("dev/x")
        info.type, info.devmajor, info.devminor = tarfile.BLKTYPE, MAX_DEVICE_NUMBER, MAX_DEVICE_NUMBER
        tf.addfile(info)
    tree = RootfsTree.from_layers([LayerTar("layer", io.BytesIO(buf.getvalue()))])
    out = io.BytesIO()
    with TarWriter(out) as writer:
        assert tree.write(writer) == 1
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tf:
        (member,) = tf.getmembers()
        assert (member.devmajor, member.devminor) == (MAX_DEVICE_NUMBER, MAX_DEVICE_NUMBER)


def _truncated_gnu_sparse() -> bytes:
    """An old GNU sparse header that says an extension block follows, cut short."""
    header = bytearray(_tar(("etc/f", tarfile.REGTYPE, b""))[:512])
    header[156:157] = tarfile.GNUTYPE_SPARSE
    header[482] = 1  # isextended
    return _with_size(bytes(header), 0, header[124:136]) + bytes(100)


def _pax_bad_sparse_map() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("f")
        info.pax_headers = {"GNU.sparse.map": "x,y"}
        tf.addfile(info, io.BytesIO(b""))
    return buf.getvalue()


MALFORMED = [
    pytest.param(_truncated_gnu_sparse(), id="gnu-sparse-extension-cut-short"),  # found: IndexError in tarfile
    pytest.param(_pax_bad_sparse_map(), id="pax-sparse-map-not-numbers"),  # ValueError in tarfile
]


@pytest.mark.parametrize("data", MALFORMED)
def test_malformed_sparse_headers_are_a_bad_layer(data: bytes, tmp_path: Path) -> None:
    """Found by fuzz_tar: tarfile's own errors while decoding a header (IndexError,
    ValueError) are a bad layer in the squash and a SourceError in the archive reader."""
    with pytest.raises(BadLayer, match="malformed header"):
        RootfsTree.from_layers([LayerTar("layer", io.BytesIO(data))])
    path = tmp_path / "archive.tar"
    path.write_bytes(data)
    with pytest.raises(SourceError, match="malformed header"):
        TarTree(str(path), "archive.tar")


@pytest.mark.parametrize("media_type", ["", "text/plain"])
def test_a_manifest_whose_media_type_field_is_not_a_string(media_type: str) -> None:
    """Found by fuzz_manifest (on a fresh machine's run): a body whose ``mediaType`` is an
    object, fetched without a media type that decides, escaped as a TypeError (a dict is
    not hashable) instead of an invalid manifest."""
    from docker2aci.errors import InvalidManifest
    from docker2aci.manifest import document_kind

    body = b'{"schemaVersion": 2, "mediaType": {"mediaType": "x"}, "layers": []}'
    with pytest.raises(InvalidManifest) as err:
        document_kind(body, media_type, "registry/app:1")
    assert str(err.value) == "registry/app:1: field mediaType is not a string (dict)"
