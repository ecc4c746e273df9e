"""Resources: a full disk and interrupted downloads, with the real CLI.

* Disk full: a small tmpfs as the output directory, then as the cache directory, then as
  ``--tmp-dir``. The run fails with exit status 1 and one clear error naming the path and
  "No space left", and leaves nothing half-written there: no ACI, no cache entry that is
  not whole, no temporary file. (Skipped when this session may not mount a tmpfs.)
* Interrupted downloads: a fault proxy cutting every blob body, and a ``kill -9`` while a
  blob is being downloaded. The cache then holds only whole entries, and ``docker2aci gc``
  removes every partial download; the next run converts the image.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pytest
from crashkit import CLI_TIMEOUT, check_cache, cli_env, run_cli, visible_acis
from faultproxy import Fault, FaultProxy
from services import REGISTRY_BIN, SKOPEO_BIN, RunningRegistry, push, require_tools, run_registry

from docker2aci.atomic import atomic_file
from docker2aci.digest import Digest
from docker2aci.store import BlobCache, remove_abandoned_temporaries

NO_SPACE = "No space left"
SOURCE_TAG = "res/busybox:latest"


@pytest.fixture(scope="module")
def res_registry(busybox_layout: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """A plain-http registry holding the 8-layer busybox image."""
    require_tools(REGISTRY_BIN, SKOPEO_BIN)
    with run_registry(tmp_path_factory.mktemp("res-registry")) as running:
        push(f"oci:{busybox_layout}:latest", running, SOURCE_TAG)
        yield running


def _assert_disk_full(proc: subprocess.CompletedProcess[str], path: Path | None) -> None:
    """Exit status 1, one line saying "No space left" (and naming ``path`` unless ``None``)."""
    assert proc.returncode == 1, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert NO_SPACE in proc.stderr and (path is None or str(path) in proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "[Errno" not in proc.stderr, proc.stderr  # the reason in words, as every other error says it


def _files(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if not p.is_dir())


def test_output_dir_full(busybox_docker_archive: Path, tmpfs: Callable[[str, str], Path], tmp_path: Path) -> None:
    out = tmpfs("out", "256k")  # the ACI is about 1.1 MB
    proc = run_cli("--output-dir", out, "--cache-dir", tmp_path / "cache", f"docker-archive:{busybox_docker_archive}",
                   check=None)
    _assert_disk_full(proc, out)
    assert _files(out) == [], "a full output directory kept a partial ACI or a temporary file"


def test_cache_dir_full(res_registry: RunningRegistry, tmpfs: Callable[[str, str], Path], tmp_path: Path) -> None:
    cache = tmpfs("cache", "512k")  # the image's blobs are about 1.1 MB
    out = tmp_path / "out"
    proc = run_cli("--insecure-allow-http", "--output-dir", out, "--cache-dir", cache,
                   f"docker://{res_registry.host}/{SOURCE_TAG}", check=None)
    _assert_disk_full(proc, cache)
    report = check_cache(cache)
    assert not report.temporaries, report
    assert not out.exists() or visible_acis(out) == {}


def test_tmp_dir_full(busybox_layout: Path, tmpfs: Callable[[str, str], Path], tmp_path: Path) -> None:
    spool = tmpfs("spool", "256k")  # the gzip layers are spooled uncompressed: several MB
    out = tmp_path / "out"
    proc = run_cli("--tmp-dir", spool, "--output-dir", out, "--cache-dir", tmp_path / "cache",
                   f"oci:{busybox_layout}:latest", check=None)
    _assert_disk_full(proc, None)
    assert _files(spool) == [] and not list(spool.iterdir()), "temporary files left in the full --tmp-dir"
    assert not out.exists() or _files(out) == []
    assert str(spool) in proc.stderr, "the error names the full --tmp-dir"


@pytest.mark.parametrize("compression", ["gzip", "none", "xz"])
def test_output_dir_full_under_a_large_layer_is_the_disk_not_the_layer(
        tmpfs: Callable[[str, str], Path], tmp_path: Path, compression: str) -> None:
    """The disk fills while a layer's data is copied into the ACI (24 MiB of incompressible
    files into 5 MiB): the error names the output, not the layer being copied (it did,
    as "layer …: entry 'big3': No space left", until a review found it)."""
    import random

    import hostilebuild as hb

    layer = hb.tar([hb.file(f"big{i}", random.Random(i).randbytes(6 << 20)) for i in range(4)])
    archive = tmp_path / "big.tar"
    archive.write_bytes(hb.docker_save([layer], config=hb.image_config([layer])))
    out = tmpfs("out", "5m")
    proc = run_cli("--compression", compression, "--output-dir", out, "--cache-dir", tmp_path / "cache",
                   f"docker-archive:{archive}", check=None)
    _assert_disk_full(proc, out)
    assert "layer" not in proc.stderr and "entry" not in proc.stderr, proc.stderr
    assert _files(out) == []


def test_a_full_disk_stays_the_error_when_the_tar_writer_fails_after_it(tmpfs: Callable[[str, str], Path]) -> None:
    """3 MiB into a 1 MiB file system, then the tar writer complains about a layer: the
    full disk, met first (in a thread of its own), is the error reported, whatever the
    compression (for gzip, ISA-L keeps it until its close)."""
    import io
    import random
    import tarfile

    from docker2aci.aci import Compression, write_aci
    from docker2aci.errors import OutputError

    data = random.Random(2).randbytes(3 << 20)

    class Rootfs:
        def write(self, tar: object, prefix: str = "rootfs") -> int:
            info = tarfile.TarInfo(f"{prefix}/big")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))  # type: ignore[attr-defined]
            time.sleep(0.2)  # the writing threads meet the full disk meanwhile
            raise ValueError("entry 'x': a later complaint about a layer")

    out = tmpfs("out", "1m")
    for compression in ("none", "xz", "gzip"):
        with pytest.raises(OutputError, match=f"writing {out}/x.aci: .*No space left"):
            write_aci(str(out / "x.aci"), b"{}", Rootfs(), Compression(compression))
        assert _files(out) == []


def test_a_read_only_tmp_dir_is_an_error_naming_it(busybox_layout: Path, tmpfs: Callable[[str, str], Path],
                                                   tmp_path: Path) -> None:
    """A --tmp-dir where no spool can be made: exit 1, one line naming the directory and
    what the spool was for, nothing written."""
    spool = tmpfs("spool", "256k")
    subprocess.run(["mount", "-o", "remount,ro", str(spool)], check=True, capture_output=True)
    out = tmp_path / "out"
    proc = run_cli("--tmp-dir", spool, "--output-dir", out, "--cache-dir", tmp_path / "cache",
                   f"oci:{busybox_layout}:latest", check=1)
    assert (f"creating a temporary file in {spool} for the spool of oci:{busybox_layout}:latest (linux/amd64): "
            f"layer 0 (sha256:") in proc.stderr, proc.stderr
    assert "Read-only file system" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() or _files(out) == []


def test_a_missing_or_file_tmp_dir_says_which(busybox_layout: Path, tmp_path: Path) -> None:
    """``--tmp-dir /nonexistent`` said "not a directory" (new-user review): a missing
    directory says so; a file is not a directory. Exit 1, nothing written."""
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    for given, problem in ((tmp_path / "missing", "no such directory"), (a_file, "not a directory")):
        proc = run_cli("--tmp-dir", given, "--output-dir", tmp_path / "out", "--cache-dir", tmp_path / "cache",
                       f"oci:{busybox_layout}:latest", check=1)
        assert proc.stderr == f"Error: conversion error: --tmp-dir {given}: {problem}\n"
    assert not (tmp_path / "out").exists() and not (tmp_path / "missing").exists()
    # --cache-dir naming a file: a conversion that needs no cache went on with it, status 0 (new-user
    # trial); a missing one is made when needed
    proc = run_cli("--cache-dir", a_file, "--output-dir", tmp_path / "out", f"oci:{busybox_layout}:latest", check=1)
    assert proc.stderr == f"Error: conversion error: --cache-dir {a_file}: not a directory\n"
    assert not (tmp_path / "out").exists()


def _gzipped(archive: Path, dest: Path) -> Path:
    """``gzip -c ARCHIVE > DEST`` (a ``docker save | gzip``)."""
    with open(dest, "wb") as out:
        subprocess.run(["gzip", "-c", str(archive)], stdout=out, check=True)
    return dest


def test_tmp_dir_full_with_a_compressed_archive(busybox_docker_archive: Path, tmpfs: Callable[[str, str], Path],
                                                tmp_path: Path) -> None:
    """A compressed archive is decompressed into --tmp-dir (not the system's /tmp): a full
    one is a clear error naming it, and nothing is left there."""
    spool = tmpfs("spool", "256k")  # the archive is about 4 MB uncompressed
    out = tmp_path / "out"
    source = _gzipped(busybox_docker_archive, tmp_path / "busybox.tar.gz")
    proc = run_cli("--tmp-dir", spool, "--output-dir", out, f"docker-archive:{source}", check=None)
    _assert_disk_full(proc, spool)  # "writing the uncompressed archive into SPOOL/...: No space left"
    assert _files(spool) == [] and (not out.exists() or _files(out) == [])
    run_cli("--tmp-dir", tmp_path, "--output-dir", out, f"docker-archive:{source}")
    assert len(visible_acis(out)) == 1


def _gc_leaves_no_garbage(cache: Path) -> list[str]:
    """Check the cache, run ``gc``; return what gc found to remove."""
    before = check_cache(cache).temporaries
    run_cli("gc", "--cache-dir", cache)
    after = check_cache(cache)
    assert not after.temporaries, f"gc left partial downloads: {after.temporaries}"
    return before


def test_cut_connections_leave_no_garbage(res_registry: RunningRegistry, tmp_path: Path) -> None:
    """Every blob body cut after 4 KiB, and the resumed download answered with a wrong
    ``Content-Range`` (so the client gives up at once instead of retrying for seconds): the
    conversion fails, only whole blobs (the small ones) are cached, nothing partial is left."""
    cache, out = tmp_path / "cache", tmp_path / "out"
    with FaultProxy(res_registry.url, lifetime=60) as proxy:
        proxy.add(Fault.cut(4096, times=None), Fault.bad_content_range(times=None))
        proc = run_cli("--insecure-allow-http", "--output-dir", out, "--cache-dir", cache,
                       f"docker://{proxy.host}/{SOURCE_TAG}", check=None)
    assert proc.returncode == 1 and "Content-Range" in proc.stderr, proc.stderr
    assert not out.exists() or visible_acis(out) == {}
    assert _gc_leaves_no_garbage(cache) == [], "a failed download did not remove its partial file"
    run_cli("--insecure-allow-http", "--output-dir", out, "--cache-dir", cache,
            f"docker://{res_registry.host}/{SOURCE_TAG}")
    assert len(visible_acis(out)) == 1
    assert check_cache(cache).conversions == 1


def _cut_download(tmp: Path) -> Path | None:
    """A download in tmp/ stopped at the proxy's cut (64 KiB, not growing for 0.1 s: waiting
    to resume), or ``None``."""
    try:
        sizes = {p: p.stat().st_size for p in tmp.iterdir()} if tmp.is_dir() else {}
        cut = [p for p, size in sizes.items() if size >= 65536]
        if not cut:
            return None
        time.sleep(0.1)
        return next((p for p in cut if p.stat().st_size == sizes[p]), None)
    except FileNotFoundError:  # renamed into the cache meanwhile
        return None


def test_kill_during_download_then_gc(res_registry: RunningRegistry, tmp_path: Path) -> None:
    """``kill -9`` while a blob is half downloaded (its body is cut once, so the download
    waits to resume with a partial file in the cache's tmp/): gc removes it."""
    cache, out = tmp_path / "cache", tmp_path / "out"
    with FaultProxy(res_registry.url, lifetime=60) as proxy:
        proxy.add(Fault.cut(65536, times=None))
        argv = ["--insecure-allow-http", "--output-dir", out, "--cache-dir", cache,
                f"docker://{proxy.host}/{SOURCE_TAG}"]
        proc = subprocess.Popen([sys.executable, "-m", "docker2aci", *argv], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cli_env(),
                                start_new_session=True)
        partial = None
        deadline = time.monotonic() + 30
        while partial is None and proc.poll() is None and time.monotonic() < deadline:
            partial = _cut_download(cache / "tmp")
            time.sleep(0.002)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the session started here
        proc.wait(CLI_TIMEOUT)
    assert partial is not None, "never saw a partial download"
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists() or visible_acis(out) == {}
    removed = _gc_leaves_no_garbage(cache)
    assert str(partial) in removed
    run_cli("--insecure-allow-http", "--output-dir", out, "--cache-dir", cache,
            f"docker://{res_registry.host}/{SOURCE_TAG}")
    assert len(visible_acis(out)) == 1


def test_gc_spares_files_being_written(tmp_path: Path) -> None:
    """gc's cleaner never takes a partial file whose writer is alive for abandoned: a blob
    download and a conversion record in progress survive it and are published whole."""
    cache = BlobCache(str(tmp_path))
    data = b"blob being fetched"
    digest = Digest.of_bytes(data)

    def fetch(f: BinaryIO) -> None:
        f.write(data)
        assert remove_abandoned_temporaries(str(tmp_path)) == []

    cache.open(digest, fetch).close()
    assert cache.read(digest, 100) == data
    conversions = tmp_path / "conversions"
    conversions.mkdir()
    with atomic_file(str(conversions / "key.json"), 0o600) as (_, f):
        f.write(b"{}")
        assert remove_abandoned_temporaries(str(tmp_path)) == []
    assert (conversions / "key.json").read_bytes() == b"{}"
    assert os.listdir(conversions) == ["key.json"] and os.listdir(tmp_path / "tmp") == []


def test_gc_removes_abandoned_temporaries_only(tmp_path: Path) -> None:
    """What a killed writer left (no lock held) is removed; a file locked by a live writer,
    a published blob and a file that is not ours stay."""
    import fcntl

    from docker2aci.store import BLOB_TEMP_PREFIX

    (tmp_path / "tmp").mkdir()
    (tmp_path / "conversions").mkdir()
    abandoned = [tmp_path / "tmp" / f"{BLOB_TEMP_PREFIX}dead", tmp_path / "conversions" / ".docker2aci-dead.tmp"]
    for path in abandoned:
        path.write_bytes(b"partial")
    live = tmp_path / "tmp" / f"{BLOB_TEMP_PREFIX}live"
    kept = [live, tmp_path / "conversions" / "key.json", tmp_path / "tmp" / "not-ours"]
    for path in kept:
        path.write_bytes(b"x")
    with open(live, "rb") as writer:
        fcntl.flock(writer, fcntl.LOCK_EX)  # as locked_temp holds it while writing
        assert sorted(remove_abandoned_temporaries(str(tmp_path))) == sorted(map(str, abandoned))
    assert all(path.exists() for path in kept) and not any(path.exists() for path in abandoned)


def test_a_new_temporary_is_never_seen_unlocked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cleaner that swept between mkstemp and flock removed the new file and logged "a
    partial download left by a process that was killed" in runs where nothing was killed
    (batch review, with --jobs 4 on a fresh cache). The file is now locked before it gets
    its name (O_TMPFILE); a sweep at that moment finds nothing to remove."""
    import fcntl

    from docker2aci import atomic

    swept: list[list[str]] = []
    real_flock = fcntl.flock

    def sweep_then_lock(fd: int, how: int) -> None:  # a cleaner's sweep at the writer's worst moment
        if how == fcntl.LOCK_EX and not swept:  # (the writer's lock, once; the cleaner's own does not wait)
            swept.append(atomic.remove_abandoned_in(str(tmp_path)))
        real_flock(fd, how)

    monkeypatch.setattr(atomic.fcntl, "flock", sweep_then_lock)
    fd, path = atomic.locked_temp(str(tmp_path), atomic.TEMP_PREFIX, atomic.TEMP_SUFFIX)
    monkeypatch.undo()
    try:
        assert swept in ([], [[]])  # (no sweep, as the lock comes first, or one that found nothing)
        assert os.listdir(tmp_path) == [os.path.basename(path)]
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and os.path.samestat(os.fstat(fd), os.stat(path))
        assert atomic.remove_abandoned_in(str(tmp_path)) == []  # held
    finally:
        os.close(fd)
    assert atomic.remove_abandoned_in(str(tmp_path)) == [path]  # its writer gone


def test_a_file_is_written_where_proc_is_masked(tmp_path: Path) -> None:
    """A user's process whose /proc is masked by a directory nobody may search (as
    systemd's InaccessiblePaths=/proc does) cannot link an O_TMPFILE file through
    /proc/self/fd (EACCES): every atomic write failed there, where mkstemp had worked. It
    is made by mkstemp then, as where /proc is missing."""
    from runner.linux import root_is_mount_point

    unshare, setpriv = shutil.which("unshare"), shutil.which("setpriv")
    if os.geteuid() != 0 or unshare is None or setpriv is None:
        pytest.skip("needs root, unshare and setpriv (util-linux)")
    if not root_is_mount_point():  # (a chroot: unshare cannot make its mounts private there)
        pytest.skip("/ is not a mount point here (a chroot)")
    masked = tmp_path / "masked"
    masked.mkdir(mode=0)
    with tempfile.TemporaryDirectory() as out:  # (tmp_path's parents are closed to nobody)
        os.chmod(out, 0o777)
        dest = os.path.join(out, "a.aci")
        script = f"from docker2aci.atomic import atomic_file\nwith atomic_file({dest!r}, 0o644) as (_, f): f.write(b'aci')"
        proc = subprocess.run([unshare, "--mount", "sh", "-c", 'mount --bind "$0" /proc && exec "$@"', str(masked),
                               setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", script],
                              capture_output=True, text=True, env=cli_env(), timeout=CLI_TIMEOUT, check=False)
        if "No module named" in proc.stderr:
            pytest.skip("the project or the interpreter is not readable by nobody here")
        assert proc.returncode == 0, proc.stderr
        assert os.listdir(out) == ["a.aci"]
        st = os.stat(dest)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (65534, 0o644) and Path(dest).read_bytes() == b"aci"


def _sync_ahead_threads() -> list[str]:
    import threading

    return [t.name for t in threading.enumerate() if t.name == "docker2aci-sync-ahead"]


def test_a_large_file_is_synced_while_it_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """syncing_ahead (the ACI writer's): the file is fdatasync-ed while it is still being
    written, every SYNC_AHEAD_BYTES, and the thread ends with the block, also when it
    fails (nothing is left behind then)."""
    from docker2aci import atomic

    synced: list[int] = []
    real = os.fdatasync

    def spy(fd: int) -> None:
        synced.append(os.fstat(fd).st_size)
        real(fd)

    monkeypatch.setattr(atomic.os, "fdatasync", spy)
    chunk = os.urandom(4 << 20)
    dest = tmp_path / "big.bin"
    with atomic_file(str(dest), 0o644) as (_, f), atomic.syncing_ahead(f):
        for _ in range(10):  # 40 MiB, with pauses the syncing thread can see
            f.write(chunk)
            f.flush()
            time.sleep(3 * atomic.SYNC_AHEAD_SECONDS)
        assert synced, "nothing was synced while the file was written"
        assert all(size >= atomic.SYNC_AHEAD_BYTES for size in synced)
    assert dest.stat().st_size == 40 << 20 and _sync_ahead_threads() == []
    with pytest.raises(RuntimeError), atomic_file(str(tmp_path / "failed.bin"), 0o644) as (_, f), \
            atomic.syncing_ahead(f):
        f.write(chunk)
        raise RuntimeError("the writer fails")
    assert _sync_ahead_threads() == [] and sorted(os.listdir(tmp_path)) == ["big.bin"]


def test_a_write_back_error_met_while_syncing_ahead_fails_the_file(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Linux reports a write-back error once per open file: the error the syncing thread
    met must fail the file, as the final fsync would not see it (fault injected: no real
    disk here fails on demand)."""
    from docker2aci import atomic

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(atomic.os, "fdatasync", failing)
    chunk = os.urandom(4 << 20)
    with pytest.raises(OSError, match="Input/output error"):
        with atomic_file(str(tmp_path / "big.bin"), 0o644) as (_, f), atomic.syncing_ahead(f):
            for _ in range(6):
                f.write(chunk)
                f.flush()
                time.sleep(3 * atomic.SYNC_AHEAD_SECONDS)
    assert os.listdir(tmp_path) == [] and _sync_ahead_threads() == []


def test_a_cache_another_user_can_change_is_refused(busybox_layout: Path, tmp_path: Path) -> None:
    """A --cache-dir owned by another user (or writable by every user): that user could
    swap a cached ACI and its record, and root's next conversion published it (registry
    review). It is refused before any work, naming the directory; one of this user's own
    under the sticky /tmp is fine."""
    import docker2aci
    from docker2aci.errors import OutputError
    from docker2aci.store import check_trusted_dir

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    os.chown(foreign, 65534, 65534)
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    for cache, problem in ((foreign, "is owned by uid 65534"), (shared / "sub", "is writable by every user (mode 0777)"),
                           (shared, "is writable by every user (mode 0777)")):
        with pytest.raises(OutputError, match=re.escape(f"cache directory {cache}: ") + ".* " + re.escape(problem)):
            docker2aci.convert(f"oci:{busybox_layout}", docker2aci.ConvertOptions(
                output_dir=str(tmp_path / "out"), cache_dir=str(cache), cache_local=True))
        assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    [aci] = docker2aci.convert(f"oci:{busybox_layout}", docker2aci.ConvertOptions(output_dir=str(tmp_path / "acis")))
    result = run_cli("run", "--insecure-options=image", "--cache-dir", foreign, aci.path, "--exec", "/bin/true",
                     check=1)  # the tree store: what is rendered there is run
    assert f"tree store {foreign}: {foreign} is owned by uid 65534" in result.stderr
    assert "Traceback" not in result.stderr
    check_trusted_dir(str(tmp_path / "mine" / "cache"))  # missing: its existing ancestors are checked
    sticky = Path(tempfile.mkdtemp(prefix="docker2aci-cache-"))  # /tmp: world-writable, sticky, root's
    try:
        check_trusted_dir(str(sticky))
    finally:
        sticky.rmdir()


def test_a_new_cache_under_a_sticky_directory_is_made_private_at_once(busybox_layout: Path, tmp_path: Path) -> None:
    """``--cache-dir /tmp/new`` was refused: the nearest existing ancestor of a missing
    cache was checked as if it were the cache, and /tmp is writable by every user (a
    new user's find). It is made now, mode 0700, before anyone else can make it; one that
    another user made first is still refused."""
    import docker2aci
    from docker2aci.errors import OutputError
    from docker2aci.store import check_trusted_dir

    sticky = tmp_path / "tmp"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    cache = sticky / "new" / "cache"
    [aci] = docker2aci.convert(f"oci:{busybox_layout}", docker2aci.ConvertOptions(
        output_dir=str(tmp_path / "out"), cache_dir=str(cache), cache_local=True))
    assert os.path.isfile(aci.path)
    assert (stat.S_IMODE(cache.stat().st_mode), cache.stat().st_uid) == (0o700, os.geteuid())
    parent = (sticky / "new").stat()  # made on the way, as makedirs makes parents: ours, not shared
    assert parent.st_uid == os.geteuid() and not parent.st_mode & 0o002
    assert (cache / "conversions").is_dir()  # the cache is in use there
    theirs = sticky / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)  # another user got there first
    with pytest.raises(OutputError, match=re.escape(f"{theirs} is owned by uid 65534")):
        check_trusted_dir(str(theirs / "cache"))
    assert not (theirs / "cache").exists()


def test_spools_never_make_python_probe_the_temporary_directory(busybox_layout: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """``tempfile.gettempdir`` writes a probe file with a random name (``maefjop0``) on first
    use and removes it: a conversion killed in between left it in TMPDIR (a crash test
    caught one). The spools pick the directory themselves."""
    import tempfile

    import docker2aci

    def probe() -> str:
        raise AssertionError("tempfile probed the temporary directory")

    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.setattr(tempfile, "_get_default_tempdir", probe)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    [aci] = docker2aci.convert(f"oci:{busybox_layout}", docker2aci.ConvertOptions(output_dir=str(tmp_path / "out")))
    assert Path(aci.path).is_file() and tempfile.tempdir is None


def _fill(directory: Path, leave: int) -> Path:
    """A file taking all but ``leave`` bytes of ``directory``'s file system."""
    filler = directory / "filler"
    info = os.statvfs(directory)
    with filler.open("wb") as f:
        os.posix_fallocate(f.fileno(), 0, info.f_bavail * info.f_frsize - leave)
    return filler


@pytest.mark.root
def test_a_full_tree_store_or_pod_disk_is_named_and_the_next_run_works(
        busybox_docker_archive: Path, tmpfs: Callable[[str, str], Path], tmp_path: Path) -> None:
    """The disk of the tree store fills while a tree is rendered, then while a pod is
    made: ``fetch`` said "entry 'rootfs/bin/busybox': No space left", as if the image were
    at fault, naming neither the store nor the disk; ``run`` ended in a traceback
    (OSError from writing the pod's /etc files, the fly stage's and the isolated
    one's). Each is now one error naming the store or the pod, exit 1; nothing is left
    half-made, and once space is freed the same commands work."""
    cache = tmpfs("cache", "24m")
    image = f"docker-archive:{busybox_docker_archive}"
    common = ("--insecure-options=image", "--cache-dir", cache)
    run_cli("fetch", *common, image)  # converted (cached); then its tree is removed
    run_cli("gc", "--cache-dir", cache)
    filler = _fill(cache, 64 << 10)
    proc = run_cli("fetch", *common, image, check=None)
    _assert_disk_full(proc, cache / "trees")
    assert "entry" not in proc.stderr, proc.stderr
    assert [p.name for p in (cache / "trees").iterdir() if not p.name.endswith(".lock")] == []

    filler.unlink()
    run_cli("fetch", *common, image)  # the tree is there now; the pod's disk fills
    filler = _fill(cache, 0)
    for stage in ("fly", "isolated"):
        proc = run_cli("run", f"--stage={stage}", *common, image, check=None)
        if "isolated stage" in proc.stderr:  # no runc here
            continue
        _assert_disk_full(proc, cache / "pods")
        assert os.listdir(cache / "pods") == []
    filler.unlink()
    proc = run_cli("run", "--stage=fly", *common, "--exec", "/bin/echo hi", image)
    assert proc.stdout == "hi\n"
    assert [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(cache) + "/" in line] == []


def test_a_full_tmp_dir_is_named_when_the_aci_is_copied_to_be_verified(
        busybox_docker_archive: Path, tmpfs: Callable[[str, str], Path], tmp_path: Path) -> None:
    """``run`` copies a signed image into ``--tmp-dir`` before verifying it: a full
    ``--tmp-dir`` said "copying <the ACI in the cache>: No space left", sending the user to
    the cache's disk, not the one that was full."""
    spool = tmpfs("spool", "256k")  # the ACI is about 1.1 MB
    proc = run_cli("run", "--stage=fly", "--cache-dir", tmp_path / "cache", "--tmp-dir", spool,
                   f"docker-archive:{busybox_docker_archive}", check=None)
    _assert_disk_full(proc, spool)
    assert _files(spool) == []
