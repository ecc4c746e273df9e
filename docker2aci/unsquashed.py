"""``--nosquash``: one ACI per layer, chained by dependencies.

appc spec/aci.md ("Image Manifest Schema": ``dependencies``, ``pathWhitelist``) and
spec/ace.md (a dependency is rendered before the image that names it). The layers are
applied to one :class:`~converters.rootfs.RootfsTree`, base first; after each, the ACI
of that layer is written from the tree as it then is:

* **Content**: what the layer set (:meth:`RootfsTree.layer_paths`): its files, links
  and directory headers, the other names of any inode it linked to (so a hard link
  always has its target in the same archive), and the directories above them. The
  ``/dev`` stdio links go into the top layer only when the image lacks them.
* **pathWhitelist**: every path of the tree so far, sorted, on a layer that removes
  something from those below (a whiteout, an opaque directory, a directory replaced by
  a file), or just ``/`` when nothing is left (an empty list would keep everything); a
  layer that only adds has none. Rendering the chain as appc's acirenderer does
  (each layer's entries kept by its own list and by the uppermost list above it, the
  latter for directories too) gives exactly the squashed rootfs.
* **Names**: the top layer keeps the image's AC name and labels (``version``, ``os``,
  ``arch``), so it is found as the squashed image is; a lower layer is
  ``<image name>-<chain ID hex>``, labelled ``os`` and ``arch`` (the image's, where the
  reference tool wrote the host's); a legacy archive's layer (before Docker 1.10) is
  named by its v1 layer ID instead, as the reference names it, which likewise stands for
  the layer and its parents. The chain ID (image-spec config.md, "Layer ChainID")
  names a layer together with everything below it, which is what a layer's ACI holds;
  nothing of the image converted goes into a lower layer's manifest, so every image of
  the repository built over that layer writes the same ACI, byte for byte.
* **Dependencies**: every layer above the base depends on the one below it, by name,
  labels and image ID; ``appc.io/docker/parentimageid`` names the layer below by its
  chain ID (``appc.io/docker/imageid`` of a lower layer is its own chain ID; the top
  keeps the config digest, as the squashed image).
* **Files**: ``<repository>[-<tag>]-<os>-<arch>-<i>.aci`` with ``i`` 0 for the top layer
  up to n-1 for the base (decisions.md), chosen by the caller.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any, Sequence

from converters.errors import BadConfig, BadLayer
from converters.manifest import (
    ImageConfig,
    Naming,
    lower_layer_manifest,
    manifest_bytes,
    with_layering,
)
from converters.rootfs import RootfsTree
from converters.tarwriter import TarWriter

from .aci import Compression, writing_aci
from .digest import Digest
from .errors import InvalidConfig, InvalidLayer
from .layers import OpenedLayers
from .translate import image_manifest


@dataclass(frozen=True)
class LayerACI:
    """One layer's ACI as written.

    Attributes:
        path: where it was written.
        image_id: ``sha512-`` + 128 hex of the uncompressed ACI.
        manifest: its appc image manifest.
    """

    path: str
    image_id: str
    manifest: dict[str, Any]


def chain_ids(diff_ids: Sequence[Digest]) -> list[Digest]:
    """The chain ID of every layer, base first (image-spec config.md "Layer ChainID":
    ``ChainID(L0) = DiffID(L0)``, ``ChainID(L0..Ln) = SHA256(ChainID(L0..Ln-1) + " " + DiffID(Ln))``).

    Args:
        diff_ids: the layers' diff IDs, base first.
    """
    chain: list[Digest] = []
    for diff_id in diff_ids:
        if not chain:
            chain.append(diff_id)
        else:
            text = f"{chain[-1]} {diff_id}".encode()
            chain.append(Digest("sha256", hashlib.sha256(text).hexdigest()))
    return chain


class _LayerShare:
    """What :func:`docker2aci.aci.writing_aci` writes for one layer: its share of the tree."""

    def __init__(self, tree: RootfsTree, layer: int) -> None:
        self._tree = tree
        self._layer = layer

    def write(self, out: TarWriter, prefix: str = "rootfs") -> int:
        return self._tree.write(out, prefix, layer=self._layer)


def write_layer_acis(display: str, layers: OpenedLayers, chain: Sequence[Digest], config: ImageConfig,
                     naming: Naming, os_arch: tuple[str, str], paths: Sequence[str], compression: Compression,
                     level: int, warnings: list[str]) -> list[LayerACI]:
    """Write one ACI per layer, base first, each depending on the one below.

    Args:
        display: the image, for messages.
        layers: the opened layers, base first.
        chain: each layer's identity with the layers below it, base first: its chain ID
            (:func:`chain_ids`), or a legacy archive's v1 layer ID.
        config: the image config, for the top layer's app.
        naming: the image's naming, as for its squashed ACI.
        os_arch: appc ``os`` and ``arch``.
        paths: the output file of each layer, base first.
        compression, level: as for :func:`docker2aci.aci.writing_aci`.
        warnings: receives what was dropped or changed.

    Returns:
        the ACIs written, top layer first.

    Raises:
        DigestMismatch, SizeMismatch: a layer is not what the manifest and config say.
        InvalidLayer: a layer is unreadable or has unsafe entries.
        InvalidConfig: the config cannot be expressed as an appc manifest.
        OutputError: an ACI cannot be written.

    The files appear together once the last is complete: on any error none is written,
    and the files they would replace are left as they were.
    """
    layers.verified()  # every ACI is written as soon as its layer is applied
    tree = RootfsTree(layers.tars)
    written: list[LayerACI] = []
    before: set[str] = set()
    parent: dict[str, Any] | None = None
    # Each file is renamed into place only once the top's is complete: a chain that
    # fails half-way leaves the files of an earlier conversion it would replace intact.
    with contextlib.ExitStack() as publish:
        for index in range(len(layers.tars)):
            with layers.errors():
                tree.apply()
            top = index == len(layers.tars) - 1
            if top:
                warnings.extend(tree.add_stdio_links())
            now = tree.paths()
            # an empty list would mean "keep everything": a layer that removes all keeps "/"
            whitelist = (sorted("/" + p for p in now) or ["/"]) if before - now else None
            if whitelist is not None:
                _check_whitelist(whitelist, layers.tars[index].name)
            own = dataclasses.replace(naming, parent_image_id=str(chain[index - 1]) if index else None)
            if top:
                manifest = image_manifest(display, tree, config, own, os_arch, warnings)
            else:
                lower = dataclasses.replace(own, name=f"{naming.name}-{chain[index].hex}", image_id=str(chain[index]))
                try:
                    manifest = lower_layer_manifest(lower, os_arch)
                except BadConfig as err:
                    raise InvalidConfig(f"{display}: {err}") from err
            manifest = with_layering(manifest, parent, whitelist)
            try:
                image_id = publish.enter_context(writing_aci(paths[index], manifest_bytes(manifest),
                                                             _LayerShare(tree, index), compression, level))
            except BadLayer as err:
                raise InvalidLayer(err.layer, None, err.message) from err
            parent = {"name": manifest["name"], "labels": manifest["labels"], "imageID": image_id}
            before = now
            written.append(LayerACI(paths[index], image_id, manifest))
    return written[::-1]


def _check_whitelist(whitelist: Sequence[str], layer: str) -> None:
    """Refuse a ``pathWhitelist`` that cannot name every path it keeps.

    A whitelist is JSON text (appc spec/aci.md), so a name that is not UTF-8 (kept
    byte-exact in the ACIs, as surrogate escapes here) would be written as U+FFFD and
    match nothing: rendering the chain would delete that file, silently, and the chain
    would no longer give the squashed rootfs.

    Raises:
        InvalidLayer: a kept path is not UTF-8 (names it, and the layer that removes).
    """
    for path in whitelist:
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            shown = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            raise InvalidLayer(layer, None, f"this layer removes paths, so its ACI needs a pathWhitelist naming "
                               f"every path kept, and a pathWhitelist (JSON text) cannot name {shown}, which is "
                               f"not UTF-8: the rendered chain would lose it; convert without --nosquash") from None
