"""Named size limits for metadata documents and layers, a bounded reader, and the
parser of size arguments (``512M``, ``4G``).

Manifests, indexes, configs and archive index files are read whole into memory, so
each read is capped. Layers are never read whole: they are streamed, and the
uncompressed size of each one is capped (:data:`DEFAULT_MAX_LAYER_BYTES`, the
``--max-layer-size`` flag) so that a decompression bomb cannot fill the disk.
"""

from __future__ import annotations

import re
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
MAX_LAYERS = 500
"""The layers of one image. Each is held open (a file descriptor) while the image is
squashed: a manifest of thousands of layers would use up the default 1,024 descriptors
(``ulimit -n``). 500 is what overlayfs stacks (``OVL_MAX_STACK``), and so what the
runner renders as a ``--nosquash`` chain (:data:`runner.treestore.MAX_DEPENDENCY_DEPTH`);
Docker stops at 125 (moby ``layer/layer_store.go``, ``maxLayerDepth``)."""
DEFAULT_MAX_LAYER_BYTES = 16 * 1024**3
"""The uncompressed size of one layer tar (bytes): 16 GiB, the default of ``--max-layer-size``.

Counted while the layer is streamed, before its bytes reach a spool, so a gzip bomb (a few
MiB that expand to terabytes) is refused after at most this much disk. The largest layers of
real images (CUDA and ML toolkits) are a few GiB uncompressed; 16 GiB leaves room for them.
"""

_SIZE_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"([0-9]+)\s*([KMGT]?)(?:I?B)?", re.IGNORECASE)


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


def parse_size(text: str) -> int:
    """Parse a size argument: a count of bytes with an optional binary suffix.

    ``K``, ``M``, ``G`` and ``T`` (any case, optionally followed by ``B`` or ``iB``) are
    powers of 1024: ``512M`` is 536870912 bytes, ``4G`` 4294967296, ``100`` 100.

    Args:
        text: the argument as typed.

    Returns:
        the size in bytes (at least 1).

    Raises:
        ValueError: not a size, or zero.
    """
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a size: {text!r} (expected bytes, or a number with K, M, G or T)")
    size = int(match.group(1)) * _SIZE_UNITS[match.group(2).upper()]
    if size <= 0:
        raise ValueError(f"a size must be positive: {text!r}")
    return size
