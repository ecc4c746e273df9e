"""The escape check of ``converters.rootfs`` (``RootfsTree._check_symlinks``) against its
definition: the algorithm it had before its resolutions were memoized (kept here as
:func:`reference_escapes`), which re-walked every link's target at each hop.

The memoized check must give the same verdict for every relative symlink, on the
symlink inputs of ``test_rootfs.py`` and ``test_hostile.py`` and on seeded random trees
(relative and absolute links, ``..``, loops, chains around the hop limit, missing
components), checked in the tree's order (as the squash does) and in a shuffled one (so
that outcomes recorded by one link are taken up by others from every side).
"""

from __future__ import annotations

import io
import random
import tarfile
from collections import deque

import pytest

import layerbuild as lb
from converters.errors import UnsafeEntry
from converters.rootfs import MAX_SYMLINK_HOPS, Inode, LayerTar, Node, RootfsTree, _Dir, _LinkResolver

# ---------------------------------------------------------------- the definition


def reference_escapes(stack: list[Node | None], target: str) -> bool:
    """Whether resolving ``target`` from the directory ``stack`` climbs above the root by
    relative steps alone: ``RootfsTree._escapes`` as it was, word for word."""
    pending = deque(p for p in target.split("/") if p not in ("", "."))
    hops = 0
    rerooted = False
    while pending:
        part = pending.popleft()
        if part == "..":
            if len(stack) == 1:
                if not rerooted:
                    return True
                continue
            stack.pop()
            continue
        current = stack[-1]
        child = current.children.get(part) if current is not None and current.children is not None else None
        if child is not None and child.inode is not None and child.inode.header.issym():
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                return False  # a loop: the kernel gives ELOOP, nothing is reached
            link = child.inode.header.linkname
            if link.startswith("/"):
                del stack[1:]
                rerooted = True
            pending.extendleft(reversed([p for p in link.split("/") if p not in ("", ".")]))
            continue
        stack.append(child if child is not None and child.children is not None else None)
    return False


def relative_links(tree: RootfsTree) -> list[tuple[str, Node]]:
    """The tree's relative symlinks, in the order the check visits them."""
    return [(path, node) for path, node in tree.walk()
            if node.inode is not None and node.inode.header.issym() and not node.inode.header.linkname.startswith("/")]


def reference_verdicts(tree: RootfsTree) -> dict[str, bool]:
    verdicts = {}
    for path, node in relative_links(tree):
        parents: list[Node | None] = [tree.root]
        for part in path.split("/")[:-1]:
            current = parents[-1]
            assert current is not None and current.children is not None
            parents.append(current.children[part])
        assert node.inode is not None
        verdicts[path] = reference_escapes(parents, node.inode.header.linkname)
    return verdicts


def memoized_verdicts(tree: RootfsTree, order: list[tuple[str, Node]]) -> dict[str, bool]:
    """The verdicts of one :class:`_LinkResolver` (one check) asked in ``order``."""
    links = _LinkResolver(tree.root)
    verdicts = {}
    for path, node in order:
        directory = links.root
        for part in path.split("/")[:-1]:
            assert directory.node is not None and directory.node.children is not None
            directory = _Dir(directory.node.children[part], directory)
        verdicts[path] = links.escapes(node, directory)
    return verdicts


def assert_same_verdicts(tree: RootfsTree, rng: random.Random | None = None) -> dict[str, bool]:
    """The memoized verdicts equal the reference's, link by link and for the whole check."""
    expected = reference_verdicts(tree)
    order = relative_links(tree)
    assert memoized_verdicts(tree, order) == expected
    if rng is not None:
        rng.shuffle(order)
        assert memoized_verdicts(tree, order) == expected
    first = next((path for path, escapes in expected.items() if escapes), None)  # in walk order
    if first is None:
        tree._check_symlinks()
    else:
        with pytest.raises(UnsafeEntry) as err:
            tree._check_symlinks()
        assert err.value.entry == first
    return expected


def unchecked(*layers: list[lb.Entry]) -> RootfsTree:
    """The layers squashed (base first) without the escape check."""
    tree = RootfsTree([LayerTar(f"L{i}", io.BytesIO(lb.tar_bytes(layer))) for i, layer in enumerate(layers)])
    for _ in layers:
        tree.apply(check=False)
    return tree


