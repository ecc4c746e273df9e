"""End to end on the real images in ../shared/images (made by umoci, skopeo, dockerd, podman,
buildah): each format converts, its manifest is exactly the expected one, every ACI is valid
for actool, and every busybox variant gives the same rootfs, entry for entry."""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

import docker2aci
from docker2aci.errors import DigestMismatch, InvalidManifest, SeveralImages, SizeMismatch
from runner.extract import compute_image_id

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
IMAGES = SHARED / "images"
EXAMPLE = SHARED / "reference" / "example-manifest-oci-archive.json"

MANIFEST_DIGEST = "sha256:96aaf5f26367ae4d0c6dea89455a494f840129b745f93c49d98ddad14495a7ae"
CONFIG_DIGEST = "sha256:3655964a1898a9b4363b5f6dff5c245cc4f86efb66baa0134a138492459cdb92"
ZSTD_MANIFEST_DIGEST = "sha256:4125c399c86e690aaa4c8d90d5e61c5009e1d5346ce204fdd941689631877ad0"
INDEX_DIGEST = "sha256:ce2f96142f66db0e8004278324612ef8a29d6b966526f9a7bc7a821818a54217"
ARM64_MANIFEST_DIGEST = "sha256:fd37b744e3fbec26e3572fd2460910dfd974a534b37afad268e45421f0f41013"
ARM64_CONFIG_DIGEST = "sha256:c2a37a398f48e8560111ddeea8a12ac6ee0f505d7bd902c399ef52c61b352726"

pytestmark = pytest.mark.skipif(not IMAGES.is_dir(), reason="../shared/images is not present")


def _example() -> dict[str, Any]:
    return json.loads(EXAMPLE.read_text())


def _with(manifest: dict[str, Any], *, name: str | None = None, **annotations: str | None) -> dict[str, Any]:
    """The example manifest with its name and some appc.io/docker/ annotations replaced
    (a value of None removes the annotation; a new one is appended in its place in order)."""
    out = copy.deepcopy(manifest)
    if name is not None:
        out["name"] = name
    for key, value in annotations.items():
        full = "appc.io/docker/" + key
        found = [a for a in out["annotations"] if a["name"] == full]
        if value is None:
            out["annotations"] = [a for a in out["annotations"] if a["name"] != full]
        elif found:
            found[0]["value"] = value
        else:
            raise AssertionError(f"add {full} explicitly in the test")
    return out


