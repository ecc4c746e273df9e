"""Images whose paths try to send the runner's mounts or reads somewhere else: through
``/proc`` (whose magic links lead to the host once procfs is mounted), through files
where directories should be, or to device nodes. Each is refused with a clear message
(exit status 1, no traceback) or read safely; the host is never touched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from runner_aci_helpers import PROJECT_ROOT, BuildAci, Entry, directory, symlink

from docker2aci.errors import RunnerError
from runner.paths import read_text_in_root, resolve_in_root

pytestmark = pytest.mark.root
SH = {"exec": ["/bin/sh", "-c", "echo ran"], "user": "0", "group": "0"}


def _run(aci: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "docker2aci", "run", "--stage=fly", "--insecure-options=image",
                           *options, str(aci)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
                          check=False)


def test_a_volume_target_through_proc_is_refused(build_aci: BuildAci, tmp_path: Path) -> None:
    aci = build_aci({**SH, "mountPoints": [{"name": "data", "path": f"/proc/self/root{tmp_path}/host"}]},
                    extra=[directory("rootfs/proc")])
    (tmp_path / "src").mkdir()
    result = _run(aci, "--volume", f"data,kind=host,source={tmp_path / 'src'}")
    assert result.returncode == 1 and result.stdout == ""
    assert "leads into /proc or /sys" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "host").exists()


def test_a_dev_link_into_proc_is_refused(build_aci: BuildAci, tmp_path: Path) -> None:
    aci = build_aci(SH, extra=[directory("rootfs/proc"), symlink("rootfs/dev", f"/proc/self/root{tmp_path}")])
    result = _run(aci)
    assert result.returncode == 1 and result.stdout == ""
    assert "the image's /dev leads into /proc or /sys" in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["image-0.aci", "xdg-cache"]  # nothing made through the link


def test_an_etc_file_runs_without_resolv_conf(build_aci: BuildAci) -> None:
    aci = build_aci(SH, with_etc=False, extra=[Entry("rootfs/etc", data=b"not a directory")])
    result = _run(aci)
    assert (result.returncode, result.stdout) == (0, "ran\n"), result.stderr
    assert "not adding /etc/resolv.conf and /etc/hosts: creating directory '/etc': 'etc' is not a directory" \
        in result.stderr


def test_a_working_directory_under_a_file_is_a_clear_error(build_aci: BuildAci) -> None:
    result = _run(build_aci({**SH, "workingDirectory": "/bin/busybox/x"}))
    assert result.returncode == 1 and result.stdout == ""
    assert "bin/busybox is not a directory" in result.stderr and "Traceback" not in result.stderr


def test_a_device_node_as_etc_passwd_is_not_read(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.mknod(root / "etc" / "passwd", 0o644 | 0o020000, os.makedev(1, 3))  # a /dev/null twin
    assert read_text_in_root(root, "/etc/passwd") is None
    os.mkfifo(root / "etc" / "group")  # opening a FIFO for reading would block
    assert read_text_in_root(root, "/etc/group") is None


def test_resolving_through_a_file_names_it(tmp_path: Path) -> None:
    (tmp_path / "etc").write_text("x")
    with pytest.raises(RunnerError, match="resolving '/etc/passwd': etc is not a directory"):
        resolve_in_root(tmp_path, "/etc/passwd")


def test_a_working_directory_through_proc_self_cwd_stays_in_the_image(build_aci: BuildAci, tmp_path: Path) -> None:
    """``/wd -> /proc/self/cwd``: the fly stage changed to it as root after mounting /proc,
    so the kernel followed the magic link to the runner's own directory on the host and
    a uid-1000 app started (and wrote) there (runner review). It now starts in the image,
    as in the isolated stage; a working directory in /proc itself is refused."""
    host = tmp_path / "host-cwd"
    host.mkdir(mode=0o777)
    os.chmod(host, 0o777)
    app = {"exec": ["/bin/sh", "-c", "touch ./planted 2>/dev/null; pwd"], "user": "1000", "group": "1000",
           "workingDirectory": "/wd"}
    argv = [sys.executable, "-m", "docker2aci", "run", "--stage=fly", "--insecure-options=image"]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    escaping = build_aci(app, extra=[directory("rootfs/proc"), symlink("rootfs/wd", "/proc/self/cwd/../../../..")])
    result = subprocess.run([*argv, str(escaping)], cwd=host, env=env, capture_output=True, text=True, timeout=60,
                            check=False)
    assert (result.returncode, result.stdout) == (0, "/\n"), result.stderr  # the link, resolved in the image
    into_proc = build_aci(app, extra=[directory("rootfs/proc"), symlink("rootfs/wd", "/proc/self/cwd")])
    refused = subprocess.run([*argv, str(into_proc)], cwd=host, env=env, capture_output=True, text=True, timeout=60,
                             check=False)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr == "Error: manifest field app.workingDirectory '/wd': leads into /proc or /sys: refused\n"
    assert list(host.iterdir()) == []
