"""Rendering ACIs with runner.extract: safety (case 12), links (13), devices (16), metadata."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from crashkit import paths_under
from runner_aci_helpers import Entry, as_nobody, directory, manifest, symlink, write_aci

from docker2aci.errors import RunnerError
from runner.extract import EntryError, read_manifest, render_aci
from runner.treestore import TreeStore

MTIME = 1_600_000_000


def _hard_link(name: str, target: str) -> Entry:
    return Entry(name, tarfile.LNKTYPE, linkname=target)


def _render(tmp_path: Path, entries: Sequence[Entry], **kwargs: str) -> Path:
    aci = write_aci(tmp_path / "image.aci", entries, manifest({"exec": ["/x"]}), **kwargs)
    rootfs = tmp_path / "out" / "rootfs"
    rootfs.mkdir(parents=True)
    render_aci(aci, rootfs)
    return rootfs


UNSAFE = {
    "dotdot-name": ([Entry("../x", data=b"evil")], "../x"),
    "absolute-name": ([Entry("/abs", data=b"evil")], "/abs"),
    "dotdot-in-rootfs": ([Entry("rootfs/../../x", data=b"evil")], "rootfs/../../x"),
    "through-escaping-link": (
        [symlink("rootfs/a", "../../.."), Entry("rootfs/a/b", data=b"evil")],
        "rootfs/a/b",
    ),
    "through-absolute-dotdot-link": (
        [symlink("rootfs/a", "/../../.."), Entry("rootfs/a/b", data=b"evil")],
        "rootfs/a/b",
    ),
    "hard-link-dotdot": ([_hard_link("rootfs/h", "../../etc/shadow")], "rootfs/h"),
    "hard-link-absolute": ([_hard_link("rootfs/h", "/etc/shadow")], "rootfs/h"),
    "hard-link-outside-rootfs": ([_hard_link("rootfs/h", "manifest")], "rootfs/h"),
    "hard-link-outside-rootfs-dir": ([Entry("rootfs/f", data=b"x"), _hard_link("rootfs/h", "other/f")], "rootfs/h"),
    "hard-link-to-rootfs-itself": ([_hard_link("rootfs/h", "rootfs")], "rootfs/h"),
    "nul-in-name": ([Entry("rootfs/x", data=b"evil", pax={"path": "rootfs/x\0y"})], "rootfs/x\0y"),
    "nul-in-symlink-target": ([Entry("rootfs/s", tarfile.SYMTYPE, linkname="t", pax={"linkpath": "a/../..\0"})],
                              "rootfs/s"),
    "nul-in-hard-link-target": ([Entry("rootfs/f", data=b"x"),
                                 Entry("rootfs/h", tarfile.LNKTYPE, linkname="t", pax={"linkpath": "rootfs/f\0"})],
                                "rootfs/h"),
    "uid-past-64-bits": ([Entry("rootfs/x", data=b"x", pax={"uid": str(2**64)})], "rootfs/x"),
    "uid-past-32-bits": ([Entry("rootfs/x", data=b"x", pax={"uid": "99999999999"})], "rootfs/x"),
    "gid-unchanged-marker": ([Entry("rootfs/x", data=b"x", pax={"gid": str(2**32 - 1)})], "rootfs/x"),
    "mtime-past-64-bits": ([Entry("rootfs/x", data=b"x", pax={"mtime": "1" + "0" * 30})], "rootfs/x"),  # (nan: a malformed header)
    "hard-link-through-link": (
        [symlink("rootfs/l", "../../../etc"), _hard_link("rootfs/h", "rootfs/l/shadow")],
        "rootfs/h",
    ),
}


@pytest.mark.parametrize("case", UNSAFE, ids=list(UNSAFE))
def test_unsafe_entries_are_refused_and_nothing_lands_outside(tmp_path: Path, case: str) -> None:
    entries, bad_name = UNSAFE[case]
    base = tmp_path / "a" / "b"
    rootfs = base / "rootfs"
    rootfs.mkdir(parents=True)
    aci = write_aci(base / "image.aci", [directory("rootfs"), *entries], manifest({}))
    before = paths_under(tmp_path, rootfs)

    with pytest.raises(EntryError) as caught:
        render_aci(aci, rootfs)

    assert caught.value.entry == bad_name
    assert repr(bad_name) in str(caught.value)
    assert str(aci) in str(caught.value)
    assert paths_under(tmp_path, rootfs) == before


@pytest.mark.parametrize("link_name", ["rootfs/a", "rootfs/./a"])
def test_a_directory_replaced_by_a_link_out_keeps_its_mode_off_the_host(tmp_path: Path, link_name: str) -> None:
    """``rootfs/a/b/`` (mode 0777), then ``a`` replaced by a link to a host directory: the
    directory metadata applied at the end used to chmod and utime ``a/b`` by path, through
    the link, so the host's ``b`` became 0777 (hostile-input review). ``rootfs/./a`` is
    the spelling actool's duplicate check lets through."""
    host = tmp_path / "host"
    (host / "b").mkdir(parents=True)
    os.chmod(host / "b", 0o700)
    os.utime(host / "b", (MTIME, MTIME))
    rootfs = _render(tmp_path, [directory("rootfs"), directory("rootfs/a"),
                                directory("rootfs/a/b", mode=0o777, mtime=1234), symlink(link_name, str(host))])
    assert os.readlink(rootfs / "a") == str(host)
    assert (stat.S_IMODE(os.stat(host / "b").st_mode), os.stat(host / "b").st_mtime) == (0o700, MTIME)


