"""Stopping on a signal, with the real CLI as a process and a real ``docker-registry``:
``SIGINT`` (Ctrl-C), or ``SIGTERM`` as ``kill`` sends it, reaches the command mid-download.

* ``batch`` and ``mirror`` with two workers: no item starts after the signal, the items
  running stop at their next step and leave nothing, and every ACI in the output
  directory is one the report calls ``ok`` (the runner used to let the workers take the
  items queued for them, and called every item "interrupted", the ACIs they wrote among
  them). The exit status is ``128 + N``.
* ``convert`` and ``fetch``: ``SIGTERM`` unwinds as Ctrl-C does (exit 143, no partial
  download in the cache's ``tmp/``, no temporary file in the output directory); a rerun
  removes the partial download a killed run left.

Two images (``t1-slow``, ``t2-slow``) have a layer the fault proxy sends slowly: all but its
last :data:`DRIP_BYTES` bytes at once, then one byte every :data:`DRIP_INTERVAL` s. The
signal is sent once the proxy has seen both layers asked for, so both workers are busy
for the next second or two and nothing else can start meanwhile: which item started
before the signal is known without guessing at timings. ``large`` is a 32 MiB layer from
the registry itself: the signal is sent when its partial download appears in ``tmp/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import layerbuild as lb
import pytest
from crashkit import CLI_TIMEOUT, cli_env, reaped, run_cli, temporaries, visible_acis
from faultproxy import Fault, FaultProxy
from jobs_helpers import load_report
from services import REGISTRY_BIN, SKOPEO_BIN, RunningRegistry, push, require_tools, run_registry

REPO = "signals/items"
SLOW_TAGS = ("t1-slow", "t2-slow")
QUICK_TAGS = ("t3-quick", "t4-quick")
"""The slow items come first in a batch file and in the registry's tag list (the mirror's order)."""
SLOW_LAYER_BYTES = 1 << 20
DRIP_BYTES = 40
DRIP_INTERVAL = 0.05
"""The slow layers' last bytes take ``DRIP_BYTES * DRIP_INTERVAL`` = 2 s."""
LARGE = "signals/large:latest"
LARGE_LAYER_BYTES = 32 << 20
WAIT = 30.0
"""How long to wait for the moment to send the signal (seconds)."""
ATTEMPTS = 3
"""Runs of a timing-dependent trial before it fails: a run that ended before its moment came
(a download quicker than the polling) is run again, as tests/test_crash.py does."""


@dataclass(frozen=True)
class Images:
    """The registry and what each tag of :data:`REPO` is (by the digests the proxy sees)."""

    registry: RunningRegistry
    configs: dict[str, str]
    layers: dict[str, str]
    slow_layer_size: int


def _layout(path: Path, seed: str, size: int, compression: str = "gzip") -> lb.Layout:
    """An image of one layer holding ``size`` random bytes. A gzip layer is pushed as it
    is; skopeo compresses a plain one (so its digest in the registry is another)."""
    data = random.Random(seed).randbytes(size)
    return lb.write_oci_layout(path, [lb.Layer(lb.tar_bytes([lb.file(f"data-{seed}", data)]), compression)])


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Images]:
    """A plain-http registry holding :data:`REPO` (two slow tags, two quick ones) and
    :data:`LARGE`."""
    require_tools(REGISTRY_BIN, SKOPEO_BIN)
    work = tmp_path_factory.mktemp("signal-images")
    with run_registry(work / "registry") as running:
        configs, layers, sizes = {}, {}, []
        for tag in SLOW_TAGS + QUICK_TAGS:
            layout = _layout(work / tag, tag, SLOW_LAYER_BYTES if tag in SLOW_TAGS else 1024)
            push(f"oci:{layout.path}:latest", running, f"{REPO}:{tag}")
            configs[tag], [layers[tag]] = layout.config_digest, layout.layer_digests
            if tag in SLOW_TAGS:
                sizes.append(layout.blob(layers[tag]).stat().st_size)
        large = _layout(work / "large", "large", LARGE_LAYER_BYTES, "plain")
        push(f"oci:{large.path}:latest", running, LARGE)
        yield Images(running, configs, layers, min(sizes))