def read_aci(path: str | Path) -> tuple[bytes, list[tuple[Any, ...]]]:
    """The ACI's manifest bytes and its rootfs entries (name, type, mode, uid, gid, uname,
    gname, mtime, link, devices, xattrs, sha256 of content)."""
    entries = []
    manifest = b""
    with tarfile.open(path, "r:*") as tf:
        for m in tf:
            data = tf.extractfile(m).read() if m.isreg() else b""
            if m.name == "manifest":
                manifest = data
                continue
            xattrs = tuple(sorted((k, v) for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr.")))
            entries.append((m.name, m.type, m.mode, m.uid, m.gid, m.uname, m.gname, m.mtime, m.linkname,
                            m.devmajor, m.devminor, xattrs, hashlib.sha256(data).hexdigest()))
    return manifest, entries


def convert(source: str, out: Path, **options: Any) -> docker2aci.ConvertedACI:
    [aci] = docker2aci.convert(source, docker2aci.ConvertOptions(output_dir=str(out), **options))
    return aci


def actool_validate(path: str) -> None:
    if shutil.which("actool") is None:
        pytest.skip("actool (Debian appc-spec) is not installed")
    proc = subprocess.run(["actool", "validate", path], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_oci_archive_manifest_is_the_worked_example(tmp_path: Path) -> None:
    aci = convert(f"oci-archive:{IMAGES / 'oci-archive.tar'}", tmp_path)
    assert Path(aci.path) == tmp_path / "test-busybox-latest.aci"
    manifest, _ = read_aci(aci.path)
    assert manifest == EXAMPLE.read_bytes().rstrip(b"\n")
    assert aci.name == "test/busybox"
    assert aci.labels == {"arch": "amd64", "os": "linux", "version": "latest"}
    assert aci.manifest_digest == MANIFEST_DIGEST
    assert os.stat(aci.path).st_mode & 0o777 == 0o644
    actool_validate(aci.path)


@pytest.mark.parametrize(
    ("source", "file_name", "expected"),
    [
        pytest.param("docker-save-dockerd.tar", "test-busybox-latest.aci",
                     _with(_example(), manifesthash=CONFIG_DIGEST), id="dockerd-save"),
        pytest.param("img.tar", "test-busybox-latest.aci",
                     _with(_example(), manifesthash=CONFIG_DIGEST,
                           originalname="docker.io/test/busybox:latest"), id="skopeo-docker-archive"),
        pytest.param("docker-save-podman.tar", "test-busybox-latest.aci",
                     _with(_example(), manifesthash=CONFIG_DIGEST,
                           originalname="127.0.0.1:5000/test/busybox:latest"), id="podman-save"),
        pytest.param("oci:oci-layout", "oci-layout-latest.aci",
                     _with(_example(), name="oci-layout", originalname="oci-layout:latest",
                           repository="oci-layout"), id="umoci-layout"),
        pytest.param("oci:oci-zstd", "oci-zstd-latest.aci",
                     _with(_example(), name="oci-zstd", originalname="oci-zstd:latest", repository="oci-zstd",
                           manifesthash=ZSTD_MANIFEST_DIGEST), id="zstd-layout"),
    ],
)
def test_each_format_gives_the_expected_manifest(tmp_path: Path, source: str, file_name: str,
                                                 expected: dict[str, Any]) -> None:
    transport, _, rest = source.rpartition(":")
    aci = convert(f"{transport}:{IMAGES / rest}" if transport else str(IMAGES / rest), tmp_path)
    assert Path(aci.path).name == file_name
    manifest, _ = read_aci(aci.path)
    assert json.loads(manifest) == expected
    actool_validate(aci.path)


def test_every_busybox_format_gives_the_same_rootfs(tmp_path: Path) -> None:
    sources = [f"oci-archive:{IMAGES / 'oci-archive.tar'}", str(IMAGES / "docker-save-dockerd.tar"),
               str(IMAGES / "img.tar"), str(IMAGES / "docker-save-podman.tar"),
               f"oci:{IMAGES / 'oci-layout'}", f"oci:{IMAGES / 'oci-zstd'}", f"oci:{IMAGES / 'oci-multi'}:multi"]
    listings = []
    for i, source in enumerate(sources):
        aci = convert(source, tmp_path / str(i))
        listings.append(read_aci(aci.path)[1])
    for source, listing in zip(sources[1:], listings[1:]):
        assert listing == listings[0], source
    names = [e[0] for e in listings[0]]
    # the shared image's layers: plain whiteout, per-file whiteouts, opaque whiteout
    assert "rootfs/etc/removeme.txt" not in names
    assert [n for n in names if n.startswith("rootfs/opt/dir/")] == ["rootfs/opt/dir/c.txt"]
    assert [n for n in names if n.startswith("rootfs/srv/old/")] == ["rootfs/srv/old/z.txt"]
    assert not [n for n in names if "/.wh." in n]
    assert "rootfs/app/hello.txt" in names
    stdio = {e[0]: e[8] for e in listings[0] if e[0].startswith("rootfs/dev/")}
    assert stdio == {"rootfs/dev/fd": "/proc/self/fd", "rootfs/dev/stdin": "/proc/self/fd/0",
                     "rootfs/dev/stdout": "/dev/console", "rootfs/dev/stderr": "/dev/console"}


def test_index_selects_the_host_platform_and_records_the_index(tmp_path: Path) -> None:
    aci = convert(f"oci:{IMAGES / 'oci-multi'}:multi", tmp_path, platform="linux/amd64")
    assert Path(aci.path).name == "oci-multi-multi.aci"
    annotations = {a["name"]: a["value"] for a in aci.manifest["annotations"]}
    assert annotations["appc.io/docker/manifesthash"] == MANIFEST_DIGEST
    assert annotations["appc.io/docker/manifestlisthash"] == INDEX_DIGEST
    names = [a["name"] for a in aci.manifest["annotations"]]
    assert names.index("appc.io/docker/manifestlisthash") == names.index("appc.io/docker/manifesthash") + 1


@pytest.mark.parametrize("platform", ["linux/arm64", "linux/arm64/v8"])
def test_index_selects_arm64(tmp_path: Path, platform: str) -> None:
    aci = convert(f"oci:{IMAGES / 'oci-multi'}:multi", tmp_path, platform=platform)
    assert Path(aci.path).name == "oci-multi-multi-linux-aarch64.aci"
    assert aci.labels == {"arch": "aarch64", "os": "linux", "version": "multi"}
    annotations = {a["name"]: a["value"] for a in aci.manifest["annotations"]}
    assert annotations["appc.io/docker/imageid"] == ARM64_CONFIG_DIGEST
    assert annotations["appc.io/docker/manifesthash"] == ARM64_MANIFEST_DIGEST
    actool_validate(aci.path)


def test_index_without_the_platform_lists_what_is_there(tmp_path: Path) -> None:
    with pytest.raises(docker2aci.errors.PlatformNotFound, match=r"linux/s390x.*linux/amd64, linux/arm64"):
        convert(f"oci:{IMAGES / 'oci-multi'}:multi", tmp_path, platform="linux/s390x")
    assert list(tmp_path.iterdir()) == []


def test_layout_with_several_images_needs_a_selection(tmp_path: Path) -> None:
    with pytest.raises(SeveralImages) as err:
        convert(f"oci:{IMAGES / 'oci-multi'}", tmp_path)
    assert err.value.names == ["oci-multi:busybox", "oci-multi:latest", "oci-multi:arm64", "oci-multi:multi"]
    aci = convert(f"oci:{IMAGES / 'oci-multi'}", tmp_path, image="arm64")
    assert aci.labels["arch"] == "aarch64"


def test_buildah_image_has_the_run_step(tmp_path: Path) -> None:
    aci = convert(str(IMAGES / "podman-oci-archive.tar"), tmp_path)
    assert aci.name == "test/built"
    _, entries = read_aci(aci.path)
    names = {e[0] for e in entries}
    assert "rootfs/app/built.txt" in names and "rootfs/app/hello.txt" not in names
    env = {e["name"]: e["value"] for e in aci.manifest["app"]["environment"]}
    assert env["BUILT"] == "1"
    actool_validate(aci.path)


def test_conversion_is_deterministic_and_image_id_is_the_tar_hash(tmp_path: Path) -> None:
    source = f"oci-archive:{IMAGES / 'oci-archive.tar'}"
    first = convert(source, tmp_path / "a")
    second = convert(source, tmp_path / "b")
    assert Path(first.path).read_bytes() == Path(second.path).read_bytes()
    assert first.image_id == second.image_id
    plain = gzip.decompress(Path(first.path).read_bytes())
    assert first.image_id == "sha512-" + hashlib.sha512(plain).hexdigest()
    raw = convert(source, tmp_path / "c", compression=docker2aci.Compression.NONE)
    assert Path(raw.path).read_bytes() == plain
    assert raw.image_id == first.image_id


@pytest.mark.parametrize("fixture", ["fixture-test-depsloop.docker", "fixture-test-invalidlayerid.docker"])
def test_reference_fixtures_fail_cleanly(tmp_path: Path, fixture: str) -> None:
    out = tmp_path / "out"
    before = set(os.listdir("/etc"))
    with pytest.raises(InvalidManifest, match="dependency loop|invalid layer ID"):
        convert(str(IMAGES / "docker2aci-fixtures" / fixture), out)
    assert not out.exists() or list(out.iterdir()) == []
    assert set(os.listdir("/etc")) == before


def test_platform_all_converts_every_index_entry(tmp_path: Path) -> None:
    acis = docker2aci.convert(f"oci:{IMAGES / 'oci-multi'}:multi",
                              docker2aci.ConvertOptions(output_dir=str(tmp_path), platform="all"))
    assert [Path(a.path).name for a in acis] == ["oci-multi-multi-linux-amd64.aci",
                                                 "oci-multi-multi-linux-aarch64.aci"]
    assert [a.labels["arch"] for a in acis] == ["amd64", "aarch64"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(Path(a.path).name for a in acis)


def test_platform_all_on_a_single_image_names_its_platform(tmp_path: Path) -> None:
    [aci] = docker2aci.convert(str(IMAGES / "img.tar"),
                               docker2aci.ConvertOptions(output_dir=str(tmp_path), platform="all"))
    assert Path(aci.path).name == "test-busybox-latest-linux-amd64.aci"


def test_a_single_image_of_another_platform_is_converted_as_it_is_with_a_warning(tmp_path: Path) -> None:
    """--platform names arm64 but the image (no index) is amd64: it is converted as amd64,
    with a warning, as skopeo warns (it used to be silent); naming its own os/architecture,
    with or without a variant, none."""
    aci = convert(str(IMAGES / "img.tar"), tmp_path / "a", platform="linux/arm64")
    assert aci.labels["arch"] == "amd64"
    assert aci.warnings == ("the image is linux/amd64, not the requested linux/arm64; converted as linux/amd64",)
    assert convert(str(IMAGES / "img.tar"), tmp_path / "b", platform="linux/amd64").warnings == ()
    assert convert(str(IMAGES / "img.tar"), tmp_path / "c", platform="linux/amd64/v2").warnings == ()


def test_the_platform_warning_follows_the_request_not_the_cached_conversion(tmp_path: Path) -> None:
    """The conversion cache's key holds the image's platform, not the request's: a cached
    conversion replays the image's warnings only, and each request gets its own (review)."""
    cache = {"cache_dir": str(tmp_path / "cache"), "cache_local": True}
    arm = "the image is linux/amd64, not the requested linux/arm64; converted as linux/amd64"
    assert convert(str(IMAGES / "img.tar"), tmp_path / "a", platform="linux/arm64", **cache).warnings == (arm,)
    assert convert(str(IMAGES / "img.tar"), tmp_path / "b", **cache).warnings == ()
    assert convert(str(IMAGES / "img.tar"), tmp_path / "c", platform="linux/arm64", **cache).warnings == (arm,)
    records = [json.loads(p.read_text()) for p in (tmp_path / "cache").rglob("*.json")]
    conversions = [r for r in records if "image_id" in r]
    assert len(conversions) == 1 and conversions[0].get("warnings", []) == []


def test_a_variant_left_out_of_the_config_is_the_index_entry_s(tmp_path: Path) -> None:
    """An index entry linux/arm/v6 whose config says arm without a variant is armv6l (it
    was labelled armv7l, arm's default variant), with no platform warning."""
    import hostilebuild as hb

    base = hb.tar([hb.dir_("etc"), hb.file("etc/passwd", hb.PASSWD)])
    layout = hb.oci_layout(tmp_path / "layout", [base], config=hb.image_config([base], architecture="arm"))
    image_index = json.dumps({"schemaVersion": 2, "mediaType": hb.OCI_INDEX, "manifests": [{
        **layout.descriptor(layout.manifest, hb.OCI_MANIFEST),
        "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}}]}).encode()
    hb.put_blob(layout.path, image_index)
    hb.write_index(layout.path, [{**layout.descriptor(image_index, hb.OCI_INDEX),
                                  "annotations": {hb.REF_NAME: "latest"}}])
    aci = convert(f"oci:{layout.path}:latest", tmp_path / "out", platform="linux/arm/v6")
    assert aci.labels["arch"] == "armv6l"
    assert aci.warnings == ()


def test_a_variant_left_out_of_the_config_is_the_layout_index_entry_s(tmp_path: Path) -> None:
    """The same with the platform on the layout's own index.json entry, which is an image
    index too (image-layout.md's example gives its entries platforms): it was armv7l
    (parity review)."""
    import hostilebuild as hb

    base = hb.tar([hb.dir_("etc"), hb.file("etc/passwd", hb.PASSWD)])
    layout = hb.oci_layout(tmp_path / "layout", [base], config=hb.image_config([base], architecture="arm"))
    hb.write_index(layout.path, [{**layout.descriptor(layout.manifest, hb.OCI_MANIFEST),
                                  "platform": {"os": "linux", "architecture": "arm", "variant": "v6"},
                                  "annotations": {hb.REF_NAME: "latest"}}])
    for wanted, out in (("linux/arm/v6", "a"), (None, "b")):
        aci = convert(f"oci:{layout.path}:latest", tmp_path / out, platform=wanted)
        assert (aci.labels["arch"], Path(aci.path).name) == ("armv6l", "layout-latest-linux-armv6l.aci")
        assert aci.warnings == ()


def test_one_ref_name_for_several_platforms_in_index_json_is_chosen_by_platform(tmp_path: Path) -> None:
    """index.json naming ``latest`` twice, for amd64 and arm64 (image-layout.md allows a
    platform on each entry): the entry for the platform asked for, the host's by default,
    every one with ``--platform all``, and an error listing both for another platform.
    The first entry used to be taken whatever the platform."""
    import hostilebuild as hb

    entries = []
    for arch in ("amd64", "arm64"):
        layer = hb.tar([hb.dir_("etc"), hb.file("etc/passwd", hb.PASSWD), hb.file("arch", arch)])
        layout = hb.oci_layout(tmp_path / "layout", [layer],
                               config=hb.image_config([layer], architecture=arch))
        entries.append({**layout.descriptor(layout.manifest, hb.OCI_MANIFEST),
                        "platform": {"os": "linux", "architecture": arch},
                        "annotations": {hb.REF_NAME: "latest"}})
    hb.write_index(tmp_path / "layout", [*entries, entries[0]])  # a repeated entry is still that image
    source = f"oci:{tmp_path / 'layout'}"

    def arch_file(aci: docker2aci.ConvertedACI) -> str:
        with tarfile.open(aci.path) as tf:
            return tf.extractfile("rootfs/arch").read().decode()  # type: ignore[union-attr]

    for selector in (":latest", ""):
        arm = convert(source + selector, tmp_path / f"arm{selector}", platform="linux/arm64")
        assert (arm.labels["arch"], arch_file(arm), arm.warnings) == ("aarch64", "arm64", ())
    if platform.machine().lower() in ("x86_64", "amd64"):
        host = convert(source + ":latest", tmp_path / "host")
        assert (host.labels["arch"], arch_file(host)) == ("amd64", "amd64")
    acis = docker2aci.convert(source + ":latest", docker2aci.ConvertOptions(output_dir=str(tmp_path / "all"),
                                                                           platform="all"))
    assert [(a.labels["arch"], arch_file(a)) for a in acis] == [("amd64", "amd64"), ("aarch64", "arm64")]
    with pytest.raises(docker2aci.errors.PlatformNotFound, match=r"linux/s390x.*present: linux/amd64, linux/arm64"):
        convert(source + ":latest", tmp_path / "s390x", platform="linux/s390x")


def test_two_images_of_one_platform_in_index_json_are_still_two_images(tmp_path: Path) -> None:
    """Two different untagged linux/amd64 entries are not one image for several
    platforms: without a selector they are reported as several images (review)."""
    import hostilebuild as hb

    entries = []
    for n in ("1", "2"):
        layer = hb.tar([hb.dir_("etc"), hb.file("etc/passwd", hb.PASSWD), hb.file("n", n)])
        layout = hb.oci_layout(tmp_path / "layout", [layer], config=hb.image_config([layer], architecture="amd64"))
        entries.append({**layout.descriptor(layout.manifest, hb.OCI_MANIFEST),
                        "platform": {"os": "linux", "architecture": "amd64"}})
    hb.write_index(tmp_path / "layout", entries)
    with pytest.raises(SeveralImages):
        convert(f"oci:{tmp_path / 'layout'}", tmp_path / "out")


@pytest.mark.parametrize(("second", "outcome"), [
    pytest.param({"architecture": "amd64", "variant": "v3"}, ["layout-multi-linux-amd64-v3.aci",
                                                              "layout-multi-linux-amd64.aci"], id="variant-named"),
    # an entry that says arm64 for this amd64 image: named by its config, as the first
    pytest.param({"architecture": "arm64", "variant": "x-odd"}, None, id="same-file-name-twice"),
])
def test_two_images_of_one_run_never_share_a_file(tmp_path: Path, second: dict, outcome: list[str] | None) -> None:
    """Two entries of an index for one image: a variant appc's arch does not carry is part
    of the file name (decisions.md); entries that would write one file twice are an error
    naming both, and, the platforms of ``--platform all`` being written together or not
    at all, no file is written."""
    layout = _layout_of_two_entries(tmp_path, second)
    out = tmp_path / "out"
    if outcome is not None:
        docker2aci.convert(f"oci:{layout}:multi", docker2aci.ConvertOptions(output_dir=str(out), platform="all"))
        assert sorted(p.name for p in out.iterdir()) == outcome
        return
    with pytest.raises(docker2aci.errors.OutputError, match=r"linux/arm64/x-odd.*linux/amd64\).*layout-multi-linux-amd64"):
        docker2aci.convert(f"oci:{layout}:multi", docker2aci.ConvertOptions(output_dir=str(out), platform="all"))
    assert list(out.iterdir()) == []


def test_two_variants_of_one_run_never_share_a_file_with_nosquash(tmp_path: Path) -> None:
    """--nosquash --platform all on linux/amd64 and linux/amd64/v3: each layer's file name
    carries the variant as the squashed one does (it stopped at the second image, whose
    files were the first's names)."""
    layout = _layout_of_two_entries(tmp_path, {"architecture": "amd64", "variant": "v3"})
    out = tmp_path / "out"
    acis = docker2aci.convert(f"oci:{layout}:multi", docker2aci.ConvertOptions(output_dir=str(out), platform="all",
                                                                                 squash=False))
    layers = len(acis) // 2
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"layout-multi-linux-amd64-{i}.aci" for i in range(layers)]
        + [f"layout-multi-linux-amd64-v3-{i}.aci" for i in range(layers)])


def _layout_of_two_entries(tmp_path: Path, second: dict) -> Path:
    """The shared OCI layout, tagged ``multi`` on an index whose two entries (linux/amd64,
    then linux + ``second``) are its one image."""
    layout = tmp_path / "layout"
    shutil.copytree(IMAGES / "oci-layout", layout)
    entry = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": MANIFEST_DIGEST, "size": 0}
    entry["size"] = (layout / "blobs" / "sha256" / MANIFEST_DIGEST.split(":")[1]).stat().st_size
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {**entry, "platform": {"os": "linux", "architecture": "amd64"}},
        {**entry, "platform": {"os": "linux", **second}}]}
    blob = json.dumps(index).encode()
    digest = hashlib.sha256(blob).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(blob)
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": index["mediaType"], "digest": f"sha256:{digest}", "size": len(blob),
        "annotations": {"org.opencontainers.image.ref.name": "multi"}}]}))
    return layout


