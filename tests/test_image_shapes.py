"""Image shapes that are not container images, or whose config does not pin its layers.

* An OCI artifact (a manifest whose ``config.mediaType`` is not an image config: an
  SBOM with ``application/vnd.oci.empty.v1+json``, a Helm chart) has no root filesystem:
  converting it is a clear error naming the input and ``config.mediaType``, as skopeo
  refuses it, never an ACI of the artifact's blobs nor an "unknown layer encoding".
* A schema 2 / OCI image whose config has an empty (or no) ``rootfs.diff_ids`` is an
  error like any other count mismatch: its layers would go unverified (Docker's load
  refuses it too). Schema 1 and legacy ``repositories`` archives predate diff IDs.
* A nested index (index -> index -> manifest) whose entry for the inner index names no
  platform, as image-spec allows: the inner index is followed, for one platform and for
  ``--platform all`` (containerd keeps platform-less entries as candidates).

The images are the shared umoci-built layout, copied with skopeo, with one JSON edit
each, converted from ``oci:``, ``oci-archive:`` and a real registry (skopeo push).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from services import REGISTRY_BIN, SKOPEO_BIN, RunningRegistry, push, require_tools, run_registry
from test_shared_images import ARM64_MANIFEST_DIGEST as ARM64_MANIFEST
from test_shared_images import IMAGES
from test_shared_images import INDEX_DIGEST as MULTI_INDEX
from test_shared_images import MANIFEST_DIGEST as AMD64_MANIFEST

import docker2aci
from docker2aci.errors import InvalidManifest, PlatformNotFound, UnsupportedMediaType
from docker2aci.mediatypes import OCI_INDEX, OCI_MANIFEST

LAYOUT = IMAGES / "oci-layout"
MULTI = IMAGES / "oci-multi"

pytestmark = pytest.mark.skipif(not LAYOUT.is_dir(), reason="../shared/images is not present")


def _blob(layout: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return f"sha256:{digest}"


def _read(layout: Path, digest: str) -> Any:
    return json.loads((layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes())


def _retag(layout: Path, manifest: dict[str, Any]) -> None:
    """Store ``manifest`` and point the layout's only tag, ``latest``, at it."""
    data = json.dumps(manifest).encode()
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": OCI_MANIFEST, "digest": _blob(layout, data), "size": len(data),
        "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}
    (layout / "index.json").write_text(json.dumps(index))


def _copy(tmp_path: Path, name: str) -> tuple[Path, dict[str, Any]]:
    """A skopeo copy of the shared layout and its manifest."""
    require_tools(SKOPEO_BIN)
    layout = tmp_path / name
    subprocess.run([SKOPEO_BIN, "copy", "--insecure-policy", "-q", f"oci:{LAYOUT}:latest", f"oci:{layout}:latest"],
                   check=True, capture_output=True)
    [entry] = json.loads((layout / "index.json").read_text())["manifests"]
    return layout, _read(layout, entry["digest"])


