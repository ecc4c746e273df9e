"""Open an ACI file and read its uncompressed tar (appc ``spec/aci.md``).

An ACI ("Image Archives") is a tar, optionally compressed with gzip, bzip2 or xz, with a
``manifest`` entry (the image manifest, ``spec/types.md``, "Image Manifest Schema"); its
image ID ("Image ID") is ``sha512-`` + the hex SHA-512 of the uncompressed tar, padding
after the end-of-archive blocks included. This is the one reader of that format for the
runner, discovery and signature checks:

* :func:`open_uncompressed` chooses the decompressor from the file's first bytes (zstd,
  which ACIs never use, is refused at once) and returns a stream that hashes what passes
  through it: the uncompressed bytes (:meth:`UncompressedStream.image_id`) and the file's
  own bytes (:meth:`UncompressedStream.file_digest`), so both describe one read;
* :func:`open_tar` reads that stream as a tar, front to back, never holding it in memory;
* :func:`read_entry` reads one entry (the manifest) with a size cap, and
  :func:`parse_manifest` checks it is an ``ImageManifest``;
* :func:`read_manifest`, :func:`inspect_aci` and :func:`digests` are whole reads built on
  those, each turning every failure into :class:`~docker2aci.errors.InvalidACI`.

How an entry name is matched against ``manifest`` is the caller's choice
(``is_manifest``): the runner refuses unsafe names on the way, the others normalise them
with :func:`posixpath.normpath` (:func:`is_manifest_name`).
"""

from __future__ import annotations

import bz2
import contextlib
import hashlib
import io
import lzma
import os
import posixpath
import tarfile
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from typing import IO, Any, cast

from isal import igzip, isal_zlib

from . import untrustedjson
from .errors import InvalidACI
from .limits import MAX_MANIFEST_BYTES

#: The compressions of an ACI (appc ``spec/aci.md``, "Image Archives"): (name, magic bytes).
COMPRESSIONS: tuple[tuple[str, bytes], ...] = (
    ("gzip", b"\x1f\x8b"),
    ("bzip2", b"BZh"),
    ("xz", b"\xfd7zXZ\x00"),
)
#: Compressions other tools write that ACIs do not use: (name, magic bytes).
REFUSED_COMPRESSIONS: tuple[tuple[str, bytes], ...] = (("zstd", b"\x28\xb5\x2f\xfd"),)
#: The decompressing readers, by compression name (``none`` reads the file as it is).
_DECOMPRESSORS: dict[str, Callable[[IO[bytes]], IO[bytes]]] = {
    "gzip": lambda raw: cast(IO[bytes], igzip.GzipFile(fileobj=raw, mode="rb")),
    "bzip2": lambda raw: bz2.BZ2File(raw, "rb"),
    "xz": lambda raw: lzma.LZMAFile(raw, "rb"),  # noqa: SIM115 - UncompressedStream.close closes it
}
#: How many first bytes of a file name its compression.
HEAD_BYTES = 8
#: The size of the reads that drain a stream, in bytes.
READ_CHUNK = 1 << 20
#: How many of the last bytes read a stream keeps at least (for
#: :meth:`UncompressedStream.bytes_at`): more than tarfile reads ahead of the header it
#: parses (:data:`tarfile.RECORDSIZE`, 10 KiB), in bytes.
HELD_BYTES = 64 << 10
_ZERO_BLOCK = bytes(tarfile.BLOCKSIZE)
#: What reading an ACI's tar through :func:`open_uncompressed` and :func:`open_tar` may
#: raise besides :class:`~docker2aci.errors.InvalidACI`: an unreadable file, a damaged
#: compressed stream, a malformed tar.
READ_ERRORS = cast("tuple[type[Exception], ...]", (  # isal's stubs call its error an instance
    OSError, EOFError, tarfile.TarError, zlib.error, isal_zlib.error, lzma.LZMAError))
