"""The tree store, pods and gc: one render per image ID, shared by runs, removed when unused.

Renders use real ACIs: the busybox ACIs of ``runner_aci_helpers`` and, for dependencies,
ACIs built by ``actool build`` (appc-spec) from image layouts. Runs go through the CLI in a
fresh Python (``python -m docker2aci run``), with the store in a temporary directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from runner_aci_helpers import (ACTOOL, PROJECT_ROOT, RUNC_MARKS, actool_build, as_nobody, busybox_entries,
                                children_running, directory, manifest, symlink, write_aci)
from runner_aci_helpers import Entry

from docker2aci.errors import RunnerError
from runner.extract import compute_image_id
from runner.linux import mount_points_under
from runner.pod import PodGcReport, gc_pods, open_pod
from runner.treestore import TreeStore, render_tree

APP = {"exec": ["/bin/sh", "-c", "echo hello"], "user": "0", "group": "0"}


@pytest.fixture
def aci(tmp_path: Path) -> Path:
    return write_aci(tmp_path / "busybox.aci", busybox_entries(), manifest(APP))


def _cli(*args: str, store: Path, timeout: float = 30, **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(store.parent)}
    return subprocess.run([sys.executable, "-m", "docker2aci", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False, **kwargs)


def test_a_tree_is_rendered_once_and_shared(tmp_path: Path, aci: Path) -> None:
    store = TreeStore(tmp_path / "store")
    with store.acquire(aci) as first:
        inode = os.stat(os.path.join(first.rootfs, "bin/busybox")).st_ino
        with store.acquire(aci) as second:  # a concurrent user of the same image
            assert second.path == first.path
            assert os.stat(os.path.join(second.rootfs, "bin/busybox")).st_ino == inode
    assert first.image_id == compute_image_id(aci)
    assert first.path == str(tmp_path / "store" / "trees" / first.image_id)
    assert first.manifest["name"] == "test/busybox"
    assert sorted(os.listdir(first.rootfs)) == ["bin", "etc"]
    assert store.image_ids() == [first.image_id]
    assert oct(os.stat(store.dir).st_mode & 0o777) == "0o700"


def test_a_wrong_image_id_publishes_nothing(tmp_path: Path, aci: Path) -> None:
    store = TreeStore(tmp_path / "store")
    wrong = "sha512-" + "0" * 128
    with pytest.raises(RunnerError, match=f"its image ID is {compute_image_id(aci)}, not {wrong}"):
        with store.acquire(aci, image_id=wrong):
            pass
    assert [n for n in os.listdir(store.dir) if not n.endswith(".lock")] == []


def test_an_unsafe_image_publishes_nothing(tmp_path: Path) -> None:
    bad = write_aci(tmp_path / "bad.aci", [*busybox_entries(with_etc=False), symlink("rootfs/etc", "/etc"),
                                            Entry("rootfs/etc/evil", data=b"x")], manifest(APP))
    store = TreeStore(tmp_path / "store")
    with pytest.raises(RunnerError, match="rootfs/etc/evil"):
        with store.acquire(bad):
            pass
    assert not os.path.exists("/etc/evil")
    assert [n for n in os.listdir(store.dir) if not n.endswith(".lock") and n != "index"] == []


def test_gc_keeps_trees_in_use_and_recent_ones(tmp_path: Path, aci: Path) -> None:
    store = TreeStore(tmp_path / "store")
    other = write_aci(tmp_path / "other.aci", busybox_entries(with_etc=False), manifest(APP, name="test/other"))
    with store.acquire(other) as unused:
        pass
    with store.acquire(aci) as held:
        report = store.gc(grace_seconds=3600)
        assert (report.in_use, report.recent, report.removed) == ([held.image_id], [unused.image_id], [])
        report = store.gc()
        assert (report.in_use, report.removed) == ([held.image_id], [unused.image_id])
        assert os.path.isdir(held.rootfs)
    report = store.gc()
    assert report.removed == [held.image_id]
    assert os.listdir(store.dir) == ["index"]  # what was learnt of the files stays


def test_racing_processes_render_one_tree(tmp_path: Path, aci: Path) -> None:
    """Eight processes acquire the same uncached image at once: one render, one tree."""
    code = ("import logging, sys; logging.basicConfig(level=logging.DEBUG, stream=sys.stderr);"
            "from runner.treestore import TreeStore;"
            "s = TreeStore(sys.argv[1]);"
            "cm = s.acquire(sys.argv[2]); t = cm.__enter__(); print(t.path); cm.__exit__(None, None, None)")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "store"), str(aci)], cwd=PROJECT_ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(8)]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, outputs
    assert len({out.strip() for out, _ in outputs}) == 1
    assert sum("into the tree store" in err for _, err in outputs) == 1
    assert TreeStore(tmp_path / "store").image_ids() == [compute_image_id(aci)]


def test_a_caller_that_found_no_tree_does_not_wait_for_the_run_of_the_one_that_rendered_it(
        tmp_path: Path, aci: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two callers find no tree at once (a pre-run hook's cold start): one renders it, then
    runs its app, holding the tree's shared lock for as long as the app runs. The other
    waited for the exclusive lock, to render, until that run ended (a server's: for ever);
    it now takes the tree as soon as it is rendered."""
    from runner import treestore

    store = TreeStore(tmp_path / "store")
    os.makedirs(store.dir, mode=0o700)
    looking = os.open(os.path.join(store.dir, f"{compute_image_id(aci)}.lock"), os.O_RDONLY | os.O_CREAT, 0o600)
    fcntl.flock(looking, fcntl.LOCK_SH)  # a third caller, between its look and its render
    found_none: set[int] = set()
    is_tree = treestore._is_tree

    def seen(path: str) -> bool:
        there = is_tree(path)
        if not there and len(found_none) < 2:
            found_none.add(threading.get_ident())
            if len(found_none) == 2:  # both callers looked: the third goes
                os.close(looking)
        return there

    monkeypatch.setattr(treestore, "_is_tree", seen)
    got: list[str] = []
    app_ends = threading.Event()

    def caller() -> None:
        with store.acquire(aci) as tree:
            got.append(tree.path)
            if len(got) == 1:  # the first runs its app until the test ends it
                app_ends.wait(60)

    callers = [threading.Thread(target=caller) for _ in range(2)]
    for thread in callers:
        thread.start()
    deadline = time.monotonic() + 10
    while len(got) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    both = list(got)
    app_ends.set()
    for thread in callers:
        thread.join(60)
    assert len(found_none) == 2
    assert both == [os.path.join(store.dir, compute_image_id(aci))] * 2
    assert store.image_ids() == [compute_image_id(aci)]


