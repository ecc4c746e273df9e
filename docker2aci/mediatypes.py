"""Docker and OCI media-type constants (image-spec media-types.md, distribution manifest-v2-2)."""

from __future__ import annotations

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYOUT_FILE = "oci-layout"

DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
IMAGE_CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
"""Config media types of container images (any other names an artifact)."""

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_REFERENCE_TYPE = "vnd.docker.reference.type"
"""BuildKit's annotation of an index entry that describes another entry (moby/buildkit
``docs/attestations/attestation-storage.md``); ``attestation-manifest`` marks an attestation."""
REFERENCE_TYPE_ATTESTATION = "attestation-manifest"


def layer_encoding(media_type: str) -> str | None:
    """The compression a layer media type declares.

    Returns:
        ``"gzip"``, ``"zstd"``, ``"plain"``, or ``None`` when the type says nothing we
        know (the bytes decide in every case; this is only for a warning).
    """
    base = media_type.split(";", 1)[0].strip()
    if base.endswith(("+gzip", ".tar.gzip", ".gzip")):
        return "gzip"
    if base.endswith(("+zstd", ".tar.zstd", ".zstd")):
        return "zstd"
    if base.endswith(".tar") or base.endswith("v1.tar"):
        return "plain"
    return None

SCHEMA1_TYPES = frozenset({DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED})
OCI_NONDISTRIBUTABLE_PREFIX = "application/vnd.oci.image.layer.nondistributable."


def is_foreign_layer(media_type: str) -> bool:
    """Whether a layer is foreign / non-distributable (registries do not serve it)."""
    return media_type == DOCKER_FOREIGN_LAYER or media_type.startswith(OCI_NONDISTRIBUTABLE_PREFIX)


ACCEPT_MANIFESTS = (OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST, DOCKER_SCHEMA1_SIGNED, DOCKER_SCHEMA1)
"""Every manifest type, in the ``Accept`` header of every manifest request (public case 25)."""
