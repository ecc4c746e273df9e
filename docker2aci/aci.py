"""Write an ACI file (appc spec/aci.md "Image Archives"): ``manifest`` + ``rootfs/``.

The tar is written in PAX format and streamed through a SHA-512 hasher (the image ID is
the hash of the *uncompressed* tar) and, optionally, gzip with a fixed header (mtime 0,
no file name), into a temporary file in the output directory that is renamed into place
only when complete. Same input → byte-identical file.

The tar is written on the calling thread, and hashed and handed to the compressor by a
second (hashlib releases the GIL). gzip levels 0-3 use ISA-L (``isal.igzip_threaded``), which compresses in
:data:`~docker2aci.compression.GZIP_THREADS` more threads (ISA-L releases the GIL too),
in 1 MiB blocks each primed with the previous 32 KiB (as pigz and the reference tool's
pgzip do): at the default level 3, about five times zlib's speed at level 6 for 10 % more
bytes. Levels 4-9 use zlib (smaller, much slower).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import io
import lzma
import os
import tarfile
from typing import IO, Any, Callable, Iterator, Protocol

from isal import igzip_threaded

from converters.rootfs import fixed_header
from converters.tarwriter import TarWriter

from .atomic import atomic_file, syncing_ahead
from .compression import GZIP_LEVEL, GZIP_THREADS, ISAL_LEVELS, Compression, check_level
from .errors import OutputError
from .writebehind import WriteBehind

BLOCK = 1 << 20
"""The tar goes to the compressor and the image-ID hash in blocks of this many bytes."""
HASH_QUEUE = 8
"""Blocks waiting for the image-ID hash and the compressor at most (bounds memory: 8 MiB)."""


class RootfsWriter(Protocol):
    """Something that writes the ``rootfs/`` entries (a squashed tree) with ``addfile``."""

    def write(self, out: TarWriter, prefix: str = "rootfs") -> int: ...


class _HashingWriter:
    """A write-only stream that cuts what is written into :data:`BLOCK`-byte blocks and
    hands each to a :class:`~docker2aci.writebehind.WriteBehind` thread, which adds it to
    the SHA-512 (the image ID) and writes it to ``inner``: the writing thread only queues.

    ``inner`` (the compressor) is written by that thread alone. ISA-L's threaded writer,
    interrupted inside a ``write`` that waits for a compression thread, is left out of
    step and its ``close`` waits forever; ``KeyboardInterrupt`` reaches the main thread
    only, so here it interrupts a queue put of ours instead.

    Call :meth:`hexdigest` once everything is written, or :meth:`abandon` on an error.
    An ``OSError`` of ``inner.write`` (a full disk) is raised as an ``OutputError`` naming
    ``path``, at the next write, at :meth:`hexdigest` or by :meth:`raise_error`.
    """

    def __init__(self, inner: IO[bytes], path: str = "the ACI") -> None:
        self.offset = 0
        self._block = bytearray(BLOCK)  # filled up to _fill, then handed on as one bytes copy
        self._fill = 0
        self._hash = hashlib.sha512()

        def output_error(err: BaseException) -> BaseException:
            # not an OSError: the squash reports an OSError met while copying a layer's
            # data as that layer's fault, and a full disk is not
            return OutputError(f"writing {path}: {err.strerror or err}") if isinstance(err, OSError) else err

        self._behind = WriteBehind(self._hash.update, inner.write, HASH_QUEUE, output_error,
                                   name="docker2aci-image-id")

    def write(self, data: bytes | memoryview) -> int:
        view = data if type(data) is bytes else memoryview(data).cast("B")
        size = len(view)
        self.offset += size
        fill = self._fill
        if fill + size < BLOCK:  # a header or padding: no block to hand on yet
            self._block[fill:fill + size] = view
            self._fill = fill + size
            return size
        view = memoryview(view)
        while view:
            n = min(BLOCK - self._fill, len(view))
            self._block[self._fill:self._fill + n] = view[:n]
            self._fill += n
            view = view[n:]
            if self._fill == BLOCK:
                self._emit()
        return size

    def _emit(self) -> None:
        """Hand on the bytes gathered. Blocks are exactly BLOCK bytes but the last: ISA-L
        compresses each ``write`` as a block of its own, so the output bytes must not
        depend on how the tar was written."""
        block = bytes(memoryview(self._block)[:self._fill])
        self._fill = 0
        self._behind.put(block)

    def tell(self) -> int:
        return self.offset

    def hexdigest(self) -> str:
        """Write out the last block, wait until every block is written; the SHA-512 of
        everything written (hex)."""
        if self._fill:
            self._emit()
        self._behind.finish()
        return self._hash.hexdigest()

    def abandon(self) -> None:
        """Stop the thread without writing what is still queued (safe after
        :meth:`hexdigest`, and again)."""
        self._behind.abandon()

    def raise_error(self) -> None:
        """Raise what writing a block met, if anything (see the class)."""
        self._behind.raise_error()


class _FileHashing:
    """The ACI file as the compressor sees it: each write also updates ``file_hash``
    (the conversion cache records the file's SHA-256, taken here instead of by a second
    read). Written by one thread at a time: the compressor's."""

    def __init__(self, raw: IO[bytes], file_hash: Any) -> None:
        self._raw, self._update = raw, file_hash.update

    def write(self, data: bytes | memoryview) -> int:
        self._update(data)
        return self._raw.write(data)

    def flush(self) -> None:
        self._raw.flush()