# The whole reads below also take a ValueError (from a malformed header) as an unreadable ACI.
_WHOLE_READ_ERRORS: tuple[type[Exception], ...] = (*READ_ERRORS, ValueError)


def compression_name(head: bytes) -> str:
    """Name an ACI's compression from its first bytes, without judging it.

    Args:
        head: the file's first :data:`HEAD_BYTES` bytes (fewer for a tiny file).

    Returns:
        ``gzip``, ``bzip2``, ``xz``, or ``none`` (a plain tar, or anything else).
    """
    return next((name for name, magic in COMPRESSIONS if head.startswith(magic)), "none")


def sniff_compression(head: bytes) -> str:
    """The compression an ACI's first bytes name (appc ``spec/aci.md``, "Image Archives").

    Args:
        head: the file's first :data:`HEAD_BYTES` bytes (fewer for a tiny file).

    Returns:
        ``gzip``, ``bzip2``, ``xz`` or ``none`` (read as a plain tar).

    Raises:
        InvalidACI: a compression that ACIs do not use (zstd).
    """
    for name, magic in REFUSED_COMPRESSIONS:
        if head.startswith(magic):
            raise InvalidACI(f"{name}-compressed ACIs are not supported (appc: gzip, bzip2, xz)")
    return compression_name(head)


class _HashingReader(io.RawIOBase):
    """A binary stream read through, its bytes hashed as they pass.

    Attributes:
        hash: the hash of the bytes read so far.
        length: how many bytes were read so far.
    """

    def __init__(self, inner: IO[bytes], digest: hashlib._Hash) -> None:
        self._inner = inner
        self.hash = digest
        self.length = 0
        self._held: deque[bytes] = deque()  # the last chunks read, HELD_BYTES or more in all (for bytes_at())
        self._held_size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._inner.read(len(buffer))
        buffer[: len(data)] = data
        self._passed(data)
        return len(data)

    def _drain(self) -> None:
        while chunk := self._inner.read(READ_CHUNK):
            self._passed(chunk)

    def _passed(self, data: bytes) -> None:
        self.hash.update(data)
        self.length += len(data)
        if data:
            self._held.append(data)
            self._held_size += len(data)
            while self._held_size - len(self._held[0]) >= HELD_BYTES:
                self._held_size -= len(self._held.popleft())

    def bytes_at(self, offset: int, size: int) -> bytes:
        """Bytes ``offset`` to ``offset + size`` of the stream (fewer at its end), reading
        on (and hashing) as far as they reach.

        Raises:
            ValueError: ``offset`` is more than :data:`HELD_BYTES` before the last byte read.
            OSError, EOFError, zlib.error, isal_zlib.error, lzma.LZMAError: as
                :meth:`UncompressedStream.image_id`.
        """
        while self.length < offset + size and (chunk := self._inner.read(READ_CHUNK)):
            self._passed(chunk)
        start = self.length - self._held_size
        if offset < start:
            raise ValueError(f"byte {offset} of the stream is no longer held (from {start})")
        return b"".join(self._held)[offset - start:offset - start + size]


