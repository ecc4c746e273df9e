"""Crash safety: the real CLI killed (``SIGKILL`` to its process group) at random points of
a conversion (docker archive → ACI; registry → ACI with a cold cache, so blob and
conversion cache writes are hit), of ``fetch`` (conversion cache and tree store), of
``render ACI DIR`` and of ``mirror``.

After each kill: every ACI a reader can see is complete (byte-identical to the one an
uninterrupted run writes; temporary files never carry the final name), every cache entry is
whole (blobs hash to their names, conversion records match their ACIs), a rendered tree is
visible whole or not at all, and a rerun finishes with output identical to an uninterrupted
run; ``docker2aci gc`` then removes what the killed run left in the cache.

The kill times are seeded and stratified: trial ``i`` of ``n`` is killed at a random moment
of the ``i``-th slice of an uninterrupted run's measured duration (the shorter of two runs,
so a load that eases after the first does not leave the later slices past the end; after
the interpreter's start-up, before which nothing is written). Each trial is bounded by its kill time plus
one uninterrupted run. Figures are printed with ``-s``.
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from crashkit import (assert_same_acis, check_cache, cli_env, killed_run, run_cli, temporaries, timed_cli, tree_listing,
                      visible_acis)
from jobs.jobs_helpers import build_tags, push_tags
from services import REGISTRY_BIN, SKOPEO_BIN, RunningRegistry, push, require_tools, run_registry

SEED = 20_251_129
STATS: Counter[str] = Counter()
MIRROR_TAGS = ["a", "b"]
LATEST = 0.9
"""The latest kill time, as a fraction of an uninterrupted run's duration."""
WORKERS = min(2, os.cpu_count() or 1)
"""Trials run side by side (each killed run and its rerun stay in order)."""
_STATS_LOCK = threading.Lock()


@pytest.fixture(scope="module", autouse=True)
def _figures() -> Iterator[None]:
    start = resource.getrusage(resource.RUSAGE_CHILDREN)
    yield
    end = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = end.ru_utime + end.ru_stime - start.ru_utime - start.ru_stime
    print(f"\ncrash trials: {dict(sorted(STATS.items()))}; CPU seconds of the CLI processes: {cpu:.1f}")


@pytest.fixture(scope="module")
def crash_registry(busybox_layout: Path, busybox_basic_layout: Path,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """A plain-http registry holding ``crash/busybox:latest`` (the 8-layer image) and
    ``crash/mirror`` (tags ``a``, ``b``: the 4-layer base plus one layer each)."""
    require_tools(REGISTRY_BIN, SKOPEO_BIN)
    with run_registry(tmp_path_factory.mktemp("crash-registry")) as running:
        push(f"oci:{busybox_layout}:latest", running, "crash/busybox:latest")
        layout = build_tags(busybox_basic_layout, tmp_path_factory.mktemp("crash-tags"), MIRROR_TAGS)
        push_tags(layout, running, "crash/mirror", {t: t for t in MIRROR_TAGS})
        yield running


def _delays(name: str, trials: int, duration: float) -> list[float]:
    """Stratified seeded kill times over ``[startup, duration * LATEST]``: after the
    interpreter's start-up (nothing is written before), before the usual end."""
    rng = random.Random(f"{SEED}-{name}")
    startup = min(timed_cli("--help"), duration / 2)
    span = duration * LATEST - startup
    return [startup + span * (i + rng.random()) / trials for i in range(trials)]


EARLIER = 0.6
"""When a batch's runs mostly finished before their kill (they ran quicker than the
measured run), the next batch's kill times are this fraction of the last's."""
BATCHES = 3
"""Batches of trials at most, until at least half a batch's worth were killed mid-run."""


def _run_trials(name: str, trials: int, duration: float, trial: Callable[[int, float], None]) -> None:
    """Run ``trial(i, delay)`` for each kill time, ``WORKERS`` at a time (each in its own
    directories, ``i`` unique); the first failure fails the test. A run that took 0.3 s
    when measured can finish in 0.25 s beside the others, before most kill times: then
    another batch kills earlier (:data:`EARLIER`), up to :data:`BATCHES` batches."""
    span = duration
    for batch in range(BATCHES):
        delays = _delays(name, trials, span)
        with ThreadPoolExecutor(WORKERS) as pool:
            for future in [pool.submit(trial, batch * trials + i, delay) for i, delay in enumerate(delays)]:
                future.result()
        if STATS[f"{name}-killed"] >= trials // 2:
            return
        span *= EARLIER
    killed = STATS[f"{name}-killed"]
    assert killed >= trials // 2, (f"only {killed} of {BATCHES * trials} {name} trials were killed mid-run: "
                                   f"the kill times missed the run (measured {duration:.2f} s)")


