"""A streaming tar writer for the ACI: the bytes of :mod:`tarfile`'s PAX format, faster.

:class:`TarWriter` is a drop-in for the ``addfile`` side of a ``tarfile.TarFile`` opened
with ``format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape"``: for the
same entries it writes the same bytes (POSIX.1-2001 pax, IEEE Std 1003.1 "pax Interchange
Format"), so image IDs do not depend on which writer made them. The common entry (an
ASCII name of at most 100 bytes, no extended attributes, owners, sizes and times that fit
the ustar fields) is encoded here in one pass; anything else goes through
:meth:`tarfile.TarInfo.tobuf`, which adds the pax extended header. Unlike ``TarFile``, it
keeps no list of the members written (memory does not grow with the entry count).
"""

from __future__ import annotations

import tarfile
from typing import IO

from . import native

BLOCK = tarfile.BLOCKSIZE
"""Tar block size, in bytes (512)."""
RECORD = tarfile.RECORDSIZE
"""The archive is padded to a multiple of this many bytes (10240), as tarfile does."""
COPY_BUFFER = 1 << 20
"""Bytes copied per read from a member's data."""

_FAST_TYPES = frozenset({tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE,
                         tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE})
_DEVICE_TYPES = (tarfile.CHRTYPE, tarfile.BLKTYPE)
_MAX_ID = 8 ** 7  # 7 octal digits and a NUL
_MAX_SIZE = 8 ** 11  # 11 octal digits and a NUL
_NO_DEVICE = bytes(8)


class TarWriter:
    """Writes tar entries to a binary stream.

    Args:
        out: where the archive goes (only ``write`` is used). Member data is passed to it
            as views of one reused buffer, so ``write`` must copy what it keeps.
    """

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self.offset = 0
        self.copybufsize = COPY_BUFFER
        self._buffer: memoryview | None = None

    def addfile(self, info: tarfile.TarInfo, data: IO[bytes] | None = None) -> None:
        """Write one entry: its header, then ``info.size`` bytes of ``data`` (a binary
        stream with ``readinto``) padded to a block (as :meth:`tarfile.TarFile.addfile`).

        Raises:
            OSError: ``data`` ends before ``info.size`` bytes, or writing fails.
            ValueError: a field cannot be encoded at all.
        """
        header = _ustar_header(info)
        if header is None:
            header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        self._out.write(header)
        self.offset += len(header)
        if data is not None and info.size:
            self._copy(data, info.size)

    def close(self) -> None:
        """Write the end-of-archive blocks and pad to a whole record (as ``tarfile``)."""
        self._out.write(bytes(2 * BLOCK))
        self.offset += 2 * BLOCK
        remainder = self.offset % RECORD
        if remainder:
            self._out.write(bytes(RECORD - remainder))
            self.offset += RECORD - remainder

    def __enter__(self) -> TarWriter:
        return self

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        if kind is None:
            self.close()

    def _copy(self, data: IO[bytes], size: int) -> None:
        if self._buffer is None:
            self._buffer = memoryview(bytearray(self.copybufsize))
        buffer = self._buffer
        left = size
        while left:
            n = data.readinto(buffer[:min(len(buffer), left)])  # type: ignore[attr-defined]
            if not n:
                raise OSError("unexpected end of data")
            self._out.write(buffer[:n])
            left -= n
        padding = -size % BLOCK
        if padding:
            self._out.write(bytes(padding))
        self.offset += size + padding


def _ustar_header(info: tarfile.TarInfo) -> bytes | None:
    """The 512-byte header ``tarfile`` writes for an entry that needs no pax record, or
    ``None`` when it needs one (or is of a kind left to ``tarfile``)."""
    kind = info.type
    if kind not in _FAST_TYPES or info.pax_headers:
        return None
    name = info.name
    if kind == tarfile.DIRTYPE and not name.endswith("/"):
        name += "/"
    codec = native.tarheader
    if codec is not None:
        head = codec.encode(name, info.mode, info.uid, info.gid, info.size, info.mtime, kind, info.linkname,
                            info.uname, info.gname, info.devmajor, info.devminor)
        if head is not None:
            return head  # type: ignore[no-any-return]
    mtime = info.mtime
    if (len(name) > 100 or len(info.linkname) > 100 or len(info.uname) > 32 or len(info.gname) > 32
            or not name.isascii() or not info.linkname.isascii() or not info.uname.isascii()
            or not info.gname.isascii() or type(mtime) is not int or not 0 <= mtime < _MAX_SIZE
            or not 0 <= info.uid < _MAX_ID or not 0 <= info.gid < _MAX_ID or not 0 <= info.size < _MAX_SIZE):
        return None
    if kind in _DEVICE_TYPES:
        if not (0 <= info.devmajor < _MAX_ID and 0 <= info.devminor < _MAX_ID):
            return None
        devices = b"%07o\0%07o\0" % (info.devmajor, info.devminor)
    else:
        devices = _NO_DEVICE + _NO_DEVICE
    head = b"".join((
        name.encode("ascii").ljust(100, b"\0"),
        b"%07o\0%07o\0%07o\0%011o\0%011o\0" % (info.mode & 0o7777, info.uid, info.gid, info.size, mtime),
        b"        ",  # the checksum, counted as spaces
        kind,
        info.linkname.encode("ascii").ljust(100, b"\0"),
        tarfile.POSIX_MAGIC,
        info.uname.encode("ascii").ljust(32, b"\0"),
        info.gname.encode("ascii").ljust(32, b"\0"),
        devices,
    )).ljust(BLOCK, b"\0")
    return head[:148] + b"%06o\0" % sum(head) + head[155:]
