"""Random access to the files of a directory or a tar archive, by relative path.

Both readers refuse paths that leave their root (absolute, ``..``), follow at most a few
symlinks and only inside the root, and hand out independent streams (safe to use from
several threads). A compressed archive (``docker save | gzip``) is spooled once,
decompressed, to a temporary file.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import tempfile
from typing import BinaryIO, Protocol

from converters.rootfs import open_tar
from converters.tarpaths import EscapingPath, clean_member_name, join

from ..errors import ImageNotFound, SourceError
from ..layers import decompress_into, sniff_encoding
from ..limits import read_at_most

READ_BUFFER = 64 << 10
"""Read-ahead of an archive member's stream (bytes): small, because the squash reads a
layer in place with a seek to every tar header; large reads bypass it."""
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
    """``size`` bytes of a file from ``offset``, on its own file descriptor: a seekable
    stream whose positions run from 0 to ``size`` (so a layer tar inside a ``docker save``
    archive can be read in place, and never past its member)."""

    def __init__(self, path: str, offset: int, size: int) -> None:
        super().__init__()
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
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


class TarTree(_BaseTree):
    """Files inside a tar archive (``docker save``, oci-archive), read in place.

    The archive's member index is read once. A compressed archive is first
    decompressed into a temporary file, removed by :meth:`close`.

    Args:
        path: the archive.
        display: how messages name it.
        tmp_dir: where a compressed archive is decompressed (default: the system's
            temporary directory).
        max_size: the most bytes a compressed archive may decompress to, counted while it
            streams (a decompression bomb stops there); ``None`` for no cap.

    Raises (constructor):
        SourceError: the file is not a readable tar (or compressed tar).
        LimitExceeded: a compressed archive decompresses to more than ``max_size``.
        OutputError: the decompressed archive cannot be written (a full disk).
    """

    def __init__(self, path: str, display: str, tmp_dir: str | None = None, max_size: int | None = None) -> None:
        self.display = display
        self._tmp_dir = tmp_dir
        self._max_size = max_size
        self._spool: str | None = None
        self.path = path
        try:
            with open(path, "rb") as f:
                head = f.read(512)
            encoding = sniff_encoding(head, display)
            if encoding not in ("tar", "empty"):
                self.path = self._spool = self._decompress(path, encoding)
            self._members: dict[str, tarfile.TarInfo] = {}
            with open(self.path, "rb") as f, open_tar(f) as tf:
                for member in tf:
                    try:
                        name = join(clean_member_name(member.name))
                    except EscapingPath:
                        continue  # never reachable: every lookup is cleaned the same way
                    self._members[name] = member
        except (OSError, tarfile.TarError) as err:
            self.close()
            raise SourceError(display, f"cannot read archive: {err}") from err
        except BaseException:
            self.close()
            raise

    def _decompress(self, path: str, encoding: str) -> str:
        fd, spool = tempfile.mkstemp(prefix="docker2aci-archive-", suffix=".tar", dir=self._tmp_dir)
        os.close(fd)
        try:
            with open(spool, "wb") as out, open(path, "rb") as src:  # by name: errors say where
                decompress_into(src, encoding, out, _NullHash(), self.display, self._max_size, "archive")
        except BaseException:
            os.unlink(spool)
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

    def open(self, path: str) -> BinaryIO:
        member = self._member(path)
        if member is None:
            raise ImageNotFound(self.display, f"file {path!r} not found in the archive")
        return io.BufferedReader(_Window(self.path, member.offset_data, member.size), READ_BUFFER)

    def close(self) -> None:
        if self._spool:
            try:
                os.unlink(self._spool)
            except FileNotFoundError:
                pass
            self._spool = None


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