@pytest.mark.root
@pytest.mark.parametrize("overlay", [True, False], ids=["overlay", "private-copy"])
def test_a_pod_writes_never_reach_the_tree(tmp_path: Path, aci: Path, overlay: bool) -> None:
    store = TreeStore(tmp_path / "store")
    with store.acquire(aci) as tree:
        before = sorted(os.listdir(tree.rootfs))
        with open_pod(store.root, tree.rootfs, overlay=overlay,
                      render=lambda d: render_tree(aci, d)) as pod:
            assert pod.overlay is overlay
            Path(pod.rootfs, "written").write_text("by the run")
            os.unlink(os.path.join(pod.rootfs, "bin/busybox"))
            assert sorted(os.listdir(pod.rootfs)) == sorted([*before, "written"])
        assert sorted(os.listdir(tree.rootfs)) == before
        assert os.path.isfile(os.path.join(tree.rootfs, "bin/busybox"))
    assert os.listdir(tmp_path / "store" / "pods") == []
    assert mount_points_under(str(tmp_path)) == []


@pytest.mark.root
def test_gc_cleans_up_after_a_killed_run(tmp_path: Path, aci: Path) -> None:
    """kill -9 of a run (the runner and its app): its overlay stays mounted and its pod
    stays; gc unmounts and removes them, and the tree once nobody uses it."""
    store = tmp_path / "cache" / "docker2aci"
    env = {**os.environ, "XDG_CACHE_HOME": str(store.parent)}
    proc = subprocess.Popen([sys.executable, "-m", "docker2aci", "run", "--stage=fly", "--insecure-options=image",
                             "--exec", "/bin/sleep 60", str(aci)], cwd=PROJECT_ROOT, env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not mount_points_under(str(store / "pods")):
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr and proc.stderr.read()
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    time.sleep(0.2)  # the app (sleep) is in the same process group: gone too
    [pod] = os.listdir(store / "pods")
    result = _cli("gc", "--json", store=store)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["pods_removed"] == [str(store / "pods" / pod)]
    assert report["trees_removed"] == [compute_image_id(aci)]
    assert os.listdir(store / "pods") == [] and os.listdir(store / "trees") == ["index"]  # file hash -> image ID
    assert mount_points_under(str(tmp_path)) == []


def test_a_run_whose_app_nests_directories_deeply_ends_with_the_app_s_status(tmp_path: Path, aci: Path) -> None:
    """An app that made 1,100 nested directories in its pod: removing the pod recursed
    once per level (RecursionError: a traceback and status 1 instead of the app's, the pod
    left), and every later gc failed on it (runner review)."""
    store = tmp_path / "cache" / "docker2aci"
    deep = "/".join(["d"] * 1100)
    result = _cli("run", "--stage=fly", "--insecure-options=image", "--exec", f"/bin/sh -c 'mkdir -p /tmp/{deep} "
                  "&& echo made && exit 3'", str(aci), store=store, timeout=60)
    assert (result.returncode, result.stdout) == (3, "made\n"), result.stderr
    assert "Traceback" not in result.stderr and os.listdir(store / "pods") == []
    gc = _cli("gc", "--json", store=store)
    assert gc.returncode == 0, gc.stderr


def _cgroups_of(cid: str) -> list[str]:
    return [str(group) for group in Path("/sys/fs/cgroup").glob(f"*/{cid}")]


@pytest.mark.root
@RUNC_MARKS[0]
@RUNC_MARKS[1]
@pytest.mark.parametrize("closes_fds", [False, True], ids=["app-keeps-fds", "app-closes-fds"])
def test_gc_leaves_an_isolated_app_alone_after_its_runner_and_runc_are_killed(tmp_path: Path, aci: Path,
                                                                              closes_fds: bool) -> None:
    """kill -9 of an isolated run's process group kills the runner and runc, not the app
    (runc gives it a session of its own). The app held no lock: gc removed its pod (its
    overlay unmounted, its writes deleted) and its tree while it ran, and its cgroups
    stayed forever. The app now holds both locks (runc's --preserve-fds), as in the fly
    stage; an app that closes them is still seen: its container's cgroup has processes
    (the pod stays) and the pod's overlay is mounted on the tree (the tree stays). Once it
    ends, gc removes the pod, the tree and the cgroups."""
    store = tmp_path / "cache" / "docker2aci"
    env = {**os.environ, "XDG_CACHE_HOME": str(store.parent)}
    script = ("exec 3<&- 4<&-; " if closes_fds else "") + "echo kept > /mark; while [ ! -e /go ]; do sleep 0.05; done"
    proc = subprocess.Popen([sys.executable, "-m", "docker2aci", "run", "--stage=isolated", "--net=host",
                             "--insecure-options=image", "--exec", f"/bin/sh -c '{script}'", str(aci)],
                            cwd=PROJECT_ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=(tmp_path / "stderr").open("wb"))
    cid = ""
    try:
        deadline = time.monotonic() + 30
        while not list(store.glob("pods/*/rootfs/mark")):  # the app runs
            assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "stderr").read_text()
            time.sleep(0.05)
        [config] = store.glob("pods/*/bundle-*/config.json")
        cid = json.loads(config.read_text())["linux"]["cgroupsPath"].lstrip("/")
        os.killpg(proc.pid, signal.SIGKILL)  # the runner and runc
        proc.wait()
        assert _cgroups_of(cid) and (Path("/sys/fs/cgroup/pids") / cid / "cgroup.procs").read_text().strip()

        report = json.loads(_cli("gc", "--json", store=store).stdout)
        assert (report["pods_removed"], report["trees_removed"]) == ([], [])
        assert report["trees_in_use"] == [compute_image_id(aci)]
        assert report["pods_in_use"] == [str(config.parent.parent)]  # listed since run review 2
        [mark] = store.glob("pods/*/rootfs/mark")
        assert mark.read_text() == "kept\n"  # still mounted, the app's writes there

        (mark.parent / "go").touch()  # the app ends
        deadline = time.monotonic() + 10
        while (Path("/sys/fs/cgroup/pids") / cid / "cgroup.procs").read_text().strip():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        report = json.loads(_cli("gc", "--json", store=store).stdout)
        assert len(report["pods_removed"]) == 1 and report["trees_removed"] == [compute_image_id(aci)]
        assert report["pods_in_use"] == [] and _cgroups_of(cid) == []
    finally:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        for procs in Path("/sys/fs/cgroup/pids").glob(f"{cid}/cgroup.procs") if cid else ():
            for pid in procs.read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.2)
        _cli("gc", store=store)
        for group in _cgroups_of(cid) if cid else ():
            with contextlib.suppress(OSError):
                os.rmdir(group)
    assert os.listdir(store / "pods") == [] and mount_points_under(str(tmp_path)) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_run_terminated_before_its_app_starts_takes_its_pod_down(tmp_path: Path, aci: Path, signum: int) -> None:
    """SIGTERM (or SIGHUP) once the pod's overlay is mounted but before the app started
    killed the runner at once: the overlay stayed mounted and the pod stayed until a gc
    (runner review). It now unwinds as Ctrl-C does; the status is the signal's, 128 + N.
    The signal is sent from inside, at that point, so the test does not race."""
    store = tmp_path / "cache" / "docker2aci"
    env = {**os.environ, "XDG_CACHE_HOME": str(store.parent)}
    wrapper = (
        "import os, sys, runner.api as api\n"
        "real = api.run_fly\n"
        "def terminated_first(*args, **kwargs):\n"
        f"    os.kill(os.getpid(), {int(signum)})\n"
        "    return real(*args, **kwargs)\n"
        "api.run_fly = terminated_first\n"
        "from docker2aci.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    result = subprocess.run([sys.executable, "-c", wrapper, "run", "--stage=fly", "--insecure-options=image",
                             str(aci)], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60,
                            check=False)
    assert (result.returncode, result.stdout) == (128 + signum, ""), result.stderr
    assert "Traceback" not in result.stderr
    assert os.listdir(store / "pods") == []
    assert mount_points_under(str(tmp_path)) == []