@pytest.mark.parametrize("compressed", [False, True], ids=["tar", "gzip"])
def test_a_docker_save_read_from_a_pipe_is_the_file_s_conversion(tmp_path: Path, compressed: bool) -> None:
    """``docker save IMAGE | docker2aci docker-archive:/dev/stdin``: a pipe cannot be read
    in place (it was 'cannot read archive: [Errno 29] Illegal seek'); it is spooled once."""
    import threading

    data = (IMAGES / "docker-save-dockerd.tar").read_bytes()
    if compressed:
        data = gzip.compress(data)
    r, w = os.pipe()

    def feed() -> None:
        with open(w, "wb") as f:
            f.write(data)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        piped = convert(f"docker-archive:/dev/fd/{r}", tmp_path / "piped")
    finally:
        os.close(r)
        feeder.join()
    from_file = convert(str(IMAGES / "docker-save-dockerd.tar"), tmp_path / "file")
    assert Path(piped.path).name == "test-busybox-latest.aci"
    assert Path(piped.path).read_bytes() == Path(from_file.path).read_bytes()


def test_a_terminal_is_no_archive(tmp_path: Path) -> None:
    """``docker2aci docker-archive:/dev/stdin`` with nothing piped in: standard input is the
    terminal, which was 'cannot read archive: [Errno 29] Illegal seek'."""
    controller, terminal = os.openpty()
    try:
        with pytest.raises(docker2aci.errors.SourceError, match=r"/dev/fd/\d+: a terminal, not an image archive"):
            convert(f"docker-archive:/dev/fd/{terminal}", tmp_path / "out")
    finally:
        os.close(terminal)
        os.close(controller)


