"""``docker2aci run`` of the shared busybox image (converted from ../shared/images) in both
stages, through the command line: its greeting, the app's exit status, its user, and in
``isolated`` pid 1, the host name and no network but ``lo``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import docker2aci
from runner.linux import root_is_mount_point

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "images"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the runner needs root")


@pytest.fixture(scope="module")
def busybox_aci(tmp_path_factory: pytest.TempPathFactory) -> str:
    [aci] = docker2aci.convert(f"oci-archive:{SHARED / 'oci-archive.tar'}",
                               docker2aci.ConvertOptions(output_dir=str(tmp_path_factory.mktemp("aci"))))
    return aci.path


def run(aci: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "docker2aci", "run", "--insecure-options=image", *args, aci],
                          capture_output=True, text=True, timeout=60)


def _need_isolated() -> None:
    if shutil.which("runc") is None and not os.path.exists("/usr/sbin/runc"):
        pytest.skip("runc is not installed")
    if not root_is_mount_point():
        pytest.skip("/ is not a mount point here (a chroot): runc cannot start containers")


@pytest.mark.parametrize("stage", ["fly", "isolated"])
def test_greeting_exit_status_and_user(busybox_aci: str, stage: str) -> None:
    if stage == "isolated":
        _need_isolated()
    ok = run(busybox_aci, "--stage", stage)
    assert (ok.returncode, ok.stdout) == (0, "hello from aci\nhello.txt\n"), ok.stderr
    false = run(busybox_aci, "--stage", stage, "--exec", "/bin/false")
    assert false.returncode == 1
    ids = run(busybox_aci, "--stage", stage, "--exec", "/bin/sh -c 'id -u; id -g; exit 7'")
    assert (ids.returncode, ids.stdout) == (7, "1000\n1000\n")


def test_isolated_namespaces(busybox_aci: str) -> None:
    _need_isolated()
    proc = run(busybox_aci, "--stage", "isolated", "--hostname", "box", "--memory", "64M", "--exec",
               "/bin/sh -c 'echo $$; hostname; ls /sys/class/net'")
    assert (proc.returncode, proc.stdout) == (0, "1\nbox\nlo\n"), proc.stderr