def test_gc_leaves_a_running_pod_alone(tmp_path: Path, aci: Path) -> None:
    store = TreeStore(tmp_path / "store")
    with store.acquire(aci) as tree, open_pod(store.root, tree.rootfs, overlay=False,
                                                 render=lambda d: render_tree(aci, d)) as pod:
        assert gc_pods(store.root) == PodGcReport(removed=[], in_use=[pod.path])
        assert os.path.isdir(pod.rootfs)
    assert gc_pods(store.root) == PodGcReport(removed=[], in_use=[])


@pytest.mark.root
def test_runs_share_the_tree_and_each_gets_a_clean_layer(tmp_path: Path, aci: Path) -> None:
    store = tmp_path / "cache" / "docker2aci"
    for _ in range(2):
        result = _cli("run", "--stage=fly", "--insecure-options=image", str(aci), "--exec",
                      "/bin/sh -c 'ls /; echo mark > /mark'", store=store)
        assert result.returncode == 0, result.stderr
        assert "mark" not in result.stdout.split()  # the first run's write is not seen by the second
    assert TreeStore(store).image_ids() == [compute_image_id(aci)]
    assert os.listdir(store / "pods") == []


# -- dependencies (actool build) -------------------------------------------------------------------


@pytest.mark.skipif(ACTOOL is None, reason="actool is not installed (apt-get install appc-spec)")
def test_dependencies_are_rendered_first_and_the_whitelist_applied(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    base_doc = manifest(None, name="example.com/base")
    base_doc["labels"].append({"name": "version", "value": "1"})
    base = actool_build(images / "base.aci", base_doc, {"etc/base.conf": "base", "etc/shared": "base",
                                                        "var/junk": "x"})
    app_doc = manifest(APP, name="example.com/app")
    app_doc["dependencies"] = [{"imageName": "example.com/base", "imageID": compute_image_id(base),
                                "labels": [{"name": "version", "value": "1"}]}]
    app_doc["pathWhitelist"] = ["/etc/base.conf", "/etc/shared", "/app/run"]
    app = actool_build(images / "app.aci", app_doc, {"etc/shared": "app", "app/run": "run"})
    from runner.dependencies import DirectoryResolver

    store = TreeStore(tmp_path / "store")
    with store.acquire(app, resolver=DirectoryResolver([str(images)])) as tree:
        found = sorted(str(p.relative_to(tree.rootfs)) for p in Path(tree.rootfs).rglob("*"))
        assert found == ["app", "app/run", "etc", "etc/base.conf", "etc/shared"]
        assert Path(tree.rootfs, "etc/shared").read_text() == "app"  # the image wins over its dependency
        assert Path(tree.rootfs, "etc/base.conf").read_text() == "base"


def test_whitelists_apply_as_appc_s_acirenderer_applies_them(tmp_path: Path) -> None:
    """appc's pkg/acirenderer (rkt's renderer): an image's own ``pathWhitelist`` keeps of
    its own entries the directories and the files it names; the list of the uppermost
    image above it that has one keeps only what it names, directories too. Each image's
    list was applied to everything rendered so far: a middle image's list removed a base
    file the top image lists, and an image's own empty ``/tmp`` went (runner review)."""
    images = tmp_path / "images"
    images.mkdir()
    write_aci(images / "base.aci", [directory("rootfs"), Entry("rootfs/b", data=b"b"), Entry("rootfs/x", data=b"x"),
                                    Entry("rootfs/m", data=b"base's m"), directory("rootfs/unlisted-dir")],
              manifest(None, name="example.com/base"))
    mid_doc = manifest(None, name="example.com/mid")
    mid_doc["dependencies"] = [{"imageName": "example.com/base"}]
    mid_doc["pathWhitelist"] = ["/y"]  # not the uppermost list: filters mid's own files only
    write_aci(images / "mid.aci", [directory("rootfs"), Entry("rootfs/m", data=b"mid's m"),
                                   Entry("rootfs/y", data=b"y")], mid_doc)
    top_doc = manifest(None, name="example.com/top")
    top_doc["dependencies"] = [{"imageName": "example.com/mid"}]
    top_doc["pathWhitelist"] = ["/b", "/m", "/y", "/t"]
    top = write_aci(images / "top.aci", [directory("rootfs"), Entry("rootfs/t", data=b"t"),
                                         Entry("rootfs/own", data=b"own"), directory("rootfs/tmp", mode=0o1777)],
                    top_doc)
    from runner.dependencies import DirectoryResolver

    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    render_tree(top, str(rootfs), resolver=DirectoryResolver([str(images)]))
    # b: the base's, listed above; m: the base's (mid's own list leaves its m out); y: mid's, listed by
    # both; t and the empty tmp: top's own (a directory needs no listing in its own image's list);
    # gone: x, own (not listed), unlisted-dir (a directory below, not in the upper list)
    assert sorted(p.name for p in rootfs.iterdir()) == ["b", "m", "t", "tmp", "y"]
    assert (rootfs / "m").read_bytes() == b"base's m"
    lone = write_aci(tmp_path / "lone.aci", [directory("rootfs"), Entry("rootfs/own", data=b"own"),
                                            Entry("rootfs/listed", data=b"l"), directory("rootfs/tmp", mode=0o1777)],
                     {**manifest(None, name="example.com/lone"), "pathWhitelist": ["/listed"]})
    lone_rootfs = tmp_path / "lone"
    lone_rootfs.mkdir()
    render_tree(lone, str(lone_rootfs))
    assert sorted(p.name for p in lone_rootfs.iterdir()) == ["listed", "tmp"]


def test_an_entry_a_whitelist_refuses_is_never_written(tmp_path: Path) -> None:
    """Refused entries were written, then removed once their image was (review): a later
    entry went through a refused link (``lib -> usr/lib``, then the listed ``lib/x.so``
    landed in ``usr/lib``), a refused file ``a`` made the listed ``a/b`` fail, and a refused
    directory left its mode and owner on the directory its listed file needed."""
    images = tmp_path / "images"
    images.mkdir()
    write_aci(images / "base.aci", [directory("rootfs"), directory("rootfs/data", mode=0o777, uid=1000),
                                    Entry("rootfs/data/f", data=b"f")], manifest(None, name="example.com/base"))
    doc = manifest(None, name="example.com/top")
    doc["dependencies"] = [{"imageName": "example.com/base"}]
    doc["pathWhitelist"] = ["/lib/x.so", "/a/b", "//data/f"]  # //data/f is /data/f, as Go cleans it
    top = write_aci(images / "top.aci", [directory("rootfs"), directory("rootfs/usr"), directory("rootfs/usr/lib"),
                                         symlink("rootfs/lib", "usr/lib"), Entry("rootfs/lib/x.so", data=b"so"),
                                         Entry("rootfs/a", data=b"file"), Entry("rootfs/a/b", data=b"b")], doc)
    from runner.dependencies import DirectoryResolver

    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    render_tree(top, str(rootfs), resolver=DirectoryResolver([str(images)]))
    assert (rootfs / "lib").is_dir() and not (rootfs / "lib").is_symlink()
    assert (rootfs / "lib" / "x.so").read_bytes() == b"so" and os.listdir(rootfs / "usr" / "lib") == []
    assert (rootfs / "a" / "b").read_bytes() == b"b"
    assert (rootfs / "data" / "f").read_bytes() == b"f"
    info = (rootfs / "data").stat()
    assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o755, 0)  # made for data/f, not the refused entry's
    assert sorted(os.listdir(rootfs)) == ["a", "data", "lib", "usr"]  # no stash left


