"""The isolated stage: OCI config building (pure) and real runs with runc (needs root).

Runs go through ``runner.isolated.run_isolated`` in this process (a fresh Python costs
more than the run), on a busybox rootfs built from Debian's busybox-static, with a known
container id and state directory; after every run the state directory must list no
container, no cgroup of the id may remain and the host's ``/dev/null`` keeps its owner.
The signal test runs the runner in a fresh Python, to signal it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from crashkit import reaped
from runner_aci_helpers import BUSYBOX, CRUN, GROUP, PASSWD, PROJECT_ROOT, RUNC, RUNC_MARKS, SEARCH_PATH

from docker2aci.errors import ExecError, RunnerError
from runner import isolated
from runner.isolated import available_runtime
from runner.isolated import run_isolated as _run_isolated
from runner.ocispec import (
    CAPABILITIES,
    DEFAULT_CAPABILITIES,
    MASKED_PATHS,
    isolator_capabilities,
    isolator_limits,
    parse_cpu,
    parse_memory,
    runtime_config,
    unsupported_isolators,
)
from runner.spec import DEFAULT_PATH, ProcessSpec


_Test = Callable[..., None]


def needs_runc(test: _Test) -> _Test:
    """Mark a test that runs real containers: it needs root, runc and busybox-static."""
    no_busybox = pytest.mark.skipif(not BUSYBOX.exists(), reason="busybox-static is not installed")
    for mark in (pytest.mark.root, *RUNC_MARKS, no_busybox):
        test = mark(test)
    return test


#: ``CapEff`` of a root app: Docker's 14 default capabilities.
DOCKER_CAPS_HEX = "00000000a80425fb"

_RUN_SNIPPET = """
import json, logging, sys
from docker2aci.errors import RunnerError
from runner.isolated import run_isolated
from runner.spec import ProcessSpec
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
o = json.loads(sys.argv[1])
spec = ProcessSpec(argv=tuple(o["argv"]), env=o["env"], cwd=o["cwd"], uid=o["uid"],
                   gid=o["gid"], supplementary_gids=tuple(o["groups"]))
try:
    status = run_isolated(o["rootfs"], spec, **o["options"])
except RunnerError as err:
    print("RunnerError:", err, file=sys.stderr)
    sys.exit(99)
sys.exit(status)
"""


def _capabilities_hex(names: Sequence[str]) -> str:
    return f"{sum(1 << CAPABILITIES[name] for name in names):016x}"


def test_docker_capabilities_mask_matches_the_names() -> None:
    assert _capabilities_hex(DEFAULT_CAPABILITIES) == DOCKER_CAPS_HEX


CAPSH = shutil.which("capsh", path=SEARCH_PATH)


@pytest.mark.skipif(CAPSH is None, reason="capsh (libcap2-bin) is not installed")
def test_capabilities_are_the_kernels() -> None:
    """The one list of capability names and numbers is libcap's, in the kernel's order."""
    every = subprocess.run([str(CAPSH), f"--decode={(1 << len(CAPABILITIES)) - 1:x}"], capture_output=True,
                           text=True, check=True).stdout
    assert every.strip().split("=", 1)[1].upper().split(",") == list(CAPABILITIES)
    assert list(CAPABILITIES.values()) == list(range(len(CAPABILITIES)))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    """A busybox tree (every applet linked), /etc/passwd with root and app 1000:1000."""
    root = tmp_path / "tree" / "rootfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True)
    for applet in applets.stdout.split():
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    (root / "home" / "app").mkdir(parents=True)
    return root


RunIsolated = Callable[..., "Result"]


def _spec_options(
    argv: Sequence[str], user: int, env: Mapping[str, str] | None, cwd: str
) -> dict[str, Any]:
    return {
        "argv": list(argv),
        "env": dict(env or {"PATH": DEFAULT_PATH, "HOME": "/"}),
        "cwd": cwd,
        "uid": user,
        "gid": user,
        "groups": [],
    }


def _assert_cleaned_up(state: Path, cid: str, tree: Path, runtime: str = "runc") -> None:
    binary = CRUN if runtime == "crun" else RUNC  # an unknown runtime started nothing: the default's state is listed
    listed = subprocess.run(
        [str(binary), "--root", str(state), "list", "--quiet"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert listed.stdout.split() == [], "a container was left in the runtime's state"
    leftovers = list(Path("/sys/fs/cgroup").glob(f"*/{cid}"))
    assert leftovers == [], f"cgroups left behind: {leftovers}"
    assert sorted(os.listdir(tree)) == ["rootfs"], "the bundle was not removed"
    assert os.stat("/dev/null").st_uid == 0, "the host's /dev/null changed owner"


@dataclass(frozen=True)
class Result:
    """What a run gave: the status (99 for a RunnerError), the output, and on stderr the
    app's errors, the RunnerError's message and the runner's warnings."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run_isolated(
    rootfs: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> RunIsolated:
    """Factory: ``run_isolated(argv, user=0, env=None, cwd="/", input=None, **options)``
    in this process, the app's stdin a file with ``input`` (else ``/dev/null``) and its
    stdout and stderr captured at the descriptors; checks that nothing was left behind.
    """
    state = tmp_path / "state"
    caplog.set_level(logging.WARNING, logger="runner")

    def run(
        argv: Sequence[str],
        *,
        user: int = 0,
        env: Mapping[str, str] | None = None,
        cwd: str = "/",
        input: str | None = None,
        **options: Any,
    ) -> Result:
        cid = f"docker2aci-test-{secrets.token_hex(4)}"
        spec = ProcessSpec(
            argv=tuple(argv),
            env=dict(env or {"PATH": DEFAULT_PATH, "HOME": "/"}),
            cwd=cwd,
            uid=user,
            gid=user,
        )
        stdin_file = tmp_path / "stdin"
        stdin_file.write_text(input or "")
        capfd.readouterr()
        caplog.clear()
        saved_stdin = os.dup(0)
        try:
            with open(stdin_file if input is not None else os.devnull, "rb") as stdin:
                os.dup2(stdin.fileno(), 0)
            status = _run_isolated(
                str(rootfs), spec, state_dir=str(state), container_id=cid, **options
            )
            message = ""
        except RunnerError as error:
            status, message = 99, f"RunnerError: {error}\n"
        finally:
            os.dup2(saved_stdin, 0)
            os.close(saved_stdin)
        captured = capfd.readouterr()
        _assert_cleaned_up(state, cid, rootfs.parent, options.get("runtime", "runc"))
        return Result(status, captured.out, captured.err + message + caplog.text)

    return run


