"""Property tests (hypothesis): random layer stacks, squashed by us and by umoci.

Each example is a stack of 1-4 layers of files, directories, symlinks, hard links
(within a layer and to lower layers), plain whiteouts, opaque directories and
replacements of every kind (file ↔ directory ↔ symlink), over a small set of odd names
(a space, non-ASCII, a leading dot or dash) so that layers collide often. The layer tars
are generated here as real tars; ``umoci`` builds the image from them (``umoci init``,
``new``, ``raw add-layer``) and ``umoci unpack`` is the oracle. Then:

* our squashed ACI, extracted by GNU tar, equals umoci's rootfs (type, mode, owner,
  link target, content, hard-link groups);
* our ``--nosquash`` ACIs, rendered as a dependency chain by our runner, equal our
  squashed ACI rendered by the same runner (times included, but those of directories
  no entry names).

The generator keeps to what both tools define the same way: every layer names the
parent directories of its entries (as image builders do), whiteouts and opaque markers
come first in a layer and never name a path the same layer adds, and symlink targets are
absolute or a sibling's name (a relative ``..`` target above the root is refused by us
and is tested elsewhere).

Runs ``HYPOTHESIS_PROFILE=ci`` (the default: 30 derandomized examples, so CI is
repeatable) or ``HYPOTHESIS_PROFILE=deep`` (500 random examples) for a longer hunt.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import layerbuild as lb
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from oracle import aci_rootfs, diff_listings, tree_listing, umoci_rootfs

import docker2aci
from runner.dependencies import DirectoryResolver
from runner.treestore import render_tree

settings.register_profile("ci", max_examples=30, derandomize=True, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("deep", max_examples=500, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

pytestmark = [
    pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci (the oracle) is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="umoci unpack and owners need root"),
]

TOP = ("a", "b", "c d", "ü")
"""Top-level names: several, so layers collide; one with a space, one non-ASCII."""
CHILD = ("x", ".y", "-z")
"""Names below a top-level directory (a leading dot, a leading dash)."""
PATHS = TOP + tuple(f"{t}/{c}" for t in TOP for c in CHILD)
MODES = (0o644, 0o755, 0o600, 0o4755)


def _parent(path: str) -> str | None:
    return path.rsplit("/", 1)[0] if "/" in path else None


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top + "/")


@st.composite
def layer_stacks(draw: st.DrawFn) -> list[list[lb.Entry]]:
    """1-4 layers of entries, base first, consistent as described in the module."""
    state: dict[str, str] = {}  # the merged tree so far: path -> "dir" | "file" | "link"
    layers = []
    for _ in range(draw(st.integers(1, 4))):
        entries: list[lb.Entry] = []
        removed: set[str] = set()
        used: set[str] = set()
        lower = dict(state)
        if layers:
            for path in draw(st.lists(st.sampled_from(sorted(lower)), max_size=2, unique=True)) if lower else []:
                if any(_under(path, r) or _under(r, path) for r in removed):
                    continue
                parent = _parent(path)
                if parent is not None:
                    entries.append(lb.dir_(parent))
                    used.add(parent)
                entries.append(lb.whiteout(path))
                removed.add(path)
                for p in [p for p in state if _under(p, path)]:
                    del state[p]
            dirs = sorted(p for p, kind in lower.items() if kind == "dir" and p in state and p not in used)
            for path in draw(st.lists(st.sampled_from(dirs), max_size=1)) if dirs else []:
                entries += [lb.dir_(path), lb.opaque(path)]
                used.add(path)
                for p in [p for p in state if p.startswith(path + "/")]:
                    del state[p]
        for _ in range(draw(st.integers(1, 6))):
            kind = draw(st.sampled_from(["file", "file", "dir", "symlink", "hardlink"]))
            path = draw(st.sampled_from(PATHS))
            if path in used or any(_under(path, r) for r in removed):
                continue
            parent = _parent(path)
            if parent is not None and state.get(parent) != "dir":
                if parent in used:
                    continue  # this layer made it a non-directory already
                entries.append(lb.dir_(parent))
                used.add(parent)
                for p in [p for p in state if p.startswith(parent + "/")]:
                    del state[p]
                state[parent] = "dir"
            if kind == "hardlink":
                targets = sorted(p for p, k in state.items() if k == "file" and not _under(p, path))
                if not targets:
                    continue
                entries.append(lb.hardlink(path, draw(st.sampled_from(targets))))
                new = "file"
            elif kind == "file":
                entries.append(lb.file(path, draw(st.binary(max_size=40)), mode=draw(st.sampled_from(MODES))))
                new = "file"
            elif kind == "dir":
                entries.append(lb.dir_(path, mode=draw(st.sampled_from((0o755, 0o700, 0o1777)))))
                new = "dir"
            else:
                siblings = [c for c in CHILD if parent is not None] + list(TOP)
                target = draw(st.sampled_from(siblings + ["/" + p for p in PATHS] + ["/missing"]))
                entries.append(lb.symlink(path, target))
                new = "link"
            used.add(path)
            if new != "dir" or state.get(path) != "dir":
                for p in [p for p in state if p.startswith(path + "/")]:
                    del state[p]
            state[path] = new
        layers.append(entries)
    return layers


def umoci_image(layers: list[list[lb.Entry]], work: Path) -> Path:
    """The stack as an OCI layout written by umoci from our layer tars, tag ``latest``."""
    layout = work / "layout"
    subprocess.run(["umoci", "init", "--layout", str(layout)], check=True, capture_output=True)
    subprocess.run(["umoci", "new", "--image", f"{layout}:latest"], check=True, capture_output=True)
    for i, entries in enumerate(layers):
        tar = work / f"layer-{i}.tar"
        tar.write_bytes(lb.tar_bytes(entries))
        subprocess.run(["umoci", "raw", "add-layer", "--image", f"{layout}:latest", str(tar)],
                       check=True, capture_output=True)
    return layout


def rendered(aci: str, dest: Path) -> dict:
    dest.mkdir()
    render_tree(aci, str(dest), resolver=DirectoryResolver([os.path.dirname(aci)]))
    listing = tree_listing(dest)
    with_names = {m for m in listing if m != "dev"}  # /dev is the only implicit directory
    return {rel: (entry, os.lstat(dest / rel).st_mtime_ns if rel in with_names else None)
            for rel, entry in listing.items()}


@given(layers=layer_stacks())
@example(layers=[[lb.file("a"), lb.file("b")], [lb.whiteout("a"), lb.whiteout("b")], [lb.dir_("a")]])
# whiteouts and an opaque marker under a link to a directory: umoci follows the link (they
# were ignored; hostile-input review)
@example(layers=[[lb.dir_("real"), lb.file("real/x"), lb.file("real/y"), lb.symlink("l", "real")],
                 [lb.whiteout("l/x")]])
@example(layers=[[lb.dir_("real"), lb.file("real/x"), lb.symlink("l", "/real")], [lb.whiteout("l/x")]])
@example(layers=[[lb.dir_("real"), lb.file("real/x"), lb.file("real/y"), lb.symlink("l", "real")],
                 [lb.opaque("l")], [lb.file("real/z")]])
# ... but not through a link the same layer replaces with a directory (overlayfs's output
# for `rm /var/run && mkdir /var/run`; review): /run keeps its files
@example(layers=[[lb.dir_("run"), lb.file("run/important", b"keep"), lb.dir_("var"), lb.symlink("var/run", "../run")],
                 [lb.dir_("var/run"), lb.opaque("var/run"), lb.file("var/run/new", b"n")]])
@example(layers=[[lb.dir_("run"), lb.file("run/important", b"keep"), lb.dir_("var"), lb.symlink("var/run", "/run")],
                 [lb.dir_("var/run"), lb.whiteout("var/run/important"), lb.file("var/run/new", b"n")]])
# ... nor through one replaced further on the way, reached through another link, or under a
# directory the layer replaces with a link (second review)
@example(layers=[[lb.dir_("run"), lb.file("run/k"), lb.dir_("var"), lb.symlink("var/run", "../run"),
                  lb.symlink("v", "var")], [lb.dir_("var"), lb.dir_("var/run"), lb.opaque("v/run")]])
@example(layers=[[lb.dir_("real"), lb.file("real/x"), lb.symlink("l2", "real"), lb.symlink("l1", "l2")],
                 [lb.dir_("l2"), lb.whiteout("l1/x")]])
@example(layers=[[lb.dir_("run"), lb.file("run/k"), lb.dir_("var"), lb.symlink("var/run", "/run")],
                 [lb.symlink("var", "/run"), lb.whiteout("var/run/k")]])
# ... nor through what the same layer whites out (third review)
@example(layers=[[lb.dir_("a"), lb.file("a/y"), lb.dir_("l"), lb.symlink("l/l", "../a")],
                 [lb.whiteout("l"), lb.opaque("l/l")]])
def test_squash_equals_umoci_and_the_chain_equals_the_squash(layers: list[list[lb.Entry]],
                                                             tmp_path_factory: pytest.TempPathFactory) -> None:
    work = tmp_path_factory.mktemp("prop")
    layout = umoci_image(layers, work)
    expected = tree_listing(umoci_rootfs(layout, "latest", work / "umoci"))
    options: dict = {"use_cache": False, "platform": "linux/amd64"}
    [squashed] = docker2aci.convert(f"oci:{layout}:latest",
                                    docker2aci.ConvertOptions(output_dir=str(work / "squashed"), **options))
    actual = tree_listing(aci_rootfs(Path(squashed.path), work / "tar"))
    assert actual == expected, "\n".join(diff_listings(expected, actual))

    chain = docker2aci.convert(f"oci:{layout}:latest", docker2aci.ConvertOptions(
        output_dir=str(work / "layers"), squash=False, **options))
    assert len(chain) == len(layers)
    whole = rendered(squashed.path, work / "whole")
    from_chain = rendered(chain[0].path, work / "chain")
    assert from_chain == whole, "\n".join(diff_listings({k: v[0] for k, v in whole.items()},
                                                        {k: v[0] for k, v in from_chain.items()}))
    shutil.rmtree(work)
