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
        what: the source's name for it: the blob digest, or the member path in an
            archive (messages use :attr:`label`, which holds it).
        media_type: the declared media type (``""`` when the source has none).
        digest: the blob digest to verify, or ``None`` (legacy archives name layers by path).
        size: the blob length in bytes, or ``None`` when the source does not say.
        diff_id: the digest of the uncompressed tar (config ``rootfs.diff_ids``), or ``None``.
        open: opens an independent binary stream of the blob (thread-safe per call).
        evict: for a blob read from a cache, drops the cached copy so that ``open``
            fetches it again (used once when the cached bytes fail verification).
        max_size: the largest uncompressed size accepted (bytes), or ``None`` for no cap;
            :func:`open_layers` sets it from its ``max_layer_size``.
        image: the image the layer belongs to as messages name it (the source, as the
            user named it, and the platform); set by the pipeline with ``index``.
        index: the layer's position in its image, base first (0 is the base layer, as
            in the config's ``rootfs.diff_ids``), or ``None`` before the pipeline sets it.
        legacy_id: in a legacy archive (``repositories`` and ``<id>/layer.tar``, before
            Docker 1.10), the layer's v1 ID (64 hex), which names it together with its
            parents, as a chain ID does; ``None`` elsewhere.
    """

    what: str
    media_type: str
    digest: Digest | None
    size: int | None
    diff_id: Digest | None
    open: Callable[[], BinaryIO]
    evict: Callable[[], None] | None = None
    max_size: int | None = None
    image: str = ""
    index: int | None = None
    legacy_id: str | None = None

    @property
    def label(self) -> str:
        """The layer in messages: ``<image>: layer <index> (<what>)``
        (``img.tar (linux/amd64): layer 0 (<hex>.tar)``), or ``layer <what>`` before the
        pipeline has placed it in its image."""
        if self.index is None:
            return f"layer {self.what}"
        return f"{self.image}: layer {self.index} ({self.what})"