@dataclass(frozen=True)
class Signalled:
    """A run that was sent a signal: its exit status, and its stderr."""

    returncode: int
    stderr: str


def _signalled_run(argv: list[str | Path], signum: int, ready: Callable[[], bool]) -> Signalled | None:
    """Run ``docker2aci ARGV``, send ``signum`` to it (its process only, as ``kill`` does)
    as soon as ``ready()`` is true, and wait for its end; ``None`` when it ended before
    (the caller tries again). A run that outlives its timeout fails the test; either way
    what is left of its session (workers it did not stop) is killed."""
    proc = subprocess.Popen([sys.executable, "-m", "docker2aci", *map(str, argv)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=cli_env(),
                            start_new_session=True)
    try:
        deadline = time.monotonic() + WAIT
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                _, stderr = proc.communicate(timeout=CLI_TIMEOUT)
                print(f"ended (status {proc.returncode}) before the signal's moment:\n{stderr}")  # shown with -s
                return None
            time.sleep(0.005)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=CLI_TIMEOUT)
    finally:
        with contextlib.suppress(ProcessLookupError):  # none left: the usual case
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the command and its workers
        proc.wait()
    return Signalled(proc.returncode, stderr)


def _start_slow_batch(proxy: FaultProxy, work: Path, *more: str | Path) -> subprocess.Popen[str]:
    """``batch`` of the slow tags through ``proxy`` with two workers, writing into
    ``work/out`` with the cache ``work/cache``, in a session of its own (stderr piped)."""
    batch_file = work / "items.txt"
    batch_file.write_text("".join(f"docker://{proxy.host}/{REPO}:{tag}\n" for tag in SLOW_TAGS))
    return subprocess.Popen([sys.executable, "-m", "docker2aci", "batch", str(batch_file), "--jobs", "2",
                             "--insecure-allow-http", "--no-cache", "--output-dir", str(work / "out"),
                             "--cache-dir", str(work / "cache"), *map(str, more)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=cli_env(),
                            start_new_session=True)


def _wait_until_group_gone(pgid: int, left: str, seconds: float = 5.0) -> None:
    """Wait until no process of group ``pgid`` is left; fail with ``left`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, left
        time.sleep(0.05)


def _blob_partials(cache: Path) -> list[str]:
    """The partial downloads in the cache (``tmp/blob-*``)."""
    tmp = cache / "tmp"
    return sorted(p.name for p in tmp.glob("blob-*")) if tmp.is_dir() else []


def _gets(proxy: FaultProxy, digests: dict[str, str], start: int = 0, end: int | None = None) -> set[str]:
    """The tags whose blob (of ``digests``) the proxy was asked for in its requests
    ``start`` to ``end`` (excluded; ``None``: the last)."""
    paths = [seen.path for seen in proxy.requests[start:end] if seen.method == "GET"]
    return {tag for tag, digest in digests.items() if any(path.endswith(f"/blobs/{digest}") for path in paths)}


def _batch_argv(images: Images, proxy: FaultProxy, work: Path) -> list[str | Path]:
    batch_file = work / "items.txt"
    batch_file.write_text("".join(f"docker://{proxy.host}/{REPO}:{tag}\n" for tag in SLOW_TAGS + QUICK_TAGS))
    return ["batch", batch_file]


def _mirror_argv(images: Images, proxy: FaultProxy, work: Path) -> list[str | Path]:
    return ["mirror", f"{proxy.host}/{REPO}", "--name-prefix", "127.0.0.1/signals"]


@pytest.mark.parametrize(("command", "signum"), [
    pytest.param(_batch_argv, signal.SIGINT, id="batch-ctrl-c"),
    pytest.param(_batch_argv, signal.SIGTERM, id="batch-sigterm"),
    pytest.param(_mirror_argv, signal.SIGTERM, id="mirror-sigterm"),
])
def test_interrupted_jobs_start_nothing_and_report_what_is_on_disk(
        images: Images, tmp_path: Path, command: Callable[[Images, FaultProxy, Path], list[str | Path]],
        signum: int) -> None:
    """Two workers busy on the slow items when the signal comes: the quick items never
    start, the slow ones stop, exit ``128 + signum``; every ACI written is reported ``ok``
    (and every ``ok`` item's ACIs are there); nothing is left in ``tmp/`` or the output."""
    for attempt in range(ATTEMPTS):
        work = tmp_path / f"attempt{attempt}"
        work.mkdir()
        out, cache, report = work / "out", work / "cache", work / "report.json"
        with FaultProxy(images.registry.url) as proxy:
            proxy.add(Fault.drip(images.slow_layer_size - DRIP_BYTES, DRIP_INTERVAL, times=None))
            slow_layers = {tag: images.layers[tag] for tag in SLOW_TAGS}
            mark = 0

            def both_slow_layers_asked() -> bool:
                nonlocal mark
                mark = len(proxy.requests)
                return _gets(proxy, slow_layers) == set(SLOW_TAGS)

            argv = [*command(images, proxy, work), "--jobs", "2", "--insecure-allow-http", "--no-cache",
                    "--output-dir", out, "--cache-dir", cache, "--report", report]
            run = _signalled_run(argv, signum, both_slow_layers_asked)
            if run is None:
                continue
            started_before = _gets(proxy, images.configs, 0, mark)
            started_after = _gets(proxy, images.configs, mark) - started_before
        assert run.returncode == 128 + signum, run.stderr
        entries = load_report(report)
        ok = {aci["path"] for entry in entries if entry["status"] == "ok" for aci in entry["acis"]}
        on_disk = {str(out / name) for name in visible_acis(out)} if out.exists() else set()
        assert on_disk == ok, f"ACIs on disk {sorted(on_disk)}, reported ok {sorted(ok)}: {json.dumps(entries)}"
        assert started_after == set(), f"started after the signal: {started_after}"
        assert set(SLOW_TAGS) <= started_before
        by_tag = {entry.get("tag") or entry["source"].rsplit(":", 1)[1]: entry for entry in entries}
        for tag in QUICK_TAGS:
            assert (by_tag[tag]["status"], by_tag[tag]["error"]) == ("skipped", "interrupted before it started")
        for tag in SLOW_TAGS:
            assert by_tag[tag]["status"] in ("ok", "skipped"), by_tag[tag]
        assert _blob_partials(cache) == []
        assert not out.exists() or temporaries(out) == []
        return
    pytest.fail(f"the run ended before both slow layers were asked for, {ATTEMPTS} times")


def test_ctrl_c_of_a_dask_run_stops_its_tasks(images: Images, tmp_path: Path) -> None:
    """Ctrl-C of a batch on a Dask cluster, both workers on the slow items: they stop as
    local workers do, and every ACI in the output directory, once the cluster is idle, is
    one the report calls ``ok``. The run used to cancel its tasks without waiting: the two
    running went on and wrote their ACIs after the report called them "interrupted before
    it finished" (as it called the items that never started)."""
    distributed = pytest.importorskip("distributed")
    out, report = tmp_path / "out", tmp_path / "report.json"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as cluster, FaultProxy(images.registry.url) as proxy:
        proxy.add(Fault.drip(images.slow_layer_size - DRIP_BYTES, DRIP_INTERVAL, times=None))
        slow_layers = {tag: images.layers[tag] for tag in SLOW_TAGS}
        argv = [*_batch_argv(images, proxy, tmp_path), "--executor", "dask", "--scheduler",
                cluster.scheduler_address, "--insecure-allow-http", "--no-cache", "--output-dir", out,
                "--cache-dir", tmp_path / "cache", "--report", report]
        run = _signalled_run(argv, signal.SIGINT, lambda: _gets(proxy, slow_layers) == set(SLOW_TAGS))
        assert run is not None, "the run ended before both slow layers were asked for"
        time.sleep(DRIP_BYTES * DRIP_INTERVAL + 2)  # a slow item not stopped has written its ACI by now
        on_disk = {str(out / name) for name in visible_acis(out)} if out.exists() else set()
    assert run.returncode == 130, run.stderr
    entries = load_report(report)
    ok = {aci["path"] for entry in entries if entry["status"] == "ok" for aci in entry["acis"]}
    assert on_disk == ok, f"ACIs on disk {sorted(on_disk)}, reported ok {sorted(ok)}: {json.dumps(entries)}"
    by_tag = {entry["source"].rsplit(":", 1)[1]: (entry["status"], entry["error"]) for entry in entries}
    for tag in SLOW_TAGS:
        assert by_tag[tag] in (("ok", None), ("skipped", "interrupted before it finished")), by_tag
    for tag in QUICK_TAGS:  # a worker may have run one before the slow items
        assert by_tag[tag] in (("ok", None), ("skipped", "interrupted before it started")), by_tag
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".docker2aci-")) == []

