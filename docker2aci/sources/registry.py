"""``docker://[HOST[:PORT]/]NAME[:TAG|@DIGEST]``: images from a registry (HTTP API v2).

Manifests of every kind (OCI and Docker schema 2 manifests, OCI indexes and Docker
manifest lists, signed schema 1) come through :class:`RegistryClient` (distribution
spec "Pulling manifests"); blobs go to the shared content-addressed cache (a layer is
read while it downloads, :mod:`docker2aci.streamedblob`), so a cached layer is never
fetched again and a manifest named by digest is asked for once. The tag is asked for
once per source, so ``--platform all`` sees one index.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import BinaryIO

from .. import mediatypes
from ..digest import Digest
from ..errors import ImageNotFound, InvalidManifest, UnsupportedMediaType, UsageError
from ..layerblob import LayerBlob
from ..limits import MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES
from ..manifest import (Descriptor, Document, Platform, document_kind, follow_indexes, foreign_layer_text,
                        index_platforms, load_json, manifest_digests, parse_manifest, parse_schema1,
                        require_image_config)
from ..reference import ImageRef
from ..registry import RegistryClient
from ..store import BlobCache
from ..streamedblob import StreamedBlob
from .base import PULL_POLICIES, DownloadHook, ImageName, ResolvedImage

log = logging.getLogger(__name__)

ABANDON_WAIT = 5.0
"""How long an interrupted source waits for its abandoned downloads to end (seconds): each
ends at its next chunk; one stalled longer is left to the next run to remove."""


class RegistrySource:
    """One image reference in a registry.

    Args:
        ref: the parsed reference.
        connect: makes the registry client for ``ref.api_host`` (closed with this source):
            at once under the ``update`` pull policy, else when the registry is first
            asked something (looking up credentials may run a Docker credential helper,
            which a run served from the cache must not wait for).
        cache: the shared blob cache.
        progress: optional download progress callback.
        pull_policy: see :data:`~docker2aci.sources.base.PULL_POLICIES`.
        insecure: the client may use plain http or skip certificate checks (recorded
            with each tag, and a tag recorded so is not trusted by a run that may not).
    """

    cacheable = True
    """Conversions of a registry image are cached by manifest digest."""

    def __init__(self, ref: ImageRef, connect: Callable[[], RegistryClient], cache: BlobCache,
                 progress: DownloadHook | None = None, pull_policy: str = "update", insecure: bool = False) -> None:
        if pull_policy not in PULL_POLICIES:
            raise UsageError(f"pull policy {pull_policy!r}: choose one of {', '.join(PULL_POLICIES)}")
        self.ref = ref
        self._connect = connect
        self._client_lock = threading.Lock()  # layers fetched in threads: one client for all
        self._client = connect() if pull_policy == "update" else None
        self.cache = cache
        self.progress = progress
        self.pull_policy = pull_policy
        self.insecure = insecure
        self.display = f"docker://{ref.original}"
        self._top: Document | None = None
        self._streams: list[StreamedBlob] = []

    # -- manifests ------------------------------------------------------------------

    def _document(self, untrusted: bytes, media_type: str, where: str) -> Document:
        """Classify a fetched manifest and name it by the digest the registry uses (the
        canonical JWS payload's for signed schema 1), whether fetched or cached."""
        kind = document_kind(untrusted, media_type or None, where)
        digest = manifest_digests(untrusted)[-1] if kind == "schema1" else Digest.of_bytes(untrusted)
        return Document(untrusted, media_type, digest, kind)

    @property
    def client(self) -> RegistryClient:
        """The registry client, made on first use (see ``connect``), once whatever threads ask."""
        with self._client_lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _offline(self, what: str) -> None:
        """Refuse to ask the registry for ``what`` under ``--pull-policy never``."""
        if self.pull_policy == "never":
            raise ImageNotFound(self.display, f"{what} is not in the cache, and --pull-policy never asks no "
                                              "registry (fetch it once with another policy)")

    def _fetch(self, reference: str, media_type: str = "") -> Document:
        self._offline(f"manifest {reference}")
        where = f"{self.display}: manifest {reference}"
        untrusted, served_type = self.client.get_manifest(self.ref.repository, reference)
        self.cache.put(Digest.of_bytes(untrusted), untrusted)
        return self._document(untrusted, served_type or media_type, where)

    def _child(self, desc: Descriptor) -> Document:
        """An index entry's manifest: from the cache (by digest) or the registry."""
        cached = self.cache.read(desc.digest, MAX_MANIFEST_BYTES)
        if cached is not None:
            return self._document(cached, desc.media_type, f"{self.display}: manifest {desc.digest}")
        return self._fetch(str(desc.digest), desc.media_type)

    def _top_document(self) -> Document:
        """What the reference names, asked for once per source (by digest: cached)."""
        if self._top is None:
            if self.ref.digest is not None:
                cached = self.cache.read(self.ref.digest, MAX_MANIFEST_BYTES)
                self._top = (self._document(cached, "", f"{self.display}: manifest {self.ref.digest}")
                             if cached is not None else self._fetch(str(self.ref.digest)))
            else:
                self._top = self._tagged(self.ref.tag or "latest")
        return self._top

    def _tagged(self, tag: str) -> Document:
        """What ``tag`` names: asked of the registry (and recorded in the cache), or, under
        ``--pull-policy new`` and ``never``, what it named when last asked, if the cache
        still holds that manifest (rkt's pull policies: ``new`` asks only for an image it
        has never fetched, ``never`` never asks)."""
        reference = f"{self.ref.api_host}/{self.ref.repository}:{tag}"
        if self.pull_policy != "update":
            # a record made over plain http or unchecked TLS is not trusted by a run that allows neither
            known = self.cache.recall_tag(reference, insecure_ok=self.insecure)
            cached = self.cache.read(known[0], MAX_MANIFEST_BYTES) if known is not None else None
            if known is not None and cached is not None:
                log.info("%s: %s as it named when last fetched (--pull-policy %s): %s", self.display, tag,
                         self.pull_policy, known[0])
                return self._document(cached, known[1], f"{self.display}: manifest {known[0]}")
            if known is None and self.pull_policy == "never" and self.cache.recall_tag(reference, insecure_ok=True):
                raise ImageNotFound(self.display, f"{tag} was last fetched over plain http or without checking "
                                                  "TLS certificates, which this run does not allow "
                                                  "(--insecure-allow-http, --insecure-skip-verify)")
        document = self._fetch(tag)
        # the bytes' digest, under which the cache holds them (a signed schema 1 manifest's
        # own digest is its payload's)
        self.cache.remember_tag(reference, Digest.of_bytes(document.raw), document.media_type,
                                insecure=self.insecure)
        return document

    # -- blobs ----------------------------------------------------------------------

    def _fetcher(self, digest: Digest, size: int | None) -> Callable[[BinaryIO], None]:
        """What :meth:`BlobCache.open` calls to download a blob (with progress)."""
        self._offline(f"blob {digest}")

        def fetch(dest: BinaryIO) -> None:
            hook = None
            if self.progress is not None:
                done = 0
                progress = self.progress

                def hook(n: int) -> None:
                    nonlocal done
                    done += n
                    progress(str(digest), done, size)

            self.client.fetch_blob(self.ref.repository, digest, size, dest, hook)

        return fetch

    def _open_layer(self, digest: Digest, size: int | None) -> BinaryIO:
        """A layer blob to read: the cached file, else a stream of it while it downloads
        into the cache (:mod:`docker2aci.streamedblob`), so it is decompressed meanwhile."""
        cached = self.cache.open_cached(digest)
        if cached is not None:
            return cached
        stream = StreamedBlob(self.cache, digest, self._fetcher(digest, size))
        self._streams.append(stream)
        return stream  # type: ignore[return-value]

    def _layer(self, digest: Digest, size: int | None, media_type: str) -> LayerBlob:
        return LayerBlob(str(digest), media_type, digest, size, None,
                         lambda: self._open_layer(digest, size), lambda: self.cache.evict(digest))

    def _config(self, desc: Descriptor) -> bytes:
        """The image config, verified against its digest (also when cached).

        Raises:
            InvalidManifest: the descriptor declares a config over the size limit.
        """
        if desc.size > MAX_CONFIG_BYTES:
            raise InvalidManifest(self.display, f"config {desc.digest} declares {desc.size} bytes, "
                                                f"over the {MAX_CONFIG_BYTES}-byte limit")
        data = self.cache.read(desc.digest, MAX_CONFIG_BYTES)  # None: not cached, or damaged and removed
        if data is None:
            data = self.cache.read(desc.digest, MAX_CONFIG_BYTES, self._fetcher(desc.digest, desc.size))
        if data is None:
            raise InvalidManifest(self.display, f"config {desc.digest} could not be read from the cache")
        return data

    # -- ImageSource --------------------------------------------------------------------

    def _name(self) -> ImageName:
        host = self.ref.api_host
        return ImageName(self.ref.repository, self.ref.tag, self.ref.original, host, f"{host}/{self.ref.repository}")

    def resolve(self, selector: str | None, platform: Platform) -> ResolvedImage:
        """See :meth:`ImageSource.resolve`.

        Raises:
            UsageError: a selector was given (``--image`` is for files).
            UnsupportedMediaType: a foreign (non-distributable) layer (public case 33).
            AuthError, RegistryError, ImageNotFound, DigestMismatch, SizeMismatch,
            LimitExceeded, PlatformNotFound, InvalidManifest.
        """
        if selector is not None:
            raise UsageError("flag --image works only with files.")
        found = follow_indexes(self._top_document(), self._child, platform, self.display)
        doc = found.document
        where = f"{self.display}: manifest {doc.digest}"
        if doc.kind == "schema1":
            s1 = parse_schema1(doc.raw, where)
            layers = tuple(self._layer(d, None, mediatypes.DOCKER_LAYER_GZIP) for d in s1.layers)
            return ResolvedImage(self._name(), s1.config, _schema1_image_id(s1.config, where), doc.digest,
                                 found.index_digest, found.platform, layers, pinned_layers=False)
        manifest = parse_manifest(doc.raw, where)
        require_image_config(manifest, where)
        for d in manifest.layers:
            if mediatypes.is_foreign_layer(d.media_type):
                raise UnsupportedMediaType(self.display, f"{foreign_layer_text(d)}; refusing to convert it")
        config = self._config(manifest.config)
        layers = tuple(self._layer(d.digest, d.size, d.media_type) for d in manifest.layers)
        return ResolvedImage(self._name(), config, manifest.config.digest, doc.digest, found.index_digest,
                             found.platform, layers)

    def platforms(self, selector: str | None) -> list[Platform] | None:
        """See :meth:`ImageSource.platforms` (raises as :meth:`resolve`)."""
        if selector is not None:
            raise UsageError("flag --image works only with files.")
        return index_platforms(self._top_document(), self.display, self._child)

    def close(self) -> None:
        """Wait for the downloads still being put into the cache, then close the registry
        client; a download whose reader stopped before its end (Ctrl-C while the layers
        were read) is waited for :data:`ABANDON_WAIT` seconds at most. Interrupted
        meanwhile (Ctrl-C, ``SIGTERM``), it abandons them and waits
        :data:`ABANDON_WAIT` seconds more for their threads to remove their partial files
        from the cache's ``tmp/`` (the process would end under them), then lets the
        interrupt through.
        """
        try:
            try:
                deadline = time.monotonic() + ABANDON_WAIT
                for stream in self._streams:
                    if stream.abandoned:  # its reader stopped (Ctrl-C): its fetch ends at its next chunk
                        stream.finish(max(0.0, deadline - time.monotonic()))
                    else:
                        stream.finish()
            except KeyboardInterrupt:
                deadline = time.monotonic() + ABANDON_WAIT
                for stream in self._streams:
                    stream.close()  # its fetch stops at its next chunk, and removes its partial file
                for stream in self._streams:
                    stream.finish(max(0.0, deadline - time.monotonic()))
                raise
        finally:
            with self._client_lock:
                if self._client is not None:
                    self._client.close()


def _schema1_image_id(config: bytes, where: str) -> Digest:
    """A schema 1 image's ID: its top ``v1Compatibility`` ``id`` when that is 64 hex
    (Docker's v1 image ID), else the digest of that JSON."""
    try:
        return Digest.parse(f"sha256:{load_json(config, where).get('id', '')}")
    except InvalidManifest:
        return Digest.of_bytes(config)