@pytest.mark.skipif(ACTOOL is None, reason="actool is not installed (apt-get install appc-spec)")
def test_a_missing_or_mismatched_dependency_is_refused(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    actool_build(images / "base.aci", manifest(None, name="example.com/base"), {"f": "1"})
    from runner.dependencies import DirectoryResolver

    for dependency, message in (
        ({"imageName": "example.com/nope"}, "dependency example.com/nope not found among the ACIs in"),
        ({"imageName": "example.com/base", "imageID": "sha512-" + "1" * 128},
         f"dependency example.com/base (sha512-{'1' * 128}) not found"),
        ({"imageName": "example.com/base", "labels": [{"name": "version", "value": "9.9"}]},
         "dependency example.com/base,version=9.9 not found among the ACIs in"),
    ):
        doc = manifest(APP, name="example.com/app")
        doc["dependencies"] = [dependency]
        app = write_aci(images / "app.aci", [directory("rootfs")], doc)
        with pytest.raises(RunnerError, match=re.escape(message)):
            with TreeStore(tmp_path / "store").acquire(app, resolver=DirectoryResolver([str(images)])):
                pass


def test_a_dependency_cycle_is_named(tmp_path: Path) -> None:
    from runner.dependencies import DirectoryResolver

    images = tmp_path / "images"
    images.mkdir()
    for name, other in (("a", "b"), ("b", "a")):
        doc = manifest(APP, name=f"example.com/{name}")
        doc["dependencies"] = [{"imageName": f"example.com/{other}"}]
        write_aci(images / f"{name}.aci", [directory("rootfs")], doc)

    with pytest.raises(RunnerError, match=re.escape(
            "dependency cycle: example.com/a -> example.com/b -> example.com/a")):
        with TreeStore(tmp_path / "store").acquire(images / "a.aci", resolver=DirectoryResolver([str(images)])):
            pass


def test_a_resolver_s_file_with_another_image_id_is_refused(tmp_path: Path) -> None:
    """The chain checks a dependency's ``imageID`` itself, whatever file a resolver gives
    (not only :class:`DirectoryResolver`, which filters by it)."""
    images = tmp_path / "images"
    images.mkdir()
    base = actool_build(images / "base.aci", manifest(None, name="example.com/base"), {"f": "1"})
    doc = manifest(APP, name="example.com/app")
    doc["dependencies"] = [{"imageName": "example.com/base", "imageID": "sha512-" + "1" * 128}]
    app = write_aci(images / "app.aci", [directory("rootfs")], doc)

    with pytest.raises(RunnerError, match=re.escape(
            f"example.com/app: dependency example.com/base is {compute_image_id(base)}, "
            f"not the sha512-{'1' * 128} it names")):
        with TreeStore(tmp_path / "store").acquire(app, resolver=lambda dependency: str(base)):
            pass


@pytest.mark.parametrize("labels", [[], [{"name": "version", "value": "2"}]])
def test_a_resolver_s_file_with_another_name_or_labels_is_refused(tmp_path: Path, labels: list) -> None:
    """The chain checks that the file it reads is the image a dependency names, whatever
    file a resolver gives: the resolver looks at the user's file, the chain reads a
    private copy made after, and a file replaced in between by another signed image (its
    key trusted for that other name only) gave the app's rootfs that image's files
    (runner review: a race with a rename over the dependency)."""
    images = tmp_path / "images"
    images.mkdir()
    evil = manifest(None, name="example.com/evil" if not labels else "example.com/base")
    evil["labels"].append({"name": "version", "value": "1"})
    other = actool_build(images / "other.aci", evil, {"f": "1"})
    doc = manifest(APP, name="example.com/app")
    doc["dependencies"] = [{"imageName": "example.com/base", "labels": labels}]
    app = write_aci(images / "app.aci", [directory("rootfs")], doc)

    found = "example.com/evil" if not labels else "example.com/base"
    asked = ",version=2" if labels else ""
    with pytest.raises(RunnerError, match=re.escape(
            f"example.com/app: dependency example.com/base{asked} found as {other} is not that image: its name "
            f"is {found!r}, its labels {{'os': 'linux', 'arch': 'amd64', 'version': '1'}}")):
        with TreeStore(tmp_path / "store").acquire(app, resolver=lambda dependency: str(other)):
            pass


@pytest.mark.skipif(ACTOOL is None, reason="actool is not installed (apt-get install appc-spec)")
def test_copies_of_one_dependency_are_one_image_and_two_images_are_ambiguous(tmp_path: Path) -> None:
    """A dependency named without an ``imageID`` that matched a byte-identical copy of
    itself in another directory was "ambiguous" (left alone in an earlier review): copies
    of one image are that image; two different images of the name are still refused."""
    from runner.dependencies import DirectoryResolver

    first, second, other = tmp_path / "first", tmp_path / "second", tmp_path / "other"
    for directory_ in (first, second, other):
        directory_.mkdir()
    base = actool_build(first / "base.aci", manifest(None, name="example.com/base"), {"etc/base.conf": "one"})
    shutil.copy(base, second / "base-copy.aci")
    actool_build(other / "base.aci", manifest(None, name="example.com/base"), {"etc/base.conf": "two"})
    doc = manifest(APP, name="example.com/app")
    doc["dependencies"] = [{"imageName": "example.com/base"}]
    app = write_aci(tmp_path / "app.aci", [directory("rootfs")], doc)

    assert DirectoryResolver([str(first), str(second)])(doc["dependencies"][0]) == str(base)
    with TreeStore(tmp_path / "store").acquire(app, resolver=DirectoryResolver([str(first), str(second)])) as tree:
        assert Path(tree.rootfs, "etc/base.conf").read_text() == "one"
    with pytest.raises(RunnerError, match=re.escape(
            f"dependency example.com/base is ambiguous: {base}, {second / 'base-copy.aci'}, {other / 'base.aci'}")):
        DirectoryResolver([str(first), str(second), str(other)])(doc["dependencies"][0])


@pytest.mark.parametrize(("field", "value", "message"), [
    ("acVersion", "not-a-version", "acVersion 'not-a-version' is not a semantic version"),
    ("name", None, "name None is not an AC identifier"),
    ("name", "Example.com/App", "name 'Example.com/App' is not an AC identifier"),
    ("labels", [{"name": "os", "value": 1}], "labels"),
])
def test_an_image_whose_identity_breaks_appc_s_rules_is_not_run(tmp_path: Path, field: str, value: object,
                                                                   message: str) -> None:
    """``run`` checked acKind only; a bad acVersion or no name ran (runner review), where
    rkt and ``validate`` refuse them. Nothing is rendered."""
    doc = manifest(APP)
    if value is None:
        del doc[field]
    else:
        doc[field] = value
    bad = write_aci(tmp_path / "bad.aci", busybox_entries(), doc)
    store = tmp_path / "store"
    with pytest.raises(RunnerError, match=re.escape(f"{bad}: not a valid image manifest: ") + ".*"
                       + re.escape(message)):
        with TreeStore(store).acquire(bad):
            pass
    assert not (store / "trees").exists() or [p.name for p in (store / "trees").iterdir()
                                              if not p.name.startswith(".")] == []


@pytest.mark.root
def test_gc_removes_the_work_directory_of_a_killed_conversion(tmp_path: Path) -> None:
    """``run SOURCE`` converts into ``<cache>/prerun/run-*``; when the runner is killed
    (its app goes on, holding the pod), gc removes that directory but not the pod."""
    archive = PROJECT_ROOT.parent / "shared" / "images" / "docker-save-dockerd.tar"
    if not archive.exists():
        pytest.skip(f"{archive} not found")
    store = tmp_path / "cache" / "docker2aci"
    env = {**os.environ, "XDG_CACHE_HOME": str(store.parent)}
    proc = subprocess.Popen([sys.executable, "-m", "docker2aci", "run", "--stage=fly", "--insecure-options=image",
                             "--exec", "/bin/sleep 60", f"docker-archive:{archive}"], cwd=PROJECT_ROOT, env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not children_running(proc.pid, b"/bin/sleep"):  # the app holds the pod's lock
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        [work] = [n for n in os.listdir(store / "prerun") if not n.endswith(".lock")]
        assert sorted(os.listdir(store / "prerun")) == [work, f"{work}.lock"]  # the lock is made first
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        report = json.loads(_cli("gc", "--json", store=store).stdout)
        assert report["work_dirs_removed"] == [str(store / "prerun" / work), str(store / "prerun" / f"{work}.lock")]
        assert report["pods_removed"] == [] and len(report["trees_in_use"]) == 1
        assert report["pods_in_use"] == [str(pod) for pod in (store / "pods").iterdir()]  # the one kept
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        time.sleep(0.2)
        _cli("gc", store=store)
    assert os.listdir(store / "prerun") == [] and os.listdir(store / "pods") == []
    assert mount_points_under(str(tmp_path)) == []


@pytest.mark.root
def test_racing_runs_of_one_archive_convert_it_once(tmp_path: Path) -> None:
    """The pre-run hook caches conversions of local sources too (keyed by the config
    digest, which pins every layer through diff_ids): eight racing ``run docker-archive:``
    give one conversion, seven reuses, eight correct outputs."""
    archive = PROJECT_ROOT.parent / "shared" / "images" / "docker-save-dockerd.tar"
    if not archive.exists():
        pytest.skip(f"{archive} not found")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    procs = [subprocess.Popen([sys.executable, "-m", "docker2aci", "run", "--debug", "--stage=fly",
                               "--insecure-options=image", f"docker-archive:{archive}", "--exec", "/bin/ls /srv/old"],
                              cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(8)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    assert [(status, out) for status, out, _ in results] == [(0, "z.txt\n")] * 8, results[0][2][-2000:]
    assert sum("reused the cached ACI" not in err for _, _, err in results) == 1
    store = tmp_path / "cache" / "docker2aci"
    assert sorted(n.rsplit(".", 1)[1] for n in os.listdir(store / "conversions")) == ["aci", "json"]
    assert os.listdir(store / "prerun") == [] and os.listdir(store / "pods") == []


def _stamps(store: TreeStore) -> list[str]:
    return sorted(n for n in os.listdir(os.path.join(store.dir, "index")) if n.startswith("stamp-"))


def test_a_settled_file_is_identified_by_its_stamp(tmp_path: Path, aci: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file seen before, unchanged (same inode, size, mtime and ctime), is not read
    again; a chmod (a new ctime) or a write (a new mtime) makes it read again. A file
    written in the last seconds is not stamped (docker2aci.filestamp)."""
    import runner.treestore as ts

    store = TreeStore(tmp_path / "store")
    image_id = compute_image_id(aci)
    assert store.identify(aci) == image_id
    assert _stamps(store) == []  # just written: not settled
    info = aci.stat()
    os.utime(aci, ns=(info.st_atime_ns, info.st_mtime_ns - 10 * 10**9))
    assert store.identify(aci) == image_id
    assert len(_stamps(store)) == 1
    reads: list[str] = []
    real_digest = ts.file_digest

    def counting(path: str | os.PathLike[str]) -> str:
        reads.append(os.fspath(path))
        return real_digest(path)

    monkeypatch.setattr(ts, "file_digest", counting)
    assert store.identify(aci) == image_id and reads == []  # by its stamp: not read
    os.chmod(aci, 0o600)  # the bytes are the same; the ctime moves
    assert store.identify(aci) == image_id and reads == [str(aci)]
    other = write_aci(tmp_path / "other.aci", busybox_entries(with_etc=False), manifest(APP, name="test/other"))
    inode = aci.stat().st_ino
    with open(aci, "r+b") as f:  # rewritten in place: same inode, the mtime moves
        f.truncate()
        f.write(other.read_bytes())
    assert aci.stat().st_ino == inode
    assert store.identify(aci) == compute_image_id(other)


def test_two_gcs_removing_one_tree_at_once_both_succeed(tmp_path: Path) -> None:
    """gc renames an unused tree to ``trees/.trash-*`` and removes it; another gc running
    at the same moment removes that ``.trash-*`` too. The first then found directories
    gone under it and failed ("cannot remove ...": a cron gc beside a hook's gc). A name
    removed meanwhile is now removed."""
    many = [directory(f"rootfs/d{i}") for i in range(200)] + [directory(f"rootfs/d{i}/e") for i in range(200)]
    big = write_aci(tmp_path / "big.aci", busybox_entries(with_etc=False) + many, manifest(APP, name="test/big"))
    for trial in range(3):
        store = TreeStore(tmp_path / f"store{trial}")
        with store.acquire(big) as tree:
            pass
        failures: list[BaseException] = []

        def gc(store: TreeStore = store, failures: list[BaseException] = failures) -> None:
            try:
                store.gc()
            except BaseException as err:  # noqa: BLE001 (reported below)
                failures.append(err)

        both = [threading.Thread(target=gc) for _ in range(2)]
        for thread in both:
            thread.start()
        for thread in both:
            thread.join(60)
        assert failures == []
        assert not os.path.exists(tree.path)
        assert [n for n in os.listdir(store.dir) if n.startswith(".")] == []


def test_a_tree_with_unreadable_directories_is_removed_by_a_non_root_runner() -> None:
    """A directory of mode 0311 or 0000 in a tree a non-root runner removes: shutil.rmtree
    cannot list it, and the retry called ``os.open`` without flags (a TypeError traceback
    after a failed fetch; review). It is made readable and removed; so is one that can be
    listed but not searched (0600, 0400: its subdirectory could not be opened; review)."""
    import tempfile
    import textwrap

    work = Path(tempfile.mkdtemp(prefix="docker2aci-nonroot-"))
    try:
        os.chmod(work, 0o777)
        result = as_nobody(textwrap.dedent(f"""
            import os
            from runner.fstree import remove_tree
            tree = {str(work / 'tree')!r}
            for d, mode in (("a", 0o311), ("b", 0o000), ("c", 0o555), ("d", 0o600), ("e", 0o400)):
                os.makedirs(os.path.join(tree, d, "inner"))
                os.makedirs(os.path.join(tree, d, "empty"))  # its ".." cannot be looked up unless searchable
                open(os.path.join(tree, d, "inner", "f"), "w").close()
                for sub in ("inner", "empty", ""):
                    os.chmod(os.path.join(tree, d, sub), mode)
            for d, mode in (("f", 0o600), ("g", 0o400)):  # empty, listable, not searchable: ".." is refused
                os.makedirs(os.path.join(tree, d))
                os.chmod(os.path.join(tree, d), mode)
            remove_tree(tree, make_writable=True)
            print(os.path.exists(tree))
        """))
        assert (result.returncode, result.stdout) == (0, "False\n"), result.stderr
    finally:
        subprocess.run(["chmod", "-R", "u+rwx", str(work)], check=False)
        shutil.rmtree(work)


def test_a_prerun_directory_another_user_could_write_is_refused_with_a_separate_store(tmp_path: Path) -> None:
    """The converted ACI waits under ``<cache>/prerun`` before it is verified; the tree
    store holds that directory to its rules only when it shares the cache's root."""
    from docker2aci.errors import OutputError
    from docker2aci.pipeline import ConvertOptions
    from docker2aci.prerun import fetch

    cache = tmp_path / "cache"
    (cache / "prerun").mkdir(parents=True)
    (cache / "prerun").chmod(0o777)
    with pytest.raises(OutputError, match=re.escape(f"{cache / 'prerun'} is writable by every user (mode 0777)")):
        fetch(f"oci-archive:{PROJECT_ROOT.parent / 'shared' / 'images' / 'oci-archive.tar'}",
              ConvertOptions(cache_dir=str(cache)), store_dir=tmp_path / "store", insecure_options=frozenset({"image"}))
    assert os.listdir(cache / "prerun") == []


@pytest.mark.parametrize(("grace", "shown"), [("90", "90s"), ("90s", "90s"), ("30m", "30m"), ("1h30m", "1h30m")])
def test_gc_says_the_grace_with_its_unit(tmp_path: Path, grace: str, shown: str) -> None:
    """``gc --grace 90`` said "used within 90", with no unit (new-user review)."""
    result = _cli("gc", "--grace", grace, store=tmp_path / "cache" / "docker2aci")
    assert (result.returncode, result.stdout) == (0, f"Kept 0 tree(s) in use and 0 used within {shown}\n"
                                                     "Kept 0 cached conversion(s) and 0 blob(s) in use or used "
                                                     "within 24h; freed 0 bytes of the cache\n")


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("1.5h", 5400), ("1h30m", 5400), ("2d12h", 216000),
                                               ("1h30", None), ("h", None), ("-5", None), ("1w", None)])
def test_a_grace_may_be_written_as_go_writes_a_duration(text: str, seconds: float | None) -> None:
    """rkt's ``--grace-period`` takes Go durations (``1h30m``); ``--grace 1h30m`` was
    refused, as one unit was allowed (new-user review)."""
    from docker2aci.cli import parse_duration
    from docker2aci.errors import UsageError

    if seconds is None:
        with pytest.raises(UsageError, match=f"^--grace '{text}': use a number of seconds, or one with units: "):
            parse_duration(text)
    else:
        assert parse_duration(text) == seconds


def test_gc_refuses_an_empty_or_unusable_cache_dir(tmp_path: Path, aci: Path) -> None:
    """``gc --cache-dir "$UNSET"`` is a usage error, not a gc of the default store (it
    removed the default store's trees), and a --cache-dir that is a file is one Error
    line, not a traceback."""
    store = tmp_path / "cache" / "docker2aci"
    with TreeStore(str(store)).acquire(aci) as tree:  # released at once: gc would remove it
        image_id = os.path.basename(tree.path)
    empty = _cli("gc", "--cache-dir", "", store=store)
    a_file = tmp_path / "file"
    a_file.write_text("")
    not_a_dir = _cli("gc", "--cache-dir", str(a_file), store=store)

    assert (empty.returncode, empty.stdout) == (2, "")
    assert empty.stderr == "Error: argument --cache-dir/-cache-dir: empty: give a path\n"
    assert image_id in os.listdir(store / "trees")
    assert (not_a_dir.returncode, not_a_dir.stdout) == (1, "")
    assert not_a_dir.stderr == f"Error: tree store {a_file}: cannot examine {a_file}/trees: Not a directory\n"


@pytest.mark.root
def test_gc_of_another_user_s_cache_dir_removes_nothing_through_its_links(tmp_path: Path) -> None:
    """root's ``gc --cache-dir DIR`` on a directory another user owns: gc removed the pods
    (every subdirectory without a held lock, after unmounting what was mounted there)
    before the tree store refused DIR, so a ``pods`` link that user planted made root
    delete the directories it leads to. DIR is now refused first; nothing is removed."""
    victim = tmp_path / "victim"
    (victim / "etc").mkdir(parents=True)
    (victim / "etc" / "data").write_text("kept")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "pods").symlink_to(victim)
    (theirs / "prerun").symlink_to(victim)
    for path in (theirs, theirs / "pods", theirs / "prerun"):
        os.chown(path, 1000, 1000, follow_symlinks=False)
    result = _cli("gc", "--cache-dir", str(theirs), store=tmp_path / "cache" / "docker2aci")
    assert (result.returncode, result.stdout) == (1, "")
    assert f"{theirs} is owned by uid 1000" in result.stderr
    assert (victim / "etc" / "data").read_text() == "kept"


def test_gc_reports_what_killed_renders_left(tmp_path: Path, aci: Path) -> None:
    """A render killed before its rename leaves ``trees/.tmp-<key>-*``, an index write
    killed before its rename a ``.docker2aci-*.tmp`` in ``trees/index``: gc removed the
    first without a word in its report (``--json`` listed nothing removed) and never
    removed the second. Both are now removed and listed."""
    store = tmp_path / "cache" / "docker2aci"
    killed_render = (
        "import os, signal, sys, runner.treestore as ts\n"
        "def render_then_die(chain, rootfs):\n"
        "    ts.render_chain.__wrapped__(chain, rootfs)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "render_then_die.__wrapped__ = ts.render_chain\n"
        "ts.render_chain = render_then_die\n"
        "from docker2aci.atomic import atomic_file\n"
        "os.makedirs(sys.argv[2] + '/trees/index', exist_ok=True)\n"
        "with atomic_file(sys.argv[2] + '/trees/index/sha256-0', 0o600) as (_, f):\n"
        "    with ts.TreeStore(sys.argv[2]).acquire(sys.argv[1]):\n"
        "        pass\n")
    proc = subprocess.run([sys.executable, "-c", killed_render, str(aci), str(store)], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    [render] = [n for n in os.listdir(store / "trees") if n.startswith(".tmp-")]
    [index_tmp] = [n for n in os.listdir(store / "trees" / "index") if n.endswith(".tmp")]

    result = _cli("gc", "--json", store=store)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert sorted(report["partial_trees_removed"]) == [str(store / "trees" / render),
                                                       str(store / "trees" / "index" / index_tmp)]
    assert report["trees_removed"] == [] and os.listdir(store / "trees") == ["index"]
    assert [n for n in os.listdir(store / "trees" / "index") if not n.startswith("sha256-")] == []  # file -> ID


def test_a_tree_used_in_the_future_is_not_kept_forever_by_grace_zero(tmp_path: Path, aci: Path) -> None:
    """A tree last used "later than now" (the clock was set back after the run) was kept
    as recent by ``gc --grace 0s`` (a negative age is less than 0) until the clock caught
    up; it now counts as used now: kept by a grace period, removed without one."""
    store = TreeStore(tmp_path / "store")
    with store.acquire(aci) as tree:
        pass
    future = time.time() + 3600
    os.utime(tree.path, (future, future))
    assert store.gc(grace_seconds=60).recent == [tree.image_id]
    assert store.gc(grace_seconds=0).removed == [tree.image_id]


def _damaged_cached_conversion(tmp_path: Path) -> tuple[str, Any, Path, bytes]:
    """An image converted and fetched, whose cached ACI then had a byte flipped with its
    mtime kept (a stamp that still holds) and whose tree is gone: ``(source, options,
    cached ACI, its good bytes)``."""
    from docker2aci.pipeline import ConvertOptions
    from docker2aci.prerun import fetch

    source = f"oci-archive:{PROJECT_ROOT.parent / 'shared' / 'images' / 'oci-archive.tar'}"
    options = ConvertOptions(cache_dir=str(tmp_path / "cache"))
    store = tmp_path / "cache"
    fetch(source, options, store_dir=store, insecure_options=frozenset({"image"}))
    [cached] = (tmp_path / "cache" / "conversions").glob("*.aci")
    good = cached.read_bytes()
    info = cached.stat()
    os.utime(cached, ns=(info.st_atime_ns, info.st_mtime_ns - 10 * 10**9))  # settled: its next reuse stamps it
    fetch(source, options, store_dir=store, insecure_options=frozenset({"image"}))
    assert cached.with_suffix(".stamp").exists()
    TreeStore(store).gc(0)  # the next fetch renders again
    info = cached.stat()
    with open(cached, "r+b") as f:
        f.seek(len(good) // 2)
        f.write(bytes([good[len(good) // 2] ^ 0x40]))
    os.utime(cached, ns=(info.st_atime_ns, info.st_mtime_ns))
    return source, options, cached, good


def test_a_cached_conversion_damaged_without_a_trace_is_converted_again(tmp_path: Path) -> None:
    """A cached ACI whose stamp still holds is not hashed when it is reused: one damaged
    with no trace in ``stat`` (a disk's bit rot; here a byte flipped and the mtime set
    back) failed every render after, naming a temporary file, and was never replaced.
    ``fetch`` (and ``run``) now check it when a render fails on it, and convert again."""
    from docker2aci.prerun import fetch

    source, options, cached, good = _damaged_cached_conversion(tmp_path)
    image = fetch(source, options, store_dir=tmp_path / "cache", insecure_options=frozenset({"image"}))
    assert image.image_id == compute_image_id(cached)
    assert cached.read_bytes() == good  # converted again, in place


def test_a_failure_once_the_app_started_is_never_retried(tmp_path: Path) -> None:
    """The retry on a damaged cached ACI runs the command again: a failure after the app
    started (the isolated stage's runtime errors, reported when the app has ended) would
    have run the app twice (a review's find). Only failures before the start are retried."""
    from docker2aci.prerun import using_converted

    source, options, _, _ = _damaged_cached_conversion(tmp_path)
    calls = []

    def started_then_failed(image: Any) -> None:
        calls.append(image.aci)
        image.mark_app_started()
        raise RunnerError("the runtime reported an error after the app ended")

    with pytest.raises(RunnerError, match="after the app ended"):
        using_converted(source, options, None, started_then_failed)
    assert len(calls) == 1

    def failed_before_the_start(image: Any) -> str:
        calls.append(image.aci)
        if len(calls) == 2:
            raise RunnerError("rendering it failed")
        return "ran"

    assert using_converted(source, options, None, failed_before_the_start) == "ran"
    assert len(calls) == 3