def _gzip_writer(raw: IO[bytes], level: int) -> IO[bytes]:
    """A gzip stream into ``raw`` (not closing it) with mtime 0 and no file name."""
    if level in ISAL_LEVELS:
        return igzip_threaded.open(raw, "wb", compresslevel=level, threads=GZIP_THREADS)  # type: ignore[no-any-return]
    return gzip.GzipFile(filename="", mode="wb", compresslevel=level, fileobj=raw, mtime=0)


def _compressor(raw: IO[bytes], compression: Compression, level: int) -> IO[bytes] | None:
    """The compressing stream into ``raw`` (``None`` for a plain tar). ``level`` is the
    gzip level; xz uses preset 6 and bzip2 level 9 (their tools' defaults). Each is
    deterministic: the same tar gives the same bytes."""
    if compression is Compression.GZIP:
        return _gzip_writer(raw, level)
    if compression is Compression.XZ:
        return lzma.LZMAFile(raw, "wb", format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=6)  # type: ignore[return-value]
    if compression is Compression.BZIP2:
        return bz2.BZ2File(raw, "wb", compresslevel=9)  # type: ignore[return-value]
    return None


def write_aci(path: str, manifest: bytes, rootfs: RootfsWriter, compression: Compression,
              level: int = GZIP_LEVEL, before_publish: Callable[[], None] | None = None,
              file_hash: Any = None) -> str:
    """Write an ACI atomically.

    Args:
        path: the final file path; its directory must exist. An existing file is
            replaced atomically; on error nothing is left behind.
        manifest: the ``manifest`` entry's bytes (appc image manifest JSON).
        rootfs: writes the ``rootfs/...`` entries.
        compression: gzip, xz, bzip2 or none.
        level: the gzip level (:func:`check_level`).
        before_publish: called once the file is complete and before it is renamed into
            place; whatever it raises stops the write, and nothing is left behind (the
            pipeline waits there for the digest checks of layers read in place).
        file_hash: a hashlib object updated with the file's bytes as they are written
            (its SHA-256 for the conversion cache, without reading the file again).

    Returns:
        the image ID, ``sha512-`` + 128 hex of the uncompressed tar.

    Raises:
        OutputError: the file cannot be written.
        (and whatever ``rootfs.write`` raises for bad layer data)
    """
    with writing_aci(path, manifest, rootfs, compression, level, file_hash) as image_id:
        if before_publish is not None:
            try:
                before_publish()
            except OSError as err:
                raise OutputError(f"writing {path}: {err.strerror or err}") from err
    return image_id


@contextlib.contextmanager
def writing_aci(path: str, manifest: bytes, rootfs: RootfsWriter, compression: Compression,
                level: int = GZIP_LEVEL, file_hash: Any = None) -> Iterator[str]:
    """Write an ACI that is renamed into place only when the ``with`` block ends without
    error (:func:`write_aci`'s arguments): several files can be published together, or
    none of them (``--nosquash``: a chain whose top failed leaves the files it would have
    replaced as they were). While the block runs, the file is complete and synced, and only
    its temporary file stays open: the compressor, the image-ID and sync-ahead threads and
    their buffers are gone (a chain of many layers holds one open file each, not one
    writer each: idle threads kept their malloc arenas, about 5 MB a layer).

    Yields:
        the image ID, once the file is complete.

    Raises:
        OutputError: the file cannot be written.
        (and whatever ``rootfs.write`` raises for bad layer data)
    """
    in_block = False  # what the caller's block raises is the caller's, not this file's
    try:
        # synced here, not when renamed: a full disk or a write-back error met by the last
        # bytes fails this file before any file of the set is published
        with atomic_file(path, 0o644, sync=False) as (_, raw):
            with syncing_ahead(raw):
                image_id = _write_tar(path, raw, manifest, rootfs, compression, level, file_hash)
            raw.flush()
            os.fsync(raw.fileno())
            in_block = True
            yield image_id
            in_block = False
    except OSError as err:
        if in_block:
            raise
        raise OutputError(f"writing {path}: {err.strerror or err}") from err


def _write_tar(path: str, raw: IO[bytes], manifest: bytes, rootfs: RootfsWriter, compression: Compression,
               level: int, file_hash: Any) -> str:
    """Write the ACI's tar into ``raw`` (compressed, hashed); its image ID."""
    out: IO[bytes] = raw if file_hash is None else _FileHashing(raw, file_hash)  # type: ignore[assignment]
    gz = _compressor(out, compression, check_level(level))
    hashing = _HashingWriter(gz if gz is not None else out, path)
    try:
        with TarWriter(hashing) as tar:  # tarfile's PAX bytes, without its per-member list
            entry = fixed_header("manifest", tarfile.REGTYPE, 0o644)
            entry.size = len(manifest)
            tar.addfile(entry, io.BytesIO(manifest))
            tar.addfile(fixed_header("rootfs", tarfile.DIRTYPE, 0o755))
            rootfs.write(tar, "rootfs")
        image_id = hashing.hexdigest()
        if gz is not None:
            gz.close()  # the last blocks and the trailer; closing again is a no-op
            gz = None
        return "sha512-" + image_id
    except Exception:  # a block that could not be written (a full disk) is the first error
        hashing.abandon()
        hashing.raise_error()
        if gz is not None:  # ISA-L keeps its writer thread's error until close
            closing, gz = gz, None
            try:
                closing.close()
            except OSError as err:
                raise OutputError(f"writing {path}: {err.strerror or err}") from err
        raise
    finally:
        hashing.abandon()
        if gz is not None:  # an error above: stop the compression thread
            with contextlib.suppress(Exception):
                gz.close()
