"""OCI image layouts (image-spec image-layout.md), on disk (``oci:``) or in a tar
(``oci-archive:``): ``index.json`` → (index →)* manifest → config and layers.

Blob paths are built only from validated digests (``blobs/<alg>/<hex>``); every metadata
blob is checked against its descriptor's digest and size before it is parsed.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace

from .. import mediatypes
from ..digest import Digest
from ..errors import (DigestMismatch, ImageNotFound, InvalidManifest, LimitExceeded, SeveralImages,
                      SizeMismatch, SourceError, UnsupportedMediaType)
from ..layerblob import LayerBlob
from ..limits import MAX_CONFIG_BYTES, MAX_INDEX_FILE_BYTES, MAX_MANIFEST_BYTES
from ..manifest import (MAX_INDEX_DEPTH, Descriptor, Document, ImageIndex, Platform, document_kind,
                        follow_indexes, foreign_layer_text, index_platforms, parse_index, parse_manifest,
                        require_image_config, select_platform)
from .base import (ImageName, ResolvedImage, digest_selector, name_from_reference,
                   selector_matches, untagged_name)
from ..reference import is_valid_tag
from .files import FileTree

log = logging.getLogger(__name__)

MAX_INDEX_ENTRIES = 1024
"""Distinct manifests and indexes read when searching a layout for a config."""


def blob_path(digest: Digest) -> str:
    """``blobs/<algorithm>/<hex>`` for a validated digest."""
    return f"blobs/{digest.algorithm}/{digest.hex}"


def read_blob(files: FileTree, desc: Descriptor, limit: int) -> bytes:
    """A metadata blob, verified against its descriptor.

    Raises:
        ImageNotFound: the blob is missing.
        SizeMismatch, DigestMismatch: the bytes are not what the descriptor says.
        LimitExceeded: larger than ``limit`` bytes.
    """
    untrusted = files.read(blob_path(desc.digest), limit)
    if len(untrusted) != desc.size:
        raise SizeMismatch(f"{files.display}: blob {desc.digest}", desc.size, len(untrusted))
    actual = Digest.of_bytes(untrusted, desc.digest.algorithm)
    if actual != desc.digest:
        raise DigestMismatch(f"{files.display}: blob {desc.digest}", str(desc.digest), str(actual))
    return untrusted


def layer_blobs(files: FileTree, layers: tuple[Descriptor, ...]) -> tuple[LayerBlob, ...]:
    """LayerBlobs for an image manifest's layers (diff IDs are paired later)."""
    def opener(path: str):  # noqa: ANN202 - a small closure factory
        return lambda: files.open(path)

    return tuple(
        LayerBlob(str(d.digest), d.media_type, d.digest, d.size, None, opener(blob_path(d.digest)))
        for d in layers
    )


@dataclass(frozen=True)
class _Resolved:
    manifest_digest: Digest
    config_desc: Descriptor
    layers: tuple[Descriptor, ...]
    index_digest: Digest | None
    index_platform: Platform | None


def fetch_document(files: FileTree, desc: Descriptor) -> Document:
    """The manifest or index a descriptor names, verified against it.

    Raises:
        ImageNotFound, SizeMismatch, DigestMismatch, LimitExceeded, InvalidManifest.
    """
    untrusted = read_blob(files, desc, MAX_MANIFEST_BYTES)
    kind = document_kind(untrusted, desc.media_type or None, f"{files.display}: {desc.digest}")
    return Document(untrusted, desc.media_type, desc.digest, kind)


def resolve_descriptor(files: FileTree, desc: Descriptor, platform: Platform) -> _Resolved:
    """Follow a descriptor through indexes (choosing ``platform``) to an image manifest.

    Returns:
        the image manifest's digest, config descriptor and layers, the digest of the
        first index it was chosen from, and the platform that index's entry (or else
        ``desc`` itself, an index.json entry) names.

    Raises:
        PlatformNotFound, InvalidManifest, DigestMismatch, ImageNotFound.
    """
    found = follow_indexes(fetch_document(files, desc), lambda d: fetch_document(files, d), platform,
                           files.display)
    doc = found.document
    where = f"{files.display}: {doc.digest}"
    if doc.kind != "manifest":
        raise InvalidManifest(where, "a schema 1 manifest in an OCI layout is not supported")
    manifest = parse_manifest(doc.raw, where)
    require_image_config(manifest, where)
    # index.json is an image index too: an entry's own platform counts when no index follows it
    return _Resolved(doc.digest, manifest.config, manifest.layers, found.index_digest, found.platform or desc.platform)


