"""Signed images with dependencies: the bytes verified are the bytes rendered, for every
image of the chain, and a tree rendered over other dependencies is never reused.

Dependencies are real ACIs made by ``actool build`` (appc-spec); keys are Ed25519 keys
made with docker2aci's own key generation and signed with pysequoia (the signing tests
check these signatures against real gpg). Runs go through the CLI in a fresh Python.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pysequoia
import pytest
from runner_aci_helpers import ACTOOL, BUSYBOX, PROJECT_ROOT, actool_build, children_running

from docker2aci import signing
from docker2aci.trust import TrustStore
from runner.linux import mount_points_under

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(ACTOOL is None, reason="actool is not installed (apt-get install appc-spec)")]


def _manifest(name: str, **extra: object) -> dict:
    return {"acKind": "ImageManifest", "acVersion": "0.8.11", "name": name,
            "labels": [{"name": "os", "value": "linux"}, {"name": "arch", "value": "amd64"}], **extra}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``good/``: a signed base (``/marker`` GOOD, busybox) and a signed app depending on
    it by name only; ``evil/``: the same app bytes and signature, and an unsigned base
    whose ``/marker`` says EVIL; ``trust/``: the signing key as a root key."""
    tmp = tmp_path_factory.mktemp("deps")
    key = signing.generate_key("Deps <deps@example.invalid>", signing.KeyAlgorithm.ED25519)
    _, secret = signing.write_key_pair(str(tmp / "key"), key)
    signer = signing.open_signer(key=secret)
    assert signer is not None
    TrustStore(str(tmp / "trust")).add(pysequoia.Cert.from_bytes(Path(str(tmp / "key.pub.asc")).read_bytes()), None)
    app_doc = _manifest("example.com/app", app={"exec": ["/bin/busybox", "cat", "/marker"], "user": "0", "group": "0"},
                        dependencies=[{"imageName": "example.com/base"}])
    paths = {}
    for kind, marker in (("good", b"GOOD\n"), ("evil", b"EVIL\n")):
        d = tmp / kind
        d.mkdir()
        actool_build(d / "base.aci", _manifest("example.com/base"),
                     {"bin/busybox": BUSYBOX.read_bytes(), "marker": marker}, mode=0o755)
        paths[kind] = d
    actool_build(tmp / "good" / "app.aci", app_doc, {"app-file": b"x"})
    signing.sign_file(str(tmp / "good" / "base.aci"), signer)
    signing.sign_file(str(tmp / "good" / "app.aci"), signer)
    shutil.copy(tmp / "good" / "app.aci", tmp / "evil" / "app.aci")
    shutil.copy(tmp / "good" / "app.aci.asc", tmp / "evil" / "app.aci.asc")
    paths["trust"] = tmp / "trust"
    return paths


def _run(cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "docker2aci", "run", "--stage=fly", *args], cwd=PROJECT_ROOT,
                          env={**os.environ, "XDG_CACHE_HOME": str(cache)}, capture_output=True, text=True,
                          timeout=60, check=False)