def _account(kind: str, killed: bool, garbage: bool = False) -> None:
    with _STATS_LOCK:
        STATS["trials"] += 1
        STATS[f"{kind}-trials"] += 1
        STATS["killed mid-run" if killed else "finished before the kill"] += 1
        if killed:
            STATS[f"{kind}-killed"] += 1
        if garbage:
            STATS["kills that left temporary files"] += 1


def _own_tmpdir(tmp_path: Path, i: int) -> dict[str, str]:
    """The environment of trial ``i``'s runs: ``TMPDIR`` a new directory of its own, so
    :func:`_assert_no_spools` can see what a killed run left there."""
    tmpdir = tmp_path / f"tmpdir{i}"
    tmpdir.mkdir()
    return cli_env(TMPDIR=str(tmpdir))


def _assert_no_spools(env: dict[str, str]) -> None:
    """A killed run left nothing in its temporary directory: layer and archive spools
    have no name, so the kernel freed them with the process."""
    left = sorted(os.listdir(env["TMPDIR"]))
    assert not left, f"a killed run left files in its TMPDIR: {left}"


def _assert_complete(out: Path, expected: dict[str, str]) -> None:
    """Every visible ACI under ``out`` is one an uninterrupted run writes, byte for byte."""
    for name, digest in visible_acis(out).items():
        assert expected.get(name) == digest, f"partial or foreign ACI visible: {out / name}"


def _gc_cleans(cache: Path, garbage: bool = True) -> None:
    """Unless the killed run left nothing to clean (``garbage`` false): ``gc`` removes its
    partial downloads, conversion copies, work directories and half-rendered trees."""
    if not garbage:
        return
    with _STATS_LOCK:
        STATS["gc runs"] += 1
    run_cli("gc", "--cache-dir", cache)
    left = check_cache(cache).temporaries
    assert not left, f"docker2aci gc left the temporary files of a killed run: {left}"
    prerun = cache / "prerun"
    assert not (prerun.is_dir() and list(prerun.iterdir())), list(prerun.iterdir())  # work dirs and their locks
    trees = cache / "trees"
    assert not (trees.is_dir() and [p for p in trees.iterdir() if p.name.startswith(".tmp-")])


def test_kill_archive_conversion(busybox_docker_archive: Path, tmp_path: Path) -> None:
    """docker-archive → ACI, killed 12 times: no partial ACI, a rerun writes the same bytes."""
    ref = tmp_path / "ref"
    source = f"docker-archive:{busybox_docker_archive}"
    duration = timed_cli("--output-dir", ref, "--cache-dir", tmp_path / "cache", source)
    duration = min(duration, timed_cli("--output-dir", tmp_path / "ref2", "--cache-dir", tmp_path / "cache", source))
    expected = visible_acis(ref)
    assert len(expected) == 1

    def trial(i: int, delay: float) -> None:
        out = tmp_path / f"out{i}"
        argv = ["--output-dir", out, "--cache-dir", tmp_path / "cache", source]
        kill = killed_run(argv, delay)
        _assert_complete(out, expected)
        _account("archive", not kill.finished, bool(out.is_dir() and temporaries(out)))
        run_cli(*argv)
        assert_same_acis(out, ref)
        assert temporaries(out) == []  # the rerun removed what the killed run left there

    _run_trials("archive", 12, duration, trial)