class UncompressedStream(_HashingReader):
    """The uncompressed tar of an ACI file, hashed with SHA-512 as it is read; the file's
    own bytes are hashed with SHA-256 on the way. Closing it closes the decompressor and
    the file. Made by :func:`open_uncompressed`.

    Attributes:
        compression: ``gzip``, ``bzip2``, ``xz`` or ``none``.
    """

    def __init__(self, file: IO[bytes]) -> None:
        """Wrap an open file, positioned at its start.

        Raises:
            InvalidACI: a compression that ACIs do not use (zstd).
            OSError: the file cannot be read.
        """
        self._file = file
        self._stored = _HashingReader(file, hashlib.sha256())
        self._raw = io.BufferedReader(self._stored, READ_CHUNK)
        self.compression = sniff_compression(self._raw.peek(HEAD_BYTES)[:HEAD_BYTES])
        decompressor = _DECOMPRESSORS.get(self.compression)
        super().__init__(self._raw if decompressor is None else decompressor(self._raw), hashlib.sha512())

    def image_id(self) -> str:
        """Read the rest of the uncompressed tar (padding after the end-of-archive blocks
        counts too) and return the image ID (appc ``spec/aci.md``, "Image ID").

        Returns:
            ``sha512-<hex>``.

        Raises:
            OSError, EOFError, zlib.error, isal_zlib.error, lzma.LZMAError: the file cannot
                be read or decompressed (:data:`READ_ERRORS`).
            InvalidACI: the tar is cut short: its length is no whole number of 512-byte
                blocks (POSIX ``pax``, "ustar Interchange Format") and its last, partial
                block is not zeros after two zero blocks (padding after the end-of-archive
                blocks is accepted, as rkt's Go reader does), as a copy cut in the middle of a header or of a
                file's last block is (tarfile takes a partial header for the end of the
                archive; the Go reader says "unexpected EOF").
        """
        self._drain()
        partial = self.length % tarfile.BLOCKSIZE
        if partial and self.bytes_at(max(0, self.length - partial - 2 * tarfile.BLOCKSIZE),
                                     partial + 2 * tarfile.BLOCKSIZE).strip(b"\0"):  # padding after the end blocks
            raise InvalidACI(f"truncated, or with data after its end: the tar ends {partial} bytes into a "
                             f"{tarfile.BLOCKSIZE}-byte block, not zeros (after {self.length} bytes)")
        return "sha512-" + self.hash.hexdigest()

    def file_digest(self) -> str:
        """Read the rest of the file and return the SHA-256 of its bytes as stored.

        Returns:
            ``sha256:<hex>``.

        Raises:
            OSError, EOFError, zlib.error, isal_zlib.error, lzma.LZMAError: as
                :meth:`image_id`.
        """
        self.image_id()
        while self._raw.read(READ_CHUNK):
            pass
        return "sha256:" + self._stored.hash.hexdigest()

    def close(self) -> None:
        """Close the decompressor, then the file (each even if another fails)."""
        if self.closed:
            return
        try:
            with contextlib.ExitStack() as stack:
                for layer in (self._file, self._raw, getattr(self, "_inner", self._raw)):  # made in this order
                    stack.callback(layer.close)
        finally:
            super().close()


def open_uncompressed(path: str | os.PathLike[str]) -> UncompressedStream:
    """Open an ACI for reading its uncompressed tar; the compression (gzip, bzip2, xz or
    none) is chosen from the first bytes (:func:`sniff_compression`). Use it as a context
    manager, or close it.

    Args:
        path: the ACI file.

    Returns:
        The stream, at the start of the tar.

    Raises:
        OSError: the file cannot be opened or read.
        InvalidACI: a compression that ACIs do not use (zstd).
    """
    file = open(path, "rb")  # noqa: SIM115 - the stream owns it
    try:
        return UncompressedStream(file)
    except BaseException:
        file.close()
        raise


def open_tar(stream: IO[bytes] | io.RawIOBase) -> tarfile.TarFile:
    """Read an uncompressed ACI stream as a tar, front to back (``r|``); names are UTF-8,
    byte-exact (``surrogateescape``); extended headers are bounded as a layer's are
    (:class:`converters.rootfs.BoundedTarInfo`: a 256 MiB PAX header, 255 KiB of gzip, was
    read whole, 800 MiB of memory).

    Raises:
        tarfile.TarError: not a tar (its first header does not parse); the message says
            so (tarfile's own, "truncated header" or "bad checksum", reads like damage).
    """
    from converters.rootfs import BoundedTarInfo  # the converter's import, only when an ACI is read whole

    try:
        return tarfile.open(fileobj=cast(IO[bytes], stream), mode="r|", encoding="utf-8", errors="surrogateescape",
                            tarinfo=BoundedTarInfo)
    except tarfile.ReadError as err:
        raise tarfile.ReadError(f"not a tar archive, plain or gzip, bzip2 or xz compressed ({err})") from err