def test_a_tree_over_unsigned_dependencies_is_not_reused_by_a_signed_run(setup: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    evil = _run(tmp_path, "--insecure-options=image", str(setup["evil"] / "app.aci"))
    assert (evil.returncode, evil.stdout) == (0, "EVIL\n"), evil.stderr
    good = _run(tmp_path, "--trust-dir", str(setup["trust"]), str(setup["good"] / "app.aci"))
    assert (good.returncode, good.stdout) == (0, "GOOD\n"), good.stderr
    trees = [n for n in os.listdir(tmp_path / "docker2aci" / "trees") if n.startswith("sha512-") and not n.endswith(".lock")]
    assert len(trees) == 2  # the same app over two different bases: two trees


@pytest.mark.parametrize("overlay", [[], ["--no-overlay"]], ids=["overlay", "private-copy"])
def test_an_unsigned_dependency_is_refused_even_when_a_tree_exists(setup: dict[str, Path], tmp_path: Path,
                                                                   overlay: list[str]) -> None:
    """A run with checks renders the good tree; then the base is swapped for the unsigned
    one: the next run with checks refuses it instead of rendering or reusing anything."""
    images = tmp_path / "images"
    shutil.copytree(setup["good"], images)
    trust = ["--trust-dir", str(setup["trust"])]
    first = _run(tmp_path, *trust, *overlay, str(images / "app.aci"))
    assert (first.returncode, first.stdout) == (0, "GOOD\n"), first.stderr
    shutil.copy(setup["evil"] / "base.aci", images / "base.aci")
    second = _run(tmp_path, *trust, *overlay, str(images / "app.aci"))
    assert second.returncode == 1 and second.stdout == ""
    assert "base.aci" in second.stderr and "signature" in second.stderr.lower()


def test_a_killed_runner_leaves_its_running_app_to_gc(setup: dict[str, Path], tmp_path: Path) -> None:
    """kill -9 of the runner alone: the app (which inherited the pod's and the tree's
    locks) keeps running, and gc removes neither; once the app is gone, gc removes both."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    store = tmp_path / "docker2aci"
    proc = subprocess.Popen([sys.executable, "-m", "docker2aci", "run", "--stage=fly", "--insecure-options=image",
                             "--exec", "/bin/busybox sleep 60", str(setup["good"] / "app.aci")], cwd=PROJECT_ROOT,
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not children_running(proc.pid, b"sleep"):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        gc = _gc(env)
        assert (gc["pods_removed"], gc["trees_removed"], len(gc["trees_in_use"])) == ([], [], 1)
        assert len(os.listdir(store / "pods")) == 1
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        time.sleep(0.2)
        gc = _gc(env)  # also after a failure: no mount is left behind
    assert len(gc["pods_removed"]) == 1 and len(gc["trees_removed"]) == 1
    assert mount_points_under(str(tmp_path)) == []


def _gc(env: dict[str, str]) -> dict:
    result = subprocess.run([sys.executable, "-m", "docker2aci", "gc", "--json"], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True, timeout=30, check=True)
    return json.loads(result.stdout)


def _replacing_after_verify(monkeypatch: pytest.MonkeyPatch, original: Path, before: bytes | None,
                            after: bytes | None) -> None:
    """Make ``verify_aci`` write ``before`` into ``original`` just before the check and
    ``after`` just after it: another process replacing the user's file meanwhile."""
    real = signing.verify_aci

    def verify(*args: object, **kwargs: object) -> signing.VerifiedImage:
        if before is not None:
            original.write_bytes(before)
        try:
            return real(*args, **kwargs)  # type: ignore[arg-type]
        finally:
            if after is not None:
                original.write_bytes(after)

    monkeypatch.setattr(signing, "verify_aci", verify)


def test_the_bytes_rendered_are_the_bytes_verified(setup: dict[str, Path], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The signed base is replaced by the unsigned EVIL one right after its check: the
    tree is rendered from the private copy that was checked, so it says GOOD."""
    from runner.api import open_image
    from runner.treestore import TreeStore

    image = tmp_path / "base.aci"
    shutil.copyfile(setup["good"] / "base.aci", image)
    shutil.copyfile(setup["good"] / "base.aci.asc", tmp_path / "base.aci.asc")
    _replacing_after_verify(monkeypatch, image, None, (setup["evil"] / "base.aci").read_bytes())
    with open_image(image, TreeStore(tmp_path / "store"), trust_dir=setup["trust"], work_dir=tmp_path) as (tree, _):
        assert Path(tree.rootfs, "marker").read_bytes() == b"GOOD\n"
    assert image.read_bytes() == (setup["evil"] / "base.aci").read_bytes()  # the swap did happen


def test_the_bytes_verified_are_the_bytes_copied(setup: dict[str, Path], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The unsigned EVIL base, next to the GOOD one's signature, is swapped for the GOOD
    bytes just before the check: the check reads the private copy (EVIL) and refuses."""
    from runner.api import open_image
    from runner.treestore import TreeStore

    image = tmp_path / "base.aci"
    shutil.copyfile(setup["evil"] / "base.aci", image)
    shutil.copyfile(setup["good"] / "base.aci.asc", tmp_path / "base.aci.asc")
    _replacing_after_verify(monkeypatch, image, (setup["good"] / "base.aci").read_bytes(), None)
    with pytest.raises(signing.VerificationError) as caught, \
            open_image(image, TreeStore(tmp_path / "store"), trust_dir=setup["trust"], work_dir=tmp_path):
        pass
    assert caught.value.reason == "bad-signature"
