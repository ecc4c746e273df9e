"""Write an ACI file (appc spec/aci.md "Image Archives"): ``manifest`` + ``rootfs/``.

The tar is written in PAX format and streamed through a SHA-512 hasher (the image ID is
the hash of the *uncompressed* tar) and, optionally, gzip with a fixed header (mtime 0,
no file name), into a temporary file in the output directory that is renamed into place
only when complete. Same input → byte-identical file.

gzip levels 0-3 use ISA-L (``isal.igzip_threaded``): the tar is written and hashed on the
calling thread while a second thread compresses (ISA-L releases the GIL), in 1 MiB
blocks each primed with the previous 32 KiB (as pigz does), about ten times zlib's speed
at level 6 for 5-8 % more bytes. Levels 4-9 use zlib (smaller, much slower).
"""

from __future__ import annotations

import bz2
import contextlib
import enum
import gzip
import hashlib
import io
import lzma
import tarfile
from typing import IO, Protocol

from isal import igzip_threaded

from converters.rootfs import fixed_header
from converters.tarwriter import TarWriter

from .atomic import atomic_file
from .errors import OutputError

GZIP_LEVEL = 1
"""Default gzip level: ISA-L's level 1 (see :data:`ISAL_LEVELS`)."""
ISAL_LEVELS = range(0, 4)
"""Levels compressed with ISA-L (0 fastest, 3 smallest); 4-9 are zlib's."""
ZLIB_LEVELS = range(4, 10)
"""Levels compressed with zlib (``gzip`` module)."""
COPY_BUFFER = 1 << 20
"""Bytes copied per read when streaming file contents into the tar."""


class Compression(enum.Enum):
    """Output compression (``--compression``): the appc set (``spec/aci.md``, "Image
    Archives": an ACI may be gzip, bzip2 or xz compressed, or plain)."""

    GZIP = "gzip"
    NONE = "none"
    XZ = "xz"
    BZIP2 = "bzip2"


class RootfsWriter(Protocol):
    """Something that writes the ``rootfs/`` entries (a squashed tree) with ``addfile``."""

    def write(self, out: TarWriter, prefix: str = "rootfs") -> int: ...


class _HashingWriter:
    """A write-only file that hashes what passes through it."""

    def __init__(self, inner: IO[bytes]) -> None:
        self.inner = inner
        self.hash = hashlib.sha512()
        self.offset = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.offset += len(data)
        return self.inner.write(data)

    def tell(self) -> int:
        return self.offset

    def flush(self) -> None:
        self.inner.flush()


def check_level(level: int) -> int:
    """Check a gzip level (``--compression-level``).

    Raises:
        ValueError: not in 0-9.
    """
    if level not in ISAL_LEVELS and level not in ZLIB_LEVELS:
        raise ValueError(f"gzip level {level}: choose 0-3 (ISA-L, fast) or 4-9 (zlib, smaller and slower)")
    return level


def _gzip_writer(raw: IO[bytes], level: int) -> IO[bytes]:
    """A gzip stream into ``raw`` (not closing it) with mtime 0 and no file name."""
    if level in ISAL_LEVELS:
        return igzip_threaded.open(raw, "wb", compresslevel=level, threads=1)  # type: ignore[no-any-return]
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
              level: int = GZIP_LEVEL) -> str:
    """Write an ACI atomically.

    Args:
        path: the final file path; its directory must exist. An existing file is
            replaced atomically; on error nothing is left behind.
        manifest: the ``manifest`` entry's bytes (appc image manifest JSON).
        rootfs: writes the ``rootfs/...`` entries.
        compression: gzip, xz, bzip2 or none.
        level: the gzip level (:func:`check_level`).

    Returns:
        the image ID, ``sha512-`` + 128 hex of the uncompressed tar.

    Raises:
        OutputError: the file cannot be written.
        (and whatever ``rootfs.write`` raises for bad layer data)
    """
    try:
        with atomic_file(path, 0o644) as (_, raw):
            gz = _compressor(raw, compression, check_level(level))
            try:
                hashing = _HashingWriter(gz if gz is not None else raw)
                with TarWriter(hashing) as tar:  # tarfile's PAX bytes, without its per-member list
                    entry = fixed_header("manifest", tarfile.REGTYPE, 0o644)
                    entry.size = len(manifest)
                    tar.addfile(entry, io.BytesIO(manifest))
                    tar.addfile(fixed_header("rootfs", tarfile.DIRTYPE, 0o755))
                    rootfs.write(tar, "rootfs")
                if gz is not None:
                    gz, closing = None, gz
                    closing.close()  # the last blocks and the trailer
            finally:
                if gz is not None:  # an error above: stop the compression thread
                    with contextlib.suppress(Exception):
                        gz.close()
    except OSError as err:
        raise OutputError(f"writing {path}: {err}") from err
    return "sha512-" + hashing.hash.hexdigest()

