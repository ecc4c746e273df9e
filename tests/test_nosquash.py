"""``--nosquash`` on images made by real tools: one ACI per layer, each depending on the
one below by name, labels and image ID; actool accepts every one; rendering the chain
with our renderer gives exactly the squashed image's rootfs.

Images: the 8-layer busybox layout umoci builds (whiteouts, an opaque directory, hard
links across layers, a directory replaced by a symlink, setuid, xattrs) and the
``docker save`` archive dockerd made (../shared/images).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import layerbuild as lb
import pytest
from oracle import diff_listings, tree_listing, umoci_rootfs

import docker2aci
from converters.manifest import ANN
from docker2aci.digest import Digest
from docker2aci.unsquashed import chain_ids
from runner.dependencies import DirectoryResolver
from runner.extract import compute_image_id
from runner.treestore import render_tree

ACTOOL = shutil.which("actool")
ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="rendering owners and device nodes needs root")


def convert(source: str, out: Path, **kw: object) -> list[docker2aci.ConvertedACI]:
    return docker2aci.convert(source, docker2aci.ConvertOptions(output_dir=str(out), use_cache=False, **kw))


def manifest_of(path: str | Path) -> dict:
    with tarfile.open(path) as tf:
        return json.loads(tf.extractfile("manifest").read())  # type: ignore[union-attr]


def rendered(aci: str | Path, dest: Path) -> dict:
    """The listing of an ACI rendered with its dependencies (found beside it), with the
    time of every file and of every directory an ACI names."""
    dest.mkdir()
    render_tree(aci, str(dest), resolver=DirectoryResolver([os.path.dirname(aci)]))
    listing = tree_listing(dest)
    times = {rel: os.lstat(dest / rel).st_mtime_ns for rel in listing}
    return {rel: (entry, times[rel]) for rel, entry in listing.items()}


def without_implicit_dir_times(listing: dict, implicit: set[str]) -> dict:
    return {rel: (entry, None if rel in implicit else t) for rel, (entry, t) in listing.items()}


def implicit_dirs(aci: str | Path) -> set[str]:
    """Directories an extractor must create because no entry names them (``dev``)."""
    with tarfile.open(aci) as tf:
        names = {m.name[len("rootfs/"):] for m in tf if m.name.startswith("rootfs/")}
    parents = {"/".join(n.split("/")[:i]) for n in names for i in range(1, n.count("/") + 1)}
    return parents - names


@pytest.fixture(scope="module")
def busybox(busybox_layout: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[list, list]:
    """The busybox layout converted both ways: (per-layer ACIs, top first; [squashed ACI])."""
    out = tmp_path_factory.mktemp("nosquash")
    layers = convert(f"oci:{busybox_layout}:latest", out / "layers", squash=False)
    squashed = convert(f"oci:{busybox_layout}:latest", out / "squashed")
    return layers, squashed


def test_one_aci_per_layer_named_by_position(busybox: tuple[list, list]) -> None:
    layers, _ = busybox
    assert [os.path.basename(a.path) for a in layers] == [
        f"busybox-layout-latest-linux-amd64-{i}.aci" for i in range(8)]
    assert [a.path for a in layers] == sorted(str(p) for p in Path(layers[0].path).parent.iterdir())


def test_the_chain_of_dependencies(busybox: tuple[list, list], busybox_layout: Path) -> None:
    layers, squashed = busybox
    index = json.loads((busybox_layout / "index.json").read_text())
    manifest_blob = index["manifests"][0]["digest"].split(":")[1]
    image_manifest = json.loads((busybox_layout / "blobs/sha256" / manifest_blob).read_text())
    config_blob = image_manifest["config"]["digest"].split(":")[1]
    config = json.loads((busybox_layout / "blobs/sha256" / config_blob).read_text())
    chain = [str(c) for c in chain_ids([Digest.parse(d) for d in config["rootfs"]["diff_ids"]])]
    base_first = layers[::-1]
    for i, aci in enumerate(base_first):
        m = manifest_of(aci.path)
        assert aci.image_id == compute_image_id(aci.path)
        annotations = {a["name"]: a["value"] for a in m["annotations"]}
        if i == len(base_first) - 1:  # the top: the squashed image's name, labels, app
            top = manifest_of(squashed[0].path)
            assert (m["name"], m["labels"], m["app"]) == (top["name"], top["labels"], top["app"])
            assert annotations == {**{a["name"]: a["value"] for a in top["annotations"]},
                                   ANN + "parentimageid": chain[i - 1]}
        else:
            assert m["name"] == "busybox-layout-" + chain[i].split(":")[1]
            assert m["labels"] == [{"name": "arch", "value": "amd64"}, {"name": "os", "value": "linux"}]
            assert "app" not in m
            assert annotations[ANN + "imageid"] == chain[i]
            assert annotations.get(ANN + "parentimageid") == (chain[i - 1] if i else None)
        if i == 0:
            assert "dependencies" not in m
        else:
            below = manifest_of(base_first[i - 1].path)
            assert m["dependencies"] == [{"imageName": below["name"], "imageID": base_first[i - 1].image_id,
                                          "labels": below["labels"]}]


def test_whitelists_only_where_a_layer_removes_something(busybox: tuple[list, list]) -> None:
    layers, _ = busybox
    whitelists = [manifest_of(a.path).get("pathWhitelist") for a in layers[::-1]]
    # layers 2, 3, 4, 6 and 7 (1-based) whiteout, make opaque or replace a directory
    assert [w is not None for w in whitelists] == [False, True, True, True, False, True, True, False]
    for w in whitelists:
        if w is not None:
            assert w == sorted(w) and all(p.startswith("/") for p in w)


@pytest.mark.skipif(ACTOOL is None, reason="actool (Debian appc-spec) is not installed")
def test_actool_accepts_every_layer(busybox: tuple[list, list]) -> None:
    layers, _ = busybox
    done = subprocess.run([ACTOOL, "validate", *[a.path for a in layers]], check=False, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr


@ROOT
def test_render_of_a_layer_copied_away_from_its_chain_says_to_give_dir(busybox: tuple[list, list],
                                                                         tmp_path: Path) -> None:
    """The top layer's ACI copied elsewhere: its dependencies are not beside it, which the
    error said without saying how to point at them (newcomer review): ``--dir`` does."""
    layers, _ = busybox
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(layers[0].path, alone / "top.aci")
    command = [sys.executable, "-m", "docker2aci", "render", str(alone / "top.aci")]
    refused = subprocess.run([*command, str(tmp_path / "a")], capture_output=True, text=True, check=False)
    assert refused.returncode == 1
    last = refused.stderr.splitlines()[-1]
    assert f"not found among the ACIs in {alone}; give the directory that holds it with --dir DIR" in last, last
    done = subprocess.run([*command, "--dir", os.path.dirname(layers[1].path), str(tmp_path / "b")],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "b" / "rootfs" / "bin" / "busybox").exists()


def test_our_validate_accepts_every_layer(busybox: tuple[list, list]) -> None:
    from runner.acitool import validate_aci

    for aci in busybox[0]:
        assert validate_aci(aci.path).problems == [], aci.path


@ROOT
def test_the_rendered_chain_is_the_squashed_rootfs(busybox: tuple[list, list], tmp_path: Path) -> None:
    layers, squashed = busybox
    implicit = implicit_dirs(squashed[0].path)
    chain = without_implicit_dir_times(rendered(layers[0].path, tmp_path / "chain"), implicit)
    whole = without_implicit_dir_times(rendered(squashed[0].path, tmp_path / "squashed"), implicit)
    assert chain == whole, "\n".join(diff_listings({k: v[0] for k, v in whole.items()},
                                                   {k: v[0] for k, v in chain.items()}))


@ROOT
def test_dockerd_archive_unsquashed(shared_images: Path, tmp_path: Path) -> None:
    source = f"docker-archive:{shared_images / 'docker-save-dockerd.tar'}"
    layers = convert(source, tmp_path / "layers", squash=False)
    [squashed] = convert(source, tmp_path / "squashed")
    assert [os.path.basename(a.path) for a in layers] == [
        f"test-busybox-latest-linux-amd64-{i}.aci" for i in range(len(layers))]
    assert len(layers) == 4
    implicit = implicit_dirs(squashed.path)
    assert (without_implicit_dir_times(rendered(layers[0].path, tmp_path / "chain"), implicit)
            == without_implicit_dir_times(rendered(squashed.path, tmp_path / "whole"), implicit))


def test_a_hard_link_to_a_lower_layer_brings_its_target(busybox: tuple[list, list]) -> None:
    # layer 8 links to a layer-1 file: its ACI holds the file and the link, so the link
    # has its target in the same archive and both names share an inode once rendered
    top = busybox[0][0]
    with tarfile.open(top.path) as tf:
        links = [m for m in tf if m.islnk()]
        names = {m.name for m in tf}
    assert links and all(m.linkname in names for m in links)


# Stacks no image tool writes (a layer that makes a directory without naming it): built
# here with tests/layerbuild.py. umoci would follow the old symlink, so the oracle for
# these is our own squash: the chain must render as it does.
IMPLICIT = {
    "symlink replaced by an unnamed directory": [
        [lb.dir_("real"), lb.file("real/k", "k"), lb.symlink("lnk", "real")], [lb.file("lnk/k2", "k2")]],
    "directory, symlink, unnamed directory": [
        [lb.dir_("a", 0o700), lb.file("a/x", "x")], [lb.symlink("a", "b"), lb.dir_("b"), lb.file("b/q", "q")],
        [lb.file("a/y", "y")]],
    "whiteout, then re-made unnamed": [
        [lb.dir_("a", 0o700), lb.file("a/x", "x")], [lb.whiteout("a"), lb.file("a/y", "y")]],
    # the first name of a hard-linked symlink, FIFO or file deleted above, another name kept: the
    # chain renders the kept name from the deleted one (review of the whitelist stash)
    "hard-linked symlink, first name deleted": [[lb.symlink("a", "tgt"), lb.hardlink("b", "a")], [lb.whiteout("a")]],
    "hard-linked FIFO, first name deleted": [[lb.fifo("a"), lb.hardlink("b", "a")], [lb.whiteout("a")]],
    "hard-linked files, first name deleted twice": [
        [lb.file("a", "1"), lb.file("c", "3"), lb.hardlink("b", "a"), lb.hardlink("d", "c")],
        [lb.whiteout("a"), lb.whiteout("c")]],
}


@ROOT
@pytest.mark.parametrize("stack", IMPLICIT.values(), ids=IMPLICIT.keys())
def test_a_directory_made_without_an_entry_renders_as_squashed(stack: list, tmp_path: Path) -> None:
    layout = lb.write_oci_layout(tmp_path / "img", [lb.Layer(lb.tar_bytes(entries)) for entries in stack])
    layers = convert(f"oci:{layout.path}:latest", tmp_path / "layers", squash=False)
    [squashed] = convert(f"oci:{layout.path}:latest", tmp_path / "squashed")
    implicit = implicit_dirs(squashed.path)
    assert (without_implicit_dir_times(rendered(layers[0].path, tmp_path / "chain"), implicit)
            == without_implicit_dir_times(rendered(squashed.path, tmp_path / "whole"), implicit))


@pytest.mark.parametrize("bad", [
    lb.Layer(b"not a tar " * 100),
    lb.Layer(lb.tar_bytes([lb.symlink("x", "../../etc")])),
    lb.Layer(lb.tar_bytes([lb.hardlink("h", "missing")])),
], ids=["not a tar", "escaping symlink", "dangling hard link"])
def test_a_bad_layer_leaves_no_layer_acis(bad: lb.Layer, tmp_path: Path) -> None:
    good = [lb.Layer(lb.tar_bytes([lb.file("a", "a")])), lb.Layer(lb.tar_bytes([lb.file("b", "b")]))]
    layout = lb.write_oci_layout(tmp_path / "img", [*good, bad])
    with pytest.raises(docker2aci.errors.InvalidLayer):
        convert(f"oci:{layout.path}:latest", tmp_path / "out", squash=False)
    assert list((tmp_path / "out").iterdir()) == []


NOT_UTF8 = b"caf\xe9-\xff.txt"


def _layout_with_a_latin1_name(busybox_layout: Path, tmp_path: Path, *, then_remove: bool) -> Path:
    """The busybox layout (umoci) plus a layer adding ``/srv/caf\\xe9-\\xff.txt`` (a
    Latin-1 name, as an old tarball or a non-UTF-8 locale leaves it) and, with
    ``then_remove``, a layer above that deletes ``/app/hello.txt`` (umoci writes a
    whiteout). Made with umoci: unpack, change the bundle, repack."""
    layout = tmp_path / "latin1"
    subprocess.run(["skopeo", "copy", "-q", f"oci:{busybox_layout}:latest", f"oci:{layout}:latest"],
                   check=True, capture_output=True)
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:latest", bundle], check=True, capture_output=True)
    (bundle / "rootfs" / "srv").mkdir(exist_ok=True)
    with open(os.path.join(os.fsencode(bundle / "rootfs" / "srv"), NOT_UTF8), "wb") as f:
        f.write(b"latin-1\n")
    subprocess.run(["umoci", "repack", "--refresh-bundle", "--image", f"{layout}:latest", bundle],
                   check=True, capture_output=True)
    if then_remove:
        (bundle / "rootfs" / "app" / "hello.txt").unlink()
        subprocess.run(["umoci", "repack", "--refresh-bundle", "--image", f"{layout}:latest", bundle],
                       check=True, capture_output=True)
    return layout


@ROOT
@pytest.mark.skipif(shutil.which("umoci") is None or shutil.which("skopeo") is None, reason="needs umoci, skopeo")
def test_a_name_a_whitelist_cannot_hold_is_refused_not_lost(busybox_layout: Path, tmp_path: Path) -> None:
    # A layer that removes something needs a pathWhitelist naming every path kept; that
    # is JSON text, so a name that is not UTF-8 would be written as U+FFFD, match
    # nothing, and the rendered chain would silently lose the file.
    layout = _layout_with_a_latin1_name(busybox_layout, tmp_path, then_remove=True)
    [squashed] = convert(f"oci:{layout}:latest", tmp_path / "squashed")
    with tarfile.open(squashed.path, encoding="utf-8", errors="surrogateescape") as tf:
        assert os.fsdecode(b"rootfs/srv/" + NOT_UTF8) in tf.getnames()
    with pytest.raises(docker2aci.errors.InvalidLayer) as err:
        convert(f"oci:{layout}:latest", tmp_path / "layers", squash=False)
    assert "cannot name /srv/caf\\xe9-\\xff.txt, which is not UTF-8" in str(err.value)
    assert not (tmp_path / "layers").exists() or list((tmp_path / "layers").iterdir()) == []


@ROOT
@pytest.mark.skipif(shutil.which("umoci") is None or shutil.which("skopeo") is None, reason="needs umoci, skopeo")
def test_a_name_that_is_not_utf8_renders_when_no_layer_above_removes(busybox_layout: Path, tmp_path: Path) -> None:
    layout = _layout_with_a_latin1_name(busybox_layout, tmp_path, then_remove=False)
    layers = convert(f"oci:{layout}:latest", tmp_path / "layers", squash=False)
    [squashed] = convert(f"oci:{layout}:latest", tmp_path / "squashed")
    implicit = implicit_dirs(squashed.path)
    chain = without_implicit_dir_times(rendered(layers[0].path, tmp_path / "chain"), implicit)
    assert os.fsdecode(b"srv/" + NOT_UTF8) in chain
    assert chain == without_implicit_dir_times(rendered(squashed.path, tmp_path / "whole"), implicit)


def _umoci_layers(busybox_layout: Path, tmp_path: Path, steps: list, name: str = "busybox-layout") -> Path:
    """A copy of the busybox layout (skopeo) with one layer per step: each step changes
    the unpacked bundle's rootfs, then ``umoci repack`` records the change as a layer.
    The copy is ``<tmp>/<n>/<name>``, so its ACIs have the busybox layout's names."""
    layout = tmp_path / f"{len(list(tmp_path.iterdir()))}" / name
    layout.parent.mkdir()
    subprocess.run(["skopeo", "copy", "-q", f"oci:{busybox_layout}:latest", f"oci:{layout}:latest"],
                   check=True, capture_output=True)
    bundle = layout.parent / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:latest", bundle], check=True, capture_output=True)
    for step in steps:
        step(bundle / "rootfs")
        subprocess.run(["umoci", "repack", "--refresh-bundle", "--image", f"{layout}:latest", bundle],
                       check=True, capture_output=True)
    return layout


