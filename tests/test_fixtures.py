"""The fixtures really contain what they claim (checked with the oracle), and the oracle works.

These tests protect ``fixtures/builders.py`` and ``tests/oracle.py``: every
other test trusts them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from oracle import DEFAULT_EXCLUDE, Entry, aci_rootfs, diff_listings, hardlink_groups, tree_listing, umoci_rootfs

from fixtures import builders

pytestmark = [pytest.mark.tools, pytest.mark.root]

REPO_ROOT = Path(__file__).resolve().parents[1]
TAG = builders.DEFAULT_TAG
GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


# ---------------------------------------------------------------- helpers


def _layers(layout: Path, tag: str = TAG) -> list[tarfile.TarFile]:
    manifest, _ = builders.layout_manifest(layout, tag)
    out = []
    for layer in manifest["layers"]:
        data = (layout / "blobs" / "sha256" / layer["digest"].split(":", 1)[1]).read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        out.append(tarfile.open(fileobj=io.BytesIO(data)))
    return out


def _members(tar: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    return {m.name.rstrip("/").removeprefix("./"): m for m in tar.getmembers()}


def _children(listing: dict[str, Entry], directory: str) -> set[str]:
    prefix = directory + "/"
    return {p[len(prefix):] for p in listing if p.startswith(prefix) and "/" not in p[len(prefix):]}


def _to_oci_listing(src: str, dest: Path) -> dict[str, Entry]:
    """Copy any skopeo source to a gzip OCI layout, unpack it with umoci, list it."""
    dest.mkdir(parents=True, exist_ok=True)
    layout = dest / "layout"
    builders.skopeo_copy(src, f"oci:{layout}:{TAG}", "--dest-compress-format", "gzip")
    return tree_listing(umoci_rootfs(layout, TAG, dest / "bundle"))


@pytest.fixture(scope="module")
def busybox_rootfs(busybox_layout: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """umoci's unpacking of the full busybox image."""
    return umoci_rootfs(busybox_layout, TAG, tmp_path_factory.mktemp("oracle") / "bundle")


@pytest.fixture(scope="module")
def busybox_listing(busybox_rootfs: Path) -> dict[str, Entry]:
    """The oracle listing of :func:`busybox_rootfs`."""
    return tree_listing(busybox_rootfs)


# ---------------------------------------------------------------- the busybox layout


