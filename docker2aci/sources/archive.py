"""``docker save`` archives (``docker-archive:``), every layout Docker and its peers write:

* ``manifest.json`` (Docker 1.10+, skopeo, podman): ``Config`` and ``Layers`` are paths
  in the archive — ``<hex>.json`` + ``<id>/layer.tar`` (dockerd), ``<diffid>.tar`` with
  ``<id>/layer.tar`` symlinks (skopeo, podman), or ``blobs/sha256/<hex>`` (Docker 25+,
  whose archive is also an OCI layout: its ``index.json`` then gives the manifest digest).
* legacy (before 1.10): ``repositories`` + ``<id>/json`` with a ``parent`` chain +
  ``<id>/layer.tar``.

Archive paths from ``manifest.json`` are resolved only inside the archive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .. import untrustedjson
from ..digest import Digest
from ..errors import DigestMismatch, ImageNotFound, InvalidManifest, SeveralImages
from ..layerblob import LayerBlob
from ..limits import MAX_CONFIG_BYTES, MAX_INDEX_FILE_BYTES
from ..manifest import Platform
from .base import (ResolvedImage, digest_selector, name_from_reference,
                   selector_matches, untagged_name)
from .files import TarTree
from .oci_layout import OciLayout

_LEGACY_ID = re.compile(r"^[a-f0-9]{64}$")
_BLOB_PATH = re.compile(r"^(?:\./)?blobs/(sha256|sha512)/([a-f0-9]+)$")
_HEX_NAME = re.compile(r"^(?:\./)?([a-f0-9]{64})(?:\.json)?$")
MAX_LEGACY_CHAIN = 1000
"""Layers followed through ``parent`` links in a legacy archive."""


@dataclass(frozen=True)
class _Candidate:
    """One selectable (image, name) pair of an archive."""

    image: int
    reference: str | None


def _json(untrusted: bytes, where: str) -> Any:
    try:
        return untrustedjson.loads(untrusted, utf8_only=True)
    except untrustedjson.BadJSON as err:
        raise InvalidManifest(where, f"not valid JSON: {err}") from err


def _path_digest(path: str) -> Digest | None:
    """The digest a member path states (``blobs/sha256/<hex>``, ``<hex>.json``)."""
    m = _BLOB_PATH.fullmatch(path)
    if m:
        return Digest.parse(f"{m.group(1)}:{m.group(2)}", what=path)
    m = _HEX_NAME.fullmatch(path)
    return Digest("sha256", m.group(1)) if m else None


class DockerArchive:
    """A ``docker save`` archive.

    Args:
        files: the archive's members.
    """

    cacheable = False

    def __init__(self, files: TarTree) -> None:
        self.files = files
        self.display = files.display

    # -- selection ------------------------------------------------------------------

    def _select(self, candidates: list[_Candidate], selector: str | None,
                config_hex: dict[int, str]) -> _Candidate:
        if selector is not None:
            hexsel = digest_selector(selector)
            for c in candidates:
                if c.reference is not None and selector_matches(selector, c.reference):
                    return c
                if hexsel and config_hex.get(c.image, "").startswith(hexsel):
                    return c
            raise ImageNotFound(self.display, f"no image {selector!r}; present: "
                                + ", ".join(self._listing(candidates, config_hex)))
        if not candidates:
            raise ImageNotFound(self.display, "the archive holds no image")
        if len({c.image for c in candidates}) > 1:
            raise SeveralImages(self.display, self._listing(candidates, config_hex))
        for c in candidates:
            if c.reference is not None and c.reference.endswith(":latest"):
                return c
        return candidates[0]

    @staticmethod
    def _listing(candidates: list[_Candidate], config_hex: dict[int, str]) -> list[str]:
        return [c.reference if c.reference is not None else f"sha256:{config_hex.get(c.image, '')}"
                for c in candidates]

    # -- manifest.json --------------------------------------------------------------

    def resolve(self, selector: str | None, platform: Platform) -> ResolvedImage:
        """See :meth:`ImageSource.resolve` (archives hold one platform per image)."""
        if self.files.exists("manifest.json"):
            return self._resolve_manifest_json(selector, platform)
        if self.files.exists("repositories"):
            return self._resolve_legacy(selector)
        raise InvalidManifest(self.display, "not a docker save archive: neither manifest.json nor repositories")

    def platforms(self, selector: str | None) -> list[Platform] | None:
        """See :meth:`ImageSource.platforms`: a ``docker save`` image has one platform."""
        return None

    def _resolve_manifest_json(self, selector: str | None, platform: Platform) -> ResolvedImage:
        where = f"{self.display}: manifest.json"
        doc = _json(self.files.read("manifest.json", MAX_INDEX_FILE_BYTES), where)
        if not isinstance(doc, list):
            raise InvalidManifest(where, "not a JSON list")
        candidates: list[_Candidate] = []
        config_hex: dict[int, str] = {}
        for i, entry in enumerate(doc):
            if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
                raise InvalidManifest(where, f"entry {i}: field Config is missing or not a string")
            stated = _path_digest(entry["Config"])
            config_hex[i] = stated.hex if stated else ""
            tags = entry.get("RepoTags") or []
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise InvalidManifest(where, f"entry {i}: field RepoTags is not a list of strings")
            candidates.extend(_Candidate(i, t) for t in tags)
            if not tags:
                candidates.append(_Candidate(i, None))
        chosen = self._select(candidates, selector, config_hex)
        entry = doc[chosen.image]
        layers = entry.get("Layers")
        if not isinstance(layers, list) or not all(isinstance(p, str) for p in layers):
            raise InvalidManifest(where, f"entry {chosen.image}: field Layers is not a list of strings")
        config = self.files.read(entry["Config"], MAX_CONFIG_BYTES)
        config_digest = Digest.of_bytes(config)
        stated = _path_digest(entry["Config"])
        if stated is not None and stated != Digest.of_bytes(config, stated.algorithm):
            raise DigestMismatch(f"{self.display}: {entry['Config']}", str(stated),
                                 str(Digest.of_bytes(config, stated.algorithm)))
        manifest_digest = None
        if self.files.exists("index.json"):  # Docker 25+: the archive is also an OCI layout
            manifest_digest = OciLayout(self.files, "").manifest_digest_for_config(config_digest)
        name = (name_from_reference(chosen.reference, self.display) if chosen.reference
                else untagged_name(config_digest))
        blobs = tuple(self._layer(path) for path in layers)
        return ResolvedImage(name, config, config_digest, manifest_digest, None, None, blobs)

    def _layer(self, path: str, legacy_id: str | None = None) -> LayerBlob:
        size = self.files.size(path)  # the member's: a layer is read in place, to its end
        if size is None:
            raise ImageNotFound(self.display, f"layer {path!r} not found in the archive")
        digest = _path_digest(path) if _BLOB_PATH.fullmatch(path) else None
        files = self.files
        return LayerBlob(path, "", digest, size, None, lambda: files.open(path), legacy_id=legacy_id)

    # -- legacy repositories ----------------------------------------------------------

    def _resolve_legacy(self, selector: str | None) -> ResolvedImage:
        where = f"{self.display}: repositories"
        doc = _json(self.files.read("repositories", MAX_INDEX_FILE_BYTES), where)
        if not isinstance(doc, dict):
            raise InvalidManifest(where, "not a JSON object")
        ids: list[str] = []
        candidates: list[_Candidate] = []
        for repo, tags in doc.items():
            if not isinstance(tags, dict):
                raise InvalidManifest(where, f"repository {repo!r} does not map tags to IDs")
            for tag, layer_id in tags.items():
                if not isinstance(layer_id, str):
                    raise InvalidManifest(where, f"{repo}:{tag}: layer ID is not a string")
                if layer_id not in ids:
                    ids.append(layer_id)
                candidates.append(_Candidate(ids.index(layer_id), f"{repo}:{tag}"))
        chosen = self._select(candidates, selector, {i: v for i, v in enumerate(ids)})
        assert chosen.reference is not None
        top = ids[chosen.image]
        chain = self._legacy_chain(top)
        config = self.files.read(f"{top}/json", MAX_CONFIG_BYTES)
        digest = Digest("sha256", top)
        blobs = tuple(self._layer(f"{layer_id}/layer.tar", layer_id) for layer_id in reversed(chain))
        return ResolvedImage(name_from_reference(chosen.reference, self.display), config, digest,
                             None, None, None, blobs, pinned_layers=False)

    def _legacy_chain(self, top: str) -> list[str]:
        """Layer IDs from ``top`` down to the base, following ``parent``.

        Raises:
            InvalidManifest: an invalid layer ID, or a dependency loop.
        """
        chain: list[str] = []
        layer_id: str = top
        while layer_id:
            if not _LEGACY_ID.fullmatch(layer_id):
                raise InvalidManifest(self.display, f"invalid layer ID {layer_id!r}")
            if layer_id in chain:
                raise InvalidManifest(self.display, f"dependency loop detected at image {layer_id!r}")
            if len(chain) >= MAX_LEGACY_CHAIN:
                raise InvalidManifest(self.display, f"more than {MAX_LEGACY_CHAIN} layers")
            chain.append(layer_id)
            meta = _json(self.files.read(f"{layer_id}/json", MAX_CONFIG_BYTES), f"{self.display}: {layer_id}/json")
            parent = meta.get("parent", "") if isinstance(meta, dict) else ""
            if not isinstance(parent, str):
                raise InvalidManifest(self.display, f"{layer_id}/json: field parent is not a string")
            layer_id = parent
        return chain

    def close(self) -> None:
        self.files.close()


def is_docker_archive(files: TarTree) -> bool:
    """Whether an archive is a ``docker save`` (rather than an oci-archive)."""
    return files.exists("manifest.json") or files.exists("repositories")