# ---------------------------------------------------------------- the existing inputs

EXISTING = {
    # test_rootfs.py (its escaping-symlink cases are refused before the check, by their text alone)
    "case-12-inside": [lb.dir_("usr"), lb.dir_("usr/lib"), lb.file("usr/lib/ld.so"), lb.dir_("usr/lib64"),
                       lb.dir_("usr/bin"), lb.dir_("etc"), lb.symlink("usr/lib64/ld.so", "../lib/ld.so"),
                       lb.symlink("lib64", "usr/lib64"), lb.symlink("usr/bin/X11", "."),
                       lb.symlink("etc/localtime", "../usr/share/zoneinfo/UTC")],
    "case-13-absolute": [lb.dir_("var"), lb.dir_("etc"), lb.symlink("var/run", "/run"),
                         lb.symlink("etc/mtab", "/proc/self/mounts"), lb.symlink("var/lock", "/run/lock"),
                         lb.symlink("etc/odd", "/../../etc/passwd")],
    "read-file": [lb.dir_("etc"), lb.file("etc/passwd", "root:x:0:0::/:/bin/sh\n"), lb.symlink("lnk", "/etc"),
                  lb.symlink("up", "/../../etc"), lb.symlink("loop", "loop2"), lb.symlink("loop2", "/loop")],
    "stream-order": [lb.dir_("d", mode=0o700), lb.file("d/b", "b"), lb.file("d/a", "a"), lb.symlink("l", "d/a")],
    # test_hostile.py: test_symlink_escaping_through_another_symlink_is_refused
    "through-up": [lb.dir_("a"), lb.symlink("a/up", ".."), lb.symlink("a/out", "up/..")],
    "link-later": [lb.dir_("a"), lb.symlink("a/out", "up/.."), lb.symlink("a/up", "..")],
    "two-levels": [lb.dir_("a/b"), lb.symlink("a/b/top", "../.."), lb.symlink("x", "a/b/top/../etc")],
    "chain-of-ups": [lb.dir_("a"), lb.symlink("a/loop", "loop/x"), lb.symlink("a/up", ".."),
                     lb.symlink("a/z", "up/a/up/..")],
    # test_hostile.py: test_symlinks_that_stay_inside_are_kept
    "back-inside": [lb.dir_("a"), lb.symlink("a/up", ".."), lb.symlink("a/self", "up/a")],
    "absolute-re-rooted": [lb.dir_("a"), lb.symlink("a/abs", "/etc"), lb.symlink("a/etc-parent", "abs/..")],
    "loop": [lb.dir_("a"), lb.symlink("a/loop1", "loop2"), lb.symlink("a/loop2", "loop1/..")],
    "missing-component": [lb.symlink("missing-then-up", "nothere/../x")],
    "up-after-an-absolute-link": [lb.dir_("a"), lb.symlink("a/r", "/"), lb.symlink("a/hop", "r/.."),
                                  lb.symlink("a/s", "hop/../..")],
    # test_hostile.py: test_user_lookup_never_leaves_the_image
    "passwd-two-link-loop": [lb.dir_("etc"), lb.symlink("etc/passwd", "pw2"), lb.symlink("etc/pw2", "passwd")],
    "passwd-inside-relative": [lb.dir_("etc"), lb.symlink("etc/passwd", "../data/./pw"), lb.dir_("data"),
                               lb.file("data/pw", "web:x:101:555::/:/bin/sh\n")],
    "passwd-absolute-dots": [lb.dir_("etc"), lb.symlink("etc/passwd", "/" + "../" * 50 + "data/pw"),
                             lb.dir_("data"), lb.file("data/pw", "web:x:101:556::/:/bin/sh\n")],
}


@pytest.mark.parametrize("entries", EXISTING.values(), ids=EXISTING.keys())
def test_existing_symlink_inputs_get_the_reference_verdicts(entries: list[lb.Entry]) -> None:
    assert_same_verdicts(unchecked(entries))


# ---------------------------------------------------------------- random trees

NAMES = ("a", "b", "l", "m")
STEPS = NAMES + ("..", "..", ".", "")