def _sh(script: str) -> list[str]:
    return ["/bin/sh", "-c", script]


# ------------------------------------------------------------------------ real runs


@pytest.mark.skipif(RUNC is None, reason="runc is not installed")
def test_available_runtime_prefers_runc() -> None:
    found = available_runtime()

    assert found is not None and os.path.basename(found) == "runc"


@needs_runc
def test_output(run_isolated: RunIsolated) -> None:
    result = run_isolated(["/bin/echo", "hello"])

    assert (result.returncode, result.stdout) == (0, "hello\n"), result.stderr


@needs_runc
@pytest.mark.parametrize(
    ("argv", "status"),
    [(["/bin/true"], 0), (["/bin/false"], 1), (_sh("exit 7"), 7), (["false"], 1)],
)
def test_exit_status_is_the_apps(run_isolated: RunIsolated, argv: list[str], status: int) -> None:
    result = run_isolated(argv)

    assert result.returncode == status, result.stderr


@needs_runc
def test_app_user_has_its_ids_and_no_capabilities(run_isolated: RunIsolated) -> None:
    script = "id -u; id -g; id -G; grep CapEff /proc/self/status; grep CapBnd /proc/self/status"
    app = run_isolated(_sh(script), user=1000)
    root = run_isolated(_sh(script))

    assert app.stdout.split() == [
        "1000", "1000", "1000", "CapEff:", "0" * 16, "CapBnd:", DOCKER_CAPS_HEX,
    ], app.stderr  # fmt: skip
    assert root.stdout.split() == [
        "0", "0", "0", "CapEff:", DOCKER_CAPS_HEX, "CapBnd:", DOCKER_CAPS_HEX,
    ], root.stderr  # fmt: skip


@needs_runc
def test_app_is_pid_1_and_sees_only_its_processes(run_isolated: RunIsolated) -> None:
    script = "echo $$; set -- /proc/[0-9]*; echo $#; test -e /proc/self/status && echo proc"
    result = run_isolated(_sh(script))

    assert result.stdout.split() == ["1", "1", "proc"], result.stderr


@needs_runc
def test_hostname_and_hosts(run_isolated: RunIsolated) -> None:
    named = run_isolated(_sh("hostname; grep -c box-1 /etc/hosts"), hostname="box-1")
    default = run_isolated(_sh("hostname"))

    assert named.stdout.split() == ["box-1", "1"], named.stderr
    assert default.stdout.startswith("docker2aci-test-"), default.stderr


@needs_runc
def test_net_none_has_only_loopback_and_host_has_the_hosts(run_isolated: RunIsolated) -> None:
    none = run_isolated(_sh("ls /sys/class/net; cat /sys/class/net/lo/operstate"))
    host = run_isolated(["/bin/ls", "/sys/class/net"], net="host")

    assert none.stdout.split() == ["lo", "unknown"], none.stderr  # lo is up: operstate "unknown"
    assert host.stdout.split() == sorted(os.listdir("/sys/class/net")), host.stderr


@needs_runc
@pytest.mark.parametrize("user", [0, 1000])
def test_dev_null_and_stdio_links_work(run_isolated: RunIsolated, user: int) -> None:
    script = (
        "echo discarded > /dev/null && echo null-ok; "
        "echo to-stdout > /dev/stdout; echo to-stderr > /dev/stderr; "
        "head -c 4 /dev/zero | wc -c; test -c /dev/urandom && echo urandom"
    )
    result = run_isolated(_sh(script), user=user)

    assert result.stdout.split() == ["null-ok", "to-stdout", "4", "urandom"], result.stderr
    assert "to-stderr" in result.stderr


@needs_runc
def test_image_dev_entries_stay_visible(run_isolated: RunIsolated, rootfs: Path) -> None:
    dev = rootfs / "dev"
    dev.mkdir()
    (dev / "log").symlink_to("/run/systemd/journal/dev-log")
    (dev / "null").write_text("not a device")  # a bogus file: the host's node is bound on it
    (dev / "stdout").symlink_to("/dev/console")  # docker2aci's link: no console here
    script = "readlink /dev/log; test -c /dev/null && echo null-is-a-device; echo ok > /dev/stdout"
    result = run_isolated(_sh(script))

    assert result.stdout.split() == ["/run/systemd/journal/dev-log", "null-is-a-device", "ok"], (
        result.stderr
    )


@needs_runc
def test_image_device_nodes_cannot_be_opened(run_isolated: RunIsolated, rootfs: Path) -> None:
    (rootfs / "dev").mkdir()
    os.mknod(rootfs / "dev" / "mem", 0o600 | stat.S_IFCHR, os.makedev(1, 1))
    result = run_isolated(_sh("head -c 1 /dev/mem > /dev/null && echo opened || echo denied"))

    assert result.stdout.split() == ["denied"], result.stderr