@pytest.mark.parametrize("transport", ["docker-archive", "oci-archive"])
def test_a_directory_is_no_archive(tmp_path: Path, transport: str) -> None:
    """``docker-archive:DIR`` said Python's "cannot read archive: [Errno 21] Is a
    directory: 'DIR'" (new-user trial)."""
    (tmp_path / "dir").mkdir()
    with pytest.raises(docker2aci.errors.SourceError, match=re.escape(
            f"{transport}:{tmp_path / 'dir'}: a directory, not an archive (an OCI image layout directory is "
            "read with oci:DIR)")):
        convert(f"{transport}:{tmp_path / 'dir'}", tmp_path / "out")


def test_debug_says_what_an_archive_conversion_reads_and_writes(tmp_path: Path) -> None:
    """``--debug`` printed nothing at all for an archive or layout source (new-user
    review): it now names the config, each layer (digest, size, media type, diff ID) and
    the ACI written with its image ID."""
    proc = subprocess.run([sys.executable, "-m", "docker2aci", "--debug", "--output-dir", str(tmp_path),
                           str(IMAGES / "oci-archive.tar")], capture_output=True, text=True, check=True)
    aci = tmp_path / "test-busybox-latest.aci"
    debug = [line for line in proc.stderr.splitlines() if line.startswith("DEBUG: ")]
    assert debug[0].endswith(", platform linux/amd64, 4 layer(s)") and " config sha256:" in debug[0]
    assert [line.split(": ", 3)[2] for line in debug[1:5]] == [f"layer {i}" for i in range(4)]
    assert "1084830 bytes, application/vnd.oci.image.layer.v1.tar+gzip, diff ID sha256:" in debug[1]
    assert debug[-1].endswith(f"wrote {aci}, image ID {compute_image_id(str(aci))}")


