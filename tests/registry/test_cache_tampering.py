"""The conversion cache and the tree store under tampering, with a real registry and real
processes: a warm run never hands out another image's ACI, never follows a link planted in
the cache to create or change a file elsewhere, and refuses a cache subdirectory another
user could write to, naming the file or directory.

The registry is the session's plain ``docker-registry`` (conftest.py) behind a
:class:`faultproxy.FaultProxy` that injects nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from faultproxy import FaultProxy

pytestmark = [pytest.mark.tools]

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _docker2aci(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "docker2aci", *args, "--insecure-allow-http", "--cache-dir", str(cache)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False)


def _convert(ref: str, cache: Path, out: Path) -> dict[str, object]:
    out.mkdir(parents=True, exist_ok=True)
    done = _docker2aci("--json", "--output-dir", str(out), ref, cache=cache)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _only_key(cache: Path, but: set[str] = frozenset()) -> str:  # type: ignore[assignment]
    [key] = {name.split(".", 1)[0] for name in os.listdir(cache / "conversions") if name.endswith(".json")} - but
    return key


def test_a_conversion_moved_under_another_key_is_converted_again(tmp_path: Path, fault_proxy: FaultProxy) -> None:
    cache = tmp_path / "cache"
    oci, v2s2 = f"docker://{fault_proxy.host}/test/busybox:oci", f"docker://{fault_proxy.host}/test/busybox:v2s2"
    first = _convert(oci, cache, tmp_path / "a")
    oci_key = _only_key(cache)
    oci_bytes = Path(str(first["path"])).read_bytes()
    second = _convert(v2s2, cache, tmp_path / "b")
    v2s2_key = _only_key(cache, {oci_key})
    assert first["image_id"] != second["image_id"]
    conversions = cache / "conversions"
    for suffix in (".aci", ".json"):  # swap the two entries, each ACI with its own record
        (conversions / f"{oci_key}{suffix}").rename(conversions / f"swap{suffix}")
        (conversions / f"{v2s2_key}{suffix}").rename(conversions / f"{oci_key}{suffix}")
        (conversions / f"swap{suffix}").rename(conversions / f"{v2s2_key}{suffix}")

    again = _docker2aci("--json", "--output-dir", str(tmp_path / "c"), oci, cache=cache)
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert (result["image_id"], result["manifest_digest"]) == (first["image_id"], first["manifest_digest"])
    assert Path(str(result["path"])).read_bytes() == oci_bytes
    assert (f"WARNING: {conversions / (oci_key + '.json')}: not the record of this conversion (it names another); "
            "converting again") in again.stderr

    fetched = _docker2aci("fetch", "--json", "--insecure-options=image", v2s2, cache=cache)  # the pre-run path
    assert fetched.returncode == 0, fetched.stderr
    assert json.loads(fetched.stdout)["image_id"] == second["image_id"]
    assert json.loads(fetched.stdout)["labels"]["version"] == "v2s2"


def test_a_cached_aci_that_is_a_link_is_neither_handed_out_nor_changed(tmp_path: Path,
                                                                      fault_proxy: FaultProxy) -> None:
    cache = tmp_path / "cache"
    ref = f"docker://{fault_proxy.host}/test/busybox:oci"
    first = _convert(ref, cache, tmp_path / "a")
    cached = cache / "conversions" / f"{_only_key(cache)}.aci"
    elsewhere = tmp_path / "private.aci"  # the same bytes, kept private by its owner
    elsewhere.write_bytes(cached.read_bytes())
    elsewhere.chmod(0o600)
    cached.unlink()
    cached.symlink_to(elsewhere)

    out = tmp_path / "b"
    result = _convert(ref, cache, out)
    assert result["image_id"] == first["image_id"]
    assert os.stat(elsewhere).st_mode & 0o777 == 0o600  # was made 0644 through the link
    assert os.stat(elsewhere).st_nlink == 1
    assert Path(str(result["path"])) == out / "test-busybox-oci.aci" and not (out / "test-busybox-oci.aci").is_symlink()
    assert not cached.is_symlink()  # replaced by the new conversion


def test_lock_files_that_are_links_are_refused_and_create_nothing(tmp_path: Path, fault_proxy: FaultProxy) -> None:
    cache = tmp_path / "cache"
    ref = f"docker://{fault_proxy.host}/test/busybox:oci"
    _convert(ref, cache, tmp_path / "a")
    lock = cache / "locks" / f"conversion-{_only_key(cache)}"
    lock.unlink()
    target = tmp_path / "made-by-the-lock"
    lock.symlink_to(target)
    done = _docker2aci("--json", "--output-dir", str(tmp_path / "b"), ref, cache=cache)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (f"Error: conversion error: lock file {lock} is a symbolic link, not a "
                                            "file of the cache: remove it")
    assert not target.exists()

    lock.unlink()
    fetched = _docker2aci("fetch", "--json", "--insecure-options=image", ref, cache=cache)
    assert fetched.returncode == 0, fetched.stderr
    tree_lock = cache / "trees" / f"{json.loads(fetched.stdout)['image_id']}.lock"
    tree_lock.unlink()
    tree_lock.symlink_to(target)
    fetched = _docker2aci("fetch", "--json", "--insecure-options=image", ref, cache=cache)
    assert fetched.returncode == 1
    assert fetched.stderr.splitlines()[-1] == (f"Error: lock file {tree_lock} is a symbolic link, not a file of "
                                               "the store: remove it")
    assert not target.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another uid needs root")
def test_a_cache_subdirectory_another_user_could_write_is_refused(tmp_path: Path, fault_proxy: FaultProxy) -> None:
    cache = tmp_path / "cache"
    ref = f"docker://{fault_proxy.host}/test/busybox:oci"
    _convert(ref, cache, tmp_path / "a")
    (cache / "conversions").chmod(0o777)
    done = _docker2aci("--json", "--output-dir", str(tmp_path / "b"), ref, cache=cache)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        f"Error: conversion error: cache directory {cache}: {cache / 'conversions'} is writable by every user "
        "(mode 0777): another user could change what it holds; use a directory of your own")
    (cache / "conversions").chmod(0o700)
    os.chown(cache / "blobs" / "sha256", 65534, -1)
    done = _docker2aci("--json", "--output-dir", str(tmp_path / "b"), ref, cache=cache)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        f"Error: conversion error: cache directory {cache}: {cache / 'blobs' / 'sha256'} is owned by uid 65534, not "
        f"by this user (uid 0) or root: another user could change what it holds; use a directory of your own")
    os.chown(cache / "blobs" / "sha256", 0, -1)
    fetched = _docker2aci("fetch", "--json", "--insecure-options=image", ref, cache=cache)
    assert fetched.returncode == 0, fetched.stderr
    (cache / "trees").chmod(0o777)
    fetched = _docker2aci("fetch", "--json", "--insecure-options=image", ref, cache=cache)
    assert fetched.returncode == 1
    assert fetched.stderr.splitlines()[-1] == (
        f"Error: tree store {cache}: {cache / 'trees'} is writable by every user (mode 0777): another user could "
        "change what it holds; use a directory of your own")
