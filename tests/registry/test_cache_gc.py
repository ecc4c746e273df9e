"""``docker2aci gc`` and the conversion and blob caches, with a real registry and the real
CLI: what was not used within ``--cache-grace`` goes (ages are set with ``os.utime``),
what was used lately or is in use stays, a warm conversion marks what it used, the lock
files of failed fetches go, and a gc racing with conversions makes none fail.

The registry is the session's plain ``docker-registry`` (conftest.py) behind a
:class:`faultproxy.FaultProxy` that records every request (and corrupts blobs where a
test wants a fetch to fail).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from faultproxy import Fault, FaultProxy

from docker2aci.store import cache_lock, gc_cache

pytestmark = [pytest.mark.tools]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
OLD = time.time() - 2 * 86400
"""A last use older than the default grace (24h)."""
REUSED = "reused the cached ACI"
"""What a conversion that found the image in the conversion cache logs (with --debug)."""
CACHE_KEYS = ("conversions_removed", "conversions_in_use", "conversions_recent", "blobs_removed", "blobs_in_use",
              "blobs_recent", "locks_removed", "cache_bytes_freed")
"""What ``gc --json`` says of the cache."""


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "docker2aci", *args], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=120, check=False)


def _convert(ref: str, cache: Path, out: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return _cli("--json", "--insecure-allow-http", "--cache-dir", str(cache), "--output-dir", str(out), *flags, ref)


def _converted(ref: str, cache: Path, out: Path, *flags: str) -> dict[str, Any]:
    done = _convert(ref, cache, out, *flags)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _gc_json(cache: Path, *flags: str) -> dict[str, Any]:
    done = _cli("gc", "--json", "--cache-dir", str(cache), *flags)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    return {key: report[key] for key in CACHE_KEYS}


def _blobs(cache: Path) -> list[str]:
    return sorted(f"sha256:{name}" for name in os.listdir(cache / "blobs" / "sha256"))


def _blob(cache: Path, digest: str) -> Path:
    return cache / "blobs" / "sha256" / digest.split(":", 1)[1]


def _keys(cache: Path) -> list[str]:
    return sorted(name[:-5] for name in os.listdir(cache / "conversions") if name.endswith(".json"))


def _age(*paths: Path) -> None:
    for path in paths:
        os.utime(path, (OLD, OLD))


def _age_everything(cache: Path) -> None:
    _age(*(cache / "conversions").iterdir(), *(cache / "blobs" / "sha256").iterdir())


def _config_digest(cache: Path, key: str) -> str:
    record = json.loads((cache / "conversions" / f"{key}.json").read_text())
    return next(a["value"] for a in record["manifest"]["annotations"] if a["name"] == "appc.io/docker/imageid")


def _blob_gets(proxy: FaultProxy) -> int:
    return sum(r.method == "GET" and "/blobs/" in r.path for r in proxy.requests)


def test_gc_removes_the_cache_entries_unused_within_the_grace(tmp_path: Path, fault_proxy: FaultProxy) -> None:
    """The cache grew for ever: gc left every conversion and blob. Now what was last used
    before the grace goes, with the bytes it freed counted (not those of a cached ACI an
    output file still links to); what was used within it stays; ``--keep-cache`` keeps all."""
    cache = tmp_path / "cache"
    oci, v2s2 = f"docker://{fault_proxy.host}/test/busybox:oci", f"docker://{fault_proxy.host}/test/busybox:v2s2"
    first = _converted(oci, cache, tmp_path / "a")  # a/ keeps its ACI, a link to the cached one
    [oci_key] = _keys(cache)
    kept = _converted(v2s2, cache, tmp_path / "b")["manifest_digest"]
    shutil.rmtree(tmp_path / "b")
    [v2s2_key] = sorted(set(_keys(cache)) - {oci_key})
    blobs = _blobs(cache)
    _age_everything(cache)
    os.utime(cache / "conversions" / f"{v2s2_key}.json")  # used now
    os.utime(_blob(cache, kept))
    before = sorted(p.name for p in cache.rglob("*"))
    assert _gc_json(cache, "--keep-cache") == {**{key: [] for key in CACHE_KEYS}, "cache_bytes_freed": 0}
    assert sorted(p.name for p in cache.rglob("*")) == before
    freed = sum(_blob(cache, d).stat().st_size for d in blobs if d != kept)
    freed += (cache / "conversions" / f"{oci_key}.json").stat().st_size  # the ACI's bytes stay in a/
    # what each tag named (--pull-policy new): the record of a manifest removed goes too
    tag_records = {tag: hashlib.sha256(f"{fault_proxy.host}/test/busybox:{tag}".encode()).hexdigest()
                   for tag in ("oci", "v2s2")}
    assert sorted(os.listdir(cache / "tags")) == sorted(tag_records.values())
    freed += (cache / "tags" / tag_records["oci"]).stat().st_size

    report = _gc_json(cache)

    assert report == {"conversions_removed": [oci_key], "conversions_in_use": [], "conversions_recent": [v2s2_key],
                      "blobs_removed": [d for d in blobs if d != kept], "blobs_in_use": [], "blobs_recent": [kept],
                      "locks_removed": [], "cache_bytes_freed": freed}
    assert sorted(os.listdir(cache / "conversions")) == [f"{v2s2_key}.aci", f"{v2s2_key}.json"]
    assert _blobs(cache) == [kept] and os.listdir(cache / "locks") == []
    assert os.listdir(cache / "tags") == [tag_records["v2s2"]]
    record_sha = hashlib.sha256(Path(first["path"]).read_bytes()).hexdigest()
    gets = _blob_gets(fault_proxy)
    again = _converted(oci, cache, tmp_path / "c")  # fetched and converted again
    assert again["image_id"] == first["image_id"] and _blob_gets(fault_proxy) > gets
    assert hashlib.sha256(Path(again["path"]).read_bytes()).hexdigest() == record_sha


def test_a_warm_conversion_marks_what_it_used(tmp_path: Path, fault_proxy: FaultProxy) -> None:
    """A conversion served from the cache sets its record's mtime (never its ACI's: that is
    its stamp) and those of the manifest and config it read; the layers it did not read
    then go, and the conversion is still reused whole. The text output names them."""
    cache = tmp_path / "cache"
    ref = f"docker://{fault_proxy.host}/test/busybox:oci"
    first = _converted(ref, cache, tmp_path / "a")
    [key] = _keys(cache)
    used = sorted([first["manifest_digest"], _config_digest(cache, key)])
    layers = [d for d in _blobs(cache) if d not in used]
    _age_everything(cache)
    aci_mtime = (cache / "conversions" / f"{key}.aci").stat().st_mtime_ns

    warm = _convert(ref, cache, tmp_path / "b", "--debug")

    assert warm.returncode == 0 and REUSED in warm.stderr, warm.stderr
    assert time.time() - (cache / "conversions" / f"{key}.json").stat().st_mtime < 60
    assert (cache / "conversions" / f"{key}.aci").stat().st_mtime_ns == aci_mtime
    assert [d for d in _blobs(cache) if time.time() - _blob(cache, d).stat().st_mtime < 60] == used
    freed = sum(_blob(cache, d).stat().st_size for d in layers)
    done = _cli("gc", "--cache-dir", str(cache), "--cache-grace", "1h")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == [*(f"Removed cached blob {d}" for d in layers),
                                        "Kept 0 tree(s) in use and 0 used within 0s",
                                        ("Kept 1 cached conversion(s) and 2 blob(s) in use or used within 1h; "
                                         f"freed {freed} bytes of the cache")]
    gets = _blob_gets(fault_proxy)
    third = _convert(ref, cache, tmp_path / "c", "--debug")
    assert third.returncode == 0 and REUSED in third.stderr, third.stderr
    assert json.loads(third.stdout)["image_id"] == first["image_id"] and _blob_gets(fault_proxy) == gets


def test_gc_removes_the_lock_files_a_failed_fetch_left(tmp_path: Path, fault_proxy: FaultProxy) -> None:
    """Every blob fetched left its lock file for ever, a failed one too (no blob to go with it)."""
    cache = tmp_path / "cache"
    fault_proxy.add(Fault.corrupt())
    failed = _convert(f"docker://{fault_proxy.host}/test/busybox:oci", cache, tmp_path / "a")
    assert failed.returncode == 1, failed.stderr
    left = sorted(os.listdir(cache / "locks"))
    assert left and all(name.startswith("sha256-") for name in left)
    (cache / "locks" / "notes.txt").write_text("not a lock of ours\n")  # a locks/ linked to a shared place: kept
    assert _gc_json(cache)["locks_removed"] == left
    assert os.listdir(cache / "locks") == ["notes.txt"]


_HOLD_LOCKS = """
import contextlib, sys
from docker2aci.store import cache_lock
with contextlib.ExitStack() as held:
    for name in sys.argv[2:]:
        held.enter_context(cache_lock(sys.argv[1], name))
    print("held", flush=True)
    sys.stdin.read()
