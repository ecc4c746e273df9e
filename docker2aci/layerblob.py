"""The layer blob as a source describes it, before anything of it is read: the small
protocol between the sources (:mod:`docker2aci.sources`) and the layer reader
(:mod:`docker2aci.layers`), kept apart so that a source imports no decompressor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from .digest import Digest


@dataclass(frozen=True)
class LayerBlob:
    """What the pipeline knows about one layer before reading it.

    Attributes:
        what: a name for messages (the blob digest, or the member path in an archive).
        media_type: the declared media type (``""`` when the source has none).
        digest: the blob digest to verify, or ``None`` (legacy archives name layers by path).
        size: the blob length in bytes, or ``None`` when the source does not say.
        diff_id: the digest of the uncompressed tar (config ``rootfs.diff_ids``), or ``None``.
        open: opens an independent binary stream of the blob (thread-safe per call).
        evict: for a blob read from a cache, drops the cached copy so that ``open``
            fetches it again (used once when the cached bytes fail verification).
        max_size: the largest uncompressed size accepted (bytes), or ``None`` for no cap;
            :func:`open_layers` sets it from its ``max_layer_size``.
    """

    what: str
    media_type: str
    digest: Digest | None
    size: int | None
    diff_id: Digest | None
    open: Callable[[], BinaryIO]
    evict: Callable[[], None] | None = None
    max_size: int | None = None
