"""Helpers of the crash, concurrency and resource tests: run the real CLI as a process,
kill it (``SIGKILL`` to its process group) after a delay, and check what it left.

* :func:`killed_run` starts ``docker2aci ARGV`` in a new session and kills the whole
  group after ``delay`` seconds (the command's helpers die with it, as in a crash).
* :func:`check_cache` checks every entry of a cache directory: each blob hashes to its
  name, each conversion record matches its ACI.
* :func:`visible_acis` lists the ACIs a reader of an output directory would see (every
  ``*.aci`` file; temporary files never end in ``.aci``).
* :func:`tree_listing` describes a rendered tree (names, types, modes, owners, sizes,
  link targets and content hashes) so two renders can be compared; :func:`paths_under`
  only names what is there (to see that nothing landed outside a tree).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

CLI_TIMEOUT = 120.0
"""How long one uninterrupted ``docker2aci`` run may take (seconds)."""


@contextlib.contextmanager
def reaped(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """``proc``, killed and waited for when the block ends with it still running (an
    assertion failed before it ended): a test leaves no process behind."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of CLI runs: no proxy for the local registry."""
    return {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", **extra}


def run_cli(*argv: str | os.PathLike[str], check: int | None = 0,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``docker2aci ARGV`` to the end; assert its exit status when ``check`` is set."""
    proc = subprocess.run([sys.executable, "-m", "docker2aci", *map(str, argv)], capture_output=True, text=True,
                          env=env or cli_env(), timeout=CLI_TIMEOUT, stdin=subprocess.DEVNULL, check=False)
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def timed_cli(*argv: str | os.PathLike[str], env: dict[str, str] | None = None) -> float:
    """Run ``docker2aci ARGV`` successfully and return how long it took (seconds)."""
    start = time.monotonic()
    run_cli(*argv, env=env)
    return time.monotonic() - start


@dataclass(frozen=True)
class Kill:
    """How a killed run ended.

    Attributes:
        delay: seconds between the start and the kill.
        finished: the run ended by itself before the kill (exit status ``returncode``).
        returncode: its exit status (``-9`` when killed).
    """

    delay: float
    finished: bool
    returncode: int


def killed_run(argv: Sequence[str | os.PathLike[str]], delay: float, env: dict[str, str] | None = None) -> Kill:
    """Start ``docker2aci ARGV`` in its own session and ``SIGKILL`` its process group after
    ``delay`` seconds (unless it ended before)."""
    proc = subprocess.Popen([sys.executable, "-m", "docker2aci", *map(str, argv)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env or cli_env(),
                            start_new_session=True)
    try:
        proc.wait(delay)
    except subprocess.TimeoutExpired:
        pass
    finished = proc.poll() is not None
    if not finished:
        os.killpg(proc.pid, signal.SIGKILL)  # the group of the process started here: its own session
    proc.wait(CLI_TIMEOUT)
    if finished:
        return Kill(delay, True, proc.returncode)
    return Kill(delay, False, proc.returncode)


@dataclass(frozen=True)
class CacheReport:
    """What :func:`check_cache` found.

    Attributes:
        blobs: verified blobs.
        conversions: conversion records whose ACI matches.
        temporaries: files under the cache's ``tmp/`` and temporary files next to entries.
    """

    blobs: int
    conversions: int
    temporaries: list[str]


def check_cache(cache: Path) -> CacheReport:
    """Assert that every visible cache entry is whole: ``blobs/<alg>/<hex>`` hashes to
    ``<hex>``, and every ``conversions/<key>.json`` names an ACI whose sha256 it records.
    Temporary files (``tmp/*``, ``.docker2aci-*.tmp``) are listed, not judged."""
    blobs = conversions = 0
    temporaries = []
    for path in sorted((cache / "blobs").glob("*/*")):
        if path.name.startswith("."):
            temporaries.append(str(path))
            continue
        assert path.parent.name == "sha256", path
        assert sha256_file(path) == path.name, f"partial or damaged blob visible in the cache: {path}"
        blobs += 1
    conv = cache / "conversions"
    for path in sorted(conv.glob("*")) if conv.is_dir() else []:
        if path.name.startswith("."):
            temporaries.append(str(path))
        elif path.suffix == ".json":
            record = json.loads(path.read_text())  # a record is written whole or not at all
            aci = path.with_suffix(".aci")
            assert aci.is_file(), f"conversion record without its ACI: {path}"
            assert sha256_file(aci) == record["aci_sha256"], f"conversion ACI does not match its record: {aci}"
            conversions += 1
        else:  # an ACI, or the memo of its last check (docker2aci.filestamp)
            assert path.suffix in (".aci", ".stamp"), f"unexpected file in the conversion cache: {path}"
    tmp = cache / "tmp"
    if tmp.is_dir():
        temporaries += [str(p) for p in sorted(tmp.iterdir())]
    return CacheReport(blobs, conversions, temporaries)


def visible_acis(directory: Path) -> dict[str, str]:
    """Every ``*.aci`` file under ``directory`` (relative path → sha256)."""
    return {str(p.relative_to(directory)): sha256_file(p) for p in sorted(directory.rglob("*.aci")) if p.is_file()}


def aci_entries(path: Path) -> dict[str, tuple[object, ...]]:
    """What an ACI holds, to explain why two differ: ``{"<image ID>": (sha512 of the
    uncompressed tar,), NAME: (type, mode, uid, gid, size, mtime, link, pax headers,
    sha256 of the content)}`` (the manifest's text under ``"<manifest>"``)."""
    import gzip
    import tarfile

    entries: dict[str, tuple[object, ...]] = {}
    image_id = hashlib.sha512()
    with open(path, "rb") as raw, gzip.open(raw) as plain:
        class _Hashing:
            def read(self, n: int = -1) -> bytes:
                data = plain.read(n)
                image_id.update(data)
                return data

        with tarfile.open(fileobj=_Hashing(), mode="r|") as tar:  # type: ignore[call-overload]
            for m in tar:
                data = tar.extractfile(m).read() if m.isfile() else b""  # type: ignore[union-attr]
                entries[m.name] = (m.type, oct(m.mode), m.uid, m.gid, m.size, m.mtime, m.linkname,
                                   tuple(sorted(m.pax_headers.items())), hashlib.sha256(data).hexdigest()[:16])
                if m.name == "manifest":
                    entries["<manifest>"] = (data.decode(errors="replace"),)
            while plain.read(1 << 20):
                pass
    entries["<image ID>"] = (image_id.hexdigest()[:32],)
    return entries


def assert_same_acis(got_dir: Path, expected_dir: Path) -> None:
    """Assert that ``got_dir`` holds the same ACIs as ``expected_dir``, byte for byte; on a
    difference, say which entries of each differing ACI differ (or that only the
    compressed bytes do)."""
    got, expected = visible_acis(got_dir), visible_acis(expected_dir)
    if got == expected:
        return
    lines = [f"ACIs differ: got {sorted(got)}, expected {sorted(expected)}"]
    for name in sorted(set(got) & set(expected)):
        if got[name] != expected[name]:
            a, b = aci_entries(expected_dir / name), aci_entries(got_dir / name)
            diff = [f"  {k}: expected {a.get(k)}, got {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
            lines.append(f"{name}: sha256 {got[name]} != {expected[name]}")
            lines += diff or ["  same entries and image ID: only the compressed bytes differ"]
    raise AssertionError("\n".join(lines))


def temporaries(directory: Path) -> list[str]:
    """Temporary files the atomic writers use (``.docker2aci-*.tmp``, ``.NAME.link-PID``) under ``directory``."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob(".*")
                  if p.name.endswith(".tmp") or ".link-" in p.name)


def paths_under(root: Path, skip: Path | None = None) -> set[str]:
    """Every path under ``root`` (links not followed), relative to it, except ``skip`` and
    what is under it."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            if skip is None or skip not in (path, *path.parents):
                found.add(str(path.relative_to(root)))
    return found


def tree_listing(root: Path) -> list[tuple[str, ...]]:
    """``(path, type, mode, uid, gid, size or link target, sha256)`` of everything under
    ``root``, sorted: equal listings mean equal trees (times aside)."""
    out = []
    hashes: dict[tuple[int, int], str] = {}  # hard links (busybox's applets) are hashed once
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            kind = stat.S_IFMT(st.st_mode)
            extra = ""
            if stat.S_ISLNK(st.st_mode):
                extra = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key not in hashes:
                    hashes[key] = sha256_file(path)
                extra = f"{st.st_size}:{hashes[key]}"
            out.append((rel, str(kind), oct(stat.S_IMODE(st.st_mode)), str(st.st_uid), str(st.st_gid), extra))
    return sorted(out)
