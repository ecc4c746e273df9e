"""The squash against an independent oracle: for the busybox image built by umoci with every
layer feature (whiteouts plain, per-file and opaque; hard links, also across layers and
with the data-carrying name deleted; a directory replaced by a symlink; setuid; a
150-character path; an xattr), in every container format, the ACI's rootfs extracted by
GNU tar equals what ``umoci unpack`` gives: paths, types, modes, owners, link targets,
contents, xattrs and hard-link groups (the four stdio links we add excluded)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import layerbuild as lb
import pytest

import docker2aci
from fixtures import builders
from oracle import aci_rootfs, diff_listings, hardlink_groups, tree_listing, umoci_rootfs
from runner.dependencies import DirectoryResolver
from runner.treestore import render_tree


@pytest.fixture(scope="module")
def umoci_listing(busybox_layout: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    rootfs = umoci_rootfs(busybox_layout, builders.DEFAULT_TAG, tmp_path_factory.mktemp("umoci") / "bundle")
    return tree_listing(rootfs)


def _source(request: pytest.FixtureRequest, fixture: str, transport: str) -> str:
    path = request.getfixturevalue(fixture)
    return f"{transport}:{path}" if transport else str(path)


FORMATS = [
    pytest.param("busybox_layout", "oci", id="oci-layout-umoci"),
    pytest.param("busybox_zstd_layout", "oci", id="oci-layout-zstd"),
    pytest.param("busybox_uncompressed_layout", "oci", id="oci-layout-uncompressed"),
    pytest.param("busybox_oci_archive", "oci-archive", id="oci-archive"),
    pytest.param("busybox_docker_archive", "docker-archive", id="docker-archive-skopeo"),
    pytest.param("busybox_docker25_save", "docker-archive", id="docker-25-save"),
    pytest.param("busybox_docker_archive", "", id="bare-path-sniffed"),
]


@pytest.mark.parametrize(("fixture", "transport"), FORMATS)
def test_rootfs_equals_umoci_unpack(request: pytest.FixtureRequest, tmp_path: Path, umoci_listing: dict,
                                    fixture: str, transport: str) -> None:
    [aci] = docker2aci.convert(_source(request, fixture, transport),
                               docker2aci.ConvertOptions(output_dir=str(tmp_path / "out")))
    if shutil.which("actool"):
        proc = subprocess.run(["actool", "validate", aci.path], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    ours = tree_listing(aci_rootfs(Path(aci.path), tmp_path / "x"))
    assert diff_listings(umoci_listing, ours) == []


def test_the_oracle_sees_the_features(umoci_listing: dict) -> None:
    """Guards the comparison above against a fixture that lost its hard cases."""
    listing = umoci_listing
    assert "etc/removeme.txt" not in listing
    assert sorted(p for p in listing if p.startswith("opt/dir/")) == ["opt/dir/c.txt"]
    assert sorted(p for p in listing if p.startswith("srv/old/")) == ["srv/old/z.txt"]
    assert listing["var/www"].type == "symlink" and listing["var/www"].target == "/app"
    assert listing["bin/su-test"].mode == 0o4755
    assert listing["etc/xattr.txt"].xattrs == (("user.test", b"hello"),)
    assert listing[builders.LONG_PATH].type == "file"
    assert "hl/a-orig.txt" not in listing and listing["hl/z-link.txt"].type == "file"
    assert {frozenset({"hl/one.txt", "hl/two.txt"}), frozenset({"app/hello.txt", "app/hello-hardlink.txt"})} \
        <= hardlink_groups(listing)


@pytest.mark.skipif(shutil.which("umoci") is None, reason="needs umoci")
@pytest.mark.parametrize("top", [
    [lb.opaque("a"), lb.file("a/new", "n")],
    [lb.whiteout("a/old"), lb.file("a/new", "n")],
], ids=["opaque", "whiteout"])
def test_a_whiteout_under_a_link_its_layer_makes_a_directory_removes_nothing(tmp_path: Path,
                                                                            top: list[lb.Entry]) -> None:
    """A layer with ``a/new`` but no ``a/`` entry, over a link ``a -> c``: ``a`` becomes a
    directory (nothing is written through a link), and this layer's whiteouts below ``a/``
    then find nothing of the lower layers there. Docker (overlay2) gives ``a/`` = {new} and
    keeps ``c/old``; umoci would follow the link for both (``c`` = {new}). Removing
    ``c/old`` through the old link while putting ``new`` in a new ``a/`` matched neither."""
    layout = tmp_path / "img"
    subprocess.run(["umoci", "init", "--layout", layout], check=True, capture_output=True)
    subprocess.run(["umoci", "new", "--image", f"{layout}:latest"], check=True, capture_output=True)
    for i, entries in enumerate([[lb.dir_("c"), lb.file("c/old", "o")], [lb.symlink("a", "c")], top]):
        (tmp_path / f"{i}.tar").write_bytes(lb.tar_bytes(entries))
        subprocess.run(["umoci", "raw", "add-layer", "--image", f"{layout}:latest", tmp_path / f"{i}.tar"],
                       check=True, capture_output=True)
    source = f"oci:{layout}:latest"
    [aci] = docker2aci.convert(source, docker2aci.ConvertOptions(output_dir=str(tmp_path / "out")))
    ours = tree_listing(aci_rootfs(Path(aci.path), tmp_path / "x"))
    assert sorted(ours) == ["a", "a/new", "c", "c/old"] and ours["a"].type == "dir"
    layers = docker2aci.convert(source, docker2aci.ConvertOptions(output_dir=str(tmp_path / "layers"),
                                                                  squash=False, use_cache=False))
    (tmp_path / "chain").mkdir()
    render_tree(layers[0].path, str(tmp_path / "chain"),
                resolver=DirectoryResolver([str(tmp_path / "layers")]))
    assert diff_listings(ours, tree_listing(tmp_path / "chain")) == []


NS_TIMES = {"ns": 1577836800_987654321, "ns/file": 1577836800_123456789,
            "ns/old": -300000000_987654321, "ns/link": 1000_000000001}
"""PAX ``mtime`` records with nanoseconds, before 1970 too, as Go's archive/tar reads them
(the sign applies to the fraction)."""


def _mtimes_ns(root: Path) -> dict[str, int]:
    return {rel: os.lstat(root / rel).st_mtime_ns for rel in NS_TIMES}


@pytest.mark.skipif(shutil.which("umoci") is None, reason="needs umoci")
def test_nanosecond_mtimes_are_kept_as_umoci_keeps_them(tmp_path: Path) -> None:
    """A float keeps about 16 digits: through it the ACI writer and the renderer lost the
    last digits of a PAX mtime's nanoseconds (1577836800.123456789 became ...456768)."""
    layout = tmp_path / "img"
    subprocess.run(["umoci", "init", "--layout", layout], check=True, capture_output=True)
    subprocess.run(["umoci", "new", "--image", f"{layout}:latest"], check=True, capture_output=True)
    (tmp_path / "0.tar").write_bytes(lb.tar_bytes([
        lb.dir_("ns", pax={"mtime": "1577836800.987654321"}),
        lb.file("ns/file", "f", pax={"mtime": "1577836800.123456789"}),
        lb.file("ns/old", "o", pax={"mtime": "-300000000.987654321"}),
        lb.symlink("ns/link", "file", pax={"mtime": "1000.000000001"}),
    ]))
    subprocess.run(["umoci", "raw", "add-layer", "--image", f"{layout}:latest", tmp_path / "0.tar"],
                   check=True, capture_output=True)
    assert _mtimes_ns(umoci_rootfs(layout, "latest", tmp_path / "umoci")) == NS_TIMES
    source = f"oci:{layout}:latest"
    [aci] = docker2aci.convert(source, docker2aci.ConvertOptions(output_dir=str(tmp_path / "out")))
    assert _mtimes_ns(aci_rootfs(Path(aci.path), tmp_path / "tar")) == NS_TIMES
    (tmp_path / "rendered").mkdir()
    render_tree(aci.path, str(tmp_path / "rendered"))
    assert _mtimes_ns(tmp_path / "rendered") == NS_TIMES
    layers = docker2aci.convert(source, docker2aci.ConvertOptions(output_dir=str(tmp_path / "layers"),
                                                                  squash=False, use_cache=False))
    (tmp_path / "chain").mkdir()
    render_tree(layers[0].path, str(tmp_path / "chain"), resolver=DirectoryResolver([str(tmp_path / "layers")]))
    assert _mtimes_ns(tmp_path / "chain") == NS_TIMES
