"""Fuzz the layer tar reader: encoding sniffing and bounded decompression
(``docker2aci.layers``), the header decoder (``converters.rootfs.BoundedTarInfo``, which
must decode every 512-byte block exactly as ``tarfile.TarInfo.frombuf`` does), the member
listing of the squash, and the path predicates (``converters.tarpaths``).

Input: one mode byte (bit 0: recompute the header checksums, so that mutated headers get
past tarfile's checksum test), then the layer blob (plain or compressed).

Run: ``python tests/fuzz/fuzz_tar.py [libFuzzer args] [CORPUS_DIR...]``.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import sys
import tarfile

import atheris
import fuzzlib

with atheris.instrument_imports(include=["docker2aci", "converters"]):
    from converters.rootfs import BoundedTarInfo, LayerTar, _read_members
    from converters.tarpaths import EscapingPath, clean_member_name, is_escaping_link
    from docker2aci.errors import OutputError
    from docker2aci.layers import decompress_into, sniff_encoding

fuzzlib.instrument_tarfile()

MAX_PLAIN_BYTES = 8 << 20
"""Decompressed bytes kept per input; more is treated as the disk filling up."""


class _CappedWriter(io.BytesIO):
    """A spool that fails like a full disk past :data:`MAX_PLAIN_BYTES`."""

    def write(self, data: bytes) -> int:  # type: ignore[override]
        if self.tell() + len(data) > MAX_PLAIN_BYTES:
            raise OSError(28, "No space left on device (fuzz cap)")
        return super().write(data)


def _check_header(block: bytes) -> None:
    ours, theirs = fuzzlib.decode_header(BoundedTarInfo, block), fuzzlib.decode_header(tarfile.TarInfo, block)
    if ours != theirs:
        raise AssertionError(f"BoundedTarInfo.frombuf decodes differently from tarfile:\n{ours}\n{theirs}")


def test_one(data: bytes) -> None:
    if not data:
        return
    mode, body = data[0], data[1:]
    if mode & 1:
        body = fuzzlib.fix_checksums(body)
    for offset in range(0, min(len(body), 4 * 512) - 511, 512):
        _check_header(body[offset:offset + 512])
    encoding = sniff_encoding(body[:512], "fuzz")
    if encoding not in ("tar", "empty"):
        out = _CappedWriter()
        try:
            decompress_into(io.BytesIO(body), encoding, out, hashlib.sha256(), "fuzz")
        except OutputError:
            return
        body = out.getvalue()
        if mode & 1:
            body = fuzzlib.fix_checksums(body)
    layer = LayerTar("fuzz", io.BytesIO(body))
    for member in _read_members(layer):
        try:
            path = clean_member_name(member.name)
        except EscapingPath:
            continue
        is_escaping_link(path, member.linkname)
        if member.isreg():
            layer.file.seek(member.offset_data)
            layer.file.read(member.size)


def seeds() -> list[bytes]:
    tars = [
        fuzzlib.tar_bytes([("etc/", b"", "dir"), ("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
                           ("bin/sh", b"\x7fELF"), ("bin/ash", b"/bin/sh", "link"),
                           ("usr/bin/env", b"../../bin/sh", "sym"), ("dev/null", b"", "chr"),
                           ("run/fifo", b"", "fifo"), ("a/.wh.b", b""), ("c/.wh..wh..opq", b"")]),
        fuzzlib.tar_bytes([("x" * 150 + "/long-name", b"data"), ("l", b"y" * 120, "sym")], tarfile.GNU_FORMAT),
        fuzzlib.tar_bytes([("ustar/" * 20 + "f", b"d")], tarfile.USTAR_FORMAT),
        fuzzlib.tar_bytes([("caf\u00e9/\u00fc", b"x", "file")]),
        b"",
    ]
    out = []
    for tar in tars:
        out += [b"\0" + tar, b"\1" + tar]
    out += [b"\0" + gzip.compress(tars[0], mtime=0), b"\0" + bz2.compress(tars[2]),
            b"\0" + lzma.compress(tars[3]), b"\0" + gzip.compress(tars[1], mtime=0) * 2]
    try:
        import zstandard

        out.append(b"\0" + zstandard.ZstdCompressor().compress(tars[0]))
    except ImportError:
        pass
    return out


if __name__ == "__main__":
    fuzzlib.main("tar", test_one, seeds)
    sys.exit(0)
