"""The pre-run hook against a real registry: ``docker2aci run docker://REF`` and
``docker2aci fetch docker://REF`` convert when the cache lacks the image, verify, render
and run; eight callers racing for one uncached image get one conversion and eight
correct results.

The registry is the session's plain ``docker-registry`` (conftest.py) behind a
:class:`faultproxy.FaultProxy` that injects nothing and records every request.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from faultproxy import FaultProxy
from services import SHARED_IMAGES, RunningRegistry

from runner.isolated import available_runtime
from runner.linux import mount_points_under, root_is_mount_point

pytestmark = [pytest.mark.tools, pytest.mark.skipif(os.geteuid() != 0, reason="running an app needs root")]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
REUSED = "reused the cached ACI"
"""What a conversion that found the image in the conversion cache logs (with --debug)."""


def _docker2aci(*args: str, cache: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    return subprocess.Popen([sys.executable, "-m", "docker2aci", *args], cwd=PROJECT_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _layer_digests() -> list[str]:
    layout = SHARED_IMAGES / "oci-layout"
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"].split(":", 1)[1]
    manifest = json.loads((layout / "blobs" / "sha256" / digest).read_text())
    return [layer["digest"] for layer in manifest["layers"]]


def test_eight_racing_runs_of_an_uncached_image_convert_it_once(tmp_path: Path, fault_proxy: FaultProxy) -> None:
    cache = tmp_path / "cache"
    ref = f"docker://{fault_proxy.host}/test/busybox:oci"
    procs = [_docker2aci("run", "--debug", "--insecure-options=image", "--insecure-allow-http", ref,
                         "--exec", "/bin/ls /srv/old /opt/dir", cache=cache) for _ in range(8)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    for status, out, err in results:
        assert status == 0, err[-2000:]
        assert out == "/opt/dir:\nc.txt\n\n/srv/old:\nz.txt\n"  # the squashed image's whiteouts
    assert sum(REUSED not in err for _, _, err in results) == 1  # one conversion, seven reuses
    blob_gets = collections.Counter(r.path.rsplit("/", 1)[-1] for r in fault_proxy.requests
                                    if r.method == "GET" and "/blobs/" in r.path)
    assert {digest: blob_gets[digest] for digest in _layer_digests()} == {d: 1 for d in _layer_digests()}
    store = cache / "docker2aci"
    assert len([n for n in os.listdir(store / "trees") if n.startswith("sha512-") and
                not n.endswith(".lock")]) == 1
    assert not [n for n in os.listdir(store / "trees") if n.startswith(".")]  # no half renders
    assert os.listdir(store / "pods") == []
    assert sorted(n.rsplit(".", 1)[1] for n in os.listdir(store / "conversions")) == ["aci", "json"]
    assert mount_points_under(str(tmp_path)) == []


def test_fetch_prints_the_image_id_and_the_tree(tmp_path: Path, fault_proxy: FaultProxy) -> None:
    cache = tmp_path / "cache"
    ref = f"docker://{fault_proxy.host}/test/busybox:v2s2"
    proc = _docker2aci("fetch", "--insecure-options=image", "--insecure-allow-http", ref, cache=cache)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    image_id, path = out.split()
    assert path == str(cache / "docker2aci" / "trees" / image_id)
    assert json.loads(Path(path, "manifest").read_text())["name"] == f"{fault_proxy.host.replace(':', '_')}/test/busybox"
    assert Path(path, "rootfs", "srv", "old", "z.txt").is_file()
    proc = _docker2aci("fetch", "--json", "--insecure-options=image", "--insecure-allow-http", ref, cache=cache)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads(out) == {"image_id": image_id, "path": path,
                               "name": f"{fault_proxy.host.replace(':', '_')}/test/busybox",
                               "labels": {"arch": "amd64", "os": "linux", "version": "v2s2"}}


def test_run_of_an_unsigned_image_needs_insecure_options(tmp_path: Path, fault_proxy: FaultProxy) -> None:
    proc = _docker2aci("run", "--insecure-allow-http", "--stage=fly", f"docker://{fault_proxy.host}/test/busybox:oci",
                       "--exec", "/bin/true", cache=tmp_path / "cache")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert f"{fault_proxy.host}/test/busybox:oci" in err and "not signed" in err
    assert out == ""
    # it named the signature file of the conversion's own directory, already removed, and
    # said nothing of how to sign it (a new user's find)
    assert ("not signed: it was converted without a signing key; convert with --sign KEYFILE (or --gpg-key ID) "
            "and trust that key (docker2aci trust add), or skip the check with --insecure-options=image") in err
    assert "prerun" not in err


@pytest.mark.skipif(available_runtime() is None or not root_is_mount_point(),
                    reason="the isolated stage needs runc and / a mount point")
def test_run_defaults_to_the_isolated_stage(tmp_path: Path, fault_proxy: FaultProxy) -> None:
    proc = _docker2aci("run", "--insecure-options=image", "--insecure-allow-http",
                       f"docker://{fault_proxy.host}/test/busybox:oci", "--exec", "/bin/sh -c 'echo $$'",
                       cache=tmp_path / "cache")
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, out) == (0, "1\n"), err  # pid 1: its own pid namespace


def test_run_with_pull_policy_new_runs_the_image_converted_before_without_the_registry(
        tmp_path: Path, plain_registry: RunningRegistry) -> None:
    """The pre-run hook with the registry out of reach: ``run`` of an image converted
    before failed after 24 s of retries (new-user trial); ``--pull-policy new`` runs what
    the tag named when last fetched, asking the registry nothing."""
    cache = tmp_path / "cache"
    with FaultProxy(plain_registry.url, lifetime=60) as proxy:
        ref = f"docker://{proxy.host}/test/busybox:oci"
        proc = _docker2aci("run", "--stage=fly", "--insecure-options=image", "--insecure-allow-http", ref,
                           "--exec", "/bin/ls /opt/dir", cache=cache)
        out, err = proc.communicate(timeout=60)
        assert (proc.returncode, out) == (0, "c.txt\n"), err
    proc = _docker2aci("run", "--stage=fly", "--pull-policy", "new", "--insecure-options=image",
                       "--insecure-allow-http", ref, "--exec", "/bin/ls /opt/dir", cache=cache)
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, out) == (0, "c.txt\n"), err
    proc = _docker2aci("fetch", "--pull-policy", "always", ref, cache=cache)
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (2, "Error: argument --pull-policy/-pull-policy: invalid choice: 'always' "
                                         "(choose from 'new', 'update', 'never')\n")


def test_the_pull_policy_flag_offers_the_policies_the_sources_know() -> None:
    from docker2aci.cli_common import PULL_POLICY_CHOICES
    from docker2aci.sources.base import PULL_POLICIES

    assert PULL_POLICY_CHOICES == PULL_POLICIES