def _large_argv(command: str, images: Images, out: Path, cache: Path) -> list[str | Path]:
    """``convert`` (into ``out``) or ``fetch`` of :data:`LARGE`."""
    source = f"docker://{images.registry.host}/{LARGE}"
    if command == "convert":
        return ["--insecure-allow-http", "--output-dir", out, "--cache-dir", cache, source]
    return ["fetch", "--json", "--insecure-options=image", "--insecure-allow-http", "--cache-dir", cache, source]


def _large_partial(cache: Path) -> bool:
    """Whether a partial download of 1 MiB or more is in the cache: only the large layer's
    can be (the config's, seen first, may be published before a signal lands)."""
    for path in (cache / "tmp").glob("blob-*"):
        try:
            if path.stat().st_size >= 1 << 20:
                return True
        except FileNotFoundError:  # published meanwhile
            continue
    return False


def _mid_download(argv: list[str | Path], cache: Path, signum: int) -> Signalled | None:
    """Run ``argv`` and send ``signum`` while the large layer is half downloaded."""
    return _signalled_run(argv, signum, lambda: _large_partial(cache))


@pytest.mark.parametrize("command", ["convert", "fetch"])
def test_sigterm_mid_download_cleans_up_and_exits_143(images: Images, tmp_path: Path, command: str) -> None:
    """``SIGTERM`` while a layer downloads: exit 143 (it used to die of the signal,
    leaving the partial download and at times the output's temporary file)."""
    for attempt in range(ATTEMPTS):
        out, cache = tmp_path / f"out{attempt}", tmp_path / f"cache{attempt}"
        run = _mid_download(_large_argv(command, images, out, cache), cache, signal.SIGTERM)
        if run is None:
            continue
        assert run.returncode == 143, run.stderr
        assert _blob_partials(cache) == []
        assert not out.exists() or (temporaries(out) == [] and visible_acis(out) == {})
        prerun = cache / "prerun"
        assert not (prerun.is_dir() and list(prerun.iterdir())), list(prerun.iterdir())
        return
    pytest.fail(f"the {command} ended before its download was seen, {ATTEMPTS} times")