def test_absolute_symlinks_are_kept_and_parents_resolve_inside_the_tree(tmp_path: Path) -> None:
    rootfs = _render(
        tmp_path,
        [
            directory("rootfs/run"),
            directory("rootfs/var"),
            symlink("rootfs/var/run", "/run"),
            symlink("rootfs/etc-mtab", "/proc/self/mounts"),
            Entry("rootfs/var/run/pid", data=b"1"),
            symlink("rootfs/lib64", "../lib"),
        ],
    )

    assert os.readlink(rootfs / "var/run") == "/run"
    assert os.readlink(rootfs / "etc-mtab") == "/proc/self/mounts"
    assert os.readlink(rootfs / "lib64") == "../lib"
    assert (rootfs / "run/pid").read_bytes() == b"1"


def test_hard_links_resolve_inside_the_tree(tmp_path: Path) -> None:
    rootfs = _render(
        tmp_path,
        [
            directory("rootfs/bin"),
            Entry("rootfs/bin/tool", data=b"tool", mode=0o755),
            _hard_link("rootfs/bin/alias", "rootfs/bin/tool"),
        ],
    )

    assert os.stat(rootfs / "bin/alias").st_ino == os.stat(rootfs / "bin/tool").st_ino


def test_a_hard_link_to_a_symlink_links_the_symlink(tmp_path: Path) -> None:
    """A hard link names the entry itself, as tar's link does: to a symbolic link it is
    another name of that link (dangling or not), never of the link's target."""
    rootfs = _render(
        tmp_path,
        [
            Entry("rootfs/f", data=b"f"),
            symlink("rootfs/s", "f"),
            symlink("rootfs/dangling", "/nowhere"),
            _hard_link("rootfs/h", "rootfs/s"),
            _hard_link("rootfs/d", "rootfs/dangling"),
        ],
    )

    assert os.readlink(rootfs / "h") == "f"
    assert os.lstat(rootfs / "h").st_ino == os.lstat(rootfs / "s").st_ino
    assert os.readlink(rootfs / "d") == "/nowhere"


def test_a_hard_link_to_its_own_name_says_so(tmp_path: Path) -> None:
    """A file, then a hard link of the same name to it: the file is made room for first,
    so the link's target is gone; "does not exist" alone read as a missing file (runner
    review)."""
    aci = write_aci(tmp_path / "image.aci", [directory("rootfs"), Entry("rootfs/f", data=b"x"),
                                             _hard_link("rootfs/f", "rootfs/f")], manifest({}))
    (tmp_path / "rootfs").mkdir()
    with pytest.raises(EntryError, match=r"hard link target 'rootfs/f' does not exist \(it names the entry itself\)"):
        render_aci(aci, tmp_path / "rootfs")


