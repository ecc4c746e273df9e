"""The fly stage end to end: real busybox ACIs run with runner.run_aci (needs root)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest
from crashkit import reaped
from runner_aci_helpers import PROJECT_ROOT, BuildAci, Entry, RunApp, directory, symlink

from docker2aci.errors import ExecError, RunnerError
from runner import run_aci
from runner.spec import DEFAULT_PATH

pytestmark = pytest.mark.root


def _sh(script: str, **app: object) -> dict[str, object]:
    """An app running ``/bin/sh -c script``."""
    return {"exec": ["/bin/sh", "-c", script], "user": "0", "group": "0", **app}


def test_output_and_exit_status(build_aci: BuildAci, run_app: RunApp) -> None:
    result = run_app(build_aci(_sh("echo hello")))

    assert (result.returncode, result.stdout) == (0, "hello\n"), result.stderr


@pytest.mark.parametrize(
    ("exec_", "status"), [(["/bin/false"], 1), (["/bin/sh", "-c", "exit 7"], 7)]
)
def test_exit_status_is_the_apps(
    build_aci: BuildAci, run_app: RunApp, exec_: list[str], status: int
) -> None:
    assert run_app(build_aci({"exec": exec_})).returncode == status


def test_args_replace_cmd_after_the_entrypoint(build_aci: BuildAci, run_app: RunApp) -> None:
    entrypoint, cmd = ["/bin/echo", "ep"], ["from-cmd"]
    aci = build_aci(
        {"exec": entrypoint + cmd},
        annotations={
            "appc.io/docker/entrypoint": json.dumps(entrypoint),
            "appc.io/docker/cmd": json.dumps(cmd),
        },
    )

    assert run_app(aci).stdout == "ep from-cmd\n"
    assert run_app(aci, ["a", "b c"]).stdout == "ep a b c\n"
    assert run_app(aci, ["x"], exec_override=["/bin/echo", "over"]).stdout == "over x\n"


def test_environment_reaches_the_app(build_aci: BuildAci, run_app: RunApp) -> None:
    app = _sh(
        'echo "$GREETING|$PATH|$HOME|$AC_APP_NAME"',
        environment=[{"name": "GREETING", "value": "hi there"}],
    )

    assert run_app(build_aci(app)).stdout == f"hi there|{DEFAULT_PATH}|/root|busybox\n"


def test_user_and_group_by_id_and_by_name(build_aci: BuildAci, run_app: RunApp) -> None:
    script = 'id -u; id -g; id -G; echo "$HOME"'
    by_id = run_app(build_aci(_sh(script, user="1000", group="1000")))
    by_name = run_app(build_aci(_sh(script, user="app", group="app")))

    assert by_id.stdout == by_name.stdout == "1000\n1000\n1000\n/home/app\n", by_name.stderr


def test_working_directory_and_relative_exec(build_aci: BuildAci, run_app: RunApp) -> None:
    script = Entry("rootfs/app/run.sh", data=b'#!/bin/sh\necho "run.sh in $(pwd)"\n', mode=0o755)
    aci = build_aci(
        {"exec": ["./run.sh"], "workingDirectory": "/app"}, extra=[directory("rootfs/app"), script]
    )

    assert run_app(aci).stdout == "run.sh in /app\n"


def test_a_dot_directory_is_the_working_directory(build_aci: BuildAci, run_app: RunApp) -> None:
    """``/.app`` next to ``/app``: resolving the directory in the image dropped the leading
    dot, so the app started in ``/app`` (review)."""
    aci = build_aci(_sh("pwd", workingDirectory="/.app"), extra=[directory("rootfs/app"), directory("rootfs/.app")])
    assert run_app(aci).stdout == "/.app\n"


def test_missing_working_directory_is_created(build_aci: BuildAci, run_app: RunApp) -> None:
    assert run_app(build_aci(_sh("pwd", workingDirectory="/srv/new"))).stdout == "/srv/new\n"


def test_bare_name_is_found_in_the_image_path(build_aci: BuildAci, run_app: RunApp) -> None:
    path = [{"name": "PATH", "value": "/nope:/bin"}]
    app = {"exec": ["sh", "-c", "echo bare"], "environment": path}

    assert run_app(build_aci(app)).stdout == "bare\n"


def test_dev_proc_and_sys(build_aci: BuildAci, run_app: RunApp) -> None:
    checks = (
        "echo discarded > /dev/null && echo to-stdout > /dev/stdout"
        " && readlink /dev/log && test -c /dev/urandom && test -d /proc/self"
        " && test -c /dev/pts/ptmx && test -d /dev/shm && grep -c ' /sys sysfs ro' /proc/mounts"
    )
    dev_log = symlink("rootfs/dev/log", "/run/systemd/journal/dev-log")
    aci = build_aci(_sh(checks, user="app", group="app"), extra=[directory("rootfs/dev"), dev_log])

    result = run_app(aci)

    assert result.stdout == "to-stdout\n/run/systemd/journal/dev-log\n1\n", result.stderr


def test_image_without_etc_gets_resolv_conf_and_hosts(build_aci: BuildAci, run_app: RunApp) -> None:
    result = run_app(build_aci(_sh("test -f /etc/resolv.conf && cat /etc/hosts"), with_etc=False))

    assert "127.0.0.1\tlocalhost" in result.stdout, result.stderr


def test_image_files_are_not_replaced(build_aci: BuildAci, run_app: RunApp) -> None:
    hosts = Entry("rootfs/etc/hosts", data=b"10.0.0.1 image\n")

    assert run_app(build_aci(_sh("cat /etc/hosts"), extra=[hosts])).stdout == "10.0.0.1 image\n"


def test_image_device_nodes_work(build_aci: BuildAci, run_app: RunApp) -> None:
    null = Entry("rootfs/dev/null", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3)

    result = run_app(build_aci(_sh("echo x > /dev/null && echo ok"), extra=[null]))

    assert result.stdout == "ok\n", result.stderr


def test_no_exec_needs_the_exec_option(build_aci: BuildAci, tmp_path: Path) -> None:
    with pytest.raises(RunnerError, match="no exec.*--exec"):
        run_aci(build_aci({"user": "0", "group": "0"}), work_dir=tmp_path, insecure_options={"image"}, stage="fly")
    assert list(tmp_path.glob("docker2aci-run-*")) == []


@pytest.mark.parametrize(("program", "status", "reason"), [
    ("nothere", 127, f"not found in the image's PATH {DEFAULT_PATH}"),
    ("/bin/nothere", 127, "No such file or directory"),
    ("/app/dangling", 127, "No such file or directory"),  # not "the file exists": a link to nothing
    ("/app/script", 127, ("No such file or directory (the file exists: its interpreter or a library it needs "
                          "is missing)")),
    ("/app/garbage", 126, "Exec format error"),
    ("/app/data", 126, "Permission denied"),
    ("/app", 126, "Permission denied"),
])
def test_exec_failures_are_exec_errors(build_aci: BuildAci, tmp_path: Path, program: str, status: int,
                                       reason: str) -> None:
    """A program that cannot run is an :class:`ExecError`: ``run`` exits 127 when it is
    not found, 126 when it cannot be executed, as the shell and ``docker run`` do (both
    stages exited 1: run review); the message names the image and the program."""
    extra = [directory("rootfs/app"), symlink("rootfs/app/dangling", "/nowhere"),
             Entry("rootfs/app/script", data=b"#!/no/such/shell\n", mode=0o755),
             Entry("rootfs/app/garbage", data=b"not a program\n", mode=0o755), Entry("rootfs/app/data", data=b"x")]
    aci = build_aci(_sh("true"), extra=extra)

    with pytest.raises(ExecError) as failed:
        run_aci(aci, exec_override=[program], work_dir=tmp_path, insecure_options={"image"}, stage="fly")
    assert (str(failed.value), failed.value.status) == (f"{aci}: cannot execute {program}: {reason}", status)


def test_unknown_user_and_stage_are_errors(build_aci: BuildAci, tmp_path: Path) -> None:
    with pytest.raises(RunnerError, match="user 'nginx'"):
        run_aci(build_aci(_sh("true", user="nginx")), work_dir=tmp_path, insecure_options={"image"}, stage="fly")
    with pytest.raises(RunnerError, match="unknown stage 'kvm'"):
        run_aci(build_aci(_sh("true")), stage="kvm", insecure_options={"image"})
    with pytest.raises(RunnerError, match="unknown insecure option"):
        run_aci(build_aci(_sh("true")), insecure_options=frozenset({"bogus"}))


@pytest.mark.parametrize("arguments, message", [
    pytest.param({"args": "echo hi"}, "args: expected a list of str (one per word), got 'echo hi'", id="args-str"),
    pytest.param({"exec_override": "/bin/true"}, "exec_override: expected a list of str (one per word), got "
                 "'/bin/true'", id="exec-str"),
    pytest.param({"volumes": ["data,kind=empty"]}, "volumes: expected Volume objects (runner.volumes.parse_volume), "
                 "got ['data,kind=empty']", id="volume-str"),
    pytest.param({"mounts": ["volume=data,target=/data"]}, "mounts: expected mappings (runner.volumes.parse_mount), "
                 "got ['volume=data,target=/data']", id="mount-str"),
    pytest.param({"insecure_options": "image"}, "insecure_options: expected a set of option names, got the str "
                 "'image'", id="insecure-options-str"),
])
def test_a_string_for_a_list_argument_is_refused_naming_it(build_aci: BuildAci, tmp_path: Path,
                                                         arguments: dict[str, object], message: str) -> None:
    """Not each character run as a word (``args="echo hi"`` ran ``e c h o``), nor an
    AttributeError from inside (a volume given as its option's text)."""
    arguments = {"insecure_options": {"image"}, **arguments}
    with pytest.raises(RunnerError) as refused:
        run_aci(build_aci(_sh("true")), work_dir=tmp_path, stage="fly", **arguments)  # type: ignore[arg-type]
    assert str(refused.value) == message


def test_sigterm_is_forwarded(build_aci: BuildAci, tmp_path: Path) -> None:
    aci = build_aci(_sh("echo ready; exec sleep 30"))
    snippet = (
        "import sys, runner;"
        "sys.exit(runner.run_aci(sys.argv[1], insecure_options=frozenset({'image'}), stage='fly'))"
    )
    with subprocess.Popen(
        [sys.executable, "-c", snippet, str(aci)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    ) as runner_process:
        assert runner_process.stdout is not None
        assert runner_process.stdout.readline() == "ready\n"
        runner_process.send_signal(signal.SIGTERM)

        assert runner_process.wait(timeout=10) == 128 + signal.SIGTERM


def test_a_named_fifo_as_stdout_stays_the_hosts_and_a_pipe_is_handed_over(build_aci: BuildAci,
                                                                             tmp_path: Path) -> None:
    """The app runs as 1000 and writes /dev/stdout. Through an anonymous pipe it can (the
    pipe is handed to its user, as runc does); a FIFO made with mkfifo, a file of the
    host's, used to be chowned to 1000 for good (runner review): it stays root's, 0600."""
    aci = build_aci(_sh("id -u > /dev/stdout", user="1000", group="1000"))
    argv = [sys.executable, "-m", "docker2aci", "run", "--stage=fly", "--insecure-options=image", str(aci)]
    piped = subprocess.run(argv, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert (piped.returncode, piped.stdout) == (0, "1000\n"), piped.stderr

    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo, 0o600)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    with open(fifo, "wb") as out:
        status = subprocess.run(argv, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.PIPE, text=True,
                                timeout=60, check=False)
    reader.join(timeout=10)
    info = fifo.stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o7777) == (0, 0, 0o600)
    # the app cannot reopen a file of root's, as in the isolated stage; it is not given it
    assert (status.returncode, received) == (1, [b""]), status.stderr
    assert "Permission denied" in status.stderr


def test_what_the_app_leaves_running_ends_with_it(build_aci: BuildAci, tmp_path: Path) -> None:
    """A background child (``sleep 300 &``) kept running on the host after run returned,
    in a pod already removed (runner review); the isolated stage ends it with its pid
    namespace. It is killed once the app exits; other processes are left alone."""
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        aci = build_aci(_sh("sleep 300 & echo $!"))
        argv = [sys.executable, "-m", "docker2aci", "run", "--stage=fly", "--insecure-options=image", str(aci)]
        result = subprocess.run(argv, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        left = int(result.stdout)

        def alive(pid: int) -> bool:
            try:
                with open(f"/proc/{pid}/stat", encoding="ascii") as stat_file:
                    return stat_file.read().rsplit(")", 1)[1].split()[0] != "Z"
            except FileNotFoundError:
                return False

        deadline = time.monotonic() + 5
        while alive(left) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(left)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_ending_a_pod_kills_its_namespace_s_processes_only() -> None:
    """end_processes_in kills every process of the held mount namespace and none of
    another namespace (review: an inode number alone, not held, is given to the next
    namespace made on the host once the pod's last process exits)."""
    from runner.run import end_processes_in

    unshare = ["unshare", "--mount", "--propagation", "unchanged"]  # in a chroot / is no mount to make private
    pod = subprocess.Popen([*unshare, "sh", "-c", "sleep 60 & exec sleep 60"])
    other = subprocess.Popen([*unshare, "sleep", "60"])
    try:
        deadline = time.monotonic() + 5
        while os.readlink(f"/proc/{pod.pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt"):
            assert time.monotonic() < deadline and pod.poll() is None
            time.sleep(0.01)
        held = os.open(f"/proc/{pod.pid}/ns/mnt", os.O_RDONLY)
        try:
            time.sleep(0.2)  # the background sleep has started
            assert end_processes_in(held) == 2
        finally:
            os.close(held)
        assert pod.wait(timeout=5) == -signal.SIGKILL
        assert other.poll() is None
    finally:
        for process in (pod, other):
            process.kill()
            process.wait()


def test_two_threads_running_pods_at_once_do_not_wait_on_each_other(build_aci: BuildAci, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Thread B makes its pipes while thread A is about to fork (the interleaving is forced):
    A's child inherited B's pipe and B's child A's, each waited for the other to start its
    app, for ever (review). The pipes are made and the fork done under one lock now: B
    waits, and both apps run."""
    import runner.run as fly

    aci = build_aci(_sh("true"))
    a_forking, b_piped = threading.Event(), threading.Event()
    real_os = os

    class Interleaving:
        def __getattr__(self, name: str) -> object:
            return getattr(real_os, name)

        def pipe(self) -> tuple[int, int]:
            ends = real_os.pipe()
            if threading.current_thread().name == "B":
                b_piped.set()
            return ends

        def fork(self) -> int:
            if threading.current_thread().name == "A":
                a_forking.set()
                b_piped.wait(timeout=1)  # without the lock B's pipes are made now; with it, B waits
            return real_os.fork()

    monkeypatch.setattr(fly, "os", Interleaving())
    results: dict[str, object] = {}

    def run(name: str) -> None:
        if name == "B":
            a_forking.wait(timeout=10)
        try:
            results[name] = run_aci(aci, exec_override=["/bin/true"], stage="fly", insecure_options={"image"},
                                    work_dir=tmp_path / name)
        except Exception as err:  # noqa: BLE001 - reported below
            results[name] = repr(err)

    threads = [threading.Thread(target=run, args=(name,), name=name, daemon=True) for name in "AB"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results == {"A": 0, "B": 0}


def test_a_process_forked_while_the_fork_lock_is_held_gets_a_free_one() -> None:
    """Another thread forking (multiprocessing's fork start method) while a fly run holds
    the lock gave the new process a held copy no thread would release: its first fly run
    hung for ever (third review)."""
    import runner.run as fly

    with fly._FORK_LOCK:
        pid = os.fork()
        if pid == 0:
            os._exit(0 if fly._FORK_LOCK.acquire(blocking=False) else 1)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def _cli_run(aci: Path, *words: str) -> list[str]:
    return [sys.executable, "-m", "docker2aci", "run", "--stage=fly", "--insecure-options=image", str(aci), *words]


@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGUSR2, signal.SIGQUIT])
def test_a_supervisors_signals_reach_the_app(build_aci: BuildAci, signum: signal.Signals) -> None:
    """``kill -USR1`` (a log rotation's "reopen your logs"), ``SIGUSR2`` or ``SIGQUIT``
    sent to the runner killed the runner by their default action; the app, never told,
    ran on without its pod's cleanup, its overlay left mounted on the host (run review).
    They are forwarded, as ``docker run`` proxies them."""
    name = signum.name.removeprefix("SIG")
    # the loop ends by itself, so that an app the runner failed to signal does not run for ever
    script = f"trap 'echo got-{name}; exit 3' {name}; echo ready; for i in $(seq 200); do sleep 0.05; done"
    aci = build_aci(_sh(script))
    with reaped(subprocess.Popen(_cli_run(aci), cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)) as runner_process:
        assert runner_process.stdout is not None
        assert runner_process.stdout.readline() == "ready\n"
        runner_process.send_signal(signum)
        out, err = runner_process.communicate(timeout=10)

    assert (runner_process.returncode, out) == (3, f"got-{name}\n"), err


@pytest.mark.parametrize(("ignored", "signum"), [("HUP", signal.SIGHUP), ("INT QUIT", signal.SIGINT)],
                         ids=["nohup", "background-job"])
def test_a_signal_the_caller_ignored_still_stops_the_app(build_aci: BuildAci, ignored: str,
                                                          signum: signal.Signals) -> None:
    """Run under ``nohup`` (``SIGHUP`` ignored) or as a script's background job (``SIGINT``
    and ``SIGQUIT`` ignored), the runner handed those ignored dispositions to the fly app:
    the forwarded signal reached an app that ignored it, and the run went on (run review
    2). Docker's app starts with every default (runc starts it, not the caller)."""
    script = "echo ready; for i in $(seq 200); do sleep 0.05; done; echo not-stopped"
    aci = build_aci(_sh(script))
    caller = ["sh", "-c", f"trap '' {ignored}; exec \"$@\"", "sh", *_cli_run(aci)]
    with reaped(subprocess.Popen(caller, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)) as runner_process:
        assert runner_process.stdout is not None
        assert runner_process.stdout.readline() == "ready\n"
        runner_process.send_signal(signum)
        out, err = runner_process.communicate(timeout=20)

    assert (runner_process.returncode, out) == (128 + signum, ""), err


def test_the_app_gets_dockers_umask_not_the_callers(build_aci: BuildAci) -> None:
    """A caller's umask (077 here) reached the fly app, whose files then became private to
    it; the isolated stage (runc) and Docker give 022 (run review)."""
    aci = build_aci(_sh("umask; touch /made && stat -c %a /made"))

    result = subprocess.run(_cli_run(aci), cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
                            check=False, umask=0o077)

    assert (result.returncode, result.stdout) == (0, "0022\n644\n"), result.stderr


def test_the_callers_descriptors_do_not_reach_the_app(build_aci: BuildAci) -> None:
    """A descriptor the runner's caller left inheritable (here the write end of a pipe the
    caller reads to its end) reached the fly app: a daemon the app started kept the
    caller's reader waiting (run review). The app has its stdio and the pod's locks only."""
    read_end, write_end = os.pipe()
    try:
        script = f"test -e /proc/self/fd/{write_end} && echo leaked || echo closed; ls /proc/self/fd | wc -l"
        aci = build_aci(_sh(script))
        result = subprocess.run(_cli_run(aci), cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
                                check=False, pass_fds=(write_end,))
    finally:
        os.close(read_end)
        os.close(write_end)

    # 0, 1, 2, the tree's and the pod's locks, and ls's own listing
    assert (result.returncode, result.stdout.split()) == (0, ["closed", "6"]), result.stderr


@pytest.mark.parametrize("closed", [1, 2])
def test_a_closed_stdout_or_stderr_is_no_traceback(build_aci: BuildAci, closed: int) -> None:
    """``docker2aci run IMG >&-`` ended with ``AttributeError: 'NoneType' object has no
    attribute 'flush'`` and status 1 before the app ran (run review). The closed
    descriptor is /dev/null for the app, as the app's output under Docker goes somewhere
    whatever the client's descriptors are; the other one still gets its output."""
    aci = build_aci(_sh("echo to-out; echo to-err >&2"))
    other = 3 - closed  # 1 <-> 2

    result = subprocess.run(_cli_run(aci), cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
                            check=False, preexec_fn=lambda: os.close(closed))

    assert result.returncode == 0, result.stderr
    assert (result.stdout if other == 1 else result.stderr) == ("to-out\n" if other == 1 else "to-err\n")
    assert "Traceback" not in result.stderr


def test_isolation_options_ignored_by_fly_are_named(build_aci: BuildAci, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """``--stage fly --memory 64M --net none`` ran the app with no limit and the host's
    network, and said nothing (run review): the options given are named in a warning."""
    from runner import Isolation

    aci = build_aci(_sh("true"))
    caplog.set_level(logging.WARNING, logger="runner")
    plain = run_aci(aci, work_dir=tmp_path, insecure_options={"image"}, stage="fly")
    assert (plain, caplog.text) == (0, "")

    limited = run_aci(aci, work_dir=tmp_path, insecure_options={"image"}, stage="fly",
                      isolation=Isolation(net="none", memory="64M"))

    assert limited == 0
    assert "--net, --memory ignored: the fly stage has no isolation" in caplog.text
    caplog.clear()
    host = run_aci(aci, work_dir=tmp_path, insecure_options={"image"}, stage="fly", isolation=Isolation(net="host"))
    assert (host, caplog.text) == (0, "")  # the host's network is what fly gives: nothing ignored


def test_manifest_isolators_ignored_by_fly_are_named(build_aci: BuildAci, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """An image whose manifest limits its memory ran under fly with no limit and no word
    (run review), where appc spec/ace.md ("Isolators") says an executor MUST make the
    isolators it ignored known to the user."""
    isolators = [{"name": "resource/memory", "value": {"limit": "64Mi"}},
                 {"name": "os/linux/capabilities-remove-set", "value": {"set": ["CAP_NET_RAW"]}}]
    aci = build_aci(_sh("true", isolators=isolators))
    caplog.set_level(logging.WARNING, logger="runner")

    assert run_aci(aci, work_dir=tmp_path, insecure_options={"image"}, stage="fly") == 0
    assert ("isolator(s) resource/memory, os/linux/capabilities-remove-set ignored: the fly stage applies "
            "no isolator") in caplog.text


def test_an_image_of_another_platform_is_warned_about_and_still_run(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """``run`` of an ``arch=aarch64`` ACI on an amd64 host said nothing before the app failed
    with "Exec format error" (left alone in an earlier review): like ``docker run``, it
    now warns, naming both platforms, and runs the app anyway (an emulator may be
    registered); an image of the host's platform, or one without the labels, is quiet."""
    from runner_aci_helpers import busybox_entries, manifest, write_aci

    from converters.names import appc_os_arch
    from docker2aci.manifest import Platform

    host = Platform.host()
    host_os, host_arch = appc_os_arch(host.os, host.architecture, host.variant)
    other_arch = "aarch64" if host_arch != "aarch64" else "amd64"
    caplog.set_level(logging.WARNING, logger="runner")

    def run_with(labels: list[dict[str, str]]) -> tuple[int, str]:
        doc = manifest(_sh("true"))
        doc["labels"] = labels
        aci = write_aci(tmp_path / f"image-{len(labels)}-{labels[-1]['value'] if labels else ''}.aci",
                        busybox_entries(), doc, compression="")
        caplog.clear()
        return run_aci(aci, work_dir=tmp_path, insecure_options={"image"}, stage="fly"), caplog.text

    status, text = run_with([{"name": "os", "value": "linux"}, {"name": "arch", "value": other_arch}])
    assert status == 0
    assert f"the image's platform (linux/{other_arch}) is not this host's ({host_os}/{host_arch})" in text
    assert "binfmt_misc" in text
    assert run_with([{"name": "os", "value": host_os}, {"name": "arch", "value": host_arch}]) == (0, "")
    assert run_with([]) == (0, "")
    status, text = run_with([{"name": "os", "value": "freebsd"}])
    assert status == 0 and f"(freebsd/{host_arch}) is not this host's" in text
    assert "programs built for freebsd do not run on this kernel" in text and "binfmt_misc" not in text
