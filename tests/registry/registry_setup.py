"""What the registry tests push and how they connect: images, credentials, a fast retry policy.

(Shared by ``conftest.py`` and the test modules; pytest's conftest is not imported directly.)
"""

from __future__ import annotations

from dataclasses import dataclass

from services import SHARED_IMAGES
from tokenserver import TEST_PASSWORD, TEST_USER

from docker2aci import mediatypes
from docker2aci.registry import RetryPolicy

FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.01, max_delay=5.0)
"""Retries without real waiting (Retry-After is still honoured, up to 5 s)."""
CREDS = (TEST_USER, TEST_PASSWORD)


@dataclass(frozen=True)
class Pushed:
    """One image pushed to the plain registry.

    Attributes:
        repository: the repository.
        tag: the tag.
        media_type: the manifest media type the registry must answer with.
        source: the skopeo source it was pushed from.
        args: the skopeo flags used.
        digest: the manifest digest when it is known in advance (skopeo keeps OCI
            manifests byte for byte; see ../shared/images/MANIFEST.txt).
    """

    repository: str
    tag: str
    media_type: str
    source: str
    args: tuple[str, ...] = ()
    digest: str | None = None


LAYOUT = f"oci:{SHARED_IMAGES / 'oci-layout'}:latest"
PUSHES: tuple[Pushed, ...] = (
    # zstd first: skopeo's blob-info cache would otherwise reuse the gzip blobs (real-infra.md 2.6).
    Pushed("test/zstd", "latest", mediatypes.OCI_MANIFEST, f"oci:{SHARED_IMAGES / 'oci-zstd'}:latest",
           digest="sha256:4125c399c86e690aaa4c8d90d5e61c5009e1d5346ce204fdd941689631877ad0"),
    Pushed("test/busybox", "v2s2", mediatypes.DOCKER_MANIFEST, LAYOUT, ("--format", "v2s2")),
    Pushed("test/busybox", "oci", mediatypes.OCI_MANIFEST, LAYOUT, ("--format", "oci"),
           digest="sha256:96aaf5f26367ae4d0c6dea89455a494f840129b745f93c49d98ddad14495a7ae"),
    Pushed("test/busybox", "v2s1", mediatypes.DOCKER_SCHEMA1_SIGNED, LAYOUT, ("--format", "v2s1")),
    Pushed("test/multi", "oci", mediatypes.OCI_INDEX, f"oci:{SHARED_IMAGES / 'oci-multi'}:multi", ("--all",),
           digest="sha256:ce2f96142f66db0e8004278324612ef8a29d6b966526f9a7bc7a821818a54217"),
    Pushed("test/multi", "v2s2", mediatypes.DOCKER_LIST, f"oci:{SHARED_IMAGES / 'oci-multi'}:multi",
           ("--all", "--format", "v2s2")),
)