@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare (util-linux) is not installed")
def test_an_owner_a_user_namespace_cannot_map_is_named(tmp_path: Path) -> None:
    """Rendering as root of a user namespace (``unshare -r``) that maps one id only: chown
    said "entry 'rootfs/f': Invalid argument" (runner review)."""
    aci = write_aci(tmp_path / "image.aci", [directory("rootfs"), Entry("rootfs/f", data=b"x", uid=1000, gid=1000)],
                    manifest({}))
    (tmp_path / "rootfs").mkdir()
    script = ("import sys\nfrom runner.extract import render_aci\ntry:\n    render_aci(sys.argv[1], sys.argv[2])\n"
              "except Exception as err:\n    print(err)\n")
    done = subprocess.run(["unshare", "-Ur", sys.executable, "-c", script, str(aci), str(tmp_path / "rootfs")],
                          cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=60)
    if done.returncode != 0 and "unshare" in done.stderr:
        pytest.skip(f"no user namespace here: {done.stderr.strip()}")
    assert done.stdout == (f"rendering {aci}: entry 'rootfs/f': its owner 1000:1000 cannot be set: this user "
                           "namespace maps no such id (root of a user namespace, 'unshare -r'?)\n"), done.stderr


def test_what_keep_refuses_stays_out_of_the_tree_and_hard_links_to_it_hold(tmp_path: Path) -> None:
    """Refused entries go to a stash beside the root, one file each (two of one name, or a
    refused name made again, collided there: "File exists"; review); a kept hard link to
    a refused one gets its data, and the stash is gone afterwards."""
    entries = [directory("rootfs"), Entry("rootfs/a", data=b"a1"), Entry("rootfs/a", data=b"a2"),
               Entry("rootfs/b", data=b"b"), Entry("rootfs/c", tarfile.LNKTYPE, linkname="rootfs/b"),
               symlink("rootfs/s", "b"), Entry("rootfs/t", tarfile.LNKTYPE, linkname="rootfs/s")]
    aci = write_aci(tmp_path / "image.aci", entries, manifest({}))
    (tmp_path / "out" / "rootfs").mkdir(parents=True)
    render_aci(aci, tmp_path / "out" / "rootfs", keep=lambda path, is_dir: path in ("/c", "/t"))
    rootfs = tmp_path / "out" / "rootfs"
    assert sorted(os.listdir(rootfs)) == ["c", "t"] and os.listdir(tmp_path / "out") == ["rootfs"]
    assert (rootfs / "c").read_bytes() == b"b" and os.readlink(rootfs / "t") == "b"


def test_modes_times_and_missing_parents(tmp_path: Path) -> None:
    rootfs = _render(
        tmp_path,
        [
            directory("rootfs/ro", mode=0o555, mtime=MTIME),
            Entry("rootfs/ro/suid", data=b"x", mode=0o4755, mtime=MTIME),
            Entry("rootfs/ro/sgid-sticky", data=b"x", mode=0o3711, mtime=MTIME),
            Entry("rootfs/implicit/deep/file", data=b"x"),
            Entry("rootfs/pipe", tarfile.FIFOTYPE, mode=0o640),
        ],
    )

    ro = os.lstat(rootfs / "ro")
    assert stat.S_IMODE(ro.st_mode) == 0o555
    assert ro.st_mtime == MTIME  # applied after its contents were written
    assert stat.S_IMODE(os.lstat(rootfs / "ro/suid").st_mode) == 0o4755
    assert stat.S_IMODE(os.lstat(rootfs / "ro/sgid-sticky").st_mode) == 0o3711
    assert os.lstat(rootfs / "ro/suid").st_mtime == MTIME
    assert stat.S_IMODE(os.lstat(rootfs / "implicit/deep").st_mode) == 0o755
    assert stat.S_ISFIFO(os.lstat(rootfs / "pipe").st_mode)
    assert stat.S_IMODE(os.lstat(rootfs / "pipe").st_mode) == 0o640


@pytest.mark.root
def test_owners_are_numeric_and_kept(tmp_path: Path) -> None:
    rootfs = _render(
        tmp_path,
        [
            directory("rootfs/home", uid=1234, gid=5678),
            Entry("rootfs/home/suid", data=b"x", mode=0o4755, uid=1234, gid=5678),
            symlink("rootfs/home/link", "suid"),
        ],
    )

    for name in ("home", "home/suid"):
        info = os.lstat(rootfs / name)
        assert (info.st_uid, info.st_gid) == (1234, 5678)
    # chown before chmod: the setuid bit survives the owner change
    assert stat.S_IMODE(os.lstat(rootfs / "home/suid").st_mode) == 0o4755


def test_xattrs_are_set_and_security_failures_only_warn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="runner.extract")
    pax = {"SCHILY.xattr.user.origin": "docker2aci", "SCHILY.xattr.security.capability": "bad"}

    rootfs = _render(tmp_path, [Entry("rootfs/file", data=b"x", pax=pax)])

    assert os.getxattr(rootfs / "file", "user.origin") == b"docker2aci"
    assert "security.capability" in caplog.text


