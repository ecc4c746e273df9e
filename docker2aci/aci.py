"""Write an ACI file (appc spec/aci.md "Image Archives"): ``manifest`` + ``rootfs/``.

The tar is written in PAX format and streamed through a SHA-512 hasher (the image ID is
the hash of the *uncompressed* tar) and, optionally, gzip with a fixed header (mtime 0,
no file name), into a temporary file in the output directory that is renamed into place
only when complete. Same input → byte-identical file.
"""

from __future__ import annotations

import enum
import gzip
import hashlib
import io
import tarfile
from typing import IO, Protocol

from converters.rootfs import fixed_header

from .atomic import atomic_file
from .errors import OutputError

GZIP_LEVEL = 6
"""zlib level for gzip output (Go's and pgzip's default)."""
COPY_BUFFER = 1 << 20
"""Bytes copied per read when streaming file contents into the tar."""


class Compression(enum.Enum):
    """Output compression (``--compression``)."""

    GZIP = "gzip"
    NONE = "none"


class RootfsWriter(Protocol):
    """Something that writes the ``rootfs/`` entries (a squashed tree)."""

    def write(self, out: tarfile.TarFile, prefix: str = "rootfs") -> int: ...


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


def write_aci(path: str, manifest: bytes, rootfs: RootfsWriter, compression: Compression) -> str:
    """Write an ACI atomically.

    Args:
        path: the final file path; its directory must exist. An existing file is
            replaced atomically; on error nothing is left behind.
        manifest: the ``manifest`` entry's bytes (appc image manifest JSON).
        rootfs: writes the ``rootfs/...`` entries.
        compression: gzip or none.

    Returns:
        the image ID, ``sha512-`` + 128 hex of the uncompressed tar.

    Raises:
        OutputError: the file cannot be written.
        (and whatever ``rootfs.write`` raises for bad layer data)
    """
    try:
        with atomic_file(path, 0o644) as (_, raw):
            sink: IO[bytes] = raw
            gz = None
            if compression is Compression.GZIP:
                gz = gzip.GzipFile(filename="", mode="wb", compresslevel=GZIP_LEVEL, fileobj=raw, mtime=0)
                sink = gz  # type: ignore[assignment]
            hashing = _HashingWriter(sink)
            with tarfile.open(fileobj=hashing, mode="w", format=tarfile.PAX_FORMAT,  # type: ignore[call-overload]
                              encoding="utf-8", errors="surrogateescape") as tar:
                tar.copybufsize = COPY_BUFFER
                entry = fixed_header("manifest", tarfile.REGTYPE, 0o644)
                entry.size = len(manifest)
                tar.addfile(entry, io.BytesIO(manifest))
                tar.addfile(fixed_header("rootfs", tarfile.DIRTYPE, 0o755))
                rootfs.write(tar, "rootfs")
            if gz is not None:
                gz.close()
    except OSError as err:
        raise OutputError(f"writing {path}: {err}") from err
    return "sha512-" + hashing.hash.hexdigest()

