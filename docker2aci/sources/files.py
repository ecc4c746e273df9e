"""Random access to the files of a directory or a tar archive, by relative path.

Both readers refuse paths that leave their root (absolute, ``..``), follow at most a few
symlinks and only inside the root, and hand out independent streams (safe to use from
several threads). A compressed archive (``docker save | gzip``) is spooled once,
decompressed, to a file without a name; so is an archive read from a pipe
(``docker save IMAGE | docker2aci docker-archive:/dev/stdin``), which cannot be read
in place.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from typing import BinaryIO, Protocol

from converters.rootfs import open_tar
from converters.tarpaths import EscapingPath, clean_member_name, join

from ..atomic import anonymous_file, temp_dir_name
from ..errors import ImageNotFound, OutputError, SourceError, UnsupportedMediaType
from ..layers import decompress_into, sniff_encoding
from ..limits import read_at_most

READ_BUFFER = 64 << 10
"""Read-ahead of an archive member's stream (bytes): small, because the squash reads a
layer in place with a seek to every tar header; large reads bypass it."""
SPOOL_CHUNK = 4 << 20
"""Bytes per read of an archive that is spooled as it is (a pipe)."""
MAX_LINK_HOPS = 8
"""Symlinks followed when a metadata or layer path in an archive is a link."""


class FileTree(Protocol):
    """Files of a source, addressed by relative ``/``-separated paths."""

    display: str
    """The source as the user named it, for messages."""

    def exists(self, path: str) -> bool:
        """Whether a regular file (after following links inside the root) is there."""
        ...

    def open(self, path: str) -> BinaryIO:
        """An independent binary stream of the file.

        Raises:
            ImageNotFound: no such file.
            SourceError: the path is unsafe.
        """
        ...

    def read(self, path: str, limit: int) -> bytes:
        """The whole file, at most ``limit`` bytes (raises ``LimitExceeded`` past it)."""
        ...

    def close(self) -> None:
        """Release files and temporary data."""
        ...


def _clean(display: str, path: str) -> str:
    try:
        return join(clean_member_name(path))
    except EscapingPath as err:
        raise SourceError(display, f"path {path!r} in the source is unsafe: {err}") from None


class _BaseTree:
    display: str

    def read(self, path: str, limit: int) -> bytes:
        with self.open(path) as f:  # type: ignore[attr-defined]
            return read_at_most(f, limit, f"{self.display}: {path}")


class DirectoryTree(_BaseTree):
    """Files below a directory (an OCI image layout)."""

    def __init__(self, root: str, display: str) -> None:
        self.root = os.path.realpath(root)
        self.display = display

    def _resolve(self, path: str) -> str | None:
        rel = _clean(self.display, path)
        full = os.path.realpath(os.path.join(self.root, rel))
        if full != self.root and not full.startswith(self.root + os.sep):
            raise SourceError(self.display, f"path {path!r} leads outside the layout")
        try:
            st = os.stat(full)
        except OSError:
            return None
        return full if stat.S_ISREG(st.st_mode) else None

    def exists(self, path: str) -> bool:
        return self._resolve(path) is not None

    def open(self, path: str) -> BinaryIO:
        full = self._resolve(path)
        if full is None:
            raise ImageNotFound(self.display, f"file {path!r} not found")
        return open(full, "rb")

    def close(self) -> None:
        pass


class _Window(io.RawIOBase):
    """``size`` bytes of an open file from ``offset``, on a descriptor of its own (a
    duplicate of ``fd``, read with positional reads, so windows never move each other): a
    seekable stream whose positions run from 0 to ``size`` (so a layer tar inside a
    ``docker save`` archive can be read in place, and never past its member)."""

    def __init__(self, fd: int, offset: int, size: int) -> None:
        super().__init__()
        self._fd = os.dup(fd)
        self._base = offset
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise OSError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self._size - self._pos)
        if n <= 0:
            return 0
        got = os.preadv(self._fd, [memoryview(buffer).cast("B")[:n]], self._base + self._pos)
        self._pos += got
        return got

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def _sniff(head: bytes, display: str) -> str:
    """The encoding of an archive from its first 512 bytes (``tar``, ``empty``, or a
    compression).

    Raises:
        SourceError: neither a tar nor a compressed one.
    """
    try:
        return sniff_encoding(head, display)
    except UnsupportedMediaType:
        raise SourceError(display, "not an image archive (a docker save or OCI archive): neither a tar "
                          "nor a gzip, zstd, bzip2 or xz compressed one") from None


class TarTree(_BaseTree):
    """Files inside a tar archive (``docker save``, oci-archive), read in place.

    The archive is opened once and its member index read once; every stream handed out
    reads the file opened then. A compressed archive is first decompressed into a file
    without a name (:func:`~docker2aci.atomic.anonymous_file`), freed by :meth:`close`,
    or by the kernel if the process is killed.

    Args:
        path: the archive.
        display: how messages name it.
        tmp_dir: where a compressed archive is decompressed (default: the system's
            temporary directory).
        max_size: the most bytes a compressed archive may decompress to, counted while it
            streams (a decompression bomb stops there); ``None`` for no cap.
        opened: the archive, already open (a spool without a name); the tree owns it from
            now on, and ``path`` only names it.

    Raises (constructor):
        SourceError: the file is not a readable tar (or compressed tar).
        LimitExceeded: a compressed archive decompresses to more than ``max_size``.
        OutputError: the decompressed archive cannot be written (a full disk).
    """

    def __init__(self, path: str, display: str, tmp_dir: str | None = None, max_size: int | None = None,
                 *, opened: BinaryIO | None = None) -> None:
        self.display = display
        self.path = path
        self._file: BinaryIO | None = opened
        try:
            if self._file is None:
                self._file = open(path, "rb")  # noqa: SIM115 (closed by close())
            mode = os.fstat(self._file.fileno()).st_mode
            if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):  # a pipe: no pread, no seek
                self._file = self._spooled(self._file, tmp_dir)
            elif stat.S_ISCHR(mode) and os.isatty(self._file.fileno()):  # /dev/stdin with nothing piped in
                raise SourceError(display, "a terminal, not an image archive: pipe one in "
                                  "(docker save IMAGE | docker2aci docker-archive:/dev/stdin)")
            encoding = _sniff(os.pread(self._file.fileno(), 512, 0), display)
            if encoding not in ("tar", "empty"):
                self._file = self._decompress(self._file, encoding, tmp_dir, max_size)
            self._members: dict[str, tarfile.TarInfo] = {}
            size = os.fstat(self._file.fileno()).st_size
            with io.BufferedReader(_Window(self._file.fileno(), 0, size), READ_BUFFER) as f, open_tar(f) as tf:
                for member in tf:
                    try:
                        name = join(clean_member_name(member.name))
                    except EscapingPath:
                        continue  # never reachable: every lookup is cleaned the same way
                    self._members[name] = member
        except IsADirectoryError as err:
            self.close()
            raise SourceError(display, "a directory, not an archive (an OCI image layout directory is "
                              "read with oci:DIR)") from err
        except (OSError, tarfile.TarError) as err:
            self.close()
            reason = err.strerror if isinstance(err, OSError) and err.strerror else err  # not "[Errno 13] ...: 'path'"
            raise SourceError(display, f"cannot read archive: {reason}") from err
        except BaseException:
            self.close()
            raise

    def _spooled(self, stream: BinaryIO, tmp_dir: str | None) -> BinaryIO:
        """Copy a stream that cannot be read in place into a spool without a name; the
        stream is closed either way.

        Raises:
            SourceError: its first bytes are neither a tar nor a compressed one.
            OutputError: the spool cannot be written (naming the directory).
            OSError: the stream cannot be read.
        """
        with stream:
            chunk = stream.read(SPOOL_CHUNK)
            _sniff(chunk[:512], self.display)  # not an archive: said before spooling all of it
            spool = anonymous_file(tmp_dir, f"reading {self.display}")
            try:
                while chunk:
                    try:
                        spool.write(chunk)
                    except OSError as err:
                        raise OutputError(f"spooling {self.display} into {temp_dir_name(tmp_dir)}: "
                                          f"{err.strerror or err}") from err
                    chunk = stream.read(SPOOL_CHUNK)
                spool.flush()
            except BaseException:
                spool.close()
                raise
        return spool

    def _decompress(self, compressed: BinaryIO, encoding: str, tmp_dir: str | None,
                    max_size: int | None) -> BinaryIO:
        """Decompress the archive into a spool without a name; the compressed file is
        closed either way."""
        with compressed:
            spool = anonymous_file(tmp_dir, f"decompressing {self.display}")
            try:
                compressed.seek(0)
                decompress_into(compressed, encoding, spool, _NullHash(), self.display, max_size, "archive")
            except BaseException:
                spool.close()
                raise
        return spool

    def names(self) -> list[str]:
        """Every member name, cleaned, in archive order."""
        return list(self._members)

    def _member(self, path: str) -> tarfile.TarInfo | None:
        name = _clean(self.display, path)
        for _ in range(MAX_LINK_HOPS):
            member = self._members.get(name)
            if member is None:
                return None
            if member.isreg():
                if member.issparse():
                    raise SourceError(self.display, f"member {name!r} is a sparse file, which is not supported")
                return member
            if member.issym():
                target = member.linkname
                base = name.rsplit("/", 1)[0] if "/" in name else ""
                name = _resolve_dots(self.display, name, target,
                                     target if target.startswith("/") else f"{base}/{target}")
                continue
            if member.islnk():
                name = _resolve_dots(self.display, name, member.linkname, member.linkname)
                continue
            return None
        raise SourceError(self.display, f"too many links resolving {path!r}")

    def exists(self, path: str) -> bool:
        return self._member(path) is not None

    def size(self, path: str) -> int | None:
        """The length in bytes of the file at ``path`` (links followed inside the
        archive), from its member header; ``None`` when there is no such file.

        Raises:
            SourceError: the path is unsafe, or names a sparse member.
        """
        member = self._member(path)
        return None if member is None else member.size

    def open(self, path: str) -> BinaryIO:
        member = self._member(path)
        if member is None:
            raise ImageNotFound(self.display, f"file {path!r} not found in the archive")
        if self._file is None:
            raise ValueError(f"{self.display}: read after close")
        return io.BufferedReader(_Window(self._file.fileno(), member.offset_data, member.size), READ_BUFFER)

    def close(self) -> None:
        """Close the archive (streams handed out stay readable: they have descriptors of
        their own); a decompressed copy is freed."""
        if self._file is not None:
            self._file.close()
            self._file = None


def _resolve_dots(display: str, member: str, target: str, path: str) -> str:
    """Resolve ``..`` in ``path``, where link ``member`` with ``target`` leads, refusing
    to leave the archive."""
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise SourceError(display, f"member {member!r} links to {target!r}, outside the archive")
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


class _NullHash:
    def update(self, data: bytes) -> None:
        pass