UMOCI = pytest.mark.skipif(shutil.which("umoci") is None or shutil.which("skopeo") is None,
                           reason="needs umoci, skopeo")


@ROOT
@UMOCI
def test_a_chain_deeper_than_32_layers_renders(busybox_layout: Path, tmp_path: Path) -> None:
    # 48 layers (Docker runs images of up to 125): the runner refused to render the chain
    # --nosquash made of it ("dependencies nest deeper than 32")
    steps = [lambda root, i=i: (root / "app" / f"step-{i}").write_text(f"{i}\n") for i in range(40)]
    layout = _umoci_layers(busybox_layout, tmp_path, steps)
    layers = convert(f"oci:{layout}:latest", tmp_path / "layers", squash=False)
    [squashed] = convert(f"oci:{layout}:latest", tmp_path / "squashed")
    assert len(layers) == 48
    implicit = implicit_dirs(squashed.path)
    chain = without_implicit_dir_times(rendered(layers[0].path, tmp_path / "chain"), implicit)
    assert (tmp_path / "chain" / "app" / "step-39").read_text() == "39\n"
    assert chain == without_implicit_dir_times(rendered(squashed.path, tmp_path / "whole"), implicit)


@ROOT
@UMOCI
def test_a_directory_made_anew_keeps_only_its_own_xattrs(busybox_layout: Path, tmp_path: Path) -> None:
    # `rm -rf /d && mkdir /d` in a layer above one that gave /d an xattr: the rendered
    # chain kept the lower directory's user.dx (the upper entry merged into it), umoci
    # and the squashed ACI do not
    def make(root: Path) -> None:
        (root / "d").mkdir()
        (root / "d" / "f").write_text("f\n")
        os.setxattr(root / "d", "user.dx", b"lower")

    def remake(root: Path) -> None:
        shutil.rmtree(root / "d")
        (root / "d").mkdir()
        (root / "d" / "g").write_text("g\n")
        os.setxattr(root / "d", "user.other", b"upper")

    layout = _umoci_layers(busybox_layout, tmp_path, [make, remake])
    layers = convert(f"oci:{layout}:latest", tmp_path / "layers", squash=False)
    [squashed] = convert(f"oci:{layout}:latest", tmp_path / "squashed")
    rendered(layers[0].path, tmp_path / "chain")
    chain = tree_listing(tmp_path / "chain")
    expected = tree_listing(umoci_rootfs(layout, "latest", tmp_path / "umoci"))
    assert chain["d"].xattrs == (("user.other", b"upper"),)
    assert chain == expected, "\n".join(diff_listings(expected, chain))
    whole = tmp_path / "whole"
    rendered(squashed.path, whole)
    assert tree_listing(whole) == expected