def test_a_rerun_removes_the_partial_download_of_a_killed_run(images: Images, tmp_path: Path) -> None:
    """``SIGKILL`` mid-download leaves ``tmp/blob-*`` (nothing can clean up); the next
    conversion into the same cache removes it (its writer's lock is free), not only
    ``docker2aci gc``."""
    for attempt in range(ATTEMPTS):
        out, cache = tmp_path / f"out{attempt}", tmp_path / f"cache{attempt}"
        argv = _large_argv("convert", images, out, cache)
        run = _mid_download(argv, cache, signal.SIGKILL)
        if run is None:
            continue
        assert run.returncode == -signal.SIGKILL
        left = _blob_partials(cache)
        if not left:  # the download ended between the look and the kill: again
            continue
        proc = subprocess.run([sys.executable, "-m", "docker2aci", *map(str, argv)], capture_output=True, text=True,
                              env=cli_env(), timeout=CLI_TIMEOUT, check=False)
        assert proc.returncode == 0, proc.stderr
        assert _blob_partials(cache) == [], f"the rerun kept {left}"
        assert len(visible_acis(out)) == 1 and temporaries(out) == []
        return
    pytest.fail(f"the conversion ended (or its download did) before the kill, {ATTEMPTS} times")


def test_a_second_signal_ends_workers_stalled_on_a_registry(images: Images, tmp_path: Path) -> None:
    """Two workers waiting on a registry that stalls (the proxy sends the blobs' response
    heads a byte every 5 s, the configs' first, so no read deadline fires for minutes): the first ``SIGTERM``
    stops nothing that is waiting, the second ends the workers at once, as a kill would;
    exit 143, both items ``skipped``, no process of the run left. The second signal used
    to be ignored while workers ran: a stalled batch ran on through its retries (six
    minutes in a user's trial)."""
    out, report = tmp_path / "out", tmp_path / "report.json"
    with FaultProxy(images.registry.url) as proxy:
        proxy.add(Fault.drip_head(5.0, times=None, target="blob"))
        proc = _start_slow_batch(proxy, tmp_path, "--report", report)
        try:
            deadline = time.monotonic() + WAIT
            while _gets(proxy, {tag: images.configs[tag] for tag in SLOW_TAGS}) != set(SLOW_TAGS):  # both stalled
                assert proc.poll() is None and time.monotonic() < deadline, "the run did not reach both configs"
                time.sleep(0.01)
            proc.send_signal(signal.SIGTERM)
            time.sleep(1.0)
            assert proc.poll() is None  # the first signal: the stalled jobs have no next step yet
            proc.send_signal(signal.SIGTERM)
            start = time.monotonic()
            _, stderr = proc.communicate(timeout=CLI_TIMEOUT)
            ended_in = time.monotonic() - start
            _wait_until_group_gone(proc.pid, "processes of the run are left")  # workers, fork server
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 143, stderr
    assert ended_in < 4.5, f"{ended_in:.1f} s after the second signal: it waited for a stalled read"
    assert [(e["source"].rsplit(":", 1)[1], e["status"], e["error"], e["acis"]) for e in load_report(report)] == [
        (tag, "skipped", "interrupted before it finished", []) for tag in SLOW_TAGS]
    assert not out.exists() or visible_acis(out) == []