@pytest.mark.parametrize("archive", ["img.tar", "docker-save-dockerd.tar"])
def test_debug_gives_the_size_of_a_docker_archive_layer(tmp_path: Path, archive: str) -> None:
    """``--debug`` said ``? bytes`` for every layer of a ``docker save`` archive; the size
    is its member's (skopeo's ``<diffid>.tar``, dockerd's ``<id>/layer.tar``)."""
    path = IMAGES / archive
    with tarfile.open(path) as tf:
        entry = json.loads(tf.extractfile("manifest.json").read())[0]  # type: ignore[union-attr]
        diff_ids = json.loads(tf.extractfile(entry["Config"]).read())["rootfs"]["diff_ids"]  # type: ignore[union-attr]
        sizes = [tf.getmember(member).size for member in entry["Layers"]]
    source = f"docker-archive:{path}"
    proc = subprocess.run([sys.executable, "-m", "docker2aci", "--debug", "--platform", "linux/amd64",
                           "--output-dir", str(tmp_path), source], capture_output=True, text=True, check=True)
    layers = [line for line in proc.stderr.splitlines() if line.startswith(f"DEBUG: {source} (linux/amd64): layer ")]
    assert layers == [f"DEBUG: {source} (linux/amd64): layer {i}: {member}, {size} bytes, no media type, "
                      f"diff ID {diff_id}"
                      for i, (member, size, diff_id) in enumerate(zip(entry["Layers"], sizes, diff_ids))]
    assert sizes[0] == 2008064