"""
"""A process holding the cache locks ``argv[2:]`` of the cache ``argv[1]`` until its stdin closes."""


def test_gc_leaves_entries_whose_lock_a_live_process_holds(tmp_path: Path, fault_proxy: FaultProxy) -> None:
    """An entry whose lock another process holds (making or reusing it) is kept, however
    old, and so is its lock file (the same file); both go once the holder has ended."""
    cache = tmp_path / "cache"
    _converted(f"docker://{fault_proxy.host}/test/busybox:oci", cache, tmp_path / "a")
    [key] = _keys(cache)
    blob = _blobs(cache)[0]
    _age_everything(cache)
    names = [f"conversion-{key}", f"sha256-{blob.split(':', 1)[1]}"]
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCKS, str(cache), *names], cwd=PROJECT_ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        inodes = [(cache / "locks" / name).stat().st_ino for name in names]
        report = _gc_json(cache)
        assert (report["conversions_in_use"], report["blobs_in_use"]) == ([key], [blob])
        assert report["conversions_removed"] == [] and blob not in report["blobs_removed"]
        assert [(cache / "locks" / name).stat().st_ino for name in names] == inodes
        assert sorted(os.listdir(cache / "locks")) == sorted(names)  # the others' lock files went
        assert (cache / "conversions" / f"{key}.aci").is_file() and _blob(cache, blob).is_file()
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(30)
    report = _gc_json(cache)
    assert (report["conversions_removed"], report["blobs_removed"], report["locks_removed"]) == ([key], [blob], [])
    assert os.listdir(cache / "locks") == [] and os.listdir(cache / "conversions") == []


def test_a_lock_file_removed_while_waited_on_is_taken_again(tmp_path: Path) -> None:
    """A taker waiting on a lock file that gc unlinks (holding it) would lock the unlinked
    file and hold it alongside whoever locked the new one; it now takes the new one."""
    root = str(tmp_path)
    acquired = threading.Event()

    def waiter() -> None:
        with cache_lock(root, "conversion-k"):
            acquired.set()

    with contextlib.ExitStack() as gc_holds:
        assert gc_holds.enter_context(cache_lock(root, "conversion-k", wait=False))
        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(0.3)  # the waiter waits on the file about to be removed
        os.unlink(tmp_path / "locks" / "conversion-k")
        with cache_lock(root, "conversion-k", wait=False) as newcomer:
            assert newcomer  # the file is new: nobody holds it
            gc_holds.close()
            assert not acquired.wait(0.5)  # the waiter woke on the removed file, and waits on the new one
        assert acquired.wait(10)
        thread.join()


def test_a_cache_lock_is_held_on_a_descriptor_open_for_writing(tmp_path: Path) -> None:
    """On NFS, Linux emulates flock with a byte-range lock, and an exclusive one needs a
    descriptor open for writing (flock(2)): the cache's locks were taken read-only once
    they shared the tree store's opener (session review), which would fail every
    conversion with EBADF on an NFS home. No NFS here: the open mode is what is checked."""
    path = tmp_path / "locks" / "sha256-x"
    with cache_lock(str(tmp_path), "sha256-x"):
        [flags] = [int(line.split()[1], 8) for fd in os.listdir("/proc/self/fd")
                   if os.path.realpath(f"/proc/self/fd/{fd}") == str(path)
                   for line in Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines() if line.startswith("flags:")]
    assert flags & os.O_ACCMODE == os.O_RDWR


def test_gc_racing_four_conversions_of_one_image_loses_nothing(tmp_path: Path, fault_proxy: FaultProxy) -> None:
    """gc with no grace, again and again, while four processes convert the same image:
    it removes entries under them, and every conversion succeeds with the right ACI."""
    cache = tmp_path / "cache"
    ref = f"docker://{fault_proxy.host}/test/busybox:oci"
    first = _converted(ref, cache, tmp_path / "first")
    expected = hashlib.sha256(Path(first["path"]).read_bytes()).hexdigest()
    rounds: list[Any] = []
    converting = threading.Event()
    converting.set()

    def collect() -> None:
        while converting.is_set():
            rounds.append(gc_cache(str(cache), 0.0))

    collector = threading.Thread(target=collect)
    collector.start()
    try:
        procs = [subprocess.Popen([sys.executable, "-m", "docker2aci", "--json", "--insecure-allow-http",
                                   "--cache-dir", str(cache), "--output-dir", str(tmp_path / f"out{i}"), ref],
                                  cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i in range(4)]
        results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    finally:
        converting.clear()
        collector.join()
    for status, out, err in results:
        assert status == 0, err[-2000:]
        result = json.loads(out)
        assert result["image_id"] == first["image_id"]
        assert hashlib.sha256(Path(result["path"]).read_bytes()).hexdigest() == expected
    assert len(rounds) > 1 and sum(len(r.blobs_removed) + len(r.conversions_removed) for r in rounds) > 0


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another uid needs root")
def test_gc_refuses_a_cache_another_user_could_change(tmp_path: Path, fault_proxy: FaultProxy) -> None:
    cache = tmp_path / "cache"
    _converted(f"docker://{fault_proxy.host}/test/busybox:oci", cache, tmp_path / "a")
    _age_everything(cache)
    os.chown(cache / "conversions", 1000, 1000)
    before = sorted(p.name for p in cache.rglob("*"))
    done = _cli("gc", "--cache-dir", str(cache))
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (f"Error: cache directory {cache}: {cache / 'conversions'} is owned by uid 1000, not by "
                           "this user (uid 0) or root: another user could change what it holds; use a directory of "
                           "your own\n")
    assert sorted(p.name for p in cache.rglob("*")) == before


def test_a_cache_grace_that_is_no_duration_is_a_usage_error(tmp_path: Path) -> None:
    done = _cli("gc", "--cache-dir", str(tmp_path), "--cache-grace", "1w")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "Error: --cache-grace '1w': use a number of seconds, or one with units: 90s, 30m, 1h30m, 24h, 7d\n"


def test_a_changed_converter_does_not_reuse_an_older_ones_conversion(tmp_path: Path, fault_proxy: FaultProxy) -> None:
    """The conversion key held only the version number (0.1.0 since the first commit): an
    upgraded converter kept serving what the old one made, so a translation fix never
    reached a cached image (session review: a WorkingDir ``./app`` stayed ``/./app``). The
    key now holds :func:`~docker2aci.store.code_fingerprint`. Here the CLI runs from a copy
    of the code with one comment added: it converts again, and its own second run reuses
    its own conversion."""
    cache = tmp_path / "cache"
    ref = f"docker://{fault_proxy.host}/test/busybox:oci"
    first = _converted(ref, cache, tmp_path / "a")
    copy = tmp_path / "code"
    for package in ("docker2aci", "converters"):
        shutil.copytree(PROJECT_ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    with open(copy / "converters" / "names.py", "a", encoding="utf-8") as f:
        f.write("# a converter that differs by a comment\n")

    def from_copy(out: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "docker2aci", "--debug", "--json", "--insecure-allow-http",
                               "--cache-dir", str(cache), "--output-dir", str(tmp_path / out), ref],
                              cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(copy)}, capture_output=True,
                              text=True, timeout=120, check=False)

    imported = subprocess.run([sys.executable, "-c", "import converters, docker2aci; "
                               "print(converters.__file__); print(docker2aci.__file__)"],
                              cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(copy)}, capture_output=True,
                              text=True, timeout=60, check=True)
    assert imported.stdout.split() == [str(copy / package / "__init__.py") for package in ("converters", "docker2aci")]
    changed = from_copy("b")
    assert changed.returncode == 0 and REUSED not in changed.stderr, changed.stderr
    assert json.loads(changed.stdout)["image_id"] == first["image_id"]  # the same ACI, made again
    assert len(_keys(cache)) == 2
    again = from_copy("c")
    assert again.returncode == 0 and REUSED in again.stderr, again.stderr
    assert json.loads(again.stdout)["image_id"] == first["image_id"]


@pytest.mark.parametrize("planted", ["fifo", "directory", "symlink"])
def test_what_is_no_regular_file_at_a_blob_s_place_is_no_cached_blob(tmp_path: Path, fault_proxy: FaultProxy,
                                                                    planted: str) -> None:
    """The blob cache opened a blob's path as it found it (cache review): a FIFO there hung
    the conversion for ever, a directory ended it with a traceback. What is no regular file
    is not the blob: a FIFO or a link (never followed) is replaced by the blob fetched
    again; a directory cannot be, which the error says, naming it."""
    cache, outside = tmp_path / "cache", tmp_path / "outside"
    ref = f"docker://{fault_proxy.host}/test/busybox:oci"
    first = _converted(ref, cache, tmp_path / "a")
    blob = _blob(cache, _config_digest(cache, _keys(cache)[0]))
    data = blob.read_bytes()
    blob.unlink()
    outside.write_bytes(b"not the blob")
    {"fifo": lambda: os.mkfifo(blob), "directory": blob.mkdir, "symlink": lambda: blob.symlink_to(outside)}[planted]()
    done = _convert(ref, cache, tmp_path / "b", "--no-cache")
    if planted == "directory":
        message = f"writing to the cache {cache}: {blob}: Is a directory"
        assert done.returncode == 1
        failed = json.loads(done.stdout)  # the --json run's one failed entry
        assert (failed["source"], failed["status"], failed["error"], failed["acis"]) == (ref, "failed", message, [])
        assert done.stderr.splitlines()[-1] == f"Error: conversion error: {message}"
        assert blob.is_dir()
    else:
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["image_id"] == first["image_id"]
        assert blob.read_bytes() == data and not blob.is_symlink()
    assert outside.read_bytes() == b"not the blob"


def test_gc_keeps_an_entry_whose_lock_it_cannot_open_and_goes_on(tmp_path: Path, fault_proxy: FaultProxy) -> None:
    """One lock file gc could not open (here a directory at its place; as well a 0600 file
    a ``sudo`` run left, or a link) ended the whole gc with "writing to the cache CACHE:
    Is a directory", naming no file, and nothing was collected (cache review). That entry
    is now kept, as in use, with a warning naming its lock; the rest goes."""
    cache = tmp_path / "cache"
    _converted(f"docker://{fault_proxy.host}/test/busybox:oci", cache, tmp_path / "a")
    [key] = _keys(cache)
    blobs = _blobs(cache)
    _age_everything(cache)
    lock = cache / "locks" / f"sha256-{blobs[0].split(':', 1)[1]}"
    lock.unlink(missing_ok=True)
    lock.mkdir()
    done = _cli("gc", "--json", "--cache-dir", str(cache))
    assert done.returncode == 0, done.stderr
    assert done.stderr == f"WARNING: {lock}: cannot take this lock (Is a directory): what it guards is kept\n"
    report = json.loads(done.stdout)
    assert (report["conversions_removed"], report["blobs_in_use"], report["blobs_removed"]) == (
        [key], blobs[:1], blobs[1:])
    assert _blobs(cache) == blobs[:1] and lock.is_dir()


@pytest.mark.parametrize("planted", ["fifo", "huge"])
def test_a_conversion_record_that_is_no_small_regular_file_is_no_record(tmp_path: Path, fault_proxy: FaultProxy,
                                                                        planted: str) -> None:
    """A FIFO at a conversion record's place hung every conversion of that image (hostile
    review), and a huge file there was read whole; either is now no record: the image is
    converted again and the record written anew."""
    cache = tmp_path / "cache"
    ref = f"docker://{fault_proxy.host}/test/busybox:oci"
    first = _converted(ref, cache, tmp_path / "a")
    [key] = _keys(cache)
    record = cache / "conversions" / f"{key}.json"
    record.unlink()
    if planted == "fifo":
        os.mkfifo(record, 0o600)
    else:
        with open(record, "wb") as f:
            f.truncate(64 << 20)  # sparse: 64 MiB of NULs
    done = subprocess.run([sys.executable, "-m", "docker2aci", "--debug", "--json", "--insecure-allow-http",
                           "--cache-dir", str(cache), "--output-dir", str(tmp_path / "b"), ref],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and REUSED not in done.stderr, done.stderr
    assert json.loads(done.stdout)["image_id"] == first["image_id"]
    assert record.is_file() and json.loads(record.read_text())["key"] == key


def test_gc_leaves_the_temporary_link_of_a_conversion_being_cached(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A conversion is cached (and a cached one published) by a hard link under a temporary
    name, then a rename. A gc between the two took that name for a killed writer's and
    removed it: the save failed ("not cached") and the next caller converted again (pre-run
    race review). The file is held (shared) until it is renamed."""
    from docker2aci import atomic, store

    src, dest = tmp_path / "new.aci", tmp_path / "cache" / "key.aci"
    dest.parent.mkdir()
    src.write_bytes(b"aci")
    removed: list[str] = []
    real_replace = os.replace

    def gc_then_replace(a: Any, b: Any) -> None:  # a gc's sweep at the worst moment
        removed.extend(atomic.remove_abandoned_in(str(dest.parent)))
        real_replace(a, b)

    monkeypatch.setattr(store.os, "replace", gc_then_replace)
    assert store._link_into_place(str(src), str(dest))
    assert removed == []
    assert dest.read_bytes() == b"aci" and os.path.samestat(os.stat(src), os.stat(dest))
    assert sorted(os.listdir(dest.parent)) == ["key.aci"]
