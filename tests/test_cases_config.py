"""End to end: ``docker save`` archives (public cases 12, 36, 38) and config translation
(cases 40-50) through :func:`docker2aci.convert` and the command line.

The archives are written by ``tests/archivebuild.py`` (see its docstring for why in
code). Rules: ``../shared/reference/decisions.md`` ("Names", "Manifest", "Output on the
command line").
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import docker2aci
from docker2aci.errors import (Docker2ACIError, ImageNotFound, InvalidConfig, InvalidLayer, InvalidManifest,
                               SeveralImages, SourceError, UsageError)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import archivebuild as ab  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
ANN = "appc.io/docker/"
LAYERS = [ab.BASE_LAYER, ab.TOP_LAYER]
IMAGE_ID_RE = re.compile(r"^sha512-[0-9a-f]{128}$")
#: File name suffix of an amd64 image (none on an amd64 host: decisions.md "File name").
AMD64_SUFFIX = "" if platform.machine().lower() in ("x86_64", "amd64") else "-linux-amd64"

NGINX_CONFIG: dict[str, Any] = {
    "User": "nginx",
    "Env": ["PATH=/usr/sbin:/bin", "NGINX_OPTS=a&&b", "NOEQ"],
    "Entrypoint": ["/docker-entrypoint.sh"],
    "Cmd": ["nginx", "-g", "daemon off;"],
    "ExposedPorts": {"80/tcp": {}, "53/UDP": {}},
    "Volumes": {"/var/cache/nginx": {}},
    "WorkingDir": "/srv",
    "Labels": {"maintainer": "me", "a.b": "c"},
}


def nginx_image(repo_tags: list[str] | None = None, **extra: Any) -> ab.SavedImage:
    cfg = ab.image_config(LAYERS, created="2024-01-02T03:04:05Z", author="test author",
                          **{**NGINX_CONFIG, **extra})
    return ab.SavedImage(cfg, list(LAYERS), repo_tags if repo_tags is not None else ["busybox:latest"])


def small_image(cmd: str, repo_tags: list[str] | None, **extra: Any) -> ab.SavedImage:
    return ab.SavedImage(ab.image_config(LAYERS, Cmd=[cmd], **extra), list(LAYERS), repo_tags)


def convert(source: str | Path, out: Path, **options: Any) -> docker2aci.ConvertedACI:
    acis = docker2aci.convert(str(source), docker2aci.ConvertOptions(output_dir=str(out), **options))
    assert len(acis) == 1
    return acis[0]


def read_aci(path: str | Path) -> tuple[bytes, dict[str, bytes]]:
    """The ``manifest`` bytes and the regular files under ``rootfs/`` of an ACI."""
    files: dict[str, bytes] = {}
    manifest = b""
    with tarfile.open(path, "r:*") as tar:
        for m in tar:
            f = tar.extractfile(m) if m.isreg() else None
            if f is None:
                continue
            if m.name == "manifest":
                manifest = f.read()
            elif m.name.startswith("rootfs/"):
                files[m.name[len("rootfs/"):]] = f.read()
    return manifest, files


def annotations(manifest: dict[str, Any]) -> dict[str, str]:
    return {a["name"]: a["value"] for a in manifest["annotations"]}


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", "docker2aci", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def expected_nginx_manifest(config_hex: str, manifest_hash: str, name: str = "library/busybox",
                            original: str = "busybox:latest") -> dict[str, Any]:
    return {
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": name,
        "labels": [{"name": "arch", "value": "amd64"}, {"name": "os", "value": "linux"},
                   {"name": "version", "value": "latest"}],
        "app": {
            "exec": ["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"],
            "user": "nginx",
            "group": "102",
            "workingDirectory": "/srv",
            "environment": [{"name": "PATH", "value": "/usr/sbin:/bin"}, {"name": "NGINX_OPTS", "value": "a&&b"}],
            "mountPoints": [{"name": "volume-var-cache-nginx", "path": "/var/cache/nginx"}],
            "ports": [{"name": "53-udp", "protocol": "udp", "port": 53, "count": 1, "socketActivated": False},
                      {"name": "80-tcp", "protocol": "tcp", "port": 80, "count": 1, "socketActivated": False}],
            "userLabels": {"a.b": "c", "maintainer": "me"},
        },
        "annotations": [
            {"name": "authors", "value": "test author"},
            {"name": "created", "value": "2024-01-02T03:04:05Z"},
            {"name": ANN + "originalname", "value": original},
            {"name": ANN + "repository", "value": name},
            {"name": ANN + "imageid", "value": f"sha256:{config_hex}"},
            {"name": ANN + "manifesthash", "value": manifest_hash},
            {"name": ANN + "entrypoint", "value": '["/docker-entrypoint.sh"]'},
            {"name": ANN + "cmd", "value": '["nginx","-g","daemon off;"]'},
            {"name": ANN + "tag", "value": "latest"},
            {"name": ANN + "env-rejected", "value": '["NOEQ"]'},
        ],
    }


def _keys_in_order(doc: Any) -> Any:
    """The nested key order of a JSON document, for comparing orders, not only contents."""
    if isinstance(doc, dict):
        return [(k, _keys_in_order(v)) for k, v in doc.items()]
    if isinstance(doc, list):
        return [_keys_in_order(v) for v in doc]
    return None


# -- case 36: the four docker save layouts ------------------------------------------------------

def test_36b_dockerd_save_whole_manifest(tmp_path: Path) -> None:
    img = nginx_image()
    archive = ab.build_manifest_save(tmp_path / "save.tar", [img], layout="dockerd")
    aci = convert(archive, tmp_path / "out")
    assert aci.path == str(tmp_path / "out" / f"library-busybox-latest{AMD64_SUFFIX}.aci")
    raw, files = read_aci(aci.path)
    expected = expected_nginx_manifest(img.config_hex, f"sha256:{img.config_hex}")
    assert json.loads(raw) == expected
    assert _keys_in_order(json.loads(raw)) == _keys_in_order(expected)
    assert b'"value":"a\\u0026\\u0026b"' in raw and b'"value":"[\\"NOEQ\\"]"' in raw  # Go-escaped, compact
    assert aci.manifest == expected
    assert (aci.name, aci.labels) == ("library/busybox", {"arch": "amd64", "os": "linux", "version": "latest"})
    assert aci.manifest_digest == f"sha256:{img.config_hex}"
    assert files["etc/version"] == b"2\n" and files["bin/hello"] == b"hello\n" and files["app/data.txt"] == b"top\n"
    assert IMAGE_ID_RE.match(aci.image_id)


def test_36c_docker25_save_uses_manifest_json_and_index_digest(tmp_path: Path) -> None:
    img = nginx_image()
    archive = ab.build_manifest_save(tmp_path / "save.tar", [img], layout="docker25")
    manifest_hex = ab.sha256(ab.oci_manifest(img, img.layers, ab.OCI_LAYER))
    aci = convert(archive, tmp_path / "out")
    raw, files = read_aci(aci.path)
    expected = expected_nginx_manifest(img.config_hex, f"sha256:{manifest_hex}")
    assert json.loads(raw) == expected
    assert _keys_in_order(json.loads(raw)) == _keys_in_order(expected)
    assert aci.manifest_digest == f"sha256:{manifest_hex}"
    assert files["etc/version"] == b"2\n"


def test_36a_legacy_save_follows_parent_chain(tmp_path: Path) -> None:
    top_config = {"architecture": "amd64", "os": "linux", "config": {"User": "nginx", "Cmd": ["sh"]}}
    chain = ab.legacy_chain(LAYERS, top_config)
    archive = ab.build_legacy_save(tmp_path / "legacy.tar", chain, {"busybox": {"latest": chain[-1].layer_id}})
    aci = convert(archive, tmp_path / "out")
    assert os.path.basename(aci.path) == f"library-busybox-latest{AMD64_SUFFIX}.aci"
    _, files = read_aci(aci.path)
    assert files["etc/version"] == b"2\n", "layers applied top first"
    m = aci.manifest
    assert m["name"] == "library/busybox"
    assert m["app"] == {"exec": ["sh"], "user": "nginx", "group": "102"}
    ann = annotations(m)
    assert ann[ANN + "originalname"] == "busybox:latest"
    assert ann[ANN + "imageid"] == f"sha256:{chain[-1].layer_id}"
    assert ann[ANN + "tag"] == "latest"


def test_36a_legacy_save_unsquashed_names_layers_by_their_v1_ids(tmp_path: Path) -> None:
    """A legacy archive pins no layer by a digest: ``--nosquash`` named a lower layer, and
    the ``imageid``/``parentimageid`` annotations, by a SHA-256 of its member's path, which
    looked like a content digest and named nothing Docker knows (review). The reference
    (GenerateManifest) names them by the v1 layer IDs, which stand for a layer and its
    parents as a chain ID does."""
    third = ab.layer({"etc/version": b"3\n"})
    chain = ab.legacy_chain([*LAYERS, third], {"config": {"Cmd": ["sh"]}, "os": "linux", "architecture": "amd64"})
    archive = ab.build_legacy_save(tmp_path / "legacy.tar", chain, {"test/leg": {"latest": chain[-1].layer_id}})
    acis = docker2aci.convert(str(archive), docker2aci.ConvertOptions(output_dir=str(tmp_path / "out"),
                                                                      squash=False))
    ids = [layer.layer_id for layer in chain]  # base first
    top, middle, base = (aci.manifest for aci in acis)
    assert [base["name"], middle["name"], top["name"]] == [f"test/leg-{ids[0]}", f"test/leg-{ids[1]}", "test/leg"]
    assert [annotations(m)[ANN + "imageid"] for m in (base, middle, top)] == [f"sha256:{i}" for i in ids]
    assert ANN + "parentimageid" not in annotations(base)
    assert annotations(middle)[ANN + "parentimageid"] == f"sha256:{ids[0]}"
    assert annotations(top)[ANN + "parentimageid"] == f"sha256:{ids[1]}"
    assert top["dependencies"][0]["imageName"] == f"test/leg-{ids[1]}"
    assert read_aci(acis[0].path)[1]["etc/version"] == b"3\n"


def test_36a_legacy_with_three_layers_in_any_member_order(tmp_path: Path) -> None:
    third = ab.layer({"etc/version": b"3\n"})
    chain = ab.legacy_chain([*LAYERS, third], {"config": {"Cmd": ["sh"]}, "os": "linux", "architecture": "amd64"})
    archive = ab.build_legacy_save(tmp_path / "legacy.tar", list(reversed(chain)),
                                   {"test/app": {"v1": chain[-1].layer_id}})
    aci = convert(archive, tmp_path / "out")
    assert os.path.basename(aci.path) == f"test-app-v1{AMD64_SUFFIX}.aci"
    _, files = read_aci(aci.path)
    assert files["etc/version"] == b"3\n" and files["etc/passwd"] == ab.PASSWD


def test_36d_containerd_store_save_as_oci_archive(tmp_path: Path) -> None:
    img = nginx_image(repo_tags=[])
    saved = ab.build_containerd_save(tmp_path / "busybox.tar", img)
    for source in (f"oci-archive:{saved.path}", str(saved.path)):
        aci = convert(source, tmp_path / "out", platform="linux/amd64")
        raw, files = read_aci(aci.path)
        assert files["etc/version"] == b"2\n"
        m = json.loads(raw)
        # A bare ref name ("latest") names the repository after the archive (decisions.md "Names").
        assert (m["name"], aci.labels["version"]) == ("busybox", "latest")
        ann = annotations(m)
        assert ann[ANN + "imageid"] == f"sha256:{saved.config_hex}"
        assert ann[ANN + "manifesthash"] == f"sha256:{saved.manifest_hex}"
        assert ann[ANN + "manifestlisthash"] == f"sha256:{saved.index_hex}"
        assert m["app"]["exec"] == ["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]


def test_36d_containerd_save_missing_platform_blob_is_a_clear_error(tmp_path: Path) -> None:
    saved = ab.build_containerd_save(tmp_path / "busybox.tar", nginx_image(repo_tags=[]))
    with pytest.raises(ImageNotFound) as exc:
        convert(f"oci-archive:{saved.path}", tmp_path / "out", platform="linux/arm64")
    assert "not found" in str(exc.value)
    assert not list(tmp_path.rglob("*.aci"))


def test_36d_containerd_store_save_as_docker_archive(tmp_path: Path) -> None:
    saved = ab.build_containerd_save(tmp_path / "busybox.tar", nginx_image(repo_tags=[]))
    aci = convert(f"docker-archive:{saved.path}", tmp_path / "out", platform="linux/amd64")
    assert annotations(aci.manifest)[ANN + "manifesthash"] == f"sha256:{saved.manifest_hex}"


#: A platform that is not the host's, and the host's own, as OCI platform objects.
_HOST_IS_AMD64 = platform.machine().lower() in ("x86_64", "amd64")
FOREIGN = {"architecture": "arm64", "os": "linux", "variant": "v8"} if _HOST_IS_AMD64 else \
    {"architecture": "amd64", "os": "linux"}
HOST = {"architecture": "amd64", "os": "linux"} if _HOST_IS_AMD64 else None


def _docker25_containerd(tmp_path: Path, absent_host: bool) -> tuple[Path, ab.SavedImage]:
    img = small_image("sh", ["busybox:latest"], **FOREIGN)
    absent = [HOST] if absent_host and HOST else []
    return ab.build_manifest_save(tmp_path / "save.tar", [img], layout="docker25", containerd_index=True,
                                  absent_platforms=absent), img


def test_36c_docker25_containerd_index_host_platform(tmp_path: Path) -> None:
    """Docker 25+ on the containerd store: index.json entries are image indexes."""
    img = nginx_image()
    archive = ab.build_manifest_save(tmp_path / "save.tar", [img], layout="docker25", containerd_index=True,
                                     absent_platforms=[{"architecture": "arm64", "os": "linux", "variant": "v8"}])
    aci = convert(archive, tmp_path / "out", platform="linux/amd64")
    manifest_hex = ab.sha256(ab.oci_manifest(img, img.layers, ab.OCI_LAYER))
    assert aci.manifest_digest == f"sha256:{manifest_hex}"
    assert aci.name == "library/busybox"


def test_36c_docker25_containerd_foreign_platform_converts(tmp_path: Path) -> None:
    archive, img = _docker25_containerd(tmp_path, absent_host=False)
    aci = convert(archive, tmp_path / "out")
    assert aci.manifest_digest == f"sha256:{ab.sha256(ab.oci_manifest(img, img.layers, ab.OCI_LAYER))}"


def test_36c_docker25_containerd_foreign_platform_manifest_hash(tmp_path: Path) -> None:
    if HOST is None:
        pytest.skip("needs an amd64 host")
    archive, img = _docker25_containerd(tmp_path, absent_host=True)
    aci = convert(archive, tmp_path / "out")
    assert aci.manifest_digest == f"sha256:{ab.sha256(ab.oci_manifest(img, img.layers, ab.OCI_LAYER))}"


def test_36d_untagged_containerd_save_named_by_config_digest(tmp_path: Path) -> None:
    img = small_image("sh", [])
    saved = ab.build_containerd_save(tmp_path / "save.tar", img, name=None)
    aci = convert(f"oci-archive:{saved.path}", tmp_path / "out", platform="linux/amd64")
    assert aci.name == f"sha256-{img.config_hex[:12]}"
    assert os.path.basename(aci.path) == f"sha256-{img.config_hex[:12]}{AMD64_SUFFIX}.aci"


def test_36d_untagged_containerd_save_selected_by_config_digest(tmp_path: Path) -> None:
    img = small_image("sh", [])
    saved = ab.build_containerd_save(tmp_path / "save.tar", img, name=None)
    aci = convert(f"oci-archive:{saved.path}", tmp_path / "out", platform="linux/amd64",
                  image=f"sha256:{img.config_hex[:12]}")
    assert aci.name == f"sha256-{img.config_hex[:12]}"


def test_36_gzip_compressed_save_is_read(tmp_path: Path) -> None:
    """``docker save | gzip``: the archive itself compressed."""
    plain = ab.build_manifest_save(tmp_path / "save.tar", [nginx_image()])
    gz = tmp_path / "save.tar.gz"
    gz.write_bytes(ab.gzip_bytes(plain.read_bytes()))
    aci = convert(f"docker-archive:{gz}", tmp_path / "out")
    assert aci.name == "library/busybox"


@pytest.mark.parametrize("damaged, problem", [
    (ab.TOP_LAYER[:1100], "not a valid tar: unexpected end of data"),
    (ab.TOP_LAYER[:600] + bytes(1000), "a malformed tar header at byte 512, after entry 'app': the layer is damaged"),
], ids=["truncated-in-a-header", "corrupt-header"])
def test_36a_a_damaged_legacy_layer_names_the_archive_and_the_layer(tmp_path: Path, damaged: bytes,
                                                                    problem: str) -> None:
    """A legacy save has no diff IDs, so a damaged ``layer.tar`` is found by the squash:
    it was ``layer <id>/layer.tar: ...``, without the archive. (Hand-made: no tool here
    writes a pre-1.10 save.)"""
    top_config = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]}}
    chain = ab.legacy_chain([ab.BASE_LAYER, damaged], top_config)
    archive = ab.build_legacy_save(tmp_path / "legacy.tar", chain, {"busybox": {"latest": chain[-1].layer_id}})
    with pytest.raises(InvalidLayer) as info:
        convert(f"docker-archive:{archive}", tmp_path / "out", platform="linux/amd64")
    label = f"docker-archive:{archive} (linux/amd64): layer 1 ({chain[-1].layer_id}/layer.tar)"
    assert (info.value.layer, str(info.value)) == (label, f"{label}: {problem}")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


# -- case 38: legacy parent loops -----------------------------------------------------------

def _loop_archive(tmp_path: Path, kind: str) -> Path:
    a, b = ab.legacy_id("a"), ab.legacy_id("b")
    cfg = {"config": {"Cmd": ["sh"]}, "os": "linux", "architecture": "amd64"}
    if kind == "two":
        layers = [ab.LegacyLayer(a, b, ab.BASE_LAYER, cfg), ab.LegacyLayer(b, a, ab.TOP_LAYER)]
    elif kind == "self":
        layers = [ab.LegacyLayer(a, a, ab.BASE_LAYER, cfg)]
    else:  # a -> b -> c -> b
        c = ab.legacy_id("c")
        layers = [ab.LegacyLayer(a, b, ab.TOP_LAYER, cfg), ab.LegacyLayer(b, c, ab.BASE_LAYER),
                  ab.LegacyLayer(c, b, ab.BASE_LAYER)]
    return ab.build_legacy_save(tmp_path / f"loop-{kind}.tar", layers, {"loop": {"latest": a}})


def test_12_symlink_loop_inside_archive(tmp_path: Path) -> None:
    archive = _hostile_save(tmp_path, ["l1", "l1"], extra=[ab.Member("l1", symlink="l2"),
                                                          ab.Member("l2", symlink="l1")])
    with pytest.raises(SourceError, match="too many links"):
        convert(archive, tmp_path / "out")


@pytest.mark.parametrize("kind", ["two", "self", "tail"], ids=["a-b-a", "self-parent", "loop-below-top"])
def test_38_parent_loop_is_an_error(tmp_path: Path, kind: str) -> None:
    archive = _loop_archive(tmp_path, kind)
    with pytest.raises(InvalidManifest, match="dependency loop"):
        convert(archive, tmp_path / "out")


def test_38_parent_loop_cli_exit_1(tmp_path: Path) -> None:
    archive = _loop_archive(tmp_path, "two")
    r = cli(str(archive), cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "dependency loop" in r.stderr
    assert r.stdout == ""
    assert not list(tmp_path.glob("*.aci"))


@pytest.mark.parametrize("bad_id", ["../../../etc", "ABC", "a" * 63],
                         ids=["traversal", "upper-case", "short"])
def test_12_legacy_layer_ids_must_be_64_hex(tmp_path: Path, bad_id: str) -> None:
    archive = ab.write_archive(tmp_path / "bad.tar", [
        ab.Member("repositories", ab.canonical({"x": {"latest": bad_id}})),
        ab.Member(f"{bad_id}/json", b'{"config":{}}'),
        ab.Member(f"{bad_id}/layer.tar", ab.BASE_LAYER),
    ])
    with pytest.raises(InvalidManifest, match="invalid layer ID"):
        convert(archive, tmp_path / "out")


# -- case 12: archive-internal paths stay inside the archive -------------------------------------

def _hostile_save(tmp_path: Path, layers: list[str], config: str | None = None,
                  extra: Sequence[ab.Member] = ()) -> Path:
    img = small_image("sh", ["busybox:latest"])
    deep = tmp_path / "w" / "x" / "y" / "z"
    deep.mkdir(parents=True)
    # A valid layer where "../../../../etc/passwd" would land if resolved on the host
    # relative to the archive: a converter that read it would succeed.
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_bytes(ab.BASE_LAYER)
    entry = {"Config": config or f"{img.config_hex}.json", "RepoTags": ["busybox:latest"], "Layers": layers}
    members = [ab.Member(f"{img.config_hex}.json", img.config_bytes),
               ab.Member("manifest.json", ab.canonical([entry])), *extra]
    return ab.write_archive(deep / "evil.tar", members)


HOSTILE = [
    pytest.param(["../../../../etc/passwd", "../../../../etc/passwd"], None, [], "unsafe", id="dotdot-layers"),
    pytest.param(["/etc/passwd", "/etc/passwd"], None, [], "unsafe", id="absolute-layers"),
    pytest.param(["l/layer.tar", "l/layer.tar"], None,
                 [ab.Member("l/layer.tar", symlink="../../../../etc/passwd")], "outside", id="escaping-symlink"),
    pytest.param(["l/layer.tar", "l/layer.tar"], None,
                 [ab.Member("l/layer.tar", symlink="/etc/passwd")], "not found", id="absolute-symlink-stays-inside"),
    pytest.param([], "../../../../etc/passwd", [], "unsafe", id="dotdot-config"),
]


@pytest.mark.parametrize("layers, config, extra, message", HOSTILE)
def test_12_manifest_json_paths_resolved_inside_archive(tmp_path: Path, layers: list[str], config: str | None,
                                                        extra: list[ab.Member], message: str) -> None:
    archive = _hostile_save(tmp_path, layers, config, extra)
    out = tmp_path / "out"
    with pytest.raises(SourceError) as exc:
        convert(archive, out)
    assert message in str(exc.value)
    assert not out.exists() or not list(out.iterdir())


def test_12_dotdot_layer_cli_exit_1(tmp_path: Path) -> None:
    archive = _hostile_save(tmp_path, ["../../../../etc/passwd", "../../../../etc/passwd"])
    r = cli(str(archive), cwd=tmp_path)
    assert r.returncode == 1
    assert "../../../../etc/passwd" in r.stderr and "unsafe" in r.stderr
    assert r.stdout == "" and not list(tmp_path.rglob("*.aci"))


# -- several images, --image, naming from RepoTags --------------------------------------------

@pytest.fixture
def multi_archive(tmp_path: Path) -> tuple[Path, dict[str, ab.SavedImage]]:
    images = {
        "busybox": small_image("busybox-cmd", ["busybox:latest", "busybox:1.36"]),
        "alpine": small_image("alpine-cmd", ["127.0.0.1:5000/test/alpine:3"]),
        "untagged": small_image("untagged-cmd", None),
    }
    return ab.build_manifest_save(tmp_path / "multi.tar", list(images.values())), images


def test_several_images_need_image(multi_archive: tuple[Path, dict[str, ab.SavedImage]], tmp_path: Path) -> None:
    archive, images = multi_archive
    with pytest.raises(SeveralImages) as exc:
        convert(archive, tmp_path / "out")
    assert exc.value.names == ["busybox:latest", "busybox:1.36", "127.0.0.1:5000/test/alpine:3",
                               f"sha256:{images['untagged'].config_hex}"]


def test_several_images_cli_lists_names(multi_archive: tuple[Path, dict[str, ab.SavedImage]], tmp_path: Path) -> None:
    archive, _ = multi_archive
    r = cli(str(archive), cwd=tmp_path)
    assert r.returncode == 1
    assert "several images found, use option --image with one of:" in r.stderr
    for name in ("busybox:latest", "busybox:1.36", "127.0.0.1:5000/test/alpine:3"):
        assert f"\n{name}\n" in r.stderr
    assert r.stdout == ""


SELECTORS = [
    pytest.param("busybox", "busybox-cmd", "library/busybox", "latest", "busybox:latest", id="short-name"),
    pytest.param("busybox:1.36", "busybox-cmd", "library/busybox", "1.36", "busybox:1.36", id="name-tag"),
    pytest.param("library/busybox:latest", "busybox-cmd", "library/busybox", "latest", "busybox:latest",
                 id="library-name-tag"),
    pytest.param("docker.io/library/busybox:1.36", "busybox-cmd", "library/busybox", "1.36", "busybox:1.36",
                 id="docker-io-name-tag"),
    pytest.param("test/alpine:3", "alpine-cmd", "test/alpine", "3", "127.0.0.1:5000/test/alpine:3",
                 id="registry-host-ignored"),
    pytest.param("127.0.0.1:5000/test/alpine:3", "alpine-cmd", "test/alpine", "3",
                 "127.0.0.1:5000/test/alpine:3", id="full-reference"),
]


@pytest.mark.parametrize("selector, cmd, name, tag, original", SELECTORS)
def test_image_selection(multi_archive: tuple[Path, dict[str, ab.SavedImage]], tmp_path: Path,
                         selector: str, cmd: str, name: str, tag: str, original: str) -> None:
    archive, _ = multi_archive
    aci = convert(archive, tmp_path / "out", image=selector)
    assert aci.manifest["app"]["exec"] == [cmd]
    assert aci.name == name and aci.labels["version"] == tag
    assert os.path.basename(aci.path) == f"{name.replace('/', '-')}-{tag}{AMD64_SUFFIX}.aci"
    assert annotations(aci.manifest)[ANN + "originalname"] == original


@pytest.mark.parametrize("length", [12, 20, 64])
def test_untagged_selected_by_config_digest(multi_archive: tuple[Path, dict[str, ab.SavedImage]],
                                            tmp_path: Path, length: int) -> None:
    archive, images = multi_archive
    hex_ = images["untagged"].config_hex
    aci = convert(archive, tmp_path / "out", image=f"sha256:{hex_[:length]}")
    assert aci.manifest["app"]["exec"] == ["untagged-cmd"]
    assert aci.name == f"sha256-{hex_[:12]}"
    assert os.path.basename(aci.path) == f"sha256-{hex_[:12]}{AMD64_SUFFIX}.aci"
    assert "version" not in aci.labels
    ann = annotations(aci.manifest)
    assert ANN + "tag" not in ann and ANN + "originalname" not in ann
    assert ann[ANN + "imageid"] == f"sha256:{hex_}"


def test_tagged_selected_by_config_digest(multi_archive: tuple[Path, dict[str, ab.SavedImage]],
                                          tmp_path: Path) -> None:
    archive, images = multi_archive
    aci = convert(archive, tmp_path / "out", image=f"sha256:{images['alpine'].config_hex[:12]}")
    assert aci.name == "test/alpine"


@pytest.mark.parametrize("selector", ["nosuch", "busybox:2", "sha256:0123456789a", "other/busybox"])
def test_unknown_selector(multi_archive: tuple[Path, dict[str, ab.SavedImage]], tmp_path: Path,
                          selector: str) -> None:
    archive, _ = multi_archive
    with pytest.raises(ImageNotFound) as exc:
        convert(archive, tmp_path / "out", image=selector)
    assert "busybox:latest" in str(exc.value) and "127.0.0.1:5000/test/alpine:3" in str(exc.value)


def test_selector_embedded_in_source(multi_archive: tuple[Path, dict[str, ab.SavedImage]], tmp_path: Path) -> None:
    archive, _ = multi_archive
    aci = convert(f"docker-archive:{archive}:busybox:1.36", tmp_path / "out")
    assert (aci.name, aci.labels["version"]) == ("library/busybox", "1.36")


def test_selector_contradicting_embedded_one_is_usage_error(multi_archive: tuple[Path, dict[str, ab.SavedImage]],
                                                            tmp_path: Path) -> None:
    archive, _ = multi_archive
    with pytest.raises(UsageError):
        convert(f"docker-archive:{archive}:busybox:1.36", tmp_path / "out", image="busybox:latest")
    r = cli(f"docker-archive:{archive}:busybox:1.36", "--image", "busybox:latest", cwd=tmp_path)
    assert r.returncode == 2


REPO_TAGS = [
    pytest.param("busybox:latest", "library/busybox", "library-busybox-latest", "latest", id="short"),
    pytest.param("127.0.0.1:5000/test/busybox:latest", "test/busybox", "test-busybox-latest", "latest",
                 id="podman-registry-host"),
    pytest.param("docker.io/test/busybox:latest", "test/busybox", "test-busybox-latest", "latest", id="skopeo-docker-io"),
    pytest.param("localhost/app:v1.0_rc", "app", "app-v1.0_rc", "v1.0_rc", id="localhost"),
    pytest.param("quay.io:443/org/tool:2", "org/tool", "org-tool-2", "2", id="host-with-port"),
]


@pytest.mark.parametrize("repo_tag, name, file_stem, tag", REPO_TAGS)
def test_name_from_repo_tags(tmp_path: Path, repo_tag: str, name: str, file_stem: str, tag: str) -> None:
    archive = ab.build_manifest_save(tmp_path / "one.tar", [small_image("sh", [repo_tag])])
    aci = convert(archive, tmp_path / "out")
    assert aci.name == name
    assert os.path.basename(aci.path) == f"{file_stem}{AMD64_SUFFIX}.aci"
    ann = annotations(aci.manifest)
    assert ann[ANN + "originalname"] == repo_tag
    assert ann[ANN + "repository"] == name
    assert ann[ANN + "tag"] == tag == aci.labels["version"]
    assert ANN + "registryurl" not in ann


def _umoci_sh_layout(layout: Path, *then: list[str]) -> Path:
    """An OCI layout made by umoci at ``layout``: the image ``latest`` of one layer (the
    base layer of the archive builder), linux/amd64, Cmd ``sh``; then the umoci commands
    ``then`` (``{layout}`` in a word is the layout's path)."""
    layer = layout.parent / f"{layout.name}-layer.tar"
    layer.write_bytes(ab.BASE_LAYER)
    for argv in (["init", "--layout", str(layout)], ["new", "--image", "{layout}:latest"],
                 ["raw", "add-layer", "--image", "{layout}:latest", str(layer)],
                 ["config", "--image", "{layout}:latest", "--os", "linux", "--architecture", "amd64",
                  "--config.cmd", "sh"], *then):
        subprocess.run(["umoci", *(word.replace("{layout}", str(layout)) for word in argv)], check=True,
                       capture_output=True)
    return layout


@pytest.mark.tools
@pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci is not installed")
@pytest.mark.parametrize("ref_name, name, file_stem, tag", [
    pytest.param("Team/App:v1.0_rc", "team/app", "team-app-v1.0_rc", "v1.0_rc", id="48-upper-case"),
    pytest.param("localhost:5000/Team/App:V2", "team/app", "team-app-V2", "V2", id="48-host-and-upper-case-tag"),
])
def test_48_upper_case_oci_ref_name(tmp_path: Path, ref_name: str, name: str, file_stem: str, tag: str) -> None:
    """image-layout.md lets a ref name hold upper case and ``umoci tag`` writes it; the
    layout was refused ("repository name must be lowercase"). Case 48: the name is made
    an AC identifier, the tag is the version, the ref name stays in ``originalname``."""
    layout = _umoci_sh_layout(tmp_path / "layout", ["tag", "--image", "{layout}:latest", ref_name],
                              ["rm", "--image", "{layout}:latest"])
    for source in (f"oci:{layout}", f"oci:{layout}:{ref_name}"):
        aci = convert(source, tmp_path / "out")
        assert aci.name == name
        assert os.path.basename(aci.path) == f"{file_stem}{AMD64_SUFFIX}.aci"
        ann = annotations(aci.manifest)
        assert (ann[ANN + "originalname"], ann[ANN + "repository"]) == (ref_name, name)
        assert ann[ANN + "tag"] == tag == aci.labels["version"]


@pytest.mark.tools
@pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci is not installed")
def test_an_oci_tag_that_is_the_directory_s_name_is_that_tag(tmp_path: Path) -> None:
    """In a layout directory ``dup`` tagged ``latest`` and ``dup`` (umoci), ``oci:dup:dup``
    converted the ``latest`` image: the tag was read as the name ``dup``, whose default tag
    is ``latest`` (new-user review). A ref name written as given wins."""
    layout = _umoci_sh_layout(tmp_path / "dup",
                              ["config", "--image", "{layout}:latest", "--tag", "dup", "--config.cmd", "true"])
    tagged = convert(f"oci:{layout}:dup", tmp_path / "out")
    assert (tagged.labels["version"], tagged.manifest["app"]["exec"]) == ("dup", ["true"])
    latest = convert(f"oci:{layout}:latest", tmp_path / "out")
    assert (latest.labels["version"], latest.manifest["app"]["exec"]) == ("latest", ["sh"])


@pytest.mark.tools
@pytest.mark.skipif(shutil.which("umoci") is None or shutil.which("actool") is None,
                    reason="needs umoci and actool")
@pytest.mark.parametrize("workdir, expected", [("./app", "/app"), (".", "/")], ids=["dot-slash-app", "dot"])
def test_umoci_relative_workdir_bare_port_protocol_and_empty_entrypoint(tmp_path: Path, workdir: str,
                                                                        expected: str) -> None:
    """``umoci config`` writes these fields as given. WorkingDir ``./app`` was ``/./app``:
    Docker runs it from / and cleans it (moby's SetupWorkingDirectory). ExposedPorts
    ``80/`` failed the conversion: go-connections' ``nat.SplitProtoPort``, which Docker
    reads the keys with, takes it for 80/tcp. Entrypoint ``[""]`` lost the ``entrypoint``
    annotation, which the reference writes (``[""]``); the runner reads it as Docker's
    reset, so ``run -- ARGS`` runs ARGS."""
    from runner.spec import build_process_spec

    layout = _umoci_sh_layout(tmp_path / "layout", ["config", "--image", "{layout}:latest", "--config.workingdir",
                                                    workdir, "--config.exposedports", "80/",
                                                    "--config.entrypoint", ""])
    aci = convert(f"oci:{layout}:latest", tmp_path / "out")
    app = aci.manifest["app"]
    assert (app["exec"], app["workingDirectory"]) == (["sh"], expected)
    assert app["ports"] == [{"name": "80-tcp", "protocol": "tcp", "port": 80, "count": 1, "socketActivated": False}]
    ann = annotations(aci.manifest)
    assert (ann[ANN + "entrypoint"], ann[ANN + "cmd"]) == ('[""]', '["sh"]')
    assert build_process_spec(aci.manifest, ["/bin/echo", "hi"]).argv == ("/bin/echo", "hi")
    assert build_process_spec(aci.manifest).argv == ("sh",)
    r = subprocess.run(["actool", "validate", aci.path], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.tools
@pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci is not installed")
def test_the_tag_of_oci_dir_tag_is_a_ref_name_and_image_may_name_the_directory(tmp_path: Path) -> None:
    """README: ``oci:DIR[:TAG]``, TAG a ref name (skopeo: "no descriptor found for reference");
    ``--image NAME[:TAG]`` names an image as decisions.md names it (a bare-tag ref's
    repository is the directory's name; the tag defaults to ``latest``, as Docker's and
    the reference tool's). ``oci:app:app``, in a layout ``app`` tagged ``latest`` and
    ``v1`` by umoci, converted the ``latest`` image as the name ``app`` (sources review)."""
    layout, layer = tmp_path / "app", tmp_path / "layer.tar"
    layer.write_bytes(ab.BASE_LAYER)
    for argv in (["init", "--layout", layout], ["new", "--image", f"{layout}:latest"],
                 ["raw", "add-layer", "--image", f"{layout}:latest", layer],
                 ["config", "--image", f"{layout}:latest", "--os", "linux", "--architecture", "amd64",
                  "--config.cmd", "sh"],
                 ["config", "--image", f"{layout}:latest", "--tag", "v1", "--config.cmd", "true"]):
        subprocess.run(["umoci", *map(str, argv)], check=True, capture_output=True)
    for source in (f"oci:{layout}:app", f"oci:{layout}:app:latest"):
        with pytest.raises(ImageNotFound) as info:
            convert(source, tmp_path / "out")
        assert str(info.value) == (f"{source}: no ref name {source.split(':', 2)[2]!r} in index.json; "
                                   "present: latest, v1")
    with pytest.raises(ImageNotFound) as info:
        convert(f"oci:{layout}", tmp_path / "out", image="other")
    assert str(info.value) == f"oci:{layout}: no image 'other'; present: app:latest, app:v1"
    for source, image, version, cmd in [(f"oci:{layout}:v1", None, "v1", ["true"]),
                                        (f"oci:{layout}:latest", None, "latest", ["sh"]),
                                        (f"oci:{layout}", "app", "latest", ["sh"]),
                                        (f"oci:{layout}", "app:v1", "v1", ["true"]),
                                        (f"oci:{layout}", "v1", "v1", ["true"])]:
        aci = convert(source, tmp_path / "out", image=image)
        assert (aci.labels["version"], aci.manifest["app"]["exec"]) == (version, cmd), (source, image)


def test_one_image_with_two_tags_prefers_latest(tmp_path: Path) -> None:
    archive = ab.build_manifest_save(tmp_path / "one.tar", [small_image("sh", ["app:1", "app:latest"])])
    aci = convert(archive, tmp_path / "out")
    assert (aci.name, aci.labels["version"]) == ("library/app", "latest")


# -- config translation end to end (cases 47, 50) -------------------------------------------------

@pytest.mark.parametrize("arch, variant, label, suffix", [
    pytest.param("386", None, "i386", "-linux-i386", id="386"),
    pytest.param("arm64", "v8", "aarch64", "-linux-aarch64", id="arm64-v8"),
    pytest.param("arm", "v6", "armv6l", "-linux-armv6l", id="arm-v6"),
    pytest.param("arm", None, "armv7l", "-linux-armv7l", id="arm-no-variant"),
])
def test_47_arch_label_and_file_suffix(tmp_path: Path, arch: str, variant: str | None, label: str,
                                       suffix: str) -> None:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("the file name suffix is asserted for an amd64 host")
    extra = {"architecture": arch, **({"variant": variant} if variant else {})}
    archive = ab.build_manifest_save(tmp_path / "one.tar", [small_image("sh", ["busybox:latest"], **extra)])
    aci = convert(archive, tmp_path / "out")
    assert aci.labels == {"arch": label, "os": "linux", "version": "latest"}
    assert os.path.basename(aci.path) == f"library-busybox-latest{suffix}.aci"


def test_47_unknown_arch_is_an_error_naming_it(tmp_path: Path) -> None:
    archive = ab.build_manifest_save(tmp_path / "one.tar",
                                     [small_image("sh", ["busybox:latest"], architecture="riscv64")])
    with pytest.raises(InvalidConfig, match="linux/riscv64"):
        convert(archive, tmp_path / "out")
    r = cli(str(archive), cwd=tmp_path)
    assert r.returncode == 1 and "linux/riscv64" in r.stderr
    assert not list(tmp_path.glob("*.aci"))


def test_47_no_arch_in_config_takes_requested_platform(tmp_path: Path) -> None:
    img = small_image("sh", ["busybox:latest"])
    del img.config["architecture"], img.config["os"]
    archive = ab.build_manifest_save(tmp_path / "one.tar", [img])
    aci = convert(archive, tmp_path / "out", platform="linux/arm/v6")
    assert aci.labels["arch"] == "armv6l"
    aci = convert(archive, tmp_path / "out2")
    assert any("os/architecture" in w for w in aci.warnings)


def test_50_relative_workdir_and_bad_created_warned(tmp_path: Path) -> None:
    img = small_image("sh", ["busybox:latest"], WorkingDir="foobar", created="last tuesday")
    archive = ab.build_manifest_save(tmp_path / "one.tar", [img])
    aci = convert(archive, tmp_path / "out")
    assert aci.manifest["app"]["workingDirectory"] == "/foobar"
    assert "created" not in annotations(aci.manifest)
    assert any("'foobar'" in w for w in aci.warnings) and any("'last tuesday'" in w for w in aci.warnings)
    r = cli(str(archive), "--output-dir", "cli", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "'foobar'" in r.stderr and "'last tuesday'" in r.stderr


@pytest.mark.skipif(shutil.which("actool") is None, reason="needs actool (appc)")
@pytest.mark.parametrize("created", ["2024-01-02t03:04:05z", "2024-01-02T03:04:05z", "\uff12024-01-02T03:04:05Z"])
def test_created_go_cannot_parse_is_dropped_and_actool_accepts(tmp_path: Path, created: str) -> None:
    """RFC 3339 allows ``t`` and ``z``, Go's ``time.Parse`` (appc's ``types.Date``) does not:
    the annotation was kept and ``actool validate`` refused the ACI (``bad Date``)."""
    archive = ab.build_manifest_save(tmp_path / "one.tar", [small_image("sh", ["busybox:latest"], created=created)])
    aci = convert(archive, tmp_path / "out")
    assert "created" not in annotations(aci.manifest)
    assert any(repr(created) in w for w in aci.warnings)
    r = subprocess.run(["actool", "validate", aci.path], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr


def test_47_freebsd_arm_is_appc_freebsd_arm(tmp_path: Path) -> None:
    """appc's table has freebsd/arm (its flavours arm/5, arm/6, arm/7 all map to ``arm``);
    a freebsd/arm image was refused ("platform freebsd/arm/v7 has no appc os/arch
    equivalent": bare arm is normalised to v7, which only linux had)."""
    for variant, suffix in ((None, "-freebsd-arm"), ("v7", "-freebsd-arm"), ("v6", "-freebsd-arm-v6")):
        extra = {"os": "freebsd", "architecture": "arm", **({"variant": variant} if variant else {})}
        archive = ab.build_manifest_save(tmp_path / "one.tar", [small_image("sh", ["busybox:latest"], **extra)])
        aci = convert(archive, tmp_path / f"out-{variant}")
        assert aci.labels == {"arch": "arm", "os": "freebsd", "version": "latest"}
        assert os.path.basename(aci.path) == f"library-busybox-latest{suffix}.aci"


ROOT_GID_10 = b"root:x:0:10:root:/root:/bin/sh\n7:x:9:9::/:/bin/sh\nseven:x:7:70::/:/bin/sh\n"


@pytest.mark.parametrize("user, expected", [
    pytest.param("", ("0", "0"), id="empty-is-0-0-whatever-roots-gid"),
    pytest.param("7", ("7", "70"), id="numeric-is-a-uid-not-a-user-named-7"),
    pytest.param("seven", ("seven", "70"), id="name"),
])
def test_43_user_group_from_passwd(tmp_path: Path, user: str, expected: tuple[str, str]) -> None:
    """decisions.md "user/group": ``USER`` empty → ``0``/``0`` (it gave root's passwd gid,
    10); ``u`` alone → the primary gid of ``u``, a numeric ``u`` being a uid as runc reads
    it (it gave the gid of a user *named* ``7``)."""
    layers = [ab.layer({"etc/passwd": ROOT_GID_10, "bin/hello": b"hello\n"})]
    img = ab.SavedImage(ab.image_config(layers, Cmd=["sh"], User=user), layers, ["busybox:latest"])
    aci = convert(ab.build_manifest_save(tmp_path / "one.tar", [img]), tmp_path / "out")
    assert (aci.manifest["app"]["user"], aci.manifest["app"]["group"]) == expected


def test_volume_suffix_never_takes_another_paths_own_name(tmp_path: Path) -> None:
    """``/a!`` sorts before ``/a-1``; its suffix took ``volume-a-1``, so ``/a-1`` became
    ``volume-a-1-1`` and a user mounting ``volume-a-1`` got the wrong directory."""
    img = small_image("sh", ["busybox:latest"], Volumes={"/a": {}, "/a!": {}, "/a-1": {}})
    aci = convert(ab.build_manifest_save(tmp_path / "one.tar", [img]), tmp_path / "out")
    assert aci.manifest["app"]["mountPoints"] == [
        {"name": "volume-a", "path": "/a"}, {"name": "volume-a-1", "path": "/a-1"},
        {"name": "volume-a-2", "path": "/a!"}]


def test_bad_port_is_a_conversion_error(tmp_path: Path) -> None:
    img = small_image("sh", ["busybox:latest"], ExposedPorts={"70000/tcp": {}})
    archive = ab.build_manifest_save(tmp_path / "one.tar", [img])
    with pytest.raises(InvalidConfig, match="config.ExposedPorts"):
        convert(archive, tmp_path / "out")


def test_52_same_archive_twice_same_bytes(tmp_path: Path) -> None:
    archive = ab.build_manifest_save(tmp_path / "save.tar", [nginx_image()])
    first = convert(archive, tmp_path / "one")
    second = convert(archive, tmp_path / "two")
    assert first.image_id == second.image_id
    assert Path(first.path).read_bytes() == Path(second.path).read_bytes()


# -- the command line ------------------------------------------------------------------------------

@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return ab.build_manifest_save(tmp_path / "save.tar", [nginx_image(["busybox:latest", "busybox:1"])])


def _aci_name(tag: str = "latest") -> str:
    return f"library-busybox-{tag}{AMD64_SUFFIX}.aci"


@pytest.mark.parametrize("args", [
    pytest.param(["-compression=none", "-image", "busybox:1", "save.tar"], id="one-dash-before"),
    pytest.param(["save.tar", "-compression=none", "-image=busybox:1"], id="one-dash-after"),
    pytest.param(["--compression", "none", "save.tar", "--image", "busybox:1"], id="two-dashes-mixed"),
    pytest.param(["-compression", "none", "--image=busybox:1", "save.tar"], id="one-and-two-dashes"),
])
def test_cli_flag_spellings(saved: Path, tmp_path: Path, args: list[str]) -> None:
    r = cli(*args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / _aci_name("1")
    data = out.read_bytes()
    assert tarfile.TarInfo.frombuf(data[:512], "utf-8", "surrogateescape").name == "manifest"
    image_id = "sha512-" + hashlib.sha512(data).hexdigest()
    assert r.stdout.endswith(f"\nGenerated ACI(s):\n{_aci_name('1')}\n\nImage ID(s):\n{image_id} {_aci_name('1')}\n")
    assert oct(out.stat().st_mode & 0o777) == "0o644"


VOLUMES_AND_PORTS = (
    "\nConverted volumes:\n"
    '\tname: "volume-var-cache-nginx", path: "/var/cache/nginx", readOnly: false\n'
    "\nConverted ports:\n"
    '\tname: "53-udp", protocol: "udp", port: 53, count: 1, socketActivated: false\n'
    '\tname: "80-tcp", protocol: "tcp", port: 80, count: 1, socketActivated: false\n'
)
"""What the text output says of the saved busybox image's volumes and ports."""


def test_cli_text_output_exact(saved: Path, tmp_path: Path) -> None:
    r = cli("--image", "busybox:latest", "--output-dir", "out", "save.tar", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    path = f"out/{_aci_name()}"
    data = (tmp_path / path).read_bytes()
    assert data[:2] == b"\x1f\x8b"  # gzip by default
    image_id = docker2aci_image_id(tmp_path / path)
    assert r.stdout == (
        VOLUMES_AND_PORTS
        + "\nGenerated ACI(s):\n"
        f"{path}\n"
        "\nImage ID(s):\n"
        f"{image_id} {path}\n"
    )


def test_cli_text_output_quotes_volume_paths_as_the_reference(tmp_path: Path) -> None:
    """The reference prints a path with Go's ``%q``: a ``"`` or ``\\`` in it is escaped, so
    ``/c\\d`` cannot pass for a path holding a tab, nor ``/a"b`` end the field early (they
    were printed bare between quotes)."""
    volumes = {'/a"b': {}, "/c\\d": {}, "/t\tab": {}, "/x\u00a0y": {}}
    img = small_image("sh", ["busybox:latest"], Volumes=volumes)
    ab.build_manifest_save(tmp_path / "save.tar", [img])
    r = cli("--output-dir", "out", "save.tar", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(
        "\nConverted volumes:\n"
        '\tname: "volume-a-b", path: "/a\\"b", readOnly: false\n'
        '\tname: "volume-c-d", path: "/c\\\\d", readOnly: false\n'
        '\tname: "volume-t-ab", path: "/t\\tab", readOnly: false\n'
        '\tname: "volume-x-y", path: "/x\\u00a0y", readOnly: false\n'
        "\nGenerated ACI(s):\n"
    )


def test_cli_text_output_of_nosquash_lists_the_volumes_and_ports(saved: Path, tmp_path: Path) -> None:
    """Only the squashed output listed them (a new user's find): the app is the top
    layer's ACI's, the first written."""
    r = cli("--nosquash", "--image", "busybox:latest", "--output-dir", "out", "save.tar", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(VOLUMES_AND_PORTS + "\nGenerated ACI(s):\n")


def test_cli_text_output_of_nosquash_lists_the_base_first_and_the_top_last(saved: Path, tmp_path: Path) -> None:
    """The reference lists the layer ACIs in the order it writes them, base first, the
    top (the image with the app, ``-0``) last: a script that runs the last path it is
    given runs the image, not its base layer (it got the base layer)."""
    r = cli("--nosquash", "--image", "busybox:latest", "--output-dir", "out", "save.tar", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    count = len(list((tmp_path / "out").glob("*.aci")))
    paths = [f"out/library-busybox-latest-linux-amd64-{i}.aci" for i in reversed(range(count))]
    ids = [docker2aci_image_id(tmp_path / p) for p in paths]
    assert count > 1
    assert r.stdout.endswith("\nGenerated ACI(s):\n" + "".join(f"{p}\n" for p in paths)
                             + "\nImage ID(s):\n" + "".join(f"{i} {p}\n" for i, p in zip(ids, paths)))


def docker2aci_image_id(aci: Path) -> str:
    """``sha512-`` + hex of the uncompressed ACI tar (decisions.md "Image ID")."""
    return "sha512-" + hashlib.sha512(gzip.decompress(aci.read_bytes())).hexdigest()


def test_cli_json_lines(saved: Path, tmp_path: Path) -> None:
    r = cli("--json", "save.tar", "-image", "busybox", "-output-dir", "out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1
    obj = json.loads(lines[0])
    assert list(obj) == ["path", "image_id", "name", "labels", "manifest_digest"]
    assert obj["path"] == str(tmp_path / "out" / _aci_name())
    assert os.path.isabs(obj["path"]) and os.path.exists(obj["path"])
    assert obj["image_id"] == docker2aci_image_id(Path(obj["path"]))
    assert obj["name"] == "library/busybox"
    assert obj["labels"] == {"arch": "amd64", "os": "linux", "version": "latest"}
    config_hex = nginx_image().config_hex
    assert obj["manifest_digest"] == f"sha256:{config_hex}"


@pytest.mark.parametrize("args", [
    pytest.param([], id="no-image"),
    pytest.param(["--bogus", "save.tar"], id="unknown-long-flag"),
    pytest.param(["-bogus", "save.tar"], id="unknown-short-flag"),
    pytest.param(["-compression=zip", "save.tar"], id="bad-compression"),
    pytest.param(["save.tar", "other.tar"], id="two-images"),
    pytest.param(["--image"], id="flag-without-value"),
])
def test_cli_usage_errors_exit_2(saved: Path, tmp_path: Path, args: list[str]) -> None:
    r = cli(*args, cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Usage:" in r.stderr and r.stdout == ""
    assert not list(tmp_path.glob("*.aci"))


@pytest.mark.parametrize("args, message", [
    pytest.param(["missing.tar"], "no such file", id="missing-file"),
    pytest.param(["--image", "nosuch", "save.tar"], "nosuch", id="unknown-image"),
])
def test_cli_conversion_errors_exit_1(saved: Path, tmp_path: Path, args: list[str], message: str) -> None:
    r = cli(*args, cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("Error: conversion error:") and message in r.stderr
    assert r.stdout == ""


def test_api_errors_share_one_root(saved: Path, tmp_path: Path) -> None:
    with pytest.raises(Docker2ACIError):
        convert(tmp_path / "missing.tar", tmp_path / "out")