@needs_runc
def test_image_dev_symlink_is_refused(
    run_isolated: RunIsolated, rootfs: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (rootfs / "dev").symlink_to(outside)
    result = run_isolated(["/bin/true"])

    assert result.returncode == 99 and "/dev to be a directory" in result.stderr, result.stderr
    assert list(outside.iterdir()) == []


@needs_runc
def test_missing_executable_is_an_exec_error_said_once(run_isolated: RunIsolated) -> None:
    """runc's own line and the runner's, which repeated it, both reached stderr (run
    review): the runner's alone does, saying what runc found."""
    result = run_isolated(["/bin/no-such-program"])

    assert (result.returncode, result.stdout) == (99, "")
    assert result.stderr == "RunnerError: cannot execute /bin/no-such-program: No such file or directory\n"


@needs_runc
def test_a_runtime_error_is_said_once(run_isolated: RunIsolated, rootfs: Path) -> None:
    """Any error of runc's (here: the image's /proc is a file) is printed once: runc's own
    copy on its stderr is left out, the runner's message carries it."""
    (rootfs / "proc").write_text("not a directory")
    result = run_isolated(["/bin/true"])

    assert (result.returncode, result.stdout) == (99, "")
    assert result.stderr.startswith("RunnerError: starting the app with runc: runc run failed: ")
    assert result.stderr.count("\n") == 1 and result.stderr.count("runc run failed") == 1
    assert '"/proc"' in result.stderr


@needs_runc
def test_working_directory_is_created(run_isolated: RunIsolated) -> None:
    result = run_isolated(["/bin/pwd"], cwd="/srv/app")

    assert result.stdout == "/srv/app\n", result.stderr


@needs_runc
@pytest.mark.parametrize("cwd", ["/proc/self/fd/7", "/sys/fs/cgroup", "/wd"])
def test_a_working_directory_into_proc_or_sys_is_refused(run_isolated: RunIsolated, rootfs: Path, cwd: str) -> None:
    # as in the fly stage: /proc/self/fd/N is a descriptor the runtime leaks into its init
    # (runc before 1.1.12: CVE-2024-21626, the app starts in the host's cgroupfs)
    (rootfs / "wd").symlink_to("/proc/self/fd/7")
    result = run_isolated(["/bin/pwd"], cwd=cwd)

    assert result.returncode == 99
    assert f"RunnerError: manifest field app.workingDirectory {cwd!r}: leads into /proc or /sys: refused" \
        in result.stderr
    assert result.stdout == ""
    # refused before anything was made for it in the tree (a review found proc/self/fd/7 made)
    assert not (rootfs / "proc" / "self").exists() and not (rootfs / "sys" / "fs").exists()


@needs_runc
def test_nofile_limit_is_the_runners(run_isolated: RunIsolated) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    result = run_isolated(_sh("ulimit -n; ulimit -Hn"))

    assert result.stdout.split() == [str(soft), str(hard)], result.stderr


@needs_runc
def test_memory_limit_kills_a_greedy_app(run_isolated: RunIsolated) -> None:
    greedy = ["/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"]  # a 100 MB buffer
    limited = run_isolated(greedy, memory="32M")
    by_isolator = run_isolated(
        greedy, isolators=[{"name": "resource/memory", "value": {"limit": "32Mi"}}]
    )
    unlimited = run_isolated(greedy)

    assert limited.returncode == 137, limited.stderr
    assert by_isolator.returncode == 137, by_isolator.stderr
    assert unlimited.returncode == 0, unlimited.stderr


@needs_runc
def test_limits_are_visible_in_the_apps_cgroups(run_isolated: RunIsolated) -> None:
    script = (
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
        "/sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us"
    )
    by_option = run_isolated(_sh(script), memory="64Mi", cpu="500m")
    by_isolator = run_isolated(
        _sh(script),
        isolators=[
            {"name": "resource/cpu", "value": {"request": "100m", "limit": "250m"}},
            {"name": "resource/memory", "value": {"limit": "128M"}},
            {"name": "os/linux/no-new-privileges", "value": True},
        ],
    )
    overridden = run_isolated(
        _sh(script), cpu="1", isolators=[{"name": "resource/cpu", "value": {"limit": "250m"}}]
    )

    assert by_option.stdout.split() == [str(64 << 20), "50000", "100000"], by_option.stderr
    assert by_isolator.stdout.split() == ["128000000", "25000", "100000"], by_isolator.stderr
    assert "no-new-privileges" not in by_isolator.stderr  # always in force: applied, as it asks
    assert overridden.stdout.split()[1] == "100000", overridden.stderr


@needs_runc
def test_bad_options_are_runner_errors(run_isolated: RunIsolated) -> None:
    for options, words in [
        ({"memory": "32m"}, "m means thousandths"),
        ({"memory": "1M"}, "choose from 6291456"),
        ({"cpu": "5m"}, "choose from 10m"),
        ({"net": "bridge"}, "choose one of none, host"),
        ({"hostname": "-bad"}, "hostname '-bad'"),
        ({"runtime": "docker"}, "unknown OCI runtime"),
    ]:
        result = run_isolated(["/bin/true"], **options)
        assert result.returncode == 99 and words in result.stderr, (options, result.stderr)


@needs_runc
@pytest.mark.parametrize(("argv", "env", "cwd", "where"), [
    (["/bin/echo", "caf\udce9"], None, "/", "process.args[1] b'caf\\xe9'"),
    (["/bin/true"], {"A": "caf\udce9"}, "/", "process.env[1] b'A=caf\\xe9'"),
    (["/bin/true"], None, "/caf\udce9", "process.cwd b'/caf\\xe9'"),
])
def test_bytes_that_are_not_utf8_are_refused_by_the_isolated_stage(run_isolated: RunIsolated, argv: list[str],
                                                                   env: dict | None, cwd: str, where: str) -> None:
    """The runtime's configuration is JSON: a working directory ``/caf\\xe9`` became
    ``/caf\\xef\\xbf\\xbd``, a new empty directory the app started in, and arguments and
    environment values lost their bytes the same way (runner review). The fly stage
    passes them as they are; the isolated stage says it cannot."""
    result = run_isolated(argv, env=env and {"PATH": DEFAULT_PATH, **env}, cwd=cwd)
    assert result.returncode == 99, result.stderr
    assert f"RunnerError: the isolated stage cannot pass {where}: it is not UTF-8" in result.stderr
    assert "(--stage fly)" in result.stderr


@needs_runc
def test_a_lone_surrogate_is_said_to_name_no_character(run_isolated: RunIsolated) -> None:
    """A manifest's JSON escape ``\\ud800`` gives a string no program can be given, in
    either stage: the message named the fly stage as the way out, and before that it
    raised while it was made (reviews)."""
    result = run_isolated(["/bin/echo", "a\ud800"])
    assert result.returncode == 99, result.stderr
    assert ("RunnerError: process.args[1] 'a\\ud800' holds an escape that names no character (a lone surrogate, "
            "from the manifest's JSON): no program can be given it") in result.stderr


@needs_runc
def test_stdin_reaches_the_app(run_isolated: RunIsolated) -> None:
    result = run_isolated(["/bin/cat"], user=1000, input="line one\nline two\n")

    assert result.stdout == "line one\nline two\n", result.stderr


@needs_runc
@pytest.mark.skipif(CRUN is None, reason="crun is not installed")
def test_crun_runs_the_app_like_runc(run_isolated: RunIsolated) -> None:
    script = (
        "id -u; cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us;"
        " ls /sys/class/net; echo via-link > /dev/stdout; cat; exit 5"
    )
    result = run_isolated(_sh(script), user=1000, memory="64Mi", cpu="500m", runtime="crun")
    piped = run_isolated(["/bin/cat"], user=1000, input="relayed\n", runtime="crun")
    missing = run_isolated(["/bin/no-such-program"], runtime="crun")

    assert result.returncode == 5, result.stderr
    assert result.stdout.split() == ["1000", str(64 << 20), "50000", "lo", "via-link"]
    assert piped.stdout == "relayed\n", piped.stderr
    assert (missing.returncode, missing.stdout) == (99, "")
    assert missing.stderr == "RunnerError: cannot execute /bin/no-such-program: No such file or directory\n"


@needs_runc
@pytest.mark.skipif(CRUN is None, reason="crun is not installed")
@pytest.mark.parametrize(("program", "status", "reason"), [
    ("/bin/no-such-program", 127, "No such file or directory"),
    ("no-such-program", 127, f"not found in the image's PATH {DEFAULT_PATH}"),
    ("/home", 126, "Operation not permitted"),  # a directory
    ("/etc/passwd", 126, "Permission denied"),  # no x bit
    ("/bin/garbage", 126, "Exec format error"),
    ("garbage", 126, "Exec format error"),
    ("/bin/script", 127, "No such file or directory (the file exists: its interpreter or a library it needs "
                         "is missing)"),
    ("script", 127, "No such file or directory (the file exists: its interpreter or a library it needs "
                    "is missing)"),  # found in PATH: not "not found in the image's PATH"
])
def test_crun_failing_to_execute_the_program_is_an_exec_error(run_isolated: RunIsolated, rootfs: Path, program: str,
                                                              status: int, reason: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """crun's "executable file `X` not found in $PATH" and "open executable: Permission
    denied" were a plain RunnerError ("starting the app with crun: ..."), and ``run``
    exited 1 where runc's same failure exits 127 or 126 (:class:`ExecError`); crun's line
    also reached stderr a second time, now and then (it is printed before it is logged).
    A program ``execve`` refuses (no ELF, no ``#!``) or whose interpreter is missing gave
    crun's raw JSON log line on stderr and status 1 (its container process prints that
    error instead of logging it): now the fly stage's 126 and 127 (runc 1.1: below)."""
    _add_programs_execve_refuses(rootfs)
    raised: list[ExecError] = []
    real = isolated._crun_exec_failure

    def kept(messages: Sequence[str], spec: ProcessSpec) -> ExecError | None:
        failure = real(messages, spec)
        if failure is not None:
            raised.append(failure)
        return failure

    monkeypatch.setattr(isolated, "_crun_exec_failure", kept)
    result = run_isolated([program], runtime="crun")

    assert (result.returncode, result.stdout) == (99, "")
    assert result.stderr == f"RunnerError: cannot execute {program}: {reason}\n"
    assert [failure.status for failure in raised] == [status]


@needs_runc
@pytest.mark.skipif(CRUN is None, reason="crun is not installed")
def test_an_apps_own_line_like_cruns_exec_error_entry_is_shown(run_isolated: RunIsolated) -> None:
    """The JSON entry crun's container process prints when ``execve`` fails is left out of
    stderr, for the runner to report; an app that ran and printed one gets it shown."""
    entry = '{"msg":"exec container process `/bin/sh`: Exec format error","level":"error"}'
    result = run_isolated(_sh(f"echo '{entry}' >&2"), runtime="crun")

    assert (result.returncode, result.stderr) == (0, entry + "\n")


def _add_programs_execve_refuses(rootfs: Path) -> None:
    """``/bin/garbage``: executable, neither ELF nor ``#!`` (exec format error);
    ``/bin/script``: ``#!`` an interpreter that is not there (``ENOENT``)."""
    for name, data in (("garbage", "not a program\n"), ("script", "#!/nonexistent/interp\n")):
        (rootfs / "bin" / name).write_text(data)
        (rootfs / "bin" / name).chmod(0o755)


@needs_runc
def test_runc_reports_a_program_execve_refuses_as_the_apps_status_1(run_isolated: RunIsolated,
                                                                    rootfs: Path) -> None:
    """runc 1.1 checks the program before it starts it, but not what ``execve`` refuses
    then: it exits 1 with its ``exec PATH: REASON`` on the app's stderr, as ``docker run``
    does, and nothing in its log tells that from the app's own status 1 (the README says
    so; crun's same failures are exec errors: above)."""
    _add_programs_execve_refuses(rootfs)
    garbage = run_isolated(["/bin/garbage"])
    script = run_isolated(["/bin/script"])

    assert (garbage.returncode, garbage.stderr) == (1, "exec /bin/garbage: exec format error\n")
    assert (script.returncode, script.stderr) == (1, "exec /bin/script: no such file or directory\n")


@needs_runc
@pytest.mark.parametrize(
    "runtime",
    ["runc", pytest.param("crun", marks=pytest.mark.skipif(CRUN is None, reason="no crun"))],
)
def test_an_apps_line_that_reads_like_cruns_exec_error_is_not_held(rootfs: Path, tmp_path: Path,
                                                                   runtime: str) -> None:
    """A last stderr line that reads like crun's failure to execute the app is held back,
    to be compared with crun's log once crun logged it (it is printed first); it was held
    until more output came, also under runc: an app's own such line, before a pause,
    came only when the app ended, 3 s late here. Now only under crun, and briefly."""
    line = b"sh: open executable: Permission denied\n"
    payload = {
        **_spec_options(_sh(f"echo started; echo '{line.decode().strip()}' >&2; sleep 3"), 0, None, "/"),
        "rootfs": str(rootfs),
        "options": {"state_dir": str(tmp_path / "state"), "container_id": f"docker2aci-test-{secrets.token_hex(4)}",
                    "runtime": runtime},
    }
    process = subprocess.Popen([sys.executable, "-c", _RUN_SNIPPET, json.dumps(payload)], cwd=PROJECT_ROOT,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    with reaped(process):
        assert process.stdout is not None and process.stderr is not None
        started = process.stdout.readline()
        printed = time.monotonic()
        shown = process.stderr.readline()
        delay = time.monotonic() - printed
        out, rest = process.communicate(timeout=30)
    assert (process.returncode, started + out, shown + rest) == (0, b"started\n", line)
    assert delay < 1.5, f"the line came {delay:.2f} s after it was printed"


@needs_runc
@pytest.mark.parametrize(
    "runtime",
    ["runc", pytest.param("crun", marks=pytest.mark.skipif(CRUN is None, reason="no crun"))],
)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_a_signal_to_the_runner_reaches_the_app(rootfs: Path, tmp_path: Path, runtime: str,
                                                signum: signal.Signals) -> None:
    """SIGTERM, and a supervisor's ``kill -USR1`` (a log rotation's "reopen your logs"),
    which killed the runner by its default action, leaving runc and the app running, its
    bundle and pod behind (run review): forwarded, as ``docker run`` proxies them."""
    name = signum.name.removeprefix("SIG")
    cid = f"docker2aci-test-{secrets.token_hex(4)}"
    state = tmp_path / "state"
    # the loop ends by itself, so that an app the runner failed to signal does not run for ever
    script = f"trap 'echo got-{name}; exit 3' {name}; echo ready; for i in $(seq 200); do sleep 0.05; done"
    payload = {
        **_spec_options(_sh(script), 0, None, "/"),
        "rootfs": str(rootfs),
        "options": {"state_dir": str(state), "container_id": cid, "runtime": runtime},
    }
    process = subprocess.Popen(
        [sys.executable, "-c", _RUN_SNIPPET, json.dumps(payload)],
        cwd=PROJECT_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with reaped(process):
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        process.send_signal(signum)
        out, err = process.communicate(timeout=20)
    assert (process.returncode, out) == (3, f"got-{name}\n"), err
    _assert_cleaned_up(state, cid, rootfs.parent, runtime)


@needs_runc
@pytest.mark.parametrize(
    "runtime",
    ["runc", pytest.param("crun", marks=pytest.mark.skipif(CRUN is None, reason="no crun"))],
)
@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_second_stop_signal_kills_an_app_that_ignores_the_first(rootfs: Path, tmp_path: Path, runtime: str,
                                                                   second: signal.Signals) -> None:
    """The app is pid 1 of its namespace: without a handler it ignores SIGINT and SIGTERM,
    and Ctrl-C on the runner left it running to its end (run review). The runner says so
    after 2 s; a second SIGINT or SIGTERM kills the app (137), as ``docker compose`` does,
    and everything is cleaned up. A signal the app handles is forwarded and nothing is
    killed (the test above)."""
    cid = f"docker2aci-test-{secrets.token_hex(4)}"
    state = tmp_path / "state"
    payload = {
        **_spec_options(_sh("echo ready; sleep 60; echo not-killed"), 0, None, "/"),
        "rootfs": str(rootfs),
        "options": {"state_dir": str(state), "container_id": cid, "runtime": runtime},
    }
    process = subprocess.Popen([sys.executable, "-c", _RUN_SNIPPET, json.dumps(payload)], cwd=PROJECT_ROOT,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with reaped(process):
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.readline() == "ready\n"
        process.send_signal(signal.SIGINT)
        hint = process.stderr.readline()
        assert hint == ("WARNING the app is still running (as pid 1 of its namespace it may ignore SIGINT); "
                        "Ctrl-C again (or SIGTERM) kills it\n"), hint
        started = time.monotonic()
        process.send_signal(second)
        out, err = process.communicate(timeout=20)
    assert time.monotonic() - started < 10
    assert (process.returncode, out) == (137, ""), err
    assert err == "WARNING " + ("SIGINT again" if second == signal.SIGINT else "SIGTERM after SIGINT") + \
        ": killing the app\n"
    _assert_cleaned_up(state, cid, rootfs.parent, runtime)


@needs_runc
def test_an_app_ending_by_itself_as_the_second_signal_comes_keeps_its_status(rootfs: Path, tmp_path: Path) -> None:
    """The second Ctrl-C came as the app, handling the first, was ending by itself: ``runc
    kill`` failed (no container left to signal) and the runner killed ``runc run`` at
    once, so the app's own status became 137 (run review). ``runc run`` is now given a
    moment to end. The runtime here is runc behind a wrapper whose ``kill`` fails, the
    fault a real runc gives only in that short window."""
    runc = shutil.which("runc")
    assert runc is not None
    wrapper = tmp_path / "bin" / "runc"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nfor a; do [ "$a" = kill ] && exit 1; done\nexec {runc} "$@"\n')
    wrapper.chmod(0o755)
    cid = f"docker2aci-test-{secrets.token_hex(4)}"
    state = tmp_path / "state"
    payload = {
        **_spec_options(_sh("trap 'sleep 1; exit 5' INT; echo ready; sleep 60 & wait"), 0, None, "/"),
        "rootfs": str(rootfs),
        "options": {"state_dir": str(state), "container_id": cid, "runtime": str(wrapper)},
    }
    process = subprocess.Popen([sys.executable, "-c", _RUN_SNIPPET, json.dumps(payload)], cwd=PROJECT_ROOT,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with reaped(process):
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        process.send_signal(signal.SIGINT)
        time.sleep(0.3)  # the app's handler runs for a second
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    assert (process.returncode, out) == (5, ""), err
    assert err == "WARNING SIGINT again: killing the app\n"
    _assert_cleaned_up(state, cid, rootfs.parent, "runc")


@needs_runc
def test_a_stop_signal_while_the_runner_cleans_up_does_not_replace_the_apps_status(rootfs: Path,
                                                                                   tmp_path: Path) -> None:
    """A Ctrl-C that came after the app ended, while ``runc delete`` ran: it was delivered
    once the runner unblocked its signals, and the app's status 3 became a
    ``KeyboardInterrupt`` (run review). The app's status stands, and all is cleaned up."""
    cid = f"docker2aci-test-{secrets.token_hex(4)}"
    state = tmp_path / "state"
    payload = {
        **_spec_options(_sh("exit 3"), 0, None, "/"),
        "rootfs": str(rootfs),
        "options": {"state_dir": str(state), "container_id": cid, "runtime": "runc"},
    }
    ctrl_c_in_cleanup = (  # a real SIGINT, sent to the runner as its clean-up starts
        "import os, signal, runner.isolated as iso\n"
        "delete = iso._delete\n"
        "iso._delete = lambda *a: (os.kill(os.getpid(), signal.SIGINT), delete(*a))[1]\n")
    done = subprocess.run([sys.executable, "-c", ctrl_c_in_cleanup + _RUN_SNIPPET, json.dumps(payload)],
                          cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (3, "", "")
    _assert_cleaned_up(state, cid, rootfs.parent, "runc")


@needs_runc
@pytest.mark.parametrize(
    "runtime",
    ["runc", pytest.param("crun", marks=pytest.mark.skipif(CRUN is None, reason="no crun"))],
)
def test_the_apps_stderr_reaches_a_slow_reader_whole(rootfs: Path, tmp_path: Path, runtime: str) -> None:
    """The runner copies runc's stderr (to leave runc's own error line out); it waited 5
    seconds for the copy to end once runc had exited, then closed the pipe: what a slow
    reader (a pager) had not read yet, the app's last 34 KB here and its final line, was
    lost, with exit status 0 (run review). runc itself, given the caller's stderr, waits."""
    cid = f"docker2aci-test-{secrets.token_hex(4)}"
    payload = {
        **_spec_options(_sh("head -c 120000 /dev/zero | tr '\\0' x >&2; echo END >&2"), 0, None, "/"),
        "rootfs": str(rootfs),
        "options": {"state_dir": str(tmp_path / "state"), "container_id": cid, "runtime": runtime},
    }
    process = subprocess.Popen([sys.executable, "-c", _RUN_SNIPPET, json.dumps(payload)], cwd=PROJECT_ROOT,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    with reaped(process):
        assert process.stderr is not None
        first = b""
        while len(first) < 20000 and (chunk := process.stderr.read(20000 - len(first))):  # unbuffered
            first += chunk
        time.sleep(7)  # a pause longer than the runner waited
        out, rest = process.communicate(timeout=30)
    assert (process.returncode, out) == (0, b"")
    assert first + rest == b"x" * 120000 + b"END\n"


@needs_runc
@pytest.mark.parametrize(
    "runtime",
    ["runc", pytest.param("crun", marks=pytest.mark.skipif(CRUN is None, reason="no crun"))],
)
def test_a_non_blocking_stderr_takes_the_whole_output(rootfs: Path, tmp_path: Path, runtime: str) -> None:
    """The caller's stderr may be non-blocking (a parent that set O_NONBLOCK on a pipe or
    terminal it shares). The relay's write to a full one failed with EAGAIN and the copy
    stopped, closing its pipe: the app's next write failed (EPIPE) and the rest of its
    output was lost. It now waits until the reader takes more. (Under runc the app writes
    its stdout itself, non-blocking or not, so only stderr is relayed in both runtimes.)"""
    cid = f"docker2aci-test-{secrets.token_hex(4)}"
    payload = {
        **_spec_options(_sh("head -c 120000 /dev/zero | tr '\\0' x >&2; echo END >&2"), 0, None, "/"),
        "rootfs": str(rootfs),
        "options": {"state_dir": str(tmp_path / "state"), "container_id": cid, "runtime": runtime},
    }
    read, write = os.pipe()
    os.set_blocking(write, False)
    try:
        process = subprocess.Popen([sys.executable, "-c", _RUN_SNIPPET, json.dumps(payload)], cwd=PROJECT_ROOT,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=write)
    finally:
        os.close(write)
    with reaped(process), open(read, "rb") as stderr:
        time.sleep(1)  # the pipe fills (64 KiB) before anyone reads
        errors = stderr.read()
        process.wait(timeout=30)
    assert (process.returncode, errors) == (0, b"x" * 120000 + b"END\n")


@needs_runc
@pytest.mark.parametrize(
    "runtime",
    ["runc", pytest.param("crun", marks=pytest.mark.skipif(CRUN is None, reason="no crun"))],
)
def test_a_run_whose_stderr_reader_went_away_ends(rootfs: Path, tmp_path: Path, runtime: str) -> None:
    """``docker2aci run IMG 2>&1 | head -1``: once the reader of the runner's stderr went
    away, the copy of the app's stderr stopped reading but kept its pipe open, so the app,
    and runc copying for it, blocked on the full pipe and the runner waited for them for
    ever (review of the stderr relay). The copy's end is now closed as the reader's was:
    the writer learns it as it did when runc had the caller's stderr, and the run ends."""
    state, cid = tmp_path / "state", f"docker2aci-test-{secrets.token_hex(4)}"
    payload = {
        **_spec_options(_sh("yes >&2"), 0, None, "/"),
        "rootfs": str(rootfs),
        "options": {"state_dir": str(state), "container_id": cid, "runtime": runtime},
    }
    process = subprocess.Popen([sys.executable, "-c", _RUN_SNIPPET, json.dumps(payload)], cwd=PROJECT_ROOT,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, bufsize=0)
    with reaped(process):
        assert process.stderr is not None
        assert process.stderr.read(2) == b"y\n"
        process.stderr.close()  # as head does once it has its line
        process.wait(timeout=30)  # waited for ever
    assert process.returncode == 1  # the runtime's, its output cut, as when it wrote to the closed pipe itself
    _assert_cleaned_up(state, cid, rootfs.parent, runtime)


# ------------------------------------------------------------------- pure: ocispec


def _spec(uid: int = 0, groups: tuple[int, ...] = ()) -> ProcessSpec:
    return ProcessSpec(
        argv=("/bin/sh", "-c", "true"),
        env={"PATH": DEFAULT_PATH, "A": "b=c"},
        cwd="/work",
        uid=uid,
        gid=uid,
        supplementary_gids=groups,
    )


def _config(**kwargs: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"hostname": "h", "cgroups_path": "/docker2aci-x"}
    options.update(kwargs)
    spec = options.pop("spec", _spec())
    return runtime_config(spec, "/tmp/tree/rootfs", **options)


def test_config_process() -> None:
    process = _config(spec=_spec(1000, (5, 1000, 7)), nofile=(1024, 4096))["process"]

    assert process["args"] == ["/bin/sh", "-c", "true"]
    assert process["env"] == [f"PATH={DEFAULT_PATH}", "A=b=c"]
    assert process["cwd"] == "/work"
    assert process["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [1000, 5, 7]}
    assert process["terminal"] is False and process["noNewPrivileges"] is True
    assert process["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 1024}]
    caps = process["capabilities"]
    assert caps["bounding"] == list(DEFAULT_CAPABILITIES)
    assert caps["effective"] == caps["permitted"] == caps["ambient"] == caps["inheritable"] == []


def test_config_root_gets_dockers_capabilities() -> None:
    caps = _config()["process"]["capabilities"]

    assert caps["effective"] == caps["permitted"] == caps["bounding"] == list(DEFAULT_CAPABILITIES)
    assert caps["ambient"] == caps["inheritable"] == []


def test_config_soft_nofile_never_exceeds_hard() -> None:
    assert _config(nofile=(9000, 1024))["process"]["rlimits"][0]["soft"] == 1024
    assert "rlimits" not in _config()["process"]


def test_config_namespaces_and_network() -> None:
    kinds = [n["type"] for n in _config()["linux"]["namespaces"]]
    host = [n["type"] for n in _config(net="host")["linux"]["namespaces"]]

    assert kinds == ["pid", "mount", "uts", "ipc", "network"]
    assert host == ["pid", "mount", "uts", "ipc"]


def test_config_mounts_keep_the_images_dev() -> None:
    config = _config(
        etc_binds=[("/b/hosts", "/etc/hosts")], device_binds=[("/dev/null", "/dev/null")]
    )
    mounts = {m["destination"]: m for m in config["mounts"]}

    assert "/dev" not in mounts  # no tmpfs hiding the image's /dev entries
    assert {"/proc", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"} <= set(mounts)
    assert "ro" in mounts["/sys"]["options"]
    assert mounts["/etc/hosts"] == {
        "destination": "/etc/hosts",
        "type": "bind",
        "source": "/b/hosts",
        "options": ["bind", "rw", "nosuid", "nodev", "noexec"],
    }
    assert mounts["/dev/null"]["options"] == ["bind", "nosuid", "noexec"]
    assert config["root"] == {"path": "/tmp/tree/rootfs", "readonly": False}
    assert config["hostname"] == "h" and config["ociVersion"] == "1.0.2"
    assert set(MASKED_PATHS) == set(config["linux"]["maskedPaths"])
    assert "/proc/sys" in config["linux"]["readonlyPaths"]


def test_config_resources() -> None:
    plain = _config()["linux"]
    limited = _config(memory_bytes=32 << 20, cpu_millis=1500)["linux"]

    assert plain["cgroupsPath"] == "/docker2aci-x"
    assert plain["resources"] == {"devices": [{"allow": False, "access": "rwm"}]}
    assert limited["resources"]["memory"] == {"limit": 32 << 20}
    assert limited["resources"]["cpu"] == {"quota": 150000, "period": 100000}


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"net": "bridge"}, "network 'bridge'"),
        ({"hostname": "a_b"}, "hostname 'a_b'"),
        ({"hostname": "x" * 65}, "hostname"),
        ({"hostname": ""}, "hostname ''"),
        ({"memory_bytes": 1 << 20}, "memory limit"),
        ({"cpu_millis": 9}, "cpu limit 9m"),
        ({"cgroups_path": "relative"}, "not absolute"),
        ({"etc_binds": [("hosts", "/etc/hosts")]}, "must be absolute"),
    ],
)
def test_config_refuses_bad_arguments(kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(RunnerError, match=words):
        _config(**kwargs)


# -------------------------------------------------------------------- pure: parsers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", 1),
        ("1048576", 1 << 20),
        ("128M", 128_000_000),
        ("128K", 128_000),
        ("128k", 128_000),
        ("2G", 2_000_000_000),
        ("64Mi", 64 << 20),
        ("1Ki", 1024),
        ("1Gi", 1 << 30),
        ("1.5Ki", 1536),
        ("0.5Mi", 512 << 10),
        ("1.0001k", 1001),  # fractional bytes round up
        (" 32Mi ", 32 << 20),
    ],
)
def test_parse_memory(text: str, expected: int) -> None:
    assert parse_memory(text) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "not a quantity"),
        ("M", "not a quantity"),
        ("-1M", "not a quantity"),
        ("12 M", "not a quantity"),
        ("1e9", "not a quantity"),
        ("32m", "m means thousandths"),
        ("32MB", "unknown suffix 'MB'"),
        ("32g", "unknown suffix 'g'"),
        ("0", "more than 0"),
        ("0.0M", "more than 0"),
        ("9Ei", "larger than"),
    ],
)
def test_parse_memory_errors(text: str, words: str) -> None:
    with pytest.raises(RunnerError, match=words):
        parse_memory(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("500m", 500), ("1", 1000), ("2", 2000), ("0.5", 500), ("1.5", 1500), ("2500m", 2500),
     ("0.0001", 1), ("10m", 10)],
)  # fmt: skip
def test_parse_cpu(text: str, expected: int) -> None:
    assert parse_cpu(text) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [("", "not a quantity"), ("half", "not a quantity"), ("1k", "unknown suffix 'k'"),
     ("500M", "unknown suffix 'M'"), ("0", "more than 0"), ("0m", "more than 0")],
)  # fmt: skip
def test_parse_cpu_errors(text: str, words: str) -> None:
    with pytest.raises(RunnerError, match=words):
        parse_cpu(text)


def test_isolator_limits() -> None:
    isolators = [
        {"name": "resource/memory", "value": {"request": "1G", "limit": "2G"}},
        {"name": "resource/cpu", "value": {"request": "250m", "limit": "500m"}},
        {"name": "os/linux/capabilities-retain-set", "value": {"set": ["CAP_NET_BIND_SERVICE"]}},
    ]

    assert isolator_limits(isolators) == (2_000_000_000, 500)
    assert isolator_limits(None) == isolator_limits([]) == (None, None)
    assert isolator_limits([{"name": "resource/cpu", "value": {"request": "1"}}]) == (None, None)
    seccomp = [{"name": "os/linux/seccomp-remove-set", "value": {"set": ["@clock"]}}]
    assert unsupported_isolators(isolators + seccomp + seccomp) == ["os/linux/seccomp-remove-set"]


def test_isolator_capabilities() -> None:
    """appc's ``os/linux/capabilities-*`` isolators narrow Docker's default set; a retain set
    never widens it (the capabilities it names beyond the default are returned as refused)."""
    default = list(DEFAULT_CAPABILITIES)
    remove = {"name": "os/linux/capabilities-remove-set", "value": {"set": ["CAP_NET_RAW", "CAP_CHOWN"]}}
    retain = {"name": "os/linux/capabilities-retain-set", "value": {"set": ["CAP_SYS_ADMIN", "CAP_KILL"]}}
    assert isolator_capabilities(None) == isolator_capabilities([]) == (default, [])
    assert isolator_capabilities([remove]) == ([c for c in default if c not in ("CAP_NET_RAW", "CAP_CHOWN")], [])
    assert isolator_capabilities([retain]) == (["CAP_KILL"], ["CAP_SYS_ADMIN"])
    assert isolator_capabilities([{"name": "os/linux/no-new-privileges", "value": True}]) == (default, [])
    for isolators, words in (
        ([retain, remove], "cannot be given together"),
        ([{"name": "os/linux/capabilities-remove-set", "value": {"set": "CAP_KILL"}}], "is not {\"set\""),
        ([{"name": "os/linux/capabilities-retain-set", "value": {"set": ["kill"]}}],
         "isolator os/linux/capabilities-retain-set: unknown capability 'kill' (not a Linux capability)"),
        ([{"name": "os/linux/no-new-privileges", "value": "yes"}], "'yes' is not true or false"),
    ):
        with pytest.raises(RunnerError, match=re.escape(words)):
            isolator_capabilities(isolators)


@pytest.mark.parametrize(("name", "names", "message"), [
    ("os/linux/capabilities-remove-set", ["CAP_NET_RAW", "CAP_BOGUS"],
     "isolator os/linux/capabilities-remove-set: unknown capability 'CAP_BOGUS' (not a Linux capability)"),
    ("os/linux/capabilities-retain-set", ["CAP_BOGUS", "CAP_KILL", "CAP_NOPE"],
     "isolator os/linux/capabilities-retain-set: unknown capabilities 'CAP_BOGUS', 'CAP_NOPE' (not a Linux capability)"),
])
def test_an_unknown_capability_is_a_malformed_isolator(name: str, names: list[str], message: str) -> None:
    """``CAP_BOGUS`` in a remove set was dropped from nothing, silently, and in a retain set
    merely "not granted": a misspelt capability went unnoticed (run review). Any name
    outside the kernel's list now refuses the isolator, naming it."""
    with pytest.raises(RunnerError) as refused:
        isolator_capabilities([{"name": name, "value": {"set": names}}])
    assert str(refused.value) == message


@needs_runc
def test_capability_isolators_narrow_the_apps_capabilities(run_isolated: RunIsolated) -> None:
    """A manifest's ``capabilities-remove-set`` was ignored with a warning: the app kept
    CAP_NET_RAW and CAP_CHOWN (runner review; rkt applies it). Both capability isolators
    now narrow the default set; a retain set's capabilities beyond it are not granted."""
    script = "grep -E 'CapEff|CapBnd' /proc/self/status"
    removed = run_isolated(_sh(script), isolators=[
        {"name": "os/linux/capabilities-remove-set", "value": {"set": ["CAP_NET_RAW", "CAP_CHOWN"]}}])
    retained = run_isolated(_sh(script), isolators=[
        {"name": "os/linux/capabilities-retain-set", "value": {"set": ["CAP_KILL", "CAP_SYS_ADMIN"]}}])

    without = int(DOCKER_CAPS_HEX, 16) & ~((1 << 13) | (1 << 0))  # CAP_NET_RAW is 13, CAP_CHOWN 0
    assert removed.stdout.split() == ["CapEff:", f"{without:016x}", "CapBnd:", f"{without:016x}"], removed.stderr
    assert "not supported" not in removed.stderr
    assert retained.stdout.split() == ["CapEff:", f"{1 << 5:016x}", "CapBnd:", f"{1 << 5:016x}"], retained.stderr
    assert "os/linux/capabilities-retain-set: CAP_SYS_ADMIN not granted" in retained.stderr


@pytest.mark.parametrize(
    ("isolators", "words"),
    [
        ({"name": "resource/cpu"}, "not a list"),
        ("resource/cpu", "not a list"),
        ([{"value": {}}], "malformed entry"),
        (["resource/cpu"], "malformed entry"),
        ([{"name": "resource/cpu", "value": "1"}], "value is not an object"),
        ([{"name": "resource/cpu", "value": {"limit": 1}}], "limit 1 is not a string"),
        ([{"name": "resource/memory", "value": {"limit": "lots"}}], "memory 'lots'"),
    ],
)
def test_isolator_errors(isolators: Any, words: str) -> None:
    with pytest.raises(RunnerError, match=words):
        isolator_limits(isolators)


@needs_runc
def test_etc_hosts_and_resolv_conf_are_the_runs_own_and_writable(run_isolated: RunIsolated, rootfs: Path) -> None:
    """An entrypoint that adds a host (``echo "$IP db" >> /etc/hosts``) or writes its own
    resolv.conf works under Docker, whose binds are writable; here both were read-only
    binds, and the script failed with 'Read-only file system' (run review). The files are
    this run's copies: the host's and the image's stay as they were, and a user other than
    root still cannot write them (0644, root's)."""
    (rootfs / "etc" / "hosts").write_text("10.0.0.1 image\n")
    with open("/etc/resolv.conf", "rb") as handle:
        host_resolv_conf = handle.read()
    script = ("echo '10.1.2.3 db' >> /etc/hosts && grep db /etc/hosts;"
              " echo 'nameserver 10.0.0.9' > /etc/resolv.conf && cat /etc/resolv.conf")
    root = run_isolated(_sh(script))
    app = run_isolated(_sh("echo x >> /etc/hosts || echo refused"), user=1000)

    assert (root.returncode, root.stdout) == (0, "10.1.2.3 db\nnameserver 10.0.0.9\n"), root.stderr
    assert app.stdout == "refused\n", app.stderr
    assert (rootfs / "etc" / "hosts").read_text() == "10.0.0.1 image\n"
    with open("/etc/resolv.conf", "rb") as handle:
        assert handle.read() == host_resolv_conf


@needs_runc
def test_an_etc_linked_into_proc_gets_no_binds_and_the_tree_no_host_paths(run_isolated: RunIsolated,
                                                                            rootfs: Path) -> None:
    """``/etc -> /proc/self/cwd/real-etc``: runc resolved the binds' targets once /proc
    was mounted, through the magic link to its init's directory, the rootfs's host path:
    it made that host path's directories in the tree and bound hosts and resolv.conf at
    its end, where the app never looks (run review). As for volumes and the working
    directory, nothing is bound through /proc or /sys; a warning says so."""
    (rootfs / "etc").rename(rootfs / "real-etc")
    (rootfs / "etc").symlink_to("/proc/self/cwd/real-etc")
    before = sorted(os.listdir(rootfs))
    result = run_isolated(_sh("cat /etc/hosts || echo no-hosts"))

    assert (result.returncode, result.stdout) == (0, "no-hosts\n"), result.stderr
    assert sorted(set(os.listdir(rootfs)) - {"dev", "proc", "sys"}) == sorted(set(before) - {"dev"})
    assert "not mounting /etc/hosts: the image's links lead it into /proc or /sys" in result.stderr
    assert "not mounting /etc/resolv.conf: the image's links lead it into /proc or /sys" in result.stderr


@needs_runc
def test_an_etc_file_linked_to_dev_null_keeps_dev_null_and_the_output(run_isolated: RunIsolated,
                                                                        rootfs: Path) -> None:
    """``/etc/hosts -> /dev/null``: the run's hosts file was bound over the app's
    /dev/null; runc then reopened the app's stdio (pipes, not devices) on it, so its
    output went into that file, and ``cat /dev/null`` copied the file onto itself until
    the disk filled (run review). The image's link stays as it is, as in the fly stage."""
    (rootfs / "etc" / "hosts").symlink_to("/dev/null")
    result = run_isolated(_sh("echo out; echo x > /dev/null; head -c 100 /dev/null | wc -c; "
                              "test -c /dev/null && echo device; wc -c < /etc/hosts"))

    assert (result.returncode, result.stdout.split()) == (0, ["out", "0", "device", "0"]), result.stderr
    assert "not mounting /etc/hosts: the image links it to /dev/null, a device the stage binds" in result.stderr