def check_end(archive: tarfile.TarFile, stream: UncompressedStream, last: str | None) -> None:
    """Refuse an ACI whose entries, listed by ``archive`` (:func:`open_tar` of ``stream``) to
    its end, stopped at anything but the end of the tar: the end of the stream, or a zero
    block followed by another or by nothing (what Go's ``archive/tar``, which rkt and
    actool read ACIs with, takes for the end; POSIX ``pax``, "ustar Interchange Format":
    two zero blocks). tarfile ends its listing quietly at a malformed header once past the
    first (a bad checksum, a block of file data where a header should be) and at a single
    zero block, and every entry after it would be lost without a word; Go's reader fails
    there. A header cut short by the end of the stream is left to
    :meth:`UncompressedStream.image_id`, which says the tar is truncated.

    Args:
        last: the name of the last entry listed, ``None`` when there was none.

    Raises:
        InvalidACI: naming the offset (bytes into the uncompressed tar) and the last entry.
        OSError, EOFError, zlib.error, isal_zlib.error, lzma.LZMAError: the stream cannot
            be read on (:data:`READ_ERRORS`).
    """
    offset = archive.offset
    block = stream.bytes_at(offset, tarfile.BLOCKSIZE)
    if len(block) < tarfile.BLOCKSIZE:
        return
    if block == _ZERO_BLOCK:
        if not stream.bytes_at(offset + tarfile.BLOCKSIZE, tarfile.BLOCKSIZE).strip(b"\0"):
            return
        problem = "data after a single end-of-archive block"
    else:
        problem = "a malformed tar header"
    after = f"after entry {last!r}" if last is not None else "before any entry"
    raise InvalidACI(f"{problem} at byte {offset} of the tar, {after}: the ACI is damaged "
                     "(the entries after it cannot be read)")


def is_manifest_name(name: str) -> bool:
    """Whether a tar entry name, normalised (:func:`posixpath.normpath`), is ``manifest``."""
    return posixpath.normpath(name) == "manifest"


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit and not limit % (1 << 20) else f"{limit} bytes"


def read_entry(archive: tarfile.TarFile, member: tarfile.TarInfo, limit: int = MAX_MANIFEST_BYTES) -> bytes:
    """The contents of one entry of an ACI's tar (its ``manifest``), read whole.

    Args:
        archive: the tar, positioned at ``member`` (the last entry read).
        member: the entry.
        limit: the largest size accepted, in bytes.

    Raises:
        InvalidACI: the entry (named in :attr:`~docker2aci.errors.InvalidACI.entry`) is not
            a regular file, or is larger than ``limit``.
        OSError, EOFError, tarfile.TarError, zlib.error, isal_zlib.error, lzma.LZMAError:
            the archive cannot be read further (:data:`READ_ERRORS`).
    """
    if not member.isreg():
        raise InvalidACI("not a regular file", entry=member.name)
    if member.size > limit:
        raise InvalidACI(f"larger than {_size(limit)}", entry=member.name)
    data = archive.extractfile(member)
    assert data is not None  # a regular file always has data
    return data.read()


def parse_manifest(data: bytes) -> dict[str, Any]:
    """Parse an image manifest (appc ``spec/types.md``, "Image Manifest Schema"): a JSON
    object whose ``acKind`` is ``ImageManifest``; its other fields are not checked.

    Raises:
        InvalidACI: not JSON (or not UTF-8, or with a byte order mark, or nested too
            deep), or not an object with ``acKind`` ``ImageManifest``.
    """
    try:
        # render writes it out again for other readers; UTF-8 alone, as rkt and actool read it
        manifest = untrustedjson.loads(data, allow_nan=False, utf8_only=True)
    except untrustedjson.BadJSON as err:
        raise InvalidACI(f"manifest is not valid JSON: {err}") from err
    if not isinstance(manifest, dict) or manifest.get("acKind") != "ImageManifest":
        raise InvalidACI("manifest is not an appc ImageManifest (acKind)")
    return manifest