def test_workers_end_when_the_run_is_killed(images: Images, tmp_path: Path) -> None:
    """``kill -9`` of the run alone (a cron job's ``timeout -s KILL``, an OOM kill), with two
    workers waiting on a stalled registry: the workers and the fork server end within
    seconds. They used to stay for ever (a worker's parent is the fork server, and a
    pool worker waits for its next job without noticing that the run is gone): five
    processes left per killed run."""
    with FaultProxy(images.registry.url) as proxy:
        proxy.add(Fault.drip_head(5.0, times=None, target="blob"))
        proc = _start_slow_batch(proxy, tmp_path)
        try:
            deadline = time.monotonic() + WAIT
            while _gets(proxy, {tag: images.configs[tag] for tag in SLOW_TAGS}) != set(SLOW_TAGS):  # both stalled
                assert proc.poll() is None and time.monotonic() < deadline, "the run did not reach both configs"
                time.sleep(0.01)
            proc.kill()  # the run's process only, not its group
            proc.wait()
            _wait_until_group_gone(proc.pid, "workers of the killed run are left")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


def test_a_mirror_interrupted_while_listing_reports_every_tag_it_did_not_plan(images: Images,
                                                                               tmp_path: Path) -> None:
    """SIGTERM while the mirror asked the registry for its tags' manifests (every manifest
    answer stalled) exited 143 with a report of the tags planned so far only: none here,
    so the report said nothing of the four tags listed (mirror review). Every selected
    tag not planned is now ``skipped``, "interrupted before it started"."""
    report = tmp_path / "report.json"
    with FaultProxy(images.registry.url) as proxy:
        proxy.add(Fault.drip_head(5.0, times=None, target="manifest"))

        def first_manifest_asked() -> bool:
            return any("/manifests/" in seen.path for seen in proxy.requests)

        run = _signalled_run([*_mirror_argv(images, proxy, tmp_path), "--insecure-allow-http", "--no-cache",
                              "--output-dir", tmp_path / "out", "--cache-dir", tmp_path / "cache",
                              "--report", report], signal.SIGTERM, first_manifest_asked)
    assert run is not None and run.returncode == 128 + signal.SIGTERM, run
    assert [(e["tag"], e["status"], e["error"]) for e in load_report(report)] == [
        (tag, "skipped", "interrupted before it started") for tag in SLOW_TAGS + QUICK_TAGS]



