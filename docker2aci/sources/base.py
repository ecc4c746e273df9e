"""What every source gives the pipeline, and the naming rules shared by local sources.

A source resolves a selection (``--image``, a tag, a platform) into a
:class:`ResolvedImage`: the verified config bytes, the layer blobs to read (base first),
the digests that identify it, and how it is named. Config parsing, layer reading and
manifest translation are shared code; sources only find bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from ..digest import Digest
from ..errors import InvalidReference, SourceError
from ..layerblob import LayerBlob
from ..manifest import Platform
from ..reference import ImageRef


DownloadHook = Callable[[str, int, "int | None"], None]
"""Called as ``hook(task, done, total)``; for a download the task is the blob digest and
the counts are bytes (``total`` ``None`` when unknown)."""


PULL_POLICIES = ("new", "update", "never")
"""When a conversion asks the registry what a tag names (``--pull-policy``, rkt's names):
``new`` only for a tag it never asked about before (or whose manifest left the cache),
``update`` every time (the default), ``never`` not at all (what is not cached is an error)."""

@dataclass(frozen=True)
class ImageName:
    """How a source names an image.

    Attributes:
        repository: ``test/busybox`` (no registry host).
        tag: the tag, or ``None``.
        original_name: the image's own reference (a ``RepoTags`` entry, a ref name,
            the reference as typed), or ``None``.
        registry: the registry host for registry sources, else ``None``.
        ac_name: the AC name before sanitising; the repository for local sources.
    """

    repository: str
    tag: str | None
    original_name: str | None
    registry: str | None = None
    ac_name: str = ""

    @property
    def display(self) -> str:
        """``repository:tag`` or the repository alone."""
        return f"{self.repository}:{self.tag}" if self.tag else self.repository


@dataclass(frozen=True)
class ResolvedImage:
    """One image of a source, ready to convert.

    Attributes:
        name: its naming.
        config: the image config bytes, verified against ``config_digest``.
        config_digest: the config digest (Docker's image ID).
        manifest_digest: the image manifest digest, or ``None`` when the source has none.
        index_digest: the index or manifest list it was selected from, or ``None``.
        index_platform: the platform of that index entry, or ``None``.
        layers: the layer blobs, base first.
        pinned_layers: whether the config must list the layers' ``rootfs.diff_ids`` (an
            image of a schema 2 or OCI manifest, or of a ``manifest.json`` archive);
            ``False`` only for the two forms that predate diff IDs, a schema 1 manifest
            and a legacy ``repositories`` archive.
    """

    name: ImageName
    config: bytes
    config_digest: Digest
    manifest_digest: Digest | None
    index_digest: Digest | None
    index_platform: Platform | None
    layers: tuple[LayerBlob, ...]
    pinned_layers: bool = True


class ImageSource(Protocol):
    """A place images are read from (an archive, a layout, a registry)."""

    display: str
    """The source as the user named it (a path or reference), for messages."""

    cacheable: bool
    """Whether conversions of its images may be cached by manifest digest (content-
    addressed sources only: a registry)."""

    def resolve(self, selector: str | None, platform: Platform) -> ResolvedImage:
        """Find one image.

        Args:
            selector: ``NAME[:TAG]``, a bare tag, or ``sha256:<hex>``; ``None`` for
                the source's only image.
            platform: the platform to pick from a manifest list or index.

        Raises:
            SeveralImages: no selector and several images.
            ImageNotFound: nothing matches the selector.
            PlatformNotFound: no index entry matches ``platform``.
            InvalidManifest: metadata is malformed.
        """
        ...

    def platforms(self, selector: str | None) -> list[Platform] | None:
        """The platforms of the selected image's index, for ``--platform all``.

        Returns:
            the index entries' platforms in index order (duplicates removed), or
            ``None`` when the image is not selected from an index (one platform).

        Raises:
            the errors of :meth:`resolve`.
        """
        ...

    def close(self) -> None:
        """Release open files and temporary data."""
        ...


def name_from_reference(text: str, display: str) -> ImageName:
    """Name a local image from a full reference (``RepoTags`` entry or OCI ref name).

    The registry host is dropped from the repository (``docker.io/test/busybox:latest``
    → ``test/busybox``); the reference is kept verbatim as the original name.

    Raises:
        SourceError: the reference does not parse.
    """
    try:
        ref = ImageRef.parse(text)
    except InvalidReference as err:
        raise SourceError(display, f"image name {text!r}: {err}") from err
    return ImageName(ref.repository, ref.tag, text, None, ref.repository)


def untagged_name(config_digest: Digest) -> ImageName:
    """Name an untagged image by its config digest: ``sha256-<12 hex>``."""
    repository = f"{config_digest.algorithm}-{config_digest.short}"
    return ImageName(repository, None, None, None, repository)


def selector_matches(selector: str, reference: str) -> bool:
    """Whether ``--image`` / a tag selects an image named ``reference``.

    Both are normalised as Docker references; when the selector names no registry, a
    registry host in the image's name is ignored (``test/busybox`` selects
    ``127.0.0.1:5000/test/busybox:latest``).
    """
    if selector == reference:
        return True
    try:
        want, have = ImageRef.parse(selector), ImageRef.parse(reference)
    except InvalidReference:
        return False
    if (want.repository, want.tag) != (have.repository, have.tag):
        return False
    return not _names_registry(selector) or want.domain == have.domain


def _names_registry(text: str) -> bool:
    first, sep, _ = text.partition("/")
    return bool(sep) and ("." in first or ":" in first or first == "localhost")


def digest_selector(selector: str) -> str | None:
    """The hex of a ``sha256:<hex>`` selector (at least 12 hex digits), else ``None``."""
    algo, sep, hexpart = selector.partition(":")
    if sep and algo == "sha256" and 12 <= len(hexpart) <= 64 and all(c in "0123456789abcdef" for c in hexpart):
        return hexpart
    return None
