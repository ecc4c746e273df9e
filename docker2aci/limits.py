"""Named size limits for metadata documents, and a bounded reader.

Manifests, indexes, configs and archive index files are read whole into memory, so
each read is capped. Layers are never read whole: they are streamed.
"""

from __future__ import annotations

from typing import BinaryIO

from .errors import LimitExceeded

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
"""A manifest, manifest list or image index (bytes)."""
MAX_CONFIG_BYTES = 16 * 1024 * 1024
"""An image config or a legacy ``<id>/json`` (bytes)."""
MAX_INDEX_FILE_BYTES = 16 * 1024 * 1024
"""``manifest.json``, ``index.json``, ``repositories`` of an archive or layout (bytes)."""
MAX_PASSWD_BYTES = 4 * 1024 * 1024
"""``/etc/passwd`` or ``/etc/group`` read from an image to resolve USER (bytes)."""


def read_at_most(stream: BinaryIO, limit: int, what: str) -> bytes:
    """Read a whole stream, refusing more than ``limit`` bytes.

    Args:
        stream: a binary stream positioned at the start of the document.
        limit: the largest size accepted, in bytes.
        what: names the document in the error.

    Raises:
        LimitExceeded: the stream holds more than ``limit`` bytes.
    """
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise LimitExceeded(f"{what}: larger than the {limit}-byte limit")
    return data