def test_kill_registry_conversion_cold_cache(crash_registry: RunningRegistry, tmp_path: Path) -> None:
    """registry → ACI with a cold cache, killed 13 times: the cache holds only whole entries,
    a rerun (warm or cold) writes the same bytes, gc removes the partial downloads."""
    source = f"docker://{crash_registry.host}/crash/busybox:latest"
    ref = tmp_path / "ref"
    duration = timed_cli("--insecure-allow-http", "--output-dir", ref, "--cache-dir", tmp_path / "ref-cache", source)
    duration = min(duration, timed_cli("--insecure-allow-http", "--output-dir", tmp_path / "ref2", "--cache-dir",
                                       tmp_path / "ref2-cache", source))
    expected = visible_acis(ref)
    assert check_cache(tmp_path / "ref-cache").conversions == 1

    def trial(i: int, delay: float) -> None:
        out, cache = tmp_path / f"out{i}", tmp_path / f"cache{i}"
        argv = ["--insecure-allow-http", "--output-dir", out, "--cache-dir", cache, source]
        env = _own_tmpdir(tmp_path, i)
        kill = killed_run(argv, delay, env=env)
        _assert_no_spools(env)
        _assert_complete(out, expected)
        garbage = bool(cache.is_dir() and check_cache(cache).temporaries)
        _account("registry", not kill.finished, garbage or bool(out.is_dir() and temporaries(out)))
        run_cli(*argv)
        assert_same_acis(out, ref)
        assert temporaries(out) == []
        report = check_cache(cache)
        assert report.conversions == 1 and report.blobs >= 10
        _gc_cleans(cache, garbage or i == 0)

    _run_trials("registry", 13, duration, trial)


def test_kill_fetch(busybox_docker_archive: Path, tmp_path: Path) -> None:
    """``fetch`` of an archive (conversion cache + tree store), killed 10 times: a tree is
    in the store whole or not at all, a rerun renders the same tree."""
    source = f"docker-archive:{busybox_docker_archive}"
    fetch = ["fetch", "--json", "--insecure-options=image"]
    ref_cache = tmp_path / "ref-cache"
    duration = timed_cli(*fetch, "--cache-dir", ref_cache, source)
    duration = min(duration, timed_cli(*fetch, "--cache-dir", tmp_path / "ref2-cache", source))
    ref = json.loads(run_cli(*fetch, "--cache-dir", ref_cache, source).stdout)
    expected = tree_listing(Path(ref["path"]))
    assert any(entry[0] == "rootfs/bin/busybox" for entry in expected)

    def trial(i: int, delay: float) -> None:
        cache = tmp_path / f"cache{i}"
        kill = killed_run([*fetch, "--cache-dir", cache, source], delay)
        if cache.is_dir():
            check_cache(cache)
        trees = cache / "trees"
        for tree in trees.iterdir() if trees.is_dir() else ():
            if tree.name == ref["image_id"]:
                assert tree_listing(tree) == expected, f"partial tree visible in the store: {tree}"
        leftovers = bool((cache / "prerun").is_dir() and list((cache / "prerun").iterdir())) or \
            bool(trees.is_dir() and [t for t in trees.iterdir() if t.name.startswith(".tmp-")]) or \
            bool(cache.is_dir() and check_cache(cache).temporaries)
        _account("fetch", not kill.finished, leftovers)
        got = json.loads(run_cli(*fetch, "--cache-dir", cache, source).stdout)
        assert got["image_id"] == ref["image_id"]
        assert tree_listing(Path(got["path"])) == expected
        _gc_cleans(cache, leftovers or i == 0)

    _run_trials("fetch", 10, duration, trial)


def test_kill_render(busybox_docker_archive: Path, tmp_path: Path) -> None:
    """``render ACI DIR``, killed 10 times: DIR/manifest (written last) appears only with the
    whole tree; a rerun (into the emptied DIR) renders the same tree."""
    run_cli("--output-dir", tmp_path, "--cache-dir", tmp_path / "cache", f"docker-archive:{busybox_docker_archive}")
    [aci] = tmp_path.glob("*.aci")
    duration = timed_cli("render", aci, tmp_path / "ref")
    duration = min(duration, timed_cli("render", aci, tmp_path / "ref2"))
    expected = tree_listing(tmp_path / "ref")

    def trial(i: int, delay: float) -> None:
        dest = tmp_path / f"tree{i}"
        kill = killed_run(["render", aci, dest], delay)
        # rendered beside DEST and renamed: DEST is whole or absent
        assert not dest.exists() or tree_listing(dest) == expected, f"a half tree at {dest}"
        _account("render", not kill.finished)
        if dest.exists() and any(dest.iterdir()):  # a render only goes into an empty directory
            run_cli("render", aci, dest, check=2)
        if dest.exists():
            shutil.rmtree(dest)
        run_cli("render", aci, dest)
        assert tree_listing(dest) == expected

    _run_trials("render", 10, duration, trial)
    # each rerun removed what the killed renders had left beside DEST (their locks are free)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".docker2aci-render-")]


def _mirror_listing(tree: Path) -> list[tuple[str, ...]]:
    return [entry for entry in tree_listing(tree) if not entry[0].startswith(".docker2aci-mirror")]