def test_names_are_byte_exact(tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9-\xff")  # not UTF-8: carried as surrogates
    rootfs = _render(tmp_path, [Entry(f"rootfs/{name}", data=b"x"), symlink("rootfs/l", name)])

    assert b"caf\xe9-\xff" in os.listdir(os.fsencode(rootfs))
    assert os.readlink(os.fsencode(rootfs / "l")) == b"caf\xe9-\xff"


@pytest.mark.parametrize("compression", ["gz", "bz2", "xz", ""])
def test_compression_is_sniffed(tmp_path: Path, compression: str) -> None:
    rootfs = _render(tmp_path, [Entry("rootfs/f", data=b"data")], compression=compression)

    assert (rootfs / "f").read_bytes() == b"data"


def test_later_entries_replace_earlier_ones(tmp_path: Path) -> None:
    rootfs = _render(
        tmp_path,
        [
            Entry("rootfs/x", data=b"old"),
            symlink("rootfs/x", "/elsewhere"),
            directory("rootfs/d"),
            Entry("rootfs/d/f", data=b"f"),
            Entry("rootfs/d", data=b"now a file"),
        ],
    )

    assert os.readlink(rootfs / "x") == "/elsewhere"
    assert (rootfs / "d").read_bytes() == b"now a file"


@pytest.mark.root
def test_device_nodes_are_created_as_root(tmp_path: Path) -> None:
    rootfs = _render(
        tmp_path,
        [Entry("rootfs/dev/null", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3)],
    )

    info = os.lstat(rootfs / "dev/null")
    assert stat.S_ISCHR(info.st_mode)
    assert (os.major(info.st_rdev), os.minor(info.st_rdev)) == (1, 3)
    assert stat.S_IMODE(info.st_mode) == 0o666


@contextlib.contextmanager
def _effective_user(uid: int) -> Iterator[None]:
    """Drop the effective uid for a while (the real uid stays root to come back)."""
    if os.geteuid() == 0:
        os.seteuid(uid)
    try:
        yield
    finally:
        if os.getuid() == 0:
            os.seteuid(0)


def test_device_nodes_are_skipped_without_root(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="runner.extract")
    nobody = 65534
    # a world-readable place, so the test also works after dropping root
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        os.chmod(base, 0o755)
        entries = [
            directory("rootfs"),
            Entry("rootfs/dev/console", tarfile.CHRTYPE, mode=0o600, devmajor=5, devminor=1),
            Entry("rootfs/run/ctl", tarfile.FIFOTYPE),
        ]
        aci = write_aci(base / "image.aci", entries, manifest({}))
        os.chmod(aci, 0o644)
        rootfs = base / "rootfs"
        rootfs.mkdir()
        if os.geteuid() == 0:
            os.chown(rootfs, nobody, nobody)
        with _effective_user(nobody):
            render_aci(aci, rootfs)
            assert not os.path.lexists(rootfs / "dev/console")
            assert stat.S_ISFIFO(os.lstat(rootfs / "run/ctl").st_mode)
    assert "dev/console" in caplog.text


@pytest.mark.skipif(shutil.which("tar") is None, reason="needs GNU tar")
def test_sparse_members_stay_sparse(tmp_path: Path) -> None:
    source = tmp_path / "src" / "rootfs"
    source.mkdir(parents=True)
    size = 256 << 20
    with open(source / "sparse", "wb") as handle:
        handle.write(b"head")
        handle.seek(size - 4)
        handle.write(b"tail")
    (tmp_path / "src" / "manifest").write_text('{"acKind": "ImageManifest", "name": "x"}')
    aci = tmp_path / "sparse.aci"
    subprocess.run(
        ["tar", "--sparse", "--format=pax", "-cf", str(aci), "-C", str(tmp_path / "src")]
        + ["manifest", "rootfs"],
        check=True,
    )
    rootfs = tmp_path / "out"
    rootfs.mkdir()

    render_aci(aci, rootfs)

    info = os.stat(rootfs / "sparse")
    assert info.st_size == size
    assert info.st_blocks * 512 < 1 << 20
    with open(rootfs / "sparse", "rb") as handle:
        assert handle.read(4) == b"head"
        handle.seek(size - 4)
        assert handle.read() == b"tail"


def test_an_archive_without_manifest_is_refused(tmp_path: Path) -> None:
    aci = write_aci(tmp_path / "image.aci", [directory("rootfs")], None)

    with pytest.raises(RunnerError, match="no 'manifest' entry"):
        render_aci(aci, tmp_path)


def test_a_second_manifest_is_refused_and_no_tree_is_published(tmp_path: Path) -> None:
    # the signature's trust, the dependencies and the identity checks read the first
    # manifest (read_manifest); the tree store must not run the app of another one
    first = manifest({"exec": ["/bin/echo", "first"]}, name="test/first")
    second = manifest({"exec": ["/bin/echo", "second"]}, name="test/second")
    entries = [directory("rootfs"), Entry("rootfs/a", data=b"a"),
               Entry("manifest", data=json.dumps(second).encode())]
    aci = write_aci(tmp_path / "image.aci", entries, first)
    assert read_manifest(aci)["name"] == "test/first"
    store = TreeStore(tmp_path / "store")

    with pytest.raises(EntryError, match=r"entry 'manifest': given twice: an ACI has one manifest"):
        with store.acquire(aci):
            pass
    assert store.image_ids() == []
    assert [n for n in os.listdir(tmp_path / "store" / "trees") if n.startswith(".tmp-")] == []


def test_zstd_is_refused(tmp_path: Path) -> None:
    aci = tmp_path / "image.aci"
    aci.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(64))

    with pytest.raises(RunnerError, match="zstd"):
        render_aci(aci, tmp_path)


