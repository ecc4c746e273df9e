"""Manifests, image indexes and platforms (image-spec manifest.md, image-index.md).

Parsers take untrusted JSON bytes and return frozen values, raising ``InvalidManifest``
that names the document and the field at fault. Platform selection follows containerd's
matcher, as ``decisions.md`` ("Platform choice") says.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from converters.numbers import plain_decimal

from . import mediatypes, untrustedjson
from .digest import Digest
from .errors import InvalidManifest, PlatformNotFound, UnsupportedMediaType
from .terminal import abridged

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Platform:
    """An OCI platform (image-index.md "platform"), normalised as containerd does.

    Attributes:
        os: ``linux`` ...
        architecture: Go architecture name (``amd64``, ``arm64``, ``arm``, ``386`` ...).
        variant: ``v7``... or ``""``; ``arm`` without a variant means ``v7``, ``arm64``
            with ``v8`` is stored as ``""``.
    """

    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``os/arch[/variant]`` (``--platform``), normalising aliases; one word is
        read as containerd's ``platforms.Parse`` reads it (``docker pull --platform
        arm64``): an os (``linux``) with the host's architecture, else an architecture
        (``arm64``, ``aarch64``) of the host's os.

        Raises:
            InvalidManifest: the text is not of that form (each part letters, digits, ``_``,
                ``.`` or ``-``, as containerd's ``specifierRe``), or one word that is neither.
        """
        parts = text.strip().split("/")
        if any(part and not _SPECIFIER.fullmatch(part) for part in parts):
            raise InvalidManifest("--platform", f"{abridged(text)!r}: each part of os/arch[/variant] is letters, "
                                                "digits, '_', '.' or '-'")
        if len(parts) == 1 and parts[0]:
            word = parts[0].lower()
            if word in _KNOWN_OS:
                host = cls.host()
                return cls(word, host.architecture, host.variant)
            platform = cls.normalised(cls.host().os, word)
            if platform.architecture in _KNOWN_ARCH:
                return platform
            raise InvalidManifest("--platform", f"{text!r} is no os or architecture: give os/arch[/variant]")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidManifest("--platform", f"expected os/arch[/variant], got {text!r}")
        return cls.normalised(parts[0], parts[1], parts[2] if len(parts) == 3 else "")

    @classmethod
    def normalised(cls, os_name: str, arch: str, variant: str = "") -> Platform:
        """Build a platform with containerd's normalisation of arch aliases and variants."""
        os_name, arch, variant = os_name.lower(), arch.lower(), (variant or "").lower()
        alias = _ARCH_ALIASES.get(arch)
        if alias:
            arch, variant = alias[0], variant or alias[1]
        if arch == "arm64" and variant in ("v8", "8"):
            variant = ""
        elif arch == "arm" and variant == "":
            variant = "v7"
        elif arch == "arm" and variant.isdigit():
            variant = f"v{variant}"
        elif arch == "amd64" and variant == "v1":
            variant = ""
        return cls(os_name, arch, variant)

    @classmethod
    def host(cls) -> Platform:
        """The platform of the machine we run on."""
        return cls.normalised("linux", os.uname().machine)  # what platform.machine() reads, without importing it

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


_SPECIFIER = re.compile(r"[A-Za-z0-9_.-]+")
"""One part of ``--platform`` (containerd's ``platforms.specifierRe``; ``.`` for variants
such as ``v8.2``)."""
_KNOWN_OS = frozenset({"aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js", "linux",
                       "nacl", "netbsd", "openbsd", "plan9", "solaris", "windows", "zos"})
"""The operating systems Go knows (containerd's ``isKnownOS``), for a one-word ``--platform``."""
_KNOWN_ARCH = frozenset({"386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "loong64", "mips", "mipsle",
                         "mips64", "mips64le", "mips64p32", "mips64p32le", "ppc", "ppc64", "ppc64le", "riscv",
                         "riscv64", "s390", "s390x", "sparc", "sparc64", "wasm"})
"""The architectures Go knows (containerd's ``isKnownArch``), after the aliases."""

