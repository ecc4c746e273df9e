"""``docker2aci run`` of the shared busybox image (converted from ../shared/images) in both
stages, through the command line: its greeting, the app's exit status, its user, and in
``isolated`` pid 1, the host name and no network but ``lo``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from runner_aci_helpers import BuildAci, directory

import docker2aci
from runner.linux import root_is_mount_point

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "images"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the runner needs root")


@pytest.fixture(scope="module")
def busybox_aci(tmp_path_factory: pytest.TempPathFactory) -> str:
    [aci] = docker2aci.convert(f"oci-archive:{SHARED / 'oci-archive.tar'}",
                               docker2aci.ConvertOptions(output_dir=str(tmp_path_factory.mktemp("aci"))))
    return aci.path


def run(aci: str, *args: str, ignoring: str = "") -> subprocess.CompletedProcess[str]:
    """``docker2aci run`` of ``aci``; ``ignoring``: signals its caller ignores (``HUP INT``)."""
    caller = ["sh", "-c", f"trap '' {ignoring}; exec \"$@\"", "sh"] if ignoring else []
    return subprocess.run([*caller, sys.executable, "-m", "docker2aci", "run", "--insecure-options=image", *args, aci],
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


PORTS_WARNING = "WARNING: port(s) 53/udp, 8080/tcp not published: the app has a network of its own (only lo); use --net=host\n"
"""What an isolated run of the shared image (``EXPOSE 53/udp 8080/tcp``) says first, once."""


@pytest.mark.parametrize("stage", ["fly", "isolated"])
@pytest.mark.parametrize(("program", "status", "reason"), [
    ("/bin/nosuch", 127, "No such file or directory"),
    ("nosuch", 127, "not found in the image's PATH /bin:/usr/bin"),
    ("/etc", 126, "Permission denied"),  # a directory
    ("/app/hello.txt", 126, "Permission denied"),  # a file without x bits
])
def test_a_program_that_cannot_run_exits_127_or_126(busybox_aci: str, stage: str, program: str, status: int,
                                                     reason: str) -> None:
    """Both stages exited 1, where ``docker run`` and the shell give 127 (not found) and
    126 (not executable), which scripts test (run review); the isolated stage printed
    runc's error twice, once from runc and once in the runner's message. Now one line
    names the image, the program and why, in both stages alike."""
    if stage == "isolated":
        _need_isolated()
    proc = run(busybox_aci, "--stage", stage, "--exec", program)
    warning = PORTS_WARNING if stage == "isolated" else ""
    assert (proc.returncode, proc.stdout) == (status, "")
    assert proc.stderr == f"{warning}Error: {busybox_aci}: cannot execute {program}: {reason}\n"


@pytest.mark.parametrize("stage", ["fly", "isolated"])
@pytest.mark.parametrize(("cwd", "reason"), [
    ("/dev/null", "not a directory (the stage binds the device /dev/null there)"),
    ("/etc/passwd", "not a directory"),
    # the image has none: fly wrote its own and refused, the isolated stage made a
    # directory there and ran the app without /etc/hosts (not mounted, with a warning)
    ("/etc/hosts", "not a directory (the stage puts its own /etc/hosts there)"),
    ("/etc/resolv.conf", "not a directory (the stage puts its own /etc/resolv.conf there)"),
])
def test_a_working_directory_that_is_no_directory_is_named(build_aci: BuildAci, stage: str, cwd: str,
                                                           reason: str) -> None:
    """``app.workingDirectory: /dev/null`` gave a runc error about reopening /dev/null in
    the isolated stage (it made a directory there, where the device goes) and "creating
    directory" in fly; both stages now refuse it, and a regular file, with the field's
    name and value. A missing one is still made, as Docker does."""
    if stage == "isolated":
        _need_isolated()
    refused = run(str(build_aci({"exec": ["/bin/pwd"], "workingDirectory": cwd})), "--stage", stage)
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == f"Error: manifest field app.workingDirectory {cwd!r}: {reason}\n"
    made = run(str(build_aci({"exec": ["/bin/pwd"], "workingDirectory": "/srv/new"})), "--stage", stage)
    assert (made.returncode, made.stdout, made.stderr) == (0, "/srv/new\n", "")


def test_ports_not_published_are_named_once(busybox_aci: str, build_aci: BuildAci) -> None:
    """``app.ports`` were ignored without a word: in the isolated stage's own network
    namespace nothing on the host reaches them. Named once; with ``--net host`` (and in
    fly, which keeps the host's network) the app listens on the host: no warning."""
    _need_isolated()
    isolated = run(busybox_aci, "--stage", "isolated")
    host = run(busybox_aci, "--stage", "isolated", "--net", "host")
    fly = run(busybox_aci, "--stage", "fly")
    assert (isolated.returncode, isolated.stderr) == (0, PORTS_WARNING)
    assert (host.returncode, host.stderr) == (0, "")
    assert (fly.returncode, fly.stderr) == (0, "")
    ranges = build_aci({"exec": ["/bin/true"], "ports": [
        {"name": "8000-8002-tcp", "port": 8000, "count": 3, "protocol": "tcp"},
        {"name": "9-udp", "port": 9, "protocol": "udp"}]})
    ranged = run(str(ranges), "--stage", "isolated")
    assert (ranged.returncode, ranged.stderr) == (0, PORTS_WARNING.replace("53/udp, 8080/tcp", "8000-8002/tcp, 9/udp"))


@pytest.mark.parametrize("stage", ["fly", "isolated"])
def test_the_app_ignores_no_signal_its_caller_ignored(busybox_aci: str, stage: str) -> None:
    """The fly app inherited the signals the runner's caller ignored (``nohup``, a
    script's ``&``), so that a forwarded ``SIGHUP`` or ``SIGINT`` did not stop it (run
    review 2). runc (and crun) start the isolated app with the default actions, as
    Docker's; the fly stage now does the same. Only glibc's own real-time signals, which
    runc's init ignores, may be ignored."""
    if stage == "isolated":
        _need_isolated()
    proc = run(busybox_aci, "--stage", stage, "--net", "host", "--exec", "/bin/busybox grep SigIgn /proc/self/status",
               ignoring="HUP INT QUIT TERM USR1 USR2 ALRM PIPE")
    assert (proc.returncode, proc.stderr) == (0, "")
    label, mask = proc.stdout.split()
    assert label == "SigIgn:"
    standard = range(1, 32)  # 32 and 33 are glibc's own, below SIGRTMIN
    assert [number for number in standard if int(mask, 16) >> (number - 1) & 1] == []


@pytest.mark.parametrize("stage", ["fly", "isolated"])
def test_hostname_is_the_apps_host_name_unless_the_image_sets_it(busybox_aci: str, build_aci: BuildAci,
                                                                  stage: str) -> None:
    """Docker sets ``HOSTNAME`` to the container's host name (an image's ``ENV HOSTNAME``
    wins); the runner set none, as rkt (run review 2). It is the app's host name: the
    isolated stage's (``--hostname``, or the container's id), the host's in fly."""
    if stage == "isolated":
        _need_isolated()
    # the environment, as env prints it: busybox sh sets $HOSTNAME for itself, unexported
    show = ["--stage", stage, "--net", "host", "--exec",
            "/bin/sh -c '/bin/busybox env | /bin/busybox grep ^HOSTNAME=; hostname'"]
    default = run(busybox_aci, *show)
    host_name = os.uname().nodename if stage == "fly" else default.stdout.split("\n")[-2]
    assert (default.returncode, default.stdout, default.stderr) == (0, f"HOSTNAME={host_name}\n{host_name}\n", "")
    if stage == "isolated":
        assert re.fullmatch(r"docker2aci-[0-9a-f]{16}", host_name)
        named = run(busybox_aci, *show, "--hostname", "box")
        assert (named.returncode, named.stdout) == (0, "HOSTNAME=box\nbox\n"), named.stderr
    image = build_aci({"exec": ["/bin/true"], "environment": [{"name": "HOSTNAME", "value": "from-image"}]})
    own = run(str(image), *show)
    assert (own.returncode, own.stdout.split("\n")[0]) == (0, "HOSTNAME=from-image"), own.stderr


@pytest.mark.parametrize("stage", ["fly", "isolated"])
def test_a_volume_that_fits_no_mount_point_is_a_usage_error(busybox_aci: str, stage: str) -> None:
    """A ``--volume`` naming no mount point of the image (or given twice) exited 1, as if
    the run had failed (run review 2): it is the command line's fault, found once the
    image's manifest is read. rkt fly refuses it too ("missing mount for volume")."""
    if stage == "isolated":
        _need_isolated()
    unknown = run(busybox_aci, "--stage", stage, "--net", "host", "--volume", "data,kind=empty")
    assert (unknown.returncode, unknown.stdout) == (2, "")
    assert unknown.stderr == ("Error: --volume 'data' names no mount point of the image; its mount points: "
                              "volume-data (--mount volume=data,target=PATH adds one)\n")
    twice = run(busybox_aci, "--stage", stage, "--net", "host", "--volume", "volume-data,kind=empty",
                "--volume", "volume-data,kind=empty")
    assert (twice.returncode, twice.stdout, twice.stderr) == (2, "", "Error: --volume 'volume-data' is given twice\n")


@pytest.mark.parametrize("stage", ["fly", "isolated"])
def test_a_read_only_mount_point_without_a_volume_is_named(build_aci: BuildAci, stage: str) -> None:
    """A mount point marked ``readOnly`` that no ``--volume`` fills showed the image's
    own directory, writable, without a word (run review 2), where rkt mounts a read-only
    volume. It stays the image's directory (the documented behaviour, Docker's), with a
    warning; a writable mount point without a volume is not named."""
    if stage == "isolated":
        _need_isolated()
    app = {"exec": ["/bin/sh", "-c", "echo x > /data/new && echo x > /var/log/new && echo wrote"],
           "mountPoints": [{"name": "data", "path": "/data", "readOnly": True}, {"name": "logs", "path": "/var/log"}]}
    image = build_aci(app, extra=[directory("rootfs/data"), directory("rootfs/var"), directory("rootfs/var/log")])
    proc = run(str(image), "--stage", stage, "--net", "host")
    assert (proc.returncode, proc.stdout) == (0, "wrote\n")
    assert proc.stderr == ("WARNING: mount point data (/data) is read-only in the image, but no --volume gives it: "
                           "the app gets the image's own directory there, writable (rkt mounts a read-only volume); "
                           "give --volume data,kind=empty or data,kind=host,source=PATH\n")


@pytest.mark.parametrize("stage", ["fly", "isolated"])
def test_the_app_gets_rkts_default_environment(build_aci: BuildAci, stage: str) -> None:
    """rkt's stage1 gives an app ``PATH``, ``HOME``, ``SHELL``, ``USER`` and ``LOGNAME``
    unless the image sets them (its ``common.defaultEnv``); the app got no ``SHELL``,
    ``USER`` or ``LOGNAME`` in either stage. The image's values, then ``--set-env``'s, win."""
    if stage == "isolated":
        _need_isolated()
    script = 'echo "$SHELL|$USER|$LOGNAME|$HOME"'
    app = run(str(build_aci({"exec": ["/bin/sh", "-c", script], "user": "app", "group": "app"})), "--stage", stage)
    root = build_aci({"exec": ["/bin/sh", "-c", script], "user": "0", "group": "0",
                      "environment": [{"name": "SHELL", "value": "/bin/ash"}, {"name": "USER", "value": "img"}]})
    image = run(str(root), "--stage", stage)
    overridden = run(str(root), "--stage", stage, "--set-env", "USER=cli", "--set-env", "LOGNAME=cli")
    assert (app.returncode, app.stdout) == (0, "/bin/sh|app|app|/home/app\n"), app.stderr
    assert (image.returncode, image.stdout) == (0, "/bin/ash|img|root|/root\n"), image.stderr
    assert (overridden.returncode, overridden.stdout) == (0, "/bin/ash|cli|cli|/root\n"), overridden.stderr


@pytest.mark.parametrize("stage", ["fly", "isolated"])
def test_the_primary_group_is_listed_once(build_aci: BuildAci, stage: str) -> None:
    """``supplementaryGIDs`` holding the primary group: fly gave the app
    ``Groups: 20 1000 1000`` (``id``: ``groups=20,1000(app),1000(app)``)."""
    if stage == "isolated":
        _need_isolated()
    aci = build_aci({"exec": ["/bin/sh", "-c", "grep Groups: /proc/self/status; id -G"], "user": "app",
                     "group": "app", "supplementaryGIDs": [1000, 20]})
    proc = run(str(aci), "--stage", stage)
    assert (proc.returncode, proc.stdout) == (0, "Groups:\t20 1000 \n1000 20\n"), proc.stderr


def test_exec_is_split_into_posix_shell_words(build_aci: BuildAci) -> None:
    r"""``--exec`` is split "as a shell would, without expansions": inside double quotes a
    backslash escapes ``$`` (``"\$1"`` is ``$1``), and stays before other characters
    (``"a\b"`` is ``a\b``, as in POSIX); ``"\$1"`` reached the app as ``\$1``."""
    aci = str(build_aci({"exec": ["/bin/true"]}))
    proc = run(aci, "--stage", "fly", "--exec", r'/bin/sh -c "echo \$0 \"a\b\"" arg0')
    assert (proc.returncode, proc.stdout) == (0, "arg0 a\\b\n"), proc.stderr


@pytest.mark.parametrize("stage, why", [
    ("fly", "the fly stage mounts in a private mount namespace and chroots"),
    ("isolated", "the isolated stage has the OCI runtime create namespaces and cgroups"),
])
def test_a_user_who_is_not_root_is_told_run_needs_root(busybox_aci: str, monkeypatch: pytest.MonkeyPatch,
                                                       stage: str, why: str) -> None:
    """Without root, a run of the default stage said "the fly stage needs root", a stage
    the user never chose (new-user trial)."""
    from docker2aci.errors import RunnerError
    from runner import run_aci

    if stage == "isolated":
        _need_isolated()
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(RunnerError) as exc:
        run_aci(busybox_aci, stage=stage, insecure_options=frozenset({"image"}))
    assert str(exc.value) == f"running an image needs root: {why}"