def sbom_artifact(tmp_path: Path) -> Path:
    """An OCI 1.1 artifact: empty config, one SBOM layer, ``artifactType``, and the image
    as its ``subject``."""
    layout, image = _copy(tmp_path, "sbom")
    [entry] = json.loads((layout / "index.json").read_text())["manifests"]
    sbom = b'{"spdxVersion": "SPDX-2.3"}'
    _retag(layout, {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/spdx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": _blob(layout, b"{}"), "size": 2},
        "layers": [{"mediaType": "application/spdx+json", "digest": _blob(layout, sbom), "size": len(sbom)}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": entry["digest"], "size": entry["size"]}})
    return layout


def helm_chart(tmp_path: Path) -> Path:
    """A Helm chart as an OCI artifact: its own config type, a gzip tar layer."""
    layout, image = _copy(tmp_path, "helm")
    config = json.dumps({"name": "chart", "version": "1.0.0", "apiVersion": "v2"}).encode()
    image["config"] = {"mediaType": "application/vnd.cncf.helm.config.v1+json",
                       "digest": _blob(layout, config), "size": len(config)}
    image["layers"] = [dict(d, mediaType="application/vnd.cncf.helm.chart.content.v1.tar+gzip")
                       for d in image["layers"][:1]]
    _retag(layout, image)
    return layout


def unpinned_image(tmp_path: Path, rootfs: dict[str, Any] | None) -> Path:
    """The image with its config's ``rootfs`` replaced (``None``: removed)."""
    layout, image = _copy(tmp_path, "unpinned")
    config = _read(layout, image["config"]["digest"])
    if rootfs is None:
        del config["rootfs"]
    else:
        config["rootfs"] = rootfs
    data = json.dumps(config).encode()
    image["config"] = dict(image["config"], digest=_blob(layout, data), size=len(data))
    _retag(layout, image)
    return layout


def _archive(layout: Path) -> Path:
    path = layout.with_suffix(".tar")
    with tarfile.open(path, "w") as tf:
        for child in sorted(layout.iterdir()):
            tf.add(child, arcname=child.name)
    return path


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    require_tools(REGISTRY_BIN, SKOPEO_BIN)
    with run_registry(tmp_path_factory.mktemp("shapes-registry")) as running:
        yield running


def _sources(layout: Path, registry: RunningRegistry, repo: str) -> list[str]:
    push(f"oci:{layout}:latest", registry, f"{repo}:latest")
    return [f"oci:{layout}:latest", f"oci-archive:{_archive(layout)}", f"docker://{registry.host}/{repo}:latest"]


def _convert(source: str, out: Path) -> list[docker2aci.ConvertedACI]:
    return docker2aci.convert(source, docker2aci.ConvertOptions(
        output_dir=str(out), cache_dir=str(out.parent / "cache"), insecure_allow_http=True))


@pytest.mark.parametrize("build, config_type, artifact_type", [
    pytest.param(sbom_artifact, "application/vnd.oci.empty.v1+json", "application/spdx+json", id="empty-config"),
    pytest.param(helm_chart, "application/vnd.cncf.helm.config.v1+json", None, id="helm-chart"),
])
def test_an_artifact_is_a_clear_error_from_every_source(tmp_path: Path, registry: RunningRegistry, build: Any,
                                                        config_type: str, artifact_type: str | None) -> None:
    layout = build(tmp_path)
    for source in _sources(layout, registry, f"shapes/{layout.name}"):
        out = tmp_path / "out"
        with pytest.raises(UnsupportedMediaType) as exc:
            _convert(source, out)
        message = str(exc.value)
        assert message.startswith(source), message
        assert f"config.mediaType {config_type!r} is not an image config" in message
        if artifact_type:
            assert repr(artifact_type) in message
        assert not list(out.glob("*.aci")), source
        shutil.rmtree(out, ignore_errors=True)


@pytest.mark.parametrize("rootfs", [
    pytest.param({"type": "layers", "diff_ids": []}, id="empty-diff-ids"),
    pytest.param({"type": "layers"}, id="no-diff-ids"),
    pytest.param(None, id="no-rootfs"),
])
def test_a_config_that_pins_no_layers_is_a_count_error(tmp_path: Path, registry: RunningRegistry,
                                                       rootfs: dict[str, Any] | None) -> None:
    layout = unpinned_image(tmp_path, rootfs)
    for source in _sources(layout, registry, "shapes/unpinned"):
        with pytest.raises(InvalidManifest) as exc:
            _convert(source, tmp_path / "out")
        message = str(exc.value)
        assert message.startswith(source), message
        assert "config rootfs.diff_ids lists 0 layers, the manifest 4" in message


def test_an_image_with_a_subject_still_converts(tmp_path: Path, registry: RunningRegistry) -> None:
    """``subject`` and ``artifactType`` on an image manifest whose config is an image
    config (a signed or attested image) do not make it an artifact."""
    layout, image = _copy(tmp_path, "subject")
    [entry] = json.loads((layout / "index.json").read_text())["manifests"]
    _retag(layout, dict(image, artifactType="application/vnd.example.image",
                        subject={"mediaType": OCI_MANIFEST, "digest": entry["digest"], "size": entry["size"]}))
    for source in _sources(layout, registry, "shapes/subject"):
        [aci] = _convert(source, tmp_path / source.split(":", 1)[0])
        assert aci.manifest["app"]["exec"] == ["/bin/sh", "-c", "echo hello from $GREETING; ls /app"]


def test_a_foreign_layer_a_copy_left_out_is_refused_clearly(tmp_path: Path) -> None:
    """A non-distributable layer converts from a layout that holds its blob; ``skopeo
    copy`` to ``oci:`` or ``oci-archive:`` leaves the blob out (it copies no foreign
    layer), and converting the copy said only "file 'blobs/sha256/…' not found in the
    archive" (sources review). It is refused as a registry's is (public case 33), naming
    the layer, its media type and URLs."""
    layout, image = _copy(tmp_path, "foreign")
    foreign = image["layers"][-1]
    foreign.update(mediaType="application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                   urls=["https://example.invalid/layer.tar.gz"])
    _retag(layout, image)
    [aci] = _convert(f"oci:{layout}:latest", tmp_path / "whole")
    assert aci.manifest["app"]["exec"] == ["/bin/sh", "-c", "echo hello from $GREETING; ls /app"]
    copies = [f"oci:{tmp_path / 'copy'}:latest", f"oci-archive:{tmp_path / 'copy.tar'}:latest"]
    for copy in copies:
        subprocess.run([SKOPEO_BIN, "copy", "--insecure-policy", "-q", f"oci:{layout}:latest", copy],
                       check=True, capture_output=True)
        with pytest.raises(UnsupportedMediaType) as exc:
            _convert(copy, tmp_path / "out")
        assert str(exc.value) == (
            f"{copy}: layer {foreign['digest']} is a foreign, non-distributable layer (application/vnd.oci.image."
            "layer.nondistributable.v1.tar+gzip; https://example.invalid/layer.tar.gz), whose blob is not in the "
            "layout; refusing to convert it")
    assert not list((tmp_path / "out").glob("*.aci"))


def nested_index(tmp_path: Path) -> Path:
    """The shared two-platform index, wrapped in an index whose only entry (no platform)
    names it; the layout's ``latest`` names the outer index."""
    layout = tmp_path / "nested"
    shutil.copytree(MULTI, layout)
    inner = (layout / "blobs" / "sha256" / MULTI_INDEX.split(":", 1)[1]).read_bytes()
    outer = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_INDEX, "digest": MULTI_INDEX, "size": len(inner)}]}).encode()
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": OCI_INDEX, "digest": _blob(layout, outer), "size": len(outer),
        "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}))
    return layout