_ARCH_ALIASES: dict[str, tuple[str, str]] = {
    "x86_64": ("amd64", ""),
    "x86-64": ("amd64", ""),
    "aarch64": ("arm64", ""),
    "armhf": ("arm", "v7"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "armv8l": ("arm", "v8"),
    "armel": ("arm", "v6"),
    "i386": ("386", ""),
    "i686": ("386", ""),
}


def _variant_rank(platform: Platform, wanted: Platform) -> int | None:
    """How well ``platform`` serves ``wanted``: higher is better, ``None`` is no match."""
    if platform.os != wanted.os or platform.architecture != wanted.architecture:
        return None
    if platform.variant == wanted.variant:
        return 1000
    if wanted.architecture == "arm":
        have, want = plain_decimal(platform.variant[1:], 3), plain_decimal(wanted.variant[1:], 3)  # v7
        if have is not None and want is not None:
            return have if have < want else None
    return None


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor (image-spec descriptor.md).

    Attributes:
        media_type: the media type of the referenced content.
        digest: its digest.
        size: its length in bytes.
        platform: for index entries, the platform it runs on.
        annotations: the descriptor's annotations.
        urls: for foreign layers, where the blob may be fetched.
    """

    media_type: str
    digest: Digest
    size: int
    platform: Platform | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    urls: tuple[str, ...] = ()

    @property
    def ref_name(self) -> str | None:
        """The ``org.opencontainers.image.ref.name`` annotation, if any."""
        return self.annotations.get(mediatypes.ANNOTATION_REF_NAME)

    @property
    def is_attestation(self) -> bool:
        """Whether the entry is an attestation manifest (SBOM, provenance) that BuildKit
        stores beside each image of an index (``vnd.docker.reference.type:
        attestation-manifest``, platform ``unknown/unknown``): not an image."""
        return self.annotations.get(mediatypes.ANNOTATION_REFERENCE_TYPE) == mediatypes.REFERENCE_TYPE_ATTESTATION

    @classmethod
    def from_json(cls, obj: Any, where: str) -> Descriptor:
        """Parse one descriptor object.

        Raises:
            InvalidManifest: a field is missing or of the wrong type.
        """
        if not isinstance(obj, dict):
            raise InvalidManifest(where, "descriptor is not an object")
        media_type = obj.get("mediaType", "")
        size = obj.get("size")
        if not isinstance(media_type, str):
            raise InvalidManifest(where, "field mediaType is not a string")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidManifest(where, f"field size is not a non-negative integer: {size!r}")
        digest = Digest.parse(obj.get("digest", ""), what=f"{where}: field digest")
        plat = None
        p = obj.get("platform")
        if isinstance(p, dict) and isinstance(p.get("os"), str) and isinstance(p.get("architecture"), str):
            plat = Platform.normalised(p["os"], p["architecture"], str(p.get("variant") or ""))
        annotations = obj.get("annotations") or {}
        if not isinstance(annotations, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
        ):
            raise InvalidManifest(where, "field annotations is not a map of strings")
        urls = obj.get("urls") or []
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise InvalidManifest(where, "field urls is not a list of strings")
        return cls(media_type, digest, size, plat, dict(annotations), tuple(urls))


@dataclass(frozen=True)
class ImageManifest:
    """An OCI image manifest or Docker schema 2 manifest.

    Attributes:
        media_type: the manifest's media type.
        config: descriptor of the image config.
        layers: layer descriptors, base layer first.
        artifact_type: the OCI 1.1 ``artifactType``, or ``""``.
    """

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    artifact_type: str = ""


@dataclass(frozen=True)
class ImageIndex:
    """An OCI image index or Docker manifest list.

    Attributes:
        media_type: the index's media type.
        manifests: the entries, in document order, attestation manifests left out
            (:attr:`Descriptor.is_attestation`).
    """

    media_type: str
    manifests: tuple[Descriptor, ...]


def load_json(untrusted: bytes, where: str) -> dict[str, Any]:
    """A manifest, index or archive manifest as a JSON object: UTF-8 without a byte order
    mark, as Go's ``encoding/json`` (Docker, containerd, skopeo, umoci) reads them.

    Raises:
        InvalidManifest: names ``where``: not JSON, not UTF-8, or not an object.
    """
    try:
        doc = untrustedjson.loads(untrusted, utf8_only=True)
    except untrustedjson.BadJSON as err:
        raise InvalidManifest(where, f"not valid JSON: {err}") from err
    if not isinstance(doc, dict):
        raise InvalidManifest(where, "not a JSON object")
    return doc


def _load_schema2(untrusted: bytes, where: str) -> dict[str, Any]:
    doc = load_json(untrusted, where)
    if doc.get("schemaVersion") != 2:
        raise InvalidManifest(where, f"field schemaVersion is {doc.get('schemaVersion')!r}, expected 2")
    return doc


def _descriptors(doc: dict[str, Any], key: str, where: str) -> tuple[Descriptor, ...]:
    entries = doc.get(key)
    if not isinstance(entries, list):
        raise InvalidManifest(where, f"field {key} is not a list")
    return tuple(Descriptor.from_json(d, f"{where}: {key}[{i}]") for i, d in enumerate(entries))


def document_kind(untrusted: bytes, media_type: str | None, where: str) -> str:
    """Classify a manifest-like document as ``"index"``, ``"manifest"`` or ``"schema1"``.

    The media type given by the source wins (parameters ignored); otherwise the body's
    ``schemaVersion`` and ``mediaType`` fields, then its shape (``manifests`` vs
    ``layers``) decide, as distribution dispatches.

    Raises:
        InvalidManifest: neither an index nor a manifest (names the media type).
    """
    base = (media_type or "").split(";", 1)[0].strip().lower()
    if base in mediatypes.INDEX_TYPES:
        return "index"
    if base in mediatypes.MANIFEST_TYPES:
        return "manifest"
    if base in mediatypes.SCHEMA1_TYPES:
        return "schema1"
    doc = load_json(untrusted, where)
    body_type = doc.get("mediaType")
    if body_type is not None and not isinstance(body_type, str):
        raise InvalidManifest(where, f"field mediaType is not a string ({type(body_type).__name__})")
    if doc.get("schemaVersion") == 1:
        return "schema1"
    if body_type in mediatypes.INDEX_TYPES or (body_type is None and "manifests" in doc):
        return "index"
    if body_type in mediatypes.MANIFEST_TYPES or (body_type is None and "layers" in doc):
        return "manifest"
    raise InvalidManifest(where, f"neither an image manifest nor an index (mediaType {body_type!r})")


MAX_INDEX_DEPTH = 4
"""Nested indexes followed (index → index → manifest is the deepest seen in practice)."""


@dataclass(frozen=True)
class Document:
    """A manifest-like document as fetched: untrusted bytes, the media type the source
    gave (``""`` if none), the digest it is known by, and its kind (see
    :func:`document_kind`)."""

    raw: bytes
    media_type: str
    digest: Digest
    kind: str


@dataclass(frozen=True)
class Followed:
    """Where :func:`follow_indexes` arrived.

    Attributes:
        document: the image manifest (or schema 1 manifest).
        index_digest: the first index it was chosen from, or ``None``.
        platform: that index entry's platform, or ``None``.
    """

    document: Document
    index_digest: Digest | None
    platform: Platform | None


def follow_indexes(top: Document, fetch: Callable[[Descriptor], Document], platform: Platform,
                   where: str) -> Followed:
    """Follow indexes and manifest lists, choosing ``platform`` in each, to an image
    manifest (image-spec image-index.md; at most :data:`MAX_INDEX_DEPTH` levels).

    Args:
        top: the document a reference or layout entry names.
        fetch: fetches (and verifies) the document an index entry names.
        platform: the platform to choose.
        where: names the source in errors.

    Raises:
        PlatformNotFound: an index has no entry for ``platform``.
        InvalidManifest: malformed, or nested too deep.
        (and whatever ``fetch`` raises)
    """
    current, index_digest, chosen = top, None, None
    for _ in range(MAX_INDEX_DEPTH + 1):
        if current.kind != "index":
            return Followed(current, index_digest, chosen)
        here = f"{where}: {current.digest}"
        entry = select_platform(parse_index(current.raw, here), platform, here)
        index_digest = index_digest or current.digest
        chosen = chosen or entry.platform
        current = fetch(entry)
    raise InvalidManifest(where, f"indexes nested deeper than {MAX_INDEX_DEPTH}")


def index_platforms(top: Document, where: str,
                    fetch: Callable[[Descriptor], Document] | None = None) -> list[Platform] | None:
    """The platforms an index offers, in order, without repeats; ``None`` when ``top`` is
    not an index (one platform). An index whose only candidate is a nested index without
    a platform (see :func:`select_platform`) offers that index's platforms (``fetch``
    fetches it)."""
    for _ in range(MAX_INDEX_DEPTH + 1):
        if top.kind != "index":
            return None
        manifests = parse_index(top.raw, f"{where}: {top.digest}").manifests
        found = list(dict.fromkeys(desc.platform for desc in manifests if desc.platform is not None))  # linear
        nested = _lone_nested_index(manifests)
        if found or fetch is None or nested is None:
            return found
        top = fetch(nested)
    raise InvalidManifest(where, f"indexes nested deeper than {MAX_INDEX_DEPTH}")


def parse_manifest(untrusted: bytes, where: str) -> ImageManifest:
    """Parse an OCI image manifest or Docker schema 2 manifest.

    Raises:
        InvalidManifest: a required field is missing or malformed.
    """
    doc = _load_schema2(untrusted, where)
    config = Descriptor.from_json(doc.get("config"), f"{where}: config")
    descs = _descriptors(doc, "layers", where)
    artifact_type = doc.get("artifactType")
    return ImageManifest(str(doc.get("mediaType") or mediatypes.OCI_MANIFEST), config, descs,
                         artifact_type if isinstance(artifact_type, str) else "")


def require_image_config(manifest: ImageManifest, where: str) -> None:
    """Refuse a manifest whose config is not an image config: an OCI artifact (an SBOM,
    a signature, a Helm chart, ``application/vnd.oci.empty.v1+json``) has no root
    filesystem to convert, as skopeo refuses it ("unsupported image-specific operation
    on artifact"). A config descriptor without a media type is let through.

    Raises:
        UnsupportedMediaType: names ``config.mediaType`` (and ``artifactType``).
    """
    media_type = manifest.config.media_type.split(";", 1)[0].strip().lower()
    if media_type and media_type not in mediatypes.IMAGE_CONFIG_TYPES:
        kind = f" (artifactType {manifest.artifact_type!r})" if manifest.artifact_type else ""
        raise UnsupportedMediaType(where, f"config.mediaType {manifest.config.media_type!r} is not an image config: "
                                          f"an artifact{kind}, not a container image; nothing to convert")


def foreign_layer_text(layer: Descriptor) -> str:
    """What a foreign (non-distributable) layer is, for the error that refuses it
    (public case 33): ``layer <digest> is a foreign, non-distributable layer (<media type>;
    <urls>)``."""
    urls = ", ".join(layer.urls) or "no URLs"
    return f"layer {layer.digest} is a foreign, non-distributable layer ({layer.media_type}; {urls})"


def parse_index(untrusted: bytes, where: str) -> ImageIndex:
    """Parse an OCI image index or Docker manifest list. Its attestation manifests are left
    out, as Docker leaves them out: they are neither images to convert nor platforms to
    choose, list or count.

    Raises:
        InvalidManifest: a required field is missing or malformed.
    """
    doc = _load_schema2(untrusted, where)
    descs = tuple(d for d in _descriptors(doc, "manifests", where) if not d.is_attestation)
    return ImageIndex(str(doc.get("mediaType") or mediatypes.OCI_INDEX), descs)


def select_platform(index: ImageIndex, wanted: Platform, where: str) -> Descriptor:
    """Pick the index entry that best runs on ``wanted`` (containerd's matcher).

    Exact variant matches win; for ``arm/vN`` the highest lower variant is accepted,
    never a higher one. Entries without a platform are not candidates, except a lone
    nested index when nothing else matches (it is followed, and chooses in its turn). Of equals, the
    first in the index wins, as in containerd; a warning names the others when they are
    other images.

    Raises:
        PlatformNotFound: nothing matches; the message lists the platforms present.
    """
    best: tuple[int, Descriptor] | None = None
    ties: dict[Digest, None] = {}  # the other images of the best rank, in index order, once each
    for desc in index.manifests:
        if desc.platform is None:
            continue
        rank = _variant_rank(desc.platform, wanted)
        if rank is not None and (best is None or rank > best[0]):
            best, ties = (rank, desc), {}
        elif best is not None and rank == best[0] and desc.digest != best[1].digest:
            ties[desc.digest] = None
    if best is None:
        nested = _lone_nested_index(index.manifests)
        if nested is not None:
            return nested  # index -> index: an entry naming an index names no platform of its own
        present = ", ".join(str(d.platform) for d in index.manifests if d.platform) or "none"
        raise PlatformNotFound(where, f"no image for platform {wanted} (present: {present})")
    if ties:
        named = [str(d) for d in list(ties)[:_TIES_NAMED]]
        more = f" and {len(ties) - _TIES_NAMED} more" if len(ties) > _TIES_NAMED else ""
        log.warning("%s: %d images for platform %s; using the first, %s (not %s%s)", where, len(ties) + 1,
                    best[1].platform, best[1].digest, ", ".join(named), more)
    return best[1]


def _lone_nested_index(manifests: Sequence[Descriptor]) -> Descriptor | None:
    """The one entry of an index that names another index and no platform, if there is
    exactly one (followed when no entry names a platform that matches)."""
    nested = [d for d in manifests if d.platform is None and d.media_type in mediatypes.INDEX_TYPES]
    return nested[0] if len(nested) == 1 else None


_TIES_NAMED = 3
"""The most other images of one platform a warning names (a hostile index may list thousands)."""


@dataclass(frozen=True)
class Schema1Manifest:
    """A Docker image manifest, schema 1 (signed or not).

    Attributes:
        name, tag: what the manifest says it is.
        layers: blob digests, base layer first (``fsLayers`` reversed, repeats kept).
        config: the top layer's ``v1Compatibility`` JSON, which holds the image config.
        canonical_digest: the registry's digest of the manifest: over the JWS payload
            (the bytes without the ``signatures``), as distribution computes it
            (distribution "Image Manifest Version 2, Schema 1", "Signed manifests"; docker/libtrust
            ``jsonsign.go``: ``formatLength`` leading bytes + base64url ``formatTail``).
    """

    name: str
    tag: str
    layers: tuple[Digest, ...]
    config: bytes
    canonical_digest: Digest


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def schema1_payload(untrusted_body: bytes) -> bytes | None:
    """The canonical (signed) payload of a signed schema 1 manifest.

    Args:
        untrusted_body: the manifest bytes as received.

    Returns:
        ``body[:formatLength] + formatTail``, or ``None`` when the body is not a JWS-signed
        schema 1 manifest or its protected headers are unreadable or disagree.
    """
    if b'"signatures"' not in untrusted_body:
        return None
    try:
        doc: Any = untrustedjson.loads(untrusted_body)
    except untrustedjson.BadJSON:
        return None
    if not isinstance(doc, dict) or doc.get("schemaVersion") != 1:
        return None
    signatures = doc.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        return None
    payloads: set[bytes] = set()
    for sig in signatures:
        protected = sig.get("protected") if isinstance(sig, dict) else None
        if not isinstance(protected, str):
            return None
        try:
            header = untrustedjson.loads(_b64url(protected))
            length = header["formatLength"]
            tail = _b64url(header["formatTail"])
        except (binascii.Error, ValueError, KeyError, TypeError):
            return None
        if not isinstance(length, int) or isinstance(length, bool) or not 0 < length <= len(untrusted_body):
            return None
        payloads.add(untrusted_body[:length] + tail)
    return payloads.pop() if len(payloads) == 1 else None


def manifest_digests(untrusted_body: bytes, algorithm: str = "sha256") -> tuple[Digest, ...]:
    """Every digest that names this manifest body.

    Returns:
        The digest of the raw bytes, then, for a signed schema 1 manifest, the digest of
        its canonical payload (what registries report in ``Docker-Content-Digest``).
    """
    raw = Digest.of_bytes(untrusted_body, algorithm)
    payload = schema1_payload(untrusted_body)
    if payload is None:
        return (raw,)
    canonical = Digest.of_bytes(payload, algorithm)
    return (raw,) if canonical == raw else (raw, canonical)


def parse_schema1(untrusted: bytes, where: str) -> Schema1Manifest:
    """Parse a schema 1 manifest; ``fsLayers`` and ``history`` are paired by index, never
    by digest (public case 35), and the config comes from ``history[0]``.

    Raises:
        InvalidManifest: a required field is missing or malformed.
    """
    doc = load_json(untrusted, where)
    if doc.get("schemaVersion") != 1:
        raise InvalidManifest(where, f"field schemaVersion is {doc.get('schemaVersion')!r}, expected 1")
    fs_layers, history = doc.get("fsLayers"), doc.get("history")
    if not isinstance(fs_layers, list) or not fs_layers:
        raise InvalidManifest(where, "field fsLayers is missing or empty")
    if not isinstance(history, list) or len(history) != len(fs_layers):
        raise InvalidManifest(where, "field history does not pair with fsLayers")
    digests = []
    for i, layer in enumerate(fs_layers):
        if not isinstance(layer, dict):
            raise InvalidManifest(where, f"fsLayers[{i}] is not an object")
        digests.append(Digest.parse(layer.get("blobSum", ""), what=f"{where}: fsLayers[{i}].blobSum"))
    top = history[0].get("v1Compatibility") if isinstance(history[0], dict) else None
    if not isinstance(top, str):
        raise InvalidManifest(where, "history[0].v1Compatibility is not a string")
    return Schema1Manifest(
        name=str(doc.get("name", "")), tag=str(doc.get("tag", "")),
        layers=tuple(reversed(digests)), config=top.encode("utf-8"),
        canonical_digest=Digest.of_bytes(schema1_payload(untrusted) or untrusted),
    )