@UMOCI
def test_images_sharing_lower_layers_share_their_acis(busybox_layout: Path, tmp_path: Path) -> None:
    # Two images of one repository, the second the first plus a layer (`latest` rebuilt
    # over `base`): a lower layer's ACI is named by its chain ID, so each shared layer
    # gave two images of one name and labels, differing only in the originalname and
    # manifesthash annotations of the image converted (the reference's lower layers
    # carry neither): not the same image, and a dependency without an imageID ambiguous
    def add(root: Path) -> None:
        (root / "app" / "new.txt").write_text("new\n")

    layout = _umoci_layers(busybox_layout, tmp_path, [add])
    subprocess.run(["skopeo", "copy", "-q", f"oci:{busybox_layout}:latest", f"oci:{layout}:base"],
                   check=True, capture_output=True)
    out = tmp_path / "out"
    base = convert(f"oci:{layout}:base", out, squash=False)
    latest = convert(f"oci:{layout}:latest", out, squash=False)
    assert (len(base), len(latest)) == (8, 9)
    for below_top, again in zip(base[1:], latest[2:]):
        assert (manifest_of(again.path), again.image_id) == (manifest_of(below_top.path), below_top.image_id)
        assert Path(again.path).read_bytes() == Path(below_top.path).read_bytes()
    named = manifest_of(base[1].path)
    found = DirectoryResolver([str(out)])({"imageName": named["name"], "labels": named["labels"]})
    assert compute_image_id(found) == base[1].image_id