def _one_per_platform(entries: Sequence[Descriptor]) -> bool:
    """Whether ``entries`` are one image for several platforms: each names a platform, and
    no platform names two different manifests (two images of one platform are two
    images, not one; an entry repeated is still one)."""
    seen: dict[Platform, Digest] = {}
    for entry in entries:
        if entry.platform is None or seen.setdefault(entry.platform, entry.digest) != entry.digest:
            return False
    return True


def _differ_by_platform(candidates: Sequence[Descriptor]) -> bool:
    """Whether the entries a selector named are different manifests, each naming its
    platform: then the platform chooses among them."""
    return len({e.digest for e in candidates}) > 1 and all(e.platform is not None for e in candidates)


class OciLayout:
    """An OCI image layout read through a :class:`FileTree`.

    Args:
        files: the layout's files (a directory or an archive).
        default_repository: the repository for images whose ref name is a bare tag
            (the layout directory's or archive's base name up to its first ``.``).
        tag: the ``TAG`` of ``oci:DIR:TAG`` / ``oci-archive:PATH:TAG``: a ref name (as
            skopeo's ``oci:`` reads it), so as a selector it names only an entry whose
            ref name it is (or a digest), never an image by the directory's name, as
            ``--image NAME[:TAG]`` may.
    """

    cacheable = False

    def __init__(self, files: FileTree, default_repository: str, tag: str | None = None) -> None:
        self.files = files
        self.display = files.display
        self.default_repository = default_repository
        self.tag = tag

    def index(self) -> ImageIndex:
        """The layout's ``index.json``.

        Raises:
            InvalidManifest: missing or malformed.
        """
        if not self.files.exists("index.json"):
            raise InvalidManifest(self.display, "not an OCI image layout: no index.json")
        if not self.files.exists(mediatypes.OCI_LAYOUT_FILE):
            log.warning("%s: no oci-layout file; reading index.json anyway", self.display)
        untrusted = self.files.read("index.json", MAX_INDEX_FILE_BYTES)
        return parse_index(untrusted, f"{self.display}: index.json")

    def _name(self, ref: str) -> str:
        """The full reference an index entry's ref name stands for."""
        if "/" in ref or ":" in ref:
            return ref
        return f"{self.default_repository}:{ref}"

    def _image_name(self, ref: str | None, config_digest: Digest) -> ImageName:
        if ref is None:
            return untagged_name(config_digest)
        if "/" in ref or ":" in ref:
            # A ref name may hold upper case (image-layout.md; ``umoci tag Team/App:v1``), a
            # repository may not: it is read lower-cased, the ref name kept as written.
            slash, colon = ref.rfind("/"), ref.rfind(":")
            cut = colon if colon > slash else len(ref)
            return replace(name_from_reference(ref[:cut].lower() + ref[cut:], self.display), original_name=ref)
        if not is_valid_tag(ref):
            raise InvalidManifest(self.display, f"index.json: ref name {ref!r} is not a valid tag")
        return ImageName(self.default_repository, ref, f"{self.default_repository}:{ref}", None,
                         self.default_repository)

    def _choose(self, entries: tuple[Descriptor, ...], selector: str | None,
                platform: Platform) -> Descriptor:
        """The index.json entry ``selector`` names (a ref name, a full reference, or a
        digest prefix of a manifest or config); without one, the layout's only image.
        Entries that are one image for several platforms (image-layout.md lets each carry
        a ``platform``) are chosen among by ``platform``, as in any image index."""
        return self._by_platform(self._candidates(entries, selector, platform), platform)

    def _candidates(self, entries: tuple[Descriptor, ...], selector: str | None,
                    platform: Platform) -> list[Descriptor]:
        """The entries ``selector`` names (all of them for a ref name several carry), or
        without a selector the entries of the layout's only image: one entry (the one
        tagged ``latest`` if the image has several names), or every entry when each
        names a platform under one ref name (or none).

        Raises:
            ImageNotFound: nothing matches, or the layout is empty.
            SeveralImages: no selector, and the layout holds several images.
        """
        if selector is not None:
            # a ref name written as given first (oci:DIR:TAG): in a directory "dup" tagged
            # "latest" and "dup", "dup" is that tag, not the name "dup" (dup:latest); the
            # TAG of oci:DIR:TAG is nothing else
            named = [e for e in entries if e.ref_name == selector] or [
                e for e in entries if e.ref_name is not None and selector != self.tag
                and selector_matches(selector, self._name(e.ref_name))]
            if named:
                return named
            hexsel = digest_selector(selector)
            if hexsel is not None:
                for entry in entries:
                    if entry.digest.hex.startswith(hexsel) or self._config_hex(entry, platform).startswith(hexsel):
                        return [entry]
            if selector == self.tag:
                refs = ", ".join(e.ref_name for e in entries if e.ref_name) or "none"
                raise ImageNotFound(self.display, f"no ref name {selector!r} in index.json; present: {refs}")
            raise ImageNotFound(self.display, f"no image {selector!r}; present: "
                                + ", ".join(self._listing(entries, platform)))
        if not entries:
            raise ImageNotFound(self.display, "the layout's index.json lists no image")
        if len({e.digest for e in entries}) > 1:
            if _one_per_platform(entries) and len({e.ref_name for e in entries}) == 1:
                return list(entries)
            raise SeveralImages(self.display, self._listing(entries, platform))
        tagged = [e for e in entries if e.ref_name]
        for entry in tagged:
            if entry.ref_name == "latest" or entry.ref_name.endswith(":latest"):  # type: ignore[union-attr]
                return [entry]
        return [tagged[0] if tagged else entries[0]]

    def _by_platform(self, candidates: list[Descriptor], platform: Platform) -> Descriptor:
        """The candidate for ``platform`` when they differ and each names its platform
        (containerd's matcher, :func:`~docker2aci.manifest.select_platform`; of two
        entries as good, the first), else the first.

        Raises:
            PlatformNotFound: no candidate runs on ``platform``.
        """
        if not _differ_by_platform(candidates):
            return candidates[0]
        return select_platform(ImageIndex(mediatypes.OCI_INDEX, tuple(candidates)), platform,
                               f"{self.display}: index.json")

    def _config_hex(self, entry: Descriptor, platform: Platform) -> str:
        """The config digest hex of an (untagged) entry, or ``""`` if it cannot be read."""
        try:
            return resolve_descriptor(self.files, entry, platform).config_desc.digest.hex
        except (SourceError, DigestMismatch, SizeMismatch, LimitExceeded):
            return ""

    def _listing(self, entries: tuple[Descriptor, ...], platform: Platform) -> list[str]:
        """How each entry can be selected: its name, or ``sha256:<config hex>``."""
        return [self._name(e.ref_name) if e.ref_name else f"sha256:{self._config_hex(e, platform) or e.digest.hex}"
                for e in entries]

    def platforms(self, selector: str | None) -> list[Platform] | None:
        """See :meth:`ImageSource.platforms`."""
        candidates = self._candidates(self.index().manifests, selector, Platform.host())
        if _differ_by_platform(candidates):
            return list(dict.fromkeys(e.platform for e in candidates if e.platform is not None))
        entry = self._by_platform(candidates, Platform.host())
        return index_platforms(fetch_document(self.files, entry), self.display,
                               lambda d: fetch_document(self.files, d))

    def resolve(self, selector: str | None, platform: Platform) -> ResolvedImage:
        """See :meth:`ImageSource.resolve`.

        Raises:
            UnsupportedMediaType: a foreign (non-distributable) layer whose blob is not in
                the layout (``skopeo copy`` to ``oci:`` or ``oci-archive:`` leaves it out).
        """
        entry = self._choose(self.index().manifests, selector, platform)
        found = resolve_descriptor(self.files, entry, platform)
        for d in found.layers:
            if mediatypes.is_foreign_layer(d.media_type) and not self.files.exists(blob_path(d.digest)):
                raise UnsupportedMediaType(self.display, f"{foreign_layer_text(d)}, whose blob is not in the "
                                                         f"layout; refusing to convert it")
        config = read_blob(self.files, found.config_desc, MAX_CONFIG_BYTES)
        return ResolvedImage(
            name=self._image_name(entry.ref_name, found.config_desc.digest),
            config=config,
            config_digest=found.config_desc.digest,
            manifest_digest=found.manifest_digest,
            index_digest=found.index_digest,
            index_platform=found.index_platform,
            layers=layer_blobs(self.files, found.layers),
        )

    def manifest_digest_for_config(self, config_digest: Digest) -> Digest | None:
        """The digest of a manifest in this layout whose config is ``config_digest``,
        searching every index entry whatever its platform and skipping blobs that are
        missing or invalid (used for Docker 25+ saves, whose ``manifest.json`` names no
        manifest; containerd saves only the blobs it has)."""
        pending = deque((entry, 0) for entry in self.index().manifests)
        seen: set[Digest] = set()
        while pending and len(seen) < MAX_INDEX_ENTRIES:
            desc, depth = pending.popleft()
            if desc.digest in seen:
                continue
            seen.add(desc.digest)
            try:
                doc = fetch_document(self.files, desc)
                where = f"{self.display}: {desc.digest}"
                if doc.kind == "manifest":
                    if parse_manifest(doc.raw, where).config.digest == config_digest:
                        return desc.digest
                elif doc.kind == "index" and depth < MAX_INDEX_DEPTH:
                    pending.extend((child, depth + 1) for child in parse_index(doc.raw, where).manifests)
            except (SourceError, DigestMismatch, SizeMismatch, LimitExceeded):
                continue
        return None

    def close(self) -> None:
        self.files.close()