@contextlib.contextmanager
def _invalid_aci() -> Iterator[None]:
    """Turn a failure to read an ACI (:data:`READ_ERRORS`, or a ``ValueError`` from a
    malformed header) into :class:`~docker2aci.errors.InvalidACI`, the cause chained."""
    try:
        yield
    except _WHOLE_READ_ERRORS as err:
        if isinstance(err, OSError) and err.strerror:  # "No such file or directory", not "[Errno 2] ...: 'path'"
            raise InvalidACI(err.strerror) from err
        raise InvalidACI(str(err) or type(err).__name__) from err


def _find_manifest(archive: tarfile.TarFile, limit: int, is_manifest: Callable[[str], bool]) -> dict[str, Any]:
    while (member := archive.next()) is not None:
        if is_manifest(member.name):
            return parse_manifest(read_entry(archive, member, limit))
    raise InvalidACI("no 'manifest' entry: not an ACI")


def read_manifest(path: str | os.PathLike[str], *, limit: int = MAX_MANIFEST_BYTES,
                  is_manifest: Callable[[str], bool] = is_manifest_name) -> dict[str, Any]:
    """The image manifest of an ACI, reading the archive only up to its first ``manifest``
    entry (the first entry in ACIs written by docker2aci and actool).

    Args:
        path: the ACI file (gzip, bzip2, xz or plain tar).
        limit: the largest manifest accepted, in bytes.
        is_manifest: whether an entry name is the manifest (an exception it raises, such
            as the runner's refusal of an unsafe name, goes through unchanged).

    Returns:
        The parsed manifest (:func:`parse_manifest`).

    Raises:
        InvalidACI: the file cannot be read or decompressed, is not a tar, is zstd, or has
            no valid manifest (:attr:`~docker2aci.errors.InvalidACI.entry` names the entry
            when it is the one at fault).
    """
    with _invalid_aci(), open_uncompressed(path) as stream, open_tar(stream) as archive:
        return _find_manifest(archive, limit, is_manifest)


def inspect_aci(path: str | os.PathLike[str], *, limit: int = MAX_MANIFEST_BYTES,
                is_manifest: Callable[[str], bool] = is_manifest_name) -> tuple[str, dict[str, Any]]:
    """The image ID and the image manifest of an ACI, from one read of the whole file
    (appc ``spec/aci.md``, "Image ID"; the first ``manifest`` entry counts).

    Args:
        path, limit, is_manifest: as :func:`read_manifest`.

    Returns:
        ``(image ID, manifest)``: ``sha512-<hex>`` and the parsed manifest.

    Raises:
        InvalidACI: as :func:`read_manifest`.
    """
    with _invalid_aci(), open_uncompressed(path) as stream:
        with open_tar(stream) as archive:
            manifest = _find_manifest(archive, limit, is_manifest)
        return stream.image_id(), manifest


def digests(path: str | os.PathLike[str]) -> tuple[str, str]:
    """The SHA-256 of an ACI file as it is and its image ID (appc ``spec/aci.md``, "Image
    ID"), from one read of the same bytes (so the two describe one file, even one that is
    being replaced). The tar itself is not parsed.

    Returns:
        ``(sha256:<hex>, sha512-<hex>)``.

    Raises:
        InvalidACI: the file cannot be read or decompressed, or is zstd.
    """
    with _invalid_aci(), open_uncompressed(path) as stream:
        return stream.file_digest(), stream.image_id()


__all__ = [
    "COMPRESSIONS",
    "HEAD_BYTES",
    "HELD_BYTES",
    "READ_CHUNK",
    "READ_ERRORS",
    "REFUSED_COMPRESSIONS",
    "UncompressedStream",
    "check_end",
    "compression_name",
    "digests",
    "inspect_aci",
    "is_manifest_name",
    "open_tar",
    "open_uncompressed",
    "parse_manifest",
    "read_entry",
    "read_manifest",
    "sniff_compression",
]