def built(entries: list[tuple[str, str | None]]) -> RootfsTree:
    """A tree of ``(path, target)`` entries put in order, as the squash puts them (missing
    or non-directory parents become directories): ``target`` ``None`` is a directory,
    ``""`` a file, anything else a symlink (escaping ones too: the check is its own test)."""
    tree = RootfsTree([LayerTar("L0", io.BytesIO())])
    for path, target in entries:
        parts = tuple(path.split("/"))
        parent = tree._parent_dir(parts, 0)
        assert parent.children is not None
        existing = parent.children.get(parts[-1])
        if target is None:
            if existing is None or existing.children is None:
                parent.children[parts[-1]] = Node.directory(None, 0)
            continue
        header = tarfile.TarInfo(path)
        header.type = tarfile.SYMTYPE if target else tarfile.REGTYPE
        header.linkname = target
        parent.children[parts[-1]] = Node(inode=Inode(header, 0), layer=0)
    return tree


def random_target(rng: random.Random) -> str:
    target = "/".join(rng.choice(STEPS) for _ in range(rng.randint(1, 6)))
    if rng.random() < 0.2:
        target = "/" + target
    return target + "/" if rng.random() < 0.1 else target


def random_tree(rng: random.Random) -> RootfsTree:
    entries: list[tuple[str, str | None]] = []
    for _ in range(rng.randint(1, 10)):
        path = "/".join(rng.choice(NAMES) for _ in range(rng.randint(1, 3)))
        kind = rng.random()
        entries.append((path, None if kind < 0.25 else "" if kind < 0.35 else random_target(rng)))
    return built(entries)


def chain_tree(rng: random.Random) -> RootfsTree:
    """Links ``d/c1 -> (detour) c2 -> ... -> cN -> (end)``, N around the hop limit, and links
    into the chain from before and after it in the tree's order; some steps absolute."""
    n = rng.randint(MAX_SYMLINK_HOPS - 6, MAX_SYMLINK_HOPS + 4)
    detours = ("", "n/../", "../d/", "x/y/../../", "c0/d/")
    absolute = rng.randint(1, 3 * n)  # the link re-rooted by "/d/" (one in three chains has one)
    entries: list[tuple[str, str | None]] = [("d", None), ("d/c0", "..")]
    entries += [(f"d/c{i}", ("/d/" if i == absolute else rng.choice(detours)) + f"c{i + 1}") for i in range(1, n)]
    entries.append((f"d/c{n}", rng.choice(("..", "../..", "x", "c1", "/..", "c0/..", "/d/c0/.."))))
    for j in range(rng.randint(1, 8)):
        into = f"c{rng.randint(1, n)}"
        entries.append((f"d/{rng.choice('ap')}{j}", rng.choice((into, f"../d/{into}", f"/d/{into}/..", f"{into}/.."))))
    return built(entries)


def test_random_trees_get_the_reference_verdicts() -> None:
    rng = random.Random(20240611)
    escapes = 0
    for _ in range(3000):
        escapes += any(assert_same_verdicts(random_tree(rng), rng).values())
    assert 300 < escapes < 2700  # both verdicts are well represented


def test_chains_around_the_hop_limit_get_the_reference_verdicts() -> None:
    rng = random.Random(7)
    verdicts: set[bool] = set()
    for _ in range(300):
        verdicts.update(assert_same_verdicts(chain_tree(rng), rng).values())
    assert verdicts == {True, False}


@pytest.mark.parametrize("length", range(MAX_SYMLINK_HOPS - 2, MAX_SYMLINK_HOPS + 3))
def test_an_escape_after_as_many_links_as_allowed_is_refused_and_one_more_is_not(length: int) -> None:
    # p -> c1 -> ... -> c<length> -> ../..: the escape comes after `length` links.
    entries: list[tuple[str, str | None]] = [("d", None), ("d/p", "c1")]
    entries += [(f"d/c{i}", f"c{i + 1}") for i in range(1, length)] + [(f"d/c{length}", "../..")]
    verdicts = assert_same_verdicts(built(entries))
    assert verdicts["d/p"] is (length <= MAX_SYMLINK_HOPS)