def test_a_non_root_render_sets_modes_that_deny_reading(tmp_path: Path) -> None:
    """A chain of two images (``--nosquash`` ACIs, dependencies) rendered into one tree,
    each with directories of mode 0311 (write and search, no read): the upper image's modes are
    applied through descriptors that need search permission only (O_PATH). Opening the
    lower image's 0311 directory to read (O_RDONLY) failed as non-root with "Permission
    denied" (review)."""
    import textwrap

    work = Path(tempfile.mkdtemp(prefix="docker2aci-nonroot-"))
    try:
        os.chmod(work, 0o755)
        lower = write_aci(work / "lower.aci", [directory("rootfs"), directory("rootfs/a", mode=0o311),
                                               Entry("rootfs/a/x", data=b"x"), directory("rootfs/a/b", mode=0o311),
                                               Entry("rootfs/a/b/y", data=b"y")], manifest({}))
        upper = write_aci(work / "upper.aci", [directory("rootfs"), directory("rootfs/a", mode=0o311),
                                               directory("rootfs/a/b", mode=0o311), Entry("rootfs/a/b/z", data=b"z")],
                          manifest({}))
        (work / "rootfs").mkdir()
        os.chown(work / "rootfs", 65534, 65534)
        result = as_nobody(textwrap.dedent(f"""
            from runner.extract import render_aci
            for aci in ({str(lower)!r}, {str(upper)!r}):
                render_aci(aci, {str(work / 'rootfs')!r})
        """))
        assert result.returncode == 0, result.stderr
        assert stat.S_IMODE(os.stat(work / "rootfs/a").st_mode) == 0o311
        assert stat.S_IMODE(os.stat(work / "rootfs/a/b").st_mode) == 0o311
        assert sorted(os.listdir(work / "rootfs/a/b")) == ["y", "z"]  # as root, who may read it
    finally:
        shutil.rmtree(work)


def test_a_directory_over_a_dependencys_takes_only_its_own_xattrs(tmp_path: Path) -> None:
    """A chain rendered into one tree: the upper image's entry for a directory gives all
    its metadata, xattrs too (appc's renderer extracts only the uppermost entry of a path,
    umoci clears a directory's xattrs before setting a layer's): the lower image's
    ``user.lower`` stayed."""
    lower = write_aci(tmp_path / "lower.aci", [directory("rootfs"), directory(
        "rootfs/d", pax={"SCHILY.xattr.user.lower": "1", "SCHILY.xattr.user.both": "old"})], manifest({}))
    upper = write_aci(tmp_path / "upper.aci", [directory("rootfs"), directory(
        "rootfs/d", mode=0o700, pax={"SCHILY.xattr.user.both": "new"})], manifest({}))
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    for aci in (lower, upper):
        render_aci(aci, rootfs)
    assert os.listxattr(rootfs / "d") == ["user.both"]
    assert os.getxattr(rootfs / "d", "user.both") == b"new"
    assert stat.S_IMODE(os.stat(rootfs / "d").st_mode) == 0o700