# -- an error in a layer names the source, the layer and the field ---------------------------------

LAYER = 1
"""The layer damaged: the busybox image's second (the plain whiteout of etc/removeme.txt)."""


def _damage(data: bytes, how: str) -> bytes:
    """``data`` with one byte of its middle flipped (``corrupt``) or its second half cut
    off (``truncated``)."""
    if how == "truncated":
        return data[:len(data) // 2]
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]


def _damaged_archive(archive: Path, dest: Path, member: str, how: str) -> bytes:
    """Write at ``dest`` a copy of ``archive`` whose ``member`` is damaged (:func:`_damage`),
    the other members as they are (links included); returns the damaged member's bytes."""
    damaged = b""
    with tarfile.open(archive) as src, tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as out:
        for m in src:
            data = src.extractfile(m).read() if m.isreg() else None  # type: ignore[union-attr]
            if m.name == member:
                data = damaged = _damage(data or b"", how)
                m.size = len(data)
            out.addfile(m, io.BytesIO(data) if data is not None else None)
    return damaged


def _refused_by_both(source: str, out: Path, error: type[Exception], expected: str) -> None:
    """Converting ``source`` (as linux/amd64) fails with ``error`` saying ``expected``, and
    the command line says it on one line, exit status 1; nothing is written."""
    with pytest.raises(error) as info:
        convert(source, out / "api", platform="linux/amd64")
    assert str(info.value) == expected
    proc = subprocess.run([sys.executable, "-m", "docker2aci", "--platform", "linux/amd64", "--output-dir",
                           str(out / "cli"), source], capture_output=True, text=True, check=False)
    assert (proc.returncode, proc.stderr.splitlines()) == (1, [f"Error: conversion error: {expected}"])
    assert not list(out.glob("*/*.aci"))