@pytest.mark.parametrize("platform, manifest_digest", [
    pytest.param("linux/amd64", AMD64_MANIFEST, id="amd64"),
    pytest.param("linux/arm64", ARM64_MANIFEST, id="arm64"),
])
def test_a_nested_index_is_followed(tmp_path: Path, platform: str, manifest_digest: str) -> None:
    layout = nested_index(tmp_path)
    for source in (f"oci:{layout}:latest", f"oci-archive:{_archive(layout)}"):
        [aci] = docker2aci.convert(source, docker2aci.ConvertOptions(
            output_dir=str(tmp_path / source.split(":", 1)[0] / platform.replace("/", "-")), platform=platform))
        annotations = {a["name"]: a["value"] for a in aci.manifest["annotations"]}
        assert annotations["appc.io/docker/manifesthash"] == manifest_digest
        assert annotations["appc.io/docker/manifestlisthash"] != MULTI_INDEX  # the outer index, the one named


def test_a_nested_index_offers_every_platform(tmp_path: Path) -> None:
    layout = nested_index(tmp_path)
    for source in (f"oci:{layout}:latest", f"oci-archive:{_archive(layout)}"):
        acis = docker2aci.convert(source, docker2aci.ConvertOptions(
            output_dir=str(tmp_path / source.split(":", 1)[0]), platform="all"))
        digests = {a["value"] for aci in acis for a in aci.manifest["annotations"]
                   if a["name"] == "appc.io/docker/manifesthash"}
        assert digests == {AMD64_MANIFEST, ARM64_MANIFEST}, source


def test_a_nested_index_without_the_platform_lists_what_is_there(tmp_path: Path) -> None:
    layout = nested_index(tmp_path)
    with pytest.raises(PlatformNotFound) as exc:
        docker2aci.convert(f"oci:{layout}:latest", docker2aci.ConvertOptions(
            output_dir=str(tmp_path / "out"), platform="linux/s390x"))
    assert "present: linux/amd64, linux/arm64" in str(exc.value)