@UMOCI
def test_a_failed_conversion_leaves_the_chain_it_would_replace(busybox_layout: Path, tmp_path: Path) -> None:
    # The same image name and tag again, now with a bad top layer: its lower layers were
    # written over the earlier chain's files and then removed, leaving that chain's top
    # without its dependencies (and signatures without their files)
    out = tmp_path / "out"
    first = convert(f"oci:{busybox_layout}:latest", out, squash=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert len(before) == len(first) == 8

    def add(root: Path) -> None:
        (root / "app" / "new.txt").write_text("new\n")

    def escape(root: Path) -> None:
        os.symlink("../../../etc", root / "escape")

    layout = _umoci_layers(busybox_layout, tmp_path, [add, escape])
    with pytest.raises(docker2aci.errors.InvalidLayer, match="points outside the root"):
        convert(f"oci:{layout}:latest", out, squash=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    dest = tmp_path / "rendered"
    dest.mkdir()
    render_tree(first[0].path, str(dest), resolver=DirectoryResolver([str(out)]))


@ROOT
def test_a_damaged_copy_beside_the_chain_is_no_candidate(busybox: tuple[list, list], tmp_path: Path) -> None:
    # A truncated copy of the base layer's ACI (a copy or a download still in progress)
    # in the chain's directory: its manifest names the base, so computing its image ID
    # failed and the whole chain could not be rendered ("Compressed file ended ...")
    layers, _ = busybox
    chain = tmp_path / "chain"
    chain.mkdir()
    for aci in layers:
        shutil.copy(aci.path, chain)
    base = chain / os.path.basename(layers[-1].path)
    partial = base.read_bytes()[:os.path.getsize(base) // 2]
    (chain / "zz-copy-of-base.aci").write_bytes(partial)
    top = chain / os.path.basename(layers[0].path)
    (tmp_path / "ok").mkdir()
    assert render_tree(top, str(tmp_path / "ok"), resolver=DirectoryResolver([str(chain)]))["name"] == \
        manifest_of(top)["name"]
    base.unlink()  # only the damaged copy is left: the error says why it is no match
    (tmp_path / "missing").mkdir()
    with pytest.raises(docker2aci.errors.RunnerError) as err:
        render_tree(top, str(tmp_path / "missing"), resolver=DirectoryResolver([str(chain)]))
    assert f"not found among the ACIs in {chain}; reading {chain / 'zz-copy-of-base.aci'}: " in str(err.value)


def _save_of(layers: int, tmp_path: Path) -> str:
    """A ``docker save`` archive (``manifest.json`` layout, built here) of a base and
    ``layers - 1`` layers of 1 MiB of random bytes and 1 MiB of zeros each."""
    import hostilebuild as hb

    tars = [hb.tar([hb.dir_("etc"), hb.file("etc/passwd", hb.PASSWD)])]
    tars += [hb.tar([hb.dir_(f"d{i}"), hb.file(f"d{i}/blob", os.urandom(1 << 20) + bytes(1 << 20))])
             for i in range(layers - 1)]
    path = tmp_path / f"save-{layers}.tar"
    path.write_bytes(hb.docker_save(tars, config=hb.image_config(tars)))
    return f"docker-archive:{path}"


def test_a_long_chain_takes_no_more_memory_than_a_short_one(tmp_path: Path) -> None:
    # Each layer's ACI is published with the others once the top is complete; meanwhile
    # its writer (compressor, image-ID and sync-ahead threads) held on, and the idle
    # threads kept their malloc arenas: 5 MB more peak RSS a layer (17 layers: 181
    # against 52 MB)
    from test_hostile import peak_rss_growth_kib

    short = peak_rss_growth_kib(_save_of(3, tmp_path), tmp_path / "short", squash=False, allow_refusal=False)
    long = peak_rss_growth_kib(_save_of(24, tmp_path), tmp_path / "long", squash=False, allow_refusal=False)
    assert len(os.listdir(tmp_path / "long")) == 24
    assert long - short < 12 << 10, (short, long)  # KiB


def test_a_file_that_cannot_be_synced_leaves_the_chain_it_would_replace(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # A full disk or a write-back error while the files are synced (the last buffered
    # bytes are written then): each file was synced only when it was renamed, top first,
    # so the new top replaced the old one before the layer below it failed, and the
    # chain left depended on a base that was never published
    import docker2aci.atomic

    out = tmp_path / "out"
    convert(_save_of(3, tmp_path), out, squash=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    synced, fsync = [], os.fsync

    def failing_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        if len(synced) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(fd)

    (tmp_path / "again").mkdir()
    monkeypatch.setattr(docker2aci.atomic.os, "fsync", failing_fsync)
    with pytest.raises(docker2aci.errors.OutputError, match="No space left on device"):
        convert(_save_of(3, tmp_path / "again"), out, squash=False)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