STALL_INTERVAL = 1.0
"""The seconds between the stalled layer's last bytes: they take ``DRIP_BYTES * STALL_INTERVAL``
= 40 s, longer than :data:`PROMPT`."""
PROMPT = 20.0
"""How long a conversion may take to end after the signal (seconds): far more than it needs,
far less than the stalled layer's last bytes."""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_download_does_not_wait_for_the_layer(images: Images, tmp_path: Path, signum: int) -> None:
    """Ctrl-C or ``SIGTERM`` of a conversion while a layer downloads slowly: it ends at
    once, exit ``128 + N``, its last line on stderr says so (it used to end without a
    word), nothing in the output, and a rerun writes the ACI an
    uninterrupted run writes and leaves nothing in the cache's ``tmp/`` (a fetch stalled
    in a read longer than the source's ``ABANDON_WAIT`` leaves its partial file to it). It used to wait for the layer's whole
    download (the layer threads were waited for, and not told to stop): 80 s after a
    Ctrl-C at 4 MB/s for a 300 MB layer, and a second Ctrl-C changed nothing."""
    tag = SLOW_TAGS[0]
    with FaultProxy(images.registry.url) as proxy:
        source = f"docker://{proxy.host}/{REPO}:{tag}"

        def argv(name: str) -> list[str | Path]:
            return ["--insecure-allow-http", "--output-dir", tmp_path / f"out-{name}",
                    "--cache-dir", tmp_path / f"cache-{name}", source]

        run_cli(*argv("whole"))
        [(name, whole)] = visible_acis(tmp_path / "out-whole").items()
        proxy.add(Fault.drip(images.slow_layer_size - DRIP_BYTES, STALL_INTERVAL, times=None))
        out, cache = tmp_path / "out-signalled", tmp_path / "cache-signalled"

        def mid_layer() -> bool:  # the layer's first bytes are in, its last ones stall
            for path in (cache / "tmp").glob("blob-*"):
                with contextlib.suppress(FileNotFoundError):
                    if path.stat().st_size >= SLOW_LAYER_BYTES // 2:
                        return True
            return False

        proc = subprocess.Popen([sys.executable, "-m", "docker2aci", *map(str, argv("signalled"))],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, env=cli_env(), start_new_session=True)
        with reaped(proc):
            deadline = time.monotonic() + WAIT
            while not mid_layer():
                assert proc.poll() is None and time.monotonic() < deadline, "the layer's download was not seen"
                time.sleep(0.005)
            proc.send_signal(signum)
            try:
                _, stderr = proc.communicate(timeout=PROMPT)
            except subprocess.TimeoutExpired:
                pytest.fail(f"still running {PROMPT:.0f} s after the signal: it waits for the layer's download")
        assert proc.returncode == 128 + signum, stderr
        assert "Traceback" not in stderr, stderr
        assert stderr.splitlines()[-1] == f"Interrupted ({signal.Signals(signum).name})", stderr
        assert not out.exists() or (visible_acis(out) == {} and temporaries(out) == [])
        proxy.clear()
        run_cli(*argv("signalled"))
    assert visible_acis(out) == {name: whole}
    assert _blob_partials(cache) == []  # the stalled fetch's, if it outlived the source's wait, is gone too