def test_kill_mirror(crash_registry: RunningRegistry, tmp_path: Path) -> None:
    """``mirror`` of two tags, killed 7 times: only whole ACIs are visible, the state file
    is whole, and the next run finishes the tree exactly as an uninterrupted run makes it."""
    target = f"{crash_registry.host}/crash/mirror"

    def argv(tree: Path, cache: Path) -> list[str | Path]:
        return ["mirror", target, "--insecure-allow-http", "--output-dir", tree, "--cache-dir", cache]

    duration = timed_cli(*argv(tmp_path / "ref", tmp_path / "ref-cache"))
    duration = min(duration, timed_cli(*argv(tmp_path / "ref2", tmp_path / "ref2-cache")))
    expected_acis = visible_acis(tmp_path / "ref")
    assert len(expected_acis) == len(MIRROR_TAGS)
    expected = _mirror_listing(tmp_path / "ref")

    def trial(i: int, delay: float) -> None:
        tree, cache = tmp_path / f"tree{i}", tmp_path / f"cache{i}"
        env = _own_tmpdir(tmp_path, i)
        kill = killed_run(argv(tree, cache), delay, env=env)
        _assert_no_spools(env)
        _assert_complete(tree, expected_acis)
        state = tree / ".docker2aci-mirror" / "state.json"
        if state.exists():
            assert json.loads(state.read_text())["version"] == 1
        garbage = bool(cache.is_dir() and check_cache(cache).temporaries)
        _account("mirror", not kill.finished, garbage or bool(tree.is_dir() and temporaries(tree)))
        run_cli(*argv(tree, cache))
        assert_same_acis(tree, tmp_path / "ref")
        assert _mirror_listing(tree) == expected
        assert not temporaries(tree), "the next mirror run removes what the killed one left in the tree"
        _gc_cleans(cache, garbage or i == 0)

    _run_trials("mirror", 7, duration, trial)


def test_gc_tells_a_killed_runs_work_directory_at_any_moment(tmp_path: Path) -> None:
    """Each state a pre-run work directory can be left in by a kill, made directly: the
    lock file made but no directory yet, the directory removed but not its lock, a
    directory without a lock (an older layout's gap), and an older version's directory
    with its lock inside. gc removes them all, and keeps a run whose lock is held."""
    import fcntl

    from docker2aci.prerun import gc_work_dirs

    prerun = tmp_path / "prerun"
    prerun.mkdir()
    (prerun / "run-lock-only.lock").touch()
    (prerun / "run-bare").mkdir()
    (prerun / "run-old").mkdir()
    (prerun / "run-old" / ".lock").touch()
    (prerun / "run-live").mkdir()
    (prerun / "run-live" / "layer.tar").touch()
    with open(prerun / "run-live.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        removed = gc_work_dirs(str(tmp_path))
    assert sorted(removed) == sorted(str(prerun / n) for n in ("run-lock-only.lock", "run-bare", "run-old"))
    assert sorted(os.listdir(prerun)) == ["run-live", "run-live.lock"]
    assert sorted(gc_work_dirs(str(tmp_path))) == [str(prerun / "run-live"), str(prerun / "run-live.lock")]
    assert os.listdir(prerun) == []


def test_a_render_removes_what_a_killed_render_left_beside_it(busybox_docker_archive: Path, tmp_path: Path) -> None:
    """The states a killed ``render`` can leave beside DEST, made directly: a half tree with
    its (free) lock, a lock alone; and one a live render holds. The next render into the
    same parent removes the first two only."""
    import fcntl

    run_cli("--output-dir", tmp_path, "--cache-dir", tmp_path / "cache", f"docker-archive:{busybox_docker_archive}")
    [aci] = tmp_path.glob("*.aci")
    parent = tmp_path / "trees"
    parent.mkdir()
    (parent / ".docker2aci-render-half").mkdir()
    (parent / ".docker2aci-render-half" / "rootfs").mkdir()
    (parent / ".docker2aci-render-half.lock").touch()
    (parent / ".docker2aci-render-renamed.lock").touch()
    (parent / ".docker2aci-render-live").mkdir()
    with open(parent / ".docker2aci-render-live.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        run_cli("render", aci, parent / "tree")
    assert sorted(os.listdir(parent)) == [".docker2aci-render-live", ".docker2aci-render-live.lock", "tree"]