@pytest.mark.parametrize("how", ["corrupt", "truncated"])
@pytest.mark.parametrize("archive", ["img.tar", "docker-save-dockerd.tar", "docker-save-podman.tar"])
def test_a_damaged_docker_archive_layer_names_the_archive_the_layer_and_its_diff_id(
        tmp_path: Path, archive: str, how: str) -> None:
    """A ``docker save`` layer (skopeo's, dockerd's, podman's) that is not its diff ID was
    ``<member> (uncompressed, diff ID): digest mismatch``: no archive, no position."""
    with tarfile.open(IMAGES / archive) as tf:
        entry = json.loads(tf.extractfile("manifest.json").read())[0]  # type: ignore[union-attr]
        diff_id = json.loads(tf.extractfile(entry["Config"]).read())["rootfs"]["diff_ids"][LAYER]  # type: ignore[union-attr]
    member = entry["Layers"][LAYER]
    copy = tmp_path / archive
    damaged = _damaged_archive(IMAGES / archive, copy, member, how)
    source = f"docker-archive:{copy}"
    _refused_by_both(source, tmp_path, DigestMismatch,
                     f"{source} (linux/amd64): layer {LAYER} ({member}), diff ID (config rootfs.diff_ids[{LAYER}]): "
                     f"digest mismatch: expected {diff_id}, got sha256:{hashlib.sha256(damaged).hexdigest()}")


