"""``docker://[HOST[:PORT]/]NAME[:TAG|@DIGEST]``: images from a registry (HTTP API v2).

Manifests of every kind (OCI and Docker schema 2 manifests, OCI indexes and Docker
manifest lists, signed schema 1) are fetched through :class:`RegistryClient`; blobs go to
the shared content-addressed cache and are read from there, so a cached layer is never
fetched again and a child manifest named by digest is asked for once.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import BinaryIO, Callable

from .. import mediatypes
from ..digest import Digest
from ..errors import InvalidManifest, UnsupportedMediaType, UsageError
from ..layers import LayerBlob
from ..limits import MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES
from ..manifest import (Descriptor, Platform, document_kind, parse_index, parse_manifest, parse_schema1,
                        select_platform)
from ..reference import ImageRef
from ..store import BlobCache
from .base import ImageName, ResolvedImage

log = logging.getLogger(__name__)

MAX_INDEX_DEPTH = 4
"""Nested indexes followed."""

DownloadHook = Callable[[str, int, int | None], None]
"""Called as ``hook(digest, bytes_done, bytes_total)`` while a blob downloads."""


@dataclass(frozen=True)
class _Manifest:
    raw: bytes
    media_type: str
    digest: Digest


class RegistrySource:
    """One image reference in a registry.

    Args:
        ref: the parsed reference.
        client: an open registry client for ``ref.api_host`` (closed with this source).
        cache: the shared blob cache.
        progress: optional download progress callback.
    """

    def __init__(self, ref: ImageRef, client: object, cache: BlobCache,
                 progress: DownloadHook | None = None) -> None:
        self.ref = ref
        self.client = client
        self.cache = cache
        self.progress = progress
        self.display = f"docker://{ref.original}"
        self.cacheable = True

    # -- manifests ------------------------------------------------------------------

    def _manifest(self, reference: str | Digest) -> _Manifest:
        """A manifest by tag (always asked for) or by digest (from the cache if there)."""
        if isinstance(reference, Digest):
            cached = self.cache.read(reference, MAX_MANIFEST_BYTES)
            if cached is not None:
                return _Manifest(cached, "", reference)
        untrusted, media_type = self.client.get_manifest(self.ref.repository, str(reference))  # type: ignore[attr-defined]
        if media_type in mediatypes.SCHEMA1_TYPES or _schema_version(untrusted) == 1:
            digest = parse_schema1(untrusted, self._where(reference)).canonical_digest
        else:
            digest = Digest.of_bytes(untrusted)
        self.cache.put(Digest.of_bytes(untrusted), untrusted)
        return _Manifest(untrusted, media_type, digest)

    def _where(self, reference: str | Digest) -> str:
        return f"{self.display}: manifest {reference}"

    def _resolve_manifest(self, platform: Platform) -> tuple[_Manifest, Digest | None, Platform | None]:
        """Follow the reference through indexes to an image manifest."""
        top = self._manifest(self.ref.digest or self.ref.tag or "latest")
        current, index_digest, chosen = top, None, None
        for _ in range(MAX_INDEX_DEPTH + 1):
            where = self._where(current.digest)
            if current.media_type in mediatypes.SCHEMA1_TYPES or _schema_version(current.raw) == 1:
                return current, index_digest, chosen
            if document_kind(current.raw, current.media_type or None, where) == "manifest":
                return current, index_digest, chosen
            entry = select_platform(parse_index(current.raw, where), platform, where)
            index_digest = index_digest or current.digest
            chosen = chosen or entry.platform
            current = self._manifest(entry.digest)
        raise InvalidManifest(self.display, f"indexes nested deeper than {MAX_INDEX_DEPTH}")

    # -- blobs ----------------------------------------------------------------------

    def _blob_path(self, digest: Digest, size: int | None) -> str:
        def fetch(dest: BinaryIO) -> None:
            hook = None
            if self.progress is not None:
                done = 0
                progress = self.progress

                def hook(n: int) -> None:
                    nonlocal done
                    done += n
                    progress(str(digest), done, size)

            self.client.fetch_blob(self.ref.repository, digest, size, dest, hook)  # type: ignore[attr-defined]

        return self.cache.ensure(digest, fetch)

    def _layer(self, digest: Digest, size: int | None, media_type: str) -> LayerBlob:
        return LayerBlob(str(digest), media_type, digest, size, None,
                         lambda: open(self._blob_path(digest, size), "rb"))

    def _config(self, desc: Descriptor) -> bytes:
        with open(self._blob_path(desc.digest, desc.size), "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise InvalidManifest(self.display, f"config {desc.digest} is over {MAX_CONFIG_BYTES} bytes")
        return data

    # -- ImageSource --------------------------------------------------------------------

    def _name(self) -> ImageName:
        host = self.ref.api_host
        return ImageName(self.ref.repository, self.ref.tag if not self.ref.digest else None, self.ref.original,
                         host, f"{host}/{self.ref.repository}")

    def resolve(self, selector: str | None, platform: Platform) -> ResolvedImage:
        """See :meth:`ImageSource.resolve`.

        Raises:
            UsageError: a selector was given (``--image`` is for files).
            UnsupportedMediaType: a foreign (non-distributable) layer.
        """
        if selector is not None:
            raise UsageError("flag --image works only with files.")
        found, index_digest, chosen = self._resolve_manifest(platform)
        where = self._where(found.digest)
        if found.media_type in mediatypes.SCHEMA1_TYPES or _schema_version(found.raw) == 1:
            s1 = parse_schema1(found.raw, where)
            layers = tuple(self._layer(d, None, mediatypes.DOCKER_LAYER_GZIP) for d in s1.layers)
            return ResolvedImage(self._name(), s1.config, _schema1_image_id(s1.config), found.digest,
                                 index_digest, chosen, layers)
        manifest = parse_manifest(found.raw, where)
        for d in manifest.layers:
            if mediatypes.is_foreign_layer(d.media_type):
                urls = ", ".join(d.urls) or "no URLs"
                raise UnsupportedMediaType(self.display, f"layer {d.digest} is a foreign, non-distributable "
                                                         f"layer ({d.media_type}; {urls}); refusing to convert it")
        config = self._config(manifest.config)
        layers = tuple(self._layer(d.digest, d.size, d.media_type) for d in manifest.layers)
        return ResolvedImage(self._name(), config, manifest.config.digest, found.digest, index_digest, chosen,
                             layers)

    def platforms(self, selector: str | None) -> list[Platform] | None:
        """See :meth:`ImageSource.platforms`."""
        top = self._manifest(self.ref.digest or self.ref.tag or "latest")
        if _schema_version(top.raw) == 1 or document_kind(top.raw, top.media_type or None,
                                                            self._where(top.digest)) == "manifest":
            return None
        found: list[Platform] = []
        for desc in parse_index(top.raw, self._where(top.digest)).manifests:
            if desc.platform is not None and desc.platform not in found:
                found.append(desc.platform)
        return found

    def close(self) -> None:
        self.client.__exit__(None, None, None)  # type: ignore[attr-defined]


def _schema_version(untrusted: bytes) -> int | None:
    """The ``schemaVersion`` of a manifest body, without trusting anything else in it."""
    try:
        doc = json.loads(untrusted)
    except (ValueError, RecursionError):
        return None
    return doc.get("schemaVersion") if isinstance(doc, dict) else None


def _schema1_image_id(config: bytes) -> Digest:
    """A schema 1 image's ID: its top ``v1Compatibility`` ``id`` when that is 64 hex
    (Docker's v1 image ID), else the digest of that JSON."""
    try:
        v1_id = json.loads(config).get("id", "")
        return Digest.parse(f"sha256:{v1_id}")
    except (ValueError, AttributeError, RecursionError, InvalidManifest):
        return Digest.of_bytes(config)
