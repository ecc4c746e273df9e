"""runner.fstree: walking and removing host trees of any depth (Python 3.11's os.walk
and shutil.rmtree recurse once per level and raise RecursionError past about 1,000)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runner.fstree import remove_tree, walk

DEPTH = 1400  # deeper than the recursion limit, and than PATH_MAX (4,096) allows as one path: "dd/" * 1400


def _deep(top: Path, depth: int = DEPTH, name: str = "dd", link_to: Path | None = None) -> None:
    """``top/dd/dd/.../dd`` (``depth`` levels), a file and a link to ``link_to`` (a
    directory that must outlive the removal; not ``/``, were the code under test to follow
    links) every 100 levels, made one level at a time relative to the last (as an app
    makes them)."""
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for level in range(depth):
            os.mkdir(name, dir_fd=fd)
            if level % 100 == 0 and link_to is not None:
                os.symlink(link_to, "up", dir_fd=fd)
                os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd))
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)


def test_a_tree_deeper_than_path_max_is_removed_and_no_link_is_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("kept")
    try:
        _deep(tmp_path / "deep", link_to=outside)
        os.symlink(outside, tmp_path / "deep" / "dd" / "to-outside")
    finally:
        remove_tree(str(tmp_path / "deep"))  # (left, it would make pytest's own clean-up recurse)

    assert sorted(os.listdir(tmp_path)) == ["outside"]
    assert (outside / "keep").read_text() == "kept"


def test_remove_tree_refuses_a_link_or_a_file_and_skips_a_missing_tree(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    os.symlink(tmp_path / "dir", tmp_path / "link")
    (tmp_path / "file").write_text("")
    for name in ("link", "file"):
        with pytest.raises(OSError):
            remove_tree(str(tmp_path / name))
        remove_tree(str(tmp_path / name), ignore_errors=True)
    remove_tree(str(tmp_path / "missing"))
    assert sorted(os.listdir(tmp_path)) == ["dir", "file", "link"]


def _sample(top: Path) -> None:
    for name in ("a/b/c", "a/e", "x/y"):
        (top / name).mkdir(parents=True)
    for name in ("f", "a/g", "a/b/c/h", "x/y/z"):
        (top / name).write_text(name)
    os.symlink("../x", top / "a" / "to-x")  # a link to a directory: listed with the directories, not entered
    os.symlink("missing", top / "dangling")


@pytest.mark.parametrize("topdown", [True, False])
def test_walk_lists_what_os_walk_lists_in_its_order(tmp_path: Path, topdown: bool) -> None:
    _sample(tmp_path)
    assert list(walk(str(tmp_path), topdown=topdown)) == list(os.walk(str(tmp_path), topdown=topdown))


def test_walk_prunes_what_the_caller_removes_and_reaches_any_depth(tmp_path: Path) -> None:
    _sample(tmp_path)
    seen = []
    for directory, dirs, _ in walk(str(tmp_path)):
        seen.append(os.path.relpath(directory, tmp_path))
        if "a" in dirs:
            dirs.remove("a")
    assert seen == [".", "x", "x/y"]
    deep = tmp_path / "deep"
    try:
        _deep(deep, 1100, "d")  # full paths of 2,200 bytes: within PATH_MAX, past the recursion limit
        assert len(list(walk(str(deep), topdown=False))) == 1101
    finally:
        remove_tree(str(deep))  # pytest's own clean-up (and the secrets watch) would recurse


@pytest.mark.parametrize("ignore_errors", [False, True])
def test_a_directory_moved_away_during_the_removal_stops_it_before_it_leaves_the_tree(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ignore_errors: bool) -> None:
    """The removal goes back up through ``..``: a directory moved elsewhere meanwhile (an
    app left running in the fly stage renaming its own directories) led it into the new
    parent, where it removed what bore the names still pending (review). The parent it
    lands in is checked to be the one it came from."""
    import runner.fstree as fstree

    tree, host = tmp_path / "tree", tmp_path / "host"
    (tree / "a" / "b" / "c" / "d").mkdir(parents=True)
    (tree / "a" / "victim").mkdir()  # pending in a/ when the removal is down in a/b/c/d (names in order)
    (host / "victim").mkdir(parents=True)
    (host / "victim" / "keep.txt").write_text("kept")
    clear = fstree._clear_files

    def moving(fd: int, *args: object) -> list[str]:
        if os.readlink(f"/proc/self/fd/{fd}") == str(tree / "a" / "b" / "c" / "d"):
            os.rename(tree / "a" / "b", host / "b")  # the way back up from d now leads into host/
        return clear(fd, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(fstree, "_clear_files", moving)
    if ignore_errors:
        remove_tree(str(tree), ignore_errors=True)  # stops, quietly
    else:
        with pytest.raises(OSError, match="was moved while it was removed: stopped"):
            remove_tree(str(tree))
    assert (host / "victim" / "keep.txt").read_text() == "kept"
    assert (tree / "a" / "victim").is_dir()  # not reached: the removal stopped before going back into a/