@pytest.mark.parametrize("how", ["corrupt", "truncated"])
@pytest.mark.parametrize("kind", ["oci", "oci-archive"])
def test_a_damaged_oci_layer_blob_names_the_source_the_layer_and_its_digest(
        tmp_path: Path, kind: str, how: str) -> None:
    """A layer blob of an OCI layout (umoci's) or oci-archive (skopeo's) that is not its
    descriptor's was ``sha256:<hex>: digest mismatch``: the blob alone, not the source nor
    the layer's position."""
    manifest = json.loads((IMAGES / "oci-layout" / "blobs" / "sha256" / MANIFEST_DIGEST.split(":")[1]).read_bytes())
    layer = manifest["layers"][LAYER]
    member = "blobs/sha256/" + layer["digest"].split(":")[1]
    if kind == "oci":
        copy = tmp_path / "oci-layout"
        shutil.copytree(IMAGES / "oci-layout", copy)
        blob = copy / member
        damaged = _damage(blob.read_bytes(), how)
        blob.chmod(0o644)
        blob.write_bytes(damaged)
        source = f"oci:{copy}:latest"
    else:
        copy = tmp_path / "oci-archive.tar"
        damaged = _damaged_archive(IMAGES / "oci-archive.tar", copy, member, how)
        source = f"oci-archive:{copy}"
    error: type[Exception]
    if how == "corrupt":
        error, got = DigestMismatch, (f"digest mismatch: expected {layer['digest']}, "
                                      f"got sha256:{hashlib.sha256(damaged).hexdigest()}")
    else:
        error, got = SizeMismatch, f"size mismatch: expected {layer['size']} bytes, got {len(damaged)}"
    _refused_by_both(source, tmp_path, error, f"{source} (linux/amd64): layer {LAYER} ({layer['digest']}): {got}")