def test_layout_has_eight_gzip_layers_and_the_config(busybox_layout: Path) -> None:
    manifest, config_bytes = builders.layout_manifest(busybox_layout, TAG)
    config = json.loads(config_bytes)
    assert [layer["mediaType"] for layer in manifest["layers"]] == [GZIP_LAYER] * 8
    assert len(config["rootfs"]["diff_ids"]) == 8
    assert config["os"] == "linux" and config["architecture"] == "amd64"
    assert config["author"] == "docker2aci test images"
    c = config["config"]
    assert c["Entrypoint"] == ["/bin/sh", "-c"]
    assert c["Cmd"] == ["echo hello from $GREETING; ls /app"]
    assert c["Env"] == ["GREETING=aci", "PATH=/bin:/usr/bin"]
    assert c["WorkingDir"] == "/app" and c["User"] == "1000:1000"
    assert c["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert c["Volumes"] == {"/data": {}}
    assert c["Labels"] == {"org.example.test": "yes", "maintainer": "docker2aci"}
    # Readable by everyone (umoci writes 0600 blobs).
    for blob in (busybox_layout / "blobs" / "sha256").iterdir():
        assert blob.stat().st_mode & 0o444 == 0o444, blob


def test_whiteouts_plain_per_file_and_opaque(busybox_listing: dict[str, Entry]) -> None:
    assert "etc/removeme.txt" not in busybox_listing
    assert _children(busybox_listing, "opt/dir") == {"c.txt"}
    assert _children(busybox_listing, "srv/old") == {"z.txt"}
    assert not any(".wh." in p for p in busybox_listing)


def test_base_files(busybox_listing: dict[str, Entry], busybox_rootfs: Path) -> None:
    busybox = busybox_listing["bin/busybox"]
    assert busybox.type == "file" and busybox.mode == 0o755
    assert busybox.sha256 == hashlib.sha256(builders.BUSYBOX_BINARY.read_bytes()).hexdigest()
    for applet in builders.BUSYBOX_APPLETS:
        assert busybox_listing[f"bin/{applet}"] == Entry("symlink", 0o777, 0, 0, target="busybox")
    hello = busybox_listing["app/hello.txt"]
    assert (hello.uid, hello.gid, hello.mode, hello.size) == (1000, 1000, 0o644, 18)
    assert busybox_listing["app"].uid == 1000
    assert busybox_listing["tmp"] == Entry("dir", 0o1777, 0, 0)
    passwd = (busybox_rootfs / "etc" / "passwd").read_text().splitlines()
    assert "root:x:0:0:root:/root:/bin/sh" in passwd
    assert "app:x:1000:1000:app:/home/app:/bin/sh" in passwd
    assert "app:x:1000:" in (busybox_rootfs / "etc" / "group").read_text().splitlines()


def test_setuid_long_path_xattr_and_symlinks(busybox_listing: dict[str, Entry]) -> None:
    assert busybox_listing["bin/su-test"].mode == 0o4755
    assert len(builders.LONG_PATH) == 150
    assert busybox_listing[builders.LONG_PATH].type == "file"
    assert busybox_listing["etc/xattr.txt"].xattrs == (("user.test", b"hello"),)
    assert busybox_listing["var/www"] == Entry("symlink", 0o777, 0, 0, target="/app")
    assert not any(p.startswith("var/www/") for p in busybox_listing)
    assert busybox_listing["var/run"].target == "/run"
    assert busybox_listing["usr/bin/env"].target == "../../bin/busybox"


def test_hard_links(busybox_listing: dict[str, Entry]) -> None:
    groups = hardlink_groups(busybox_listing)
    assert frozenset({"hl/one.txt", "hl/two.txt"}) in groups
    assert frozenset({"app/hello.txt", "app/hello-hardlink.txt"}) in groups
    # The data-carrying name was whited out; the surviving link keeps the data.
    assert "hl/a-orig.txt" not in busybox_listing
    survivor = busybox_listing["hl/z-link.txt"]
    assert survivor.links == frozenset()
    assert survivor.sha256 == hashlib.sha256(b"data kept by the surviving link\n").hexdigest()


def _files(members: dict[str, tarfile.TarInfo]) -> set[str]:
    return {name for name, m in members.items() if not m.isdir()}


def test_layers_exercise_the_hard_cases(busybox_layout: Path) -> None:
    """The tricky entries are in the layers, not only in the result."""
    layers = [_members(t) for t in _layers(busybox_layout)]
    # umoci also writes a changed parent directory's entry on some filesystems (tmpfs)
    assert _files(layers[1]) == {"etc/.wh.removeme.txt"}
    assert _files(layers[2]) == {"opt/dir/.wh.a.txt", "opt/dir/.wh.b.txt", "opt/dir/c.txt"}
    assert "srv/old/.wh..wh..opq" in layers[3] and "srv/old/z.txt" in layers[3]
    l5 = layers[4]
    assert l5["hl/z-link.txt"].islnk() and l5["hl/z-link.txt"].linkname == "hl/a-orig.txt"
    assert l5["hl/a-orig.txt"].isfile() and l5["hl/a-orig.txt"].size > 0
    assert l5["hl/two.txt"].islnk() and l5["hl/two.txt"].linkname == "hl/one.txt"
    assert l5["etc/xattr.txt"].pax_headers.get("SCHILY.xattr.user.test") == "hello"
    assert l5["var/www/index.html"].isfile()
    assert l5["var/www"].isdir()
    assert layers[5]["var/www"].issym() and layers[5]["var/www"].linkname == "/app"
    assert _files(layers[6]) == {"hl/.wh.a-orig.txt"}
    assert set(layers[7]) == {"app/hello-hardlink.txt"}
    assert layers[7]["app/hello-hardlink.txt"].linkname == "app/hello.txt"


def test_builds_are_reproducible(busybox_basic_layout: Path, tmp_path: Path) -> None:
    again = builders.build_busybox_layout(tmp_path / "again", TAG, features=False)
    index_a = json.loads((busybox_basic_layout / "index.json").read_text())
    index_b = json.loads((again / "index.json").read_text())
    assert index_a == index_b


def test_basic_layout_matches_the_shared_image(busybox_basic_layout: Path, shared_images: Path,
                                               tmp_path: Path) -> None:
    """features=False gives the tree of ../shared/images/oci-layout (applet list aside)."""
    ours = tree_listing(umoci_rootfs(busybox_basic_layout, TAG, tmp_path / "ours"))
    shared = tree_listing(umoci_rootfs(shared_images / "oci-layout", "latest", tmp_path / "shared"))
    applets = {p for p, e in {**ours, **shared}.items() if e.type == "symlink" and p.startswith("bin/")}
    for listing in (ours, shared):
        for p in applets:
            listing.pop(p, None)
    assert ours == shared, "\n".join(diff_listings(ours, shared))


def test_existing_destination_is_refused(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(builders.FixtureBuildError, match="already exists"):
        builders.build_busybox_layout(tmp_path / "taken")


# ---------------------------------------------------------------- other containers


def test_docker_archive(busybox_docker_archive: Path, busybox_listing: dict[str, Entry],
                        tmp_path: Path) -> None:
    with tarfile.open(busybox_docker_archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == ["docker.io/test/busybox:latest"]
    assert len(manifest[0]["Layers"]) == 8
    listing = _to_oci_listing(f"docker-archive:{busybox_docker_archive}", tmp_path)
    assert listing == busybox_listing, "\n".join(diff_listings(busybox_listing, listing))


def test_oci_archive(busybox_oci_archive: Path) -> None:
    with tarfile.open(busybox_oci_archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
    [desc] = index["manifests"]
    assert desc["annotations"]["org.opencontainers.image.ref.name"] == builders.TEST_REF


def test_zstd_layout(busybox_zstd_layout: Path, busybox_layout: Path, busybox_listing: dict[str, Entry],
                     tmp_path: Path) -> None:
    manifest, config = builders.layout_manifest(busybox_zstd_layout, TAG)
    assert {layer["mediaType"] for layer in manifest["layers"]} == {
        "application/vnd.oci.image.layer.v1.tar+zstd"}
    for layer in manifest["layers"]:
        blob = busybox_zstd_layout / "blobs" / "sha256" / layer["digest"].split(":", 1)[1]
        assert blob.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"
    assert config == builders.layout_manifest(busybox_layout, TAG)[1]
    listing = _to_oci_listing(f"oci:{busybox_zstd_layout}:{TAG}", tmp_path)
    assert listing == busybox_listing, "\n".join(diff_listings(busybox_listing, listing))


def test_uncompressed_layout(busybox_uncompressed_layout: Path) -> None:
    manifest, config = builders.layout_manifest(busybox_uncompressed_layout, TAG)
    assert {layer["mediaType"] for layer in manifest["layers"]} == {"application/vnd.oci.image.layer.v1.tar"}
    assert [layer["digest"] for layer in manifest["layers"]] == json.loads(config)["rootfs"]["diff_ids"]


def test_docker25_save_layout(busybox_docker25_save: Path, busybox_layout: Path) -> None:
    _, config_bytes = builders.layout_manifest(busybox_layout, TAG)
    diff_ids = json.loads(config_bytes)["rootfs"]["diff_ids"]
    config_hex = hashlib.sha256(config_bytes).hexdigest()
    with tarfile.open(busybox_docker25_save) as tar:
        names = tar.getnames()
        read = lambda n: tar.extractfile(n).read()  # type: ignore[union-attr]  # noqa: E731
        assert {"oci-layout", "index.json", "manifest.json", "repositories"} <= set(names)
        assert json.loads(read("oci-layout")) == {"imageLayoutVersion": "1.0.0"}
        [item] = json.loads(read("manifest.json"))
        assert item["Config"] == f"blobs/sha256/{config_hex}"
        assert read(item["Config"]) == config_bytes
        assert item["Layers"] == [f"blobs/sha256/{d.split(':', 1)[1]}" for d in diff_ids]
        for path, diff_id in zip(item["Layers"], diff_ids):
            assert "sha256:" + hashlib.sha256(read(path)).hexdigest() == diff_id
        assert item["RepoTags"] == ["test/busybox:latest"]
        assert set(item["LayerSources"]) == set(diff_ids)
        assert json.loads(read("repositories")) == {"test/busybox": {"latest": diff_ids[-1].split(":")[1]}}
        [desc] = json.loads(read("index.json"))["manifests"]
        assert desc["annotations"] == {"io.containerd.image.name": "docker.io/test/busybox:latest",
                                       "org.opencontainers.image.ref.name": "latest"}
        oci_manifest = json.loads(read("blobs/sha256/" + desc["digest"].split(":", 1)[1]))
        assert [layer["digest"] for layer in oci_manifest["layers"]] == diff_ids
        assert oci_manifest["config"]["digest"] == f"sha256:{config_hex}"


def test_docker25_save_reads_as_both_formats(busybox_docker25_save: Path, busybox_listing: dict[str, Entry],
                                             tmp_path: Path) -> None:
    """skopeo reads it through manifest.json (docker-archive) and through index.json (oci-archive)."""
    for transport in (f"docker-archive:{busybox_docker25_save}", f"oci-archive:{busybox_docker25_save}:latest"):
        dest = tmp_path / transport.split(":", 1)[0]
        listing = _to_oci_listing(transport, dest)
        assert listing == busybox_listing, transport + "\n" + "\n".join(diff_listings(busybox_listing, listing))


def test_docker25_legacy_v1_json_matches_dockerd(shared_images: Path, tmp_path: Path) -> None:
    """The v1 JSON blobs equal what dockerd 20.10 wrote for the same image (same moby code)."""
    save = builders.build_docker25_save(shared_images / "oci-layout", "latest", tmp_path / "save.tar")
    with tarfile.open(save) as ours, tarfile.open(shared_images / "docker-save-dockerd.tar") as real:
        blobs = {n.rsplit("/", 1)[1] for n in ours.getnames() if n.startswith("blobs/sha256/")}
        v1_jsons = [real.extractfile(n).read() for n in real.getnames() if n.endswith("/json")]  # type: ignore[union-attr]
    assert len(v1_jsons) == 4
    for data in v1_jsons:
        assert hashlib.sha256(data).hexdigest() in blobs


# ---------------------------------------------------------------- demo image and errors


def test_demo_entry_point(tmp_path: Path) -> None:
    if builders.missing_tools("umoci", "skopeo", str(builders.BUSYBOX_BINARY)) or os.geteuid() != 0:
        pytest.skip("needs umoci, skopeo, busybox-static and root")
    proc = subprocess.run([sys.executable, "-m", "fixtures", "demo", str(tmp_path)], cwd=REPO_ROOT,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    archive = Path(proc.stdout.strip())
    assert archive == tmp_path / builders.DEMO_ARCHIVE_NAME
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
    [desc] = index["manifests"]
    assert desc["annotations"]["org.opencontainers.image.ref.name"] == builders.DEMO_REF
    assert [p.name for p in tmp_path.iterdir()] == [builders.DEMO_ARCHIVE_NAME]


def test_skopeo_error_carries_stderr(tmp_path: Path) -> None:
    if builders.missing_tools("skopeo"):
        pytest.skip("needs skopeo")
    with pytest.raises(builders.FixtureBuildError) as info:
        builders.skopeo_copy(f"oci:{tmp_path}/missing:latest", f"oci:{tmp_path}/out:latest")
    assert "stderr:" in str(info.value) and "missing" in str(info.value)


# ---------------------------------------------------------------- the oracle itself


def _aci_bytes() -> bytes:
    """A small ACI: manifest, rootfs with a hard link, setuid, xattr, symlink, and the stdio links."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", mode: int = 0o644,
                link: str = "", pax: dict[str, str] | None = None) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.linkname, info.size = kind, mode, link, len(data)
            info.uid = info.gid = 1000 if name.endswith("owned") else 0
            if pax:
                info.pax_headers = pax
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        add("manifest", data=b"{}")
        add("rootfs", tarfile.DIRTYPE, mode=0o755)
        add("rootfs/dev", tarfile.DIRTYPE, mode=0o755)
        for name, target in (("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                             ("stderr", "/proc/self/fd/2"), ("fd", "/proc/self/fd")):
            add(f"rootfs/dev/{name}", tarfile.SYMTYPE, mode=0o777, link=target)
        add("rootfs/a", data=b"A")
        add("rootfs/b", tarfile.LNKTYPE, link="rootfs/a")
        add("rootfs/suid", data=b"#!", mode=0o4755)
        add("rootfs/owned", data=b"o")
        add("rootfs/x", data=b"x", pax={"SCHILY.xattr.user.k": "v"})
        add("rootfs/l", tarfile.SYMTYPE, mode=0o777, link="a")
    return gzip.compress(buf.getvalue())


def test_oracle_reads_an_aci(tmp_path: Path) -> None:
    if builders.missing_tools("tar") or os.geteuid() != 0:
        pytest.skip("needs GNU tar and root")
    aci = tmp_path / "t.aci"
    aci.write_bytes(_aci_bytes())
    listing = tree_listing(aci_rootfs(aci, tmp_path / "out"))
    sha_a = hashlib.sha256(b"A").hexdigest()
    assert listing == {
        "a": Entry("file", 0o644, 0, 0, sha256=sha_a, size=1, links=frozenset({"b"})),
        "b": Entry("file", 0o644, 0, 0, sha256=sha_a, size=1, links=frozenset({"a"})),
        "l": Entry("symlink", 0o777, 0, 0, target="a"),
        "owned": Entry("file", 0o644, 1000, 1000, sha256=hashlib.sha256(b"o").hexdigest(), size=1),
        "suid": Entry("file", 0o4755, 0, 0, sha256=hashlib.sha256(b"#!").hexdigest(), size=2),
        "x": Entry("file", 0o644, 0, 0, sha256=hashlib.sha256(b"x").hexdigest(), size=1,
                   xattrs=(("user.k", b"v"),)),
    }
    # Without the default exclusions the stdio links and /dev appear.
    full = tree_listing(tmp_path / "out" / "rootfs", exclude=())
    assert {"dev", *DEFAULT_EXCLUDE} <= set(full)


def test_diff_listings_is_readable() -> None:
    a = {"x": Entry("file", 0o644, 0, 0, sha256="0" * 64, size=1), "only-a": Entry("dir", 0o755, 0, 0)}
    b = {"x": Entry("file", 0o4755, 0, 0, sha256="0" * 64, size=1), "only-b": Entry("dir", 0o755, 0, 0)}
    assert diff_listings(a, a) == []
    assert diff_listings(a, b) == [
        "only in a: only-a (dir 0755 0:0)",
        "only in b: only-b (dir 0755 0:0)",
        "x: mode a=0644 b=4755",
    ]


def test_a_server_dies_with_the_test_run_that_started_it() -> None:
    """Servers the tests start (``services.die_with_pytest``) get SIGTERM when the run that
    started them is killed before its teardown: none is left running."""
    starter = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time; sys.path.insert(0, sys.argv[1]);"
         "from services import die_with_pytest;"
         "p = subprocess.Popen(['sleep', '60'], preexec_fn=die_with_pytest); print(p.pid, flush=True); time.sleep(60)",
         str(Path(__file__).parent)], stdout=subprocess.PIPE, text=True)
    assert starter.stdout is not None
    server = int(starter.stdout.readline())
    starter.kill()
    starter.wait()
    for _ in range(500):
        try:
            os.kill(server, 0)
        except ProcessLookupError:
            return
        try:
            with open(f"/proc/{server}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":  # ended, not yet reaped by its new parent
                    return
        except FileNotFoundError:
            return
        time.sleep(0.01)
    os.kill(server, 9)
    pytest.fail("the server outlived the run that started it")
