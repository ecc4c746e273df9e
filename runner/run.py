"""The ``fly`` stage: chroot into a rendered rootfs in a private mount namespace.

Like rkt's stage1-fly, the app keeps the host's pid and network namespaces and gets no
isolators. The runner forks; the child makes a private mount namespace, mounts
``/proc``, ``/sys`` (read-only) and the devices a process needs into the tree, chroots,
changes directory and identity, and executes the app. The mounts live only in the
child's namespace and vanish with it. The parent forwards the signals of
:data:`FORWARDED_SIGNALS` (``SIGINT``, ``SIGTERM``, ``SIGHUP``, ``SIGQUIT``, ``SIGUSR1``,
``SIGUSR2``), and when the app exits, kills what it left running in that namespace (the
pod ends with its app, as in the isolated stage) and returns the app's exit status.

The app starts as under Docker, whatever the runner's caller left in the runner: with
every signal's default action (:func:`default_signal_dispositions`), the umask
:data:`APP_UMASK`, and with no descriptor but its stdin, stdout and stderr and
the pod's and tree's locks (:func:`run_fly`'s ``pass_fds``).

File-level preparation (mount points, device placeholders, ``/dev`` links,
``/etc/resolv.conf`` and ``/etc/hosts``, the working directory) happens in the parent,
with every path resolved inside the tree (:mod:`runner.paths`), so that the child only
mounts onto paths that contain no symbolic link.

Volumes (appc ``spec/ace.md``, "Volumes") arrive as :class:`runner.volumes.Bind`
objects whose targets :func:`runner.volumes.prepare_volumes` resolved and created in
the tree. The child binds them (``MS_BIND``, with ``MS_REC`` unless the volume says
``recursive=false``) after ``/proc``, ``/sys`` and ``/dev``, so a volume can never
redirect those mounts; a read-only volume is then remounted ``MS_RDONLY``, keeping the
source mount's ``nosuid``, ``nodev``, ``noexec`` and atime flags, and so is each mount
below its source that a recursive bind brought along (as rkt makes them: a read-only
volume is read-only throughout).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NoReturn

from docker2aci.errors import ExecError, RunnerError
from runner.linux import (
    CLONE_NEWNS,
    MS_BIND,
    MS_NOATIME,
    MS_NODEV,
    MS_NODIRATIME,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_RELATIME,
    MS_REMOUNT,
    Mount,
    mount,
    mounts_bound_along,
    unshare,
)
from runner.paths import DEVICE_NODES, in_kernel_fs, make_dirs_in_root, resolve_in_root
from runner.spec import ProcessSpec, with_hostname
from runner.volumes import Bind

logger = logging.getLogger(__name__)

#: Host device nodes bound only when the host has them. The host's console is never
#: given to an app.
OPTIONAL_DEVICE_NODES: tuple[str, ...] = ()

#: docker2aci's stdio links point at ``/dev/console`` (rkt's journald console); in fly
#: there is no console, so in the per-run render they are replaced by DEV_LINKS' links
#: to the app's own stdio.
CONSOLE_LINKS = ("stdout", "stderr")

#: Links added to ``/dev`` when the image has no entry of that name (public case 56).
DEV_LINKS = (
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("fd", "/proc/self/fd"),
    ("ptmx", "pts/ptmx"),
)

#: ``/etc/hosts`` written into an image that has none (public case 58).
HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"

#: The files of ``/etc`` both stages give the app (written into the tree by fly, bound
#: by the isolated stage): no working directory may take their place.
ETC_FILES = ("hosts", "resolv.conf")

#: ``statvfs`` flags of a bind's source kept when it is remounted read-only, and the
#: ``MS_*`` flag each one is given back as.
KEPT_MOUNT_FLAGS = (
    (os.ST_NOSUID, MS_NOSUID),
    (os.ST_NODEV, MS_NODEV),
    (os.ST_NOEXEC, MS_NOEXEC),
    (os.ST_NOATIME, MS_NOATIME),
    (os.ST_NODIRATIME, MS_NODIRATIME),
    (os.ST_RELATIME, MS_RELATIME),
)

#: Signals the parent passes on to the app: those a user or a supervisor sends to stop
#: an app or to ask it something (``kill -USR1`` to reopen logs, ``SIGQUIT`` for a
#: dump), as ``docker run`` proxies them. Unforwarded, their default action would end
#: the runner and leave the app running without its pod's cleanup.
FORWARDED_SIGNALS = frozenset({
    signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
})

#: The app's umask (Docker's, and runc's when the configuration gives none), not the
#: runner's caller's.
APP_UMASK = 0o022

#: Why a bare program name could not be executed when no directory of the image's
#: ``PATH`` (the ``{}``) has it (both stages say it so).
NOT_IN_PATH = "not found in the image's PATH {}"

#: What ``execve``'s ``ENOENT`` adds for a program that exists: the kernel did not find
#: the interpreter of its ``#!`` line or its dynamic loader (both stages say it so).
INTERPRETER_MISSING = " (the file exists: its interpreter or a library it needs is missing)"

_SI_KERNEL = 0x80  # siginfo si_code of a signal sent by the kernel (a terminal's ^C)
_WAIT_POLL_SECONDS = 1.0
_STOP_POLL_SECONDS = 0.25

#: Signals that ask an app to stop: under the isolated stage, a second one kills the app
#: (:func:`wait_forwarding`).
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})

#: How long after a stop signal an app that is pid 1 may run on before the runner says
#: how to kill it (seconds).
STOP_HINT_SECONDS = 2.0
_MAX_REPORT_CHARS = 300  # the report stays below PIPE_BUF: the child's one write is atomic


@dataclass(frozen=True)
class ChildFailure:
    """Why the child did not get to ``execve`` the app.

    Attributes:
        step: what the child was doing (``"mounting"``, ``"starting /bin/x"``).
        reason: the error, e.g. ``"/bin/x: No such file or directory"``.
        errno: the error number when the program could not be executed (not found in
            ``PATH``, or ``execve`` failed); ``None`` for the steps before.
    """

    step: str
    reason: str
    errno: int | None = None


def run_fly(
    rootfs: str,
    spec: ProcessSpec,
    *,
    binds: Sequence[Bind] = (),
    host_resolv_conf: str = "/etc/resolv.conf",
    pass_fds: Sequence[int] = (),
) -> int:
    """Run the app of a rendered rootfs with the fly stage and wait for it.

    Args:
        rootfs: the rendered tree (a host directory); it is modified (mount points,
            ``/dev`` entries, ``/etc`` files, working directory).
        spec: the process to start; ``HOSTNAME`` is the host's name unless its
            environment has one (:func:`runner.spec.with_hostname`).
        binds: the volumes to mount, from :func:`runner.volumes.prepare_volumes` on this
            ``rootfs`` (their targets exist in the tree and contain no symbolic link);
            mounted in order after ``/proc``, ``/sys`` and ``/dev``.
        host_resolv_conf: the host file copied to ``/etc/resolv.conf`` when the image
            has none.
        pass_fds: descriptors (above 2) the app inherits: the pod's and tree's locks.
            Every other descriptor of the runner is closed on ``execve``, also those its
            caller left inheritable (a shell's, a ``make`` job server's pipes).

    Returns:
        The app's exit status; ``128 + N`` when it was killed by signal ``N``.

    Raises:
        RunnerError: not running as root, the tree cannot be prepared, a volume's source
            cannot be examined, or the child could not start the app (the message gives
            the step and the reason, e.g. the volume that could not be mounted).
        ExecError: the program was not found (127) or cannot be executed (126).
    """
    check_fly_host()
    mounts = prepare_rootfs(rootfs, spec, host_resolv_conf=host_resolv_conf)
    spec = dataclasses.replace(with_hostname(spec, os.uname().nodename), cwd=working_directory(rootfs, spec.cwd))
    volume_mounts = bind_mounts(binds)
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:  # None: the runner was started with that descriptor closed
            stream.flush()
    watched = {*FORWARDED_SIGNALS, signal.SIGCHLD}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    namespace: int | None = None
    try:
        # Another thread's child must not inherit this child's ends of the pipes (it would
        # hold the go pipe open, and both children wait for ever): the pipes are made and
        # the child's ends closed here under one lock, around the fork.
        with _FORK_LOCK:
            read_fd, write_fd = os.pipe()  # both close-on-exec: the pipe ends when execve works
            go_read, go_write = os.pipe()  # the child waits on it while the parent takes hold of its namespace
            try:
                pid = os.fork()
            except OSError:
                for fd in (read_fd, write_fd, go_read, go_write):
                    os.close(fd)
                raise
            if pid == 0:
                os.close(read_fd)
                os.close(go_write)
                _child(rootfs, mounts, volume_mounts, spec, write_fd, go_read, old_mask, pass_fds)
            os.close(write_fd)
            os.close(go_read)
        try:
            report = os.read(read_fd, len(_NAMESPACE_READY))
            if report == _NAMESPACE_READY:  # the child is in its namespace and waits
                namespace = _hold_namespace(pid)
                report = b""
        finally:
            os.close(go_write)
        with os.fdopen(read_fd, "rb") as reports:
            report += reports.read()
        if report:
            os.waitpid(pid, 0)
            failure = ChildFailure(**json.loads(report))
            if failure.errno is not None:
                raise ExecError(spec.argv[0], failure.reason, failure.errno)
            raise RunnerError(f"starting the app: {failure.step}: {failure.reason}")
        status = wait_forwarding(pid, watched)
        if namespace is not None:
            end_processes_in(namespace)
        return status
    finally:
        if namespace is not None:
            os.close(namespace)
        discard_pending(watched)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


_FORK_LOCK = threading.Lock()
"""Held from making a fly child's pipes to closing the child's ends in the parent."""


def _new_fork_lock() -> None:
    """After any fork, the child's copy of :data:`_FORK_LOCK` may be held by a thread that
    the child does not have (another thread forked meanwhile): the child gets a new one."""
    global _FORK_LOCK
    _FORK_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_new_fork_lock)

_NAMESPACE_READY = b"ns\n"
"""What the child reports once it is in its own mount namespace, before it waits for the
parent to open it (:func:`_hold_namespace`)."""


def _hold_namespace(pid: int) -> int | None:
    """A descriptor of the mount namespace of ``pid`` (the child, waiting), held until the
    pod's processes have been ended: while it is open the namespace, and so its inode
    number, cannot be freed and given to another namespace of the host. ``None`` (and
    nothing is ended) when ``/proc`` is not this pid namespace's: ``/proc/PID`` would be
    another process there."""
    try:
        if os.readlink("/proc/self") != str(os.getpid()):
            logger.warning("/proc is another pid namespace's: what the app leaves running will not be stopped")
            return None
    except OSError as err:
        logger.warning("cannot read /proc (%s): what the app leaves running will not be stopped", err.strerror)
        return None
    try:
        return os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        logger.warning("cannot hold the pod's mount namespace (%s): what the app leaves running "
                       "will not be stopped", err.strerror)
        return None


def end_processes_in(namespace_fd: int, *, timeout: float = 5.0) -> int:
    """Kill (``SIGKILL``) what the app left running in its pod: every process still in the
    pod's mount namespace once the app has exited (its background children, daemons).

    The fly stage has no pid namespace to end with the app, as the isolated stage has;
    without this they ran on in a pod whose files were removed under them. The pod is
    its mount namespace: processes are found by ``/proc/PID/ns/mnt``, so no other process
    of the host (or of the caller) is touched.

    Args:
        namespace_fd: an open descriptor of the app's mount namespace (it keeps the
            namespace's identity from being reused by another while the scan runs).
        timeout: how long to keep looking for processes (seconds); one that outlives it
            is left with a warning.

    Returns:
        How many processes were killed.
    """
    held = os.fstat(namespace_fd)
    mount_namespace = (held.st_dev, held.st_ino)
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while True:
        found = [pid for pid in _pids() if _mount_namespace(pid) == mount_namespace]
        if not found:
            break
        if time.monotonic() > deadline:
            logger.warning("processes %s the app left running did not end", ", ".join(map(str, found)))
            break
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
        time.sleep(0.01)
    if killed:
        logger.debug("stopped %d process(es) the app left running: %s", len(killed),
                    ", ".join(map(str, sorted(killed))))
    return len(killed)


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _mount_namespace(pid: int) -> tuple[int, int] | None:
    """The identity (device, inode) of a process's mount namespace; ``None`` once it has
    exited (a zombie has none)."""
    try:
        info = os.stat(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None
    return info.st_dev, info.st_ino


def check_fly_host() -> None:
    """Check that this process can run the fly stage (it needs root).

    Raises:
        RunnerError: the effective user is not root.
    """
    if os.geteuid() != 0:
        raise RunnerError(
            "the fly stage needs root: it mounts in a private mount namespace and chroots"
        )


def prepare_rootfs(
    rootfs: str, spec: ProcessSpec, *, host_resolv_conf: str = "/etc/resolv.conf"
) -> tuple[Mount, ...]:
    """Create what the fly stage needs in the tree and list the mounts to make.

    Args:
        rootfs: the rendered tree.
        spec: the process to start (its working directory is created if missing).
        host_resolv_conf: the host file copied when the image has no resolv.conf.

    Returns:
        The mounts, in order, with targets resolved inside the tree (made after
        :func:`make_private`).

    Raises:
        RunnerError: ``/dev``, ``/proc``, ``/sys`` or the working directory exists in the
            image as something other than a directory.
    """
    kernel_fs = MS_NOSUID | MS_NODEV | MS_NOEXEC
    mounts = [
        Mount("proc", make_dirs_in_root(rootfs, "/proc"), "proc", kernel_fs),
        Mount("sysfs", make_dirs_in_root(rootfs, "/sys"), "sysfs", kernel_fs | MS_RDONLY),
    ]
    mounts.extend(_prepare_dev(rootfs))
    _prepare_etc(rootfs, host_resolv_conf)
    working_directory(rootfs, spec.cwd)
    return tuple(mounts)


def working_directory(rootfs: str, cwd: str) -> str:
    """The app's working directory (the manifest's ``app.workingDirectory``) with its
    links resolved inside the tree, as the path the child changes to after ``chroot``.

    A missing directory is made, as Docker and runc do (appc ``spec/aci.md`` and rkt
    refuse to start instead). The child changes directory as root, with ``/proc``
    mounted: a path still holding a link (``/wd -> /proc/self/cwd/../..``) would be
    followed through procfs's magic links to the host, so the app would start outside
    its root. Both stages call this, so they accept and refuse the same directories.

    Raises:
        RunnerError: the directory leads into ``/proc`` or ``/sys``, is not a directory
            (a file in the image, or a device or file the stage puts there: ``/dev/null``,
            ``/etc/hosts``), or cannot be made; the message names ``app.workingDirectory``
            and ``cwd``.
    """
    try:
        host_path = resolve_in_root(rootfs, cwd)
        rel = os.path.relpath(host_path, rootfs)
        if in_kernel_fs(rootfs, host_path):  # checked before anything is made there
            raise RunnerError("leads into /proc or /sys: refused")
        stage_file = {**{f"dev/{name}": "binds the device" for name in DEVICE_NODES},
                      **{f"etc/{name}": "puts its own" for name in ETC_FILES}}.get(rel)
        if not os.path.isdir(host_path) and (stage_file or os.path.lexists(host_path)):
            raise RunnerError("not a directory" + (f" (the stage {stage_file} /{rel} there)" if stage_file else ""))
        make_dirs_in_root(rootfs, cwd)
    except RunnerError as err:
        raise RunnerError(f"manifest field app.workingDirectory {cwd!r}: {err}") from err
    return "/" if rel == "." else "/" + rel


def bind_mounts(binds: Iterable[Bind]) -> tuple[tuple[str, Mount], ...]:
    """List the ``mount(2)`` calls that mount volumes, each with a description.

    A bind is ``MS_BIND`` (``| MS_REC`` when ``recursive``) of the source onto
    ``host_target``; a read-only one is followed by ``MS_BIND | MS_REMOUNT | MS_RDONLY``
    with the source mount's :data:`KEPT_MOUNT_FLAGS` (a plain remount would clear
    ``nosuid`` and ``nodev``), then, when recursive, by the same remount of each mount
    below the source that the bind brings along (:func:`runner.linux.mounts_bound_along`,
    listed now, in the runner's namespace), each keeping its own flags.

    Args:
        binds: the volumes (:func:`runner.volumes.prepare_volumes`).

    Returns:
        ``(step, mount)`` pairs in order; ``step`` says what is being done
        (``"mounting volume data on /srv/data"``), for the error a failure reports.

    Raises:
        RunnerError: the source of a read-only volume cannot be examined (``statvfs``).
    """
    calls: list[tuple[str, Mount]] = []
    for bind in binds:
        step = f"mounting volume {bind.volume} on {bind.target}"
        flags = MS_BIND | (MS_REC if bind.recursive else 0)
        calls.append((step, Mount(bind.source, bind.host_target, flags=flags)))
        if not bind.read_only:
            continue
        step = f"making volume {bind.volume} read-only"
        calls.append((step, _read_only_remount(bind, bind.source, bind.host_target)))
        if not bind.recursive:
            continue
        source = os.path.realpath(bind.source)
        for below in mounts_bound_along(source):
            inside = below[len(source.rstrip("/")):]  # "/sub" (of "/" too: "/proc")
            calls.append((f"{step} in {bind.target.rstrip('/')}{inside}",
                           _read_only_remount(bind, below, bind.host_target.rstrip("/") + inside)))
    return tuple(calls)


def _read_only_remount(bind: Bind, source: str, target: str) -> Mount:
    """The remount making the bind of ``source`` on ``target`` read-only, with the
    :data:`KEPT_MOUNT_FLAGS` of the mount ``source`` is on."""
    try:
        source_flags = os.statvfs(source).f_flag
    except OSError as err:
        raise RunnerError(f"volume {bind.volume}: examining {source}: {err.strerror}") from err
    kept = 0
    for st_flag, ms_flag in KEPT_MOUNT_FLAGS:
        if source_flags & st_flag:
            kept |= ms_flag
    return Mount(None, target, flags=MS_BIND | MS_REMOUNT | MS_RDONLY | kept)


def _prepare_dev(rootfs: str) -> list[Mount]:
    """Device binds, devpts and shm, next to whatever the image ships in ``/dev``."""
    dev = make_dirs_in_root(rootfs, "/dev")
    if in_kernel_fs(rootfs, dev):
        raise RunnerError("the image's /dev leads into /proc or /sys (a symbolic link): refused")
    mounts = []
    for name in (*DEVICE_NODES, *OPTIONAL_DEVICE_NODES):
        if not os.path.exists(f"/dev/{name}"):
            if name in DEVICE_NODES:
                logger.warning("the host has no /dev/%s: the app will not have it either", name)
            continue
        target = resolve_in_root(rootfs, f"/dev/{name}")
        if _placeholder(target, name):
            mounts.append(Mount(f"/dev/{name}", target, flags=MS_BIND))
    mounts.append(
        Mount(
            "devpts",
            make_dirs_in_root(rootfs, "/dev/pts"),
            "devpts",
            MS_NOSUID | MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620",
        )
    )
    shm = make_dirs_in_root(rootfs, "/dev/shm")
    mounts.append(Mount("shm", shm, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"))
    for name in CONSOLE_LINKS:
        link = os.path.join(dev, name)
        if os.path.islink(link) and os.readlink(link) == "/dev/console":
            os.unlink(link)
    for name, target in DEV_LINKS:
        link = os.path.join(dev, name)
        if not os.path.lexists(link):
            os.symlink(target, link)
    return mounts


def _placeholder(target: str, name: str) -> bool:
    """Make sure a non-directory exists at ``target`` to bind a device onto."""
    try:
        _create_file(target, b"", 0o644)
    except FileExistsError:
        if os.path.isdir(target):
            logger.warning("not binding /dev/%s: the image has a directory there", name)
            return False
    except OSError as err:
        logger.warning("not binding /dev/%s: %s", name, err.strerror)
        return False
    return True


def _prepare_etc(rootfs: str, host_resolv_conf: str) -> None:
    """Write ``/etc/resolv.conf`` and ``/etc/hosts`` when the image has none."""
    try:
        with open(host_resolv_conf, "rb") as handle:
            resolv_conf: bytes | None = handle.read()
    except OSError:
        logger.warning("the host has no readable %s: not adding one", host_resolv_conf)
        resolv_conf = None
    wanted = {"resolv.conf": resolv_conf, "hosts": HOSTS.encode()}
    try:
        etc = make_dirs_in_root(rootfs, "/etc")
    except RunnerError as err:
        logger.warning("not adding /etc/resolv.conf and /etc/hosts: %s", err)
        return
    for name, content in wanted.items():
        path = os.path.join(etc, name)
        if content is not None and not os.path.lexists(path):
            _create_file(path, content, 0o644)


def _create_file(path: str, content: bytes, mode: int) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
    os.chmod(path, mode)


def _child(
    rootfs: str,
    mounts: Iterable[Mount],
    volume_mounts: Iterable[tuple[str, Mount]],
    spec: ProcessSpec,
    report_fd: int,
    go_fd: int,
    signal_mask: Iterable[int],
    pass_fds: Iterable[int] = (),
) -> NoReturn:
    """Set up the namespace and execute the app; report any failure on ``report_fd``.
    Once in its own mount namespace it says so (:data:`_NAMESPACE_READY`) and waits for
    ``go_fd`` to close, while the parent opens the namespace. The app gets
    :data:`APP_UMASK` and, above stdio, only ``pass_fds``."""
    step = "restoring signal dispositions"
    exec_step = f"starting {spec.argv[0]}"
    try:
        default_signal_dispositions()
        signal.pthread_sigmask(signal.SIG_SETMASK, signal_mask)
        step = "creating a private mount namespace"
        unshare(CLONE_NEWNS)
        os.write(report_fd, _NAMESPACE_READY)
        os.read(go_fd, 1)
        os.close(go_fd)
        step = "making the mount namespace private"
        make_private(rootfs)
        step = "setting up the mounts"
        for spec_mount in mounts:
            mount(spec_mount)
        for step, spec_mount in volume_mounts:
            mount(spec_mount)
        step = f"changing root to {rootfs}"
        os.chroot(rootfs)
        step = f"changing to working directory {spec.cwd}"
        os.chdir(spec.cwd)
        step = "closing the runner's descriptors"
        close_on_exec_except(pass_fds)
        os.umask(APP_UMASK)
        step = f"switching to uid {spec.uid}, gid {spec.gid}"
        hand_over_stdio(spec.uid)
        os.setgroups(spec.groups)
        os.setgid(spec.gid)
        os.setuid(spec.uid)
        step = exec_step
        executable = find_executable(spec.argv[0], spec.env.get("PATH", ""))
        os.execve(executable, list(spec.argv), dict(spec.env))
    except BaseException as err:  # noqa: BLE001 - everything goes back to the parent
        reason = _describe(err, step)
        report: dict[str, object] = {"step": step[:_MAX_REPORT_CHARS], "reason": reason[:_MAX_REPORT_CHARS]}
        if step == exec_step and isinstance(err, OSError) and err.errno:
            report["errno"] = err.errno
        os.write(report_fd, json.dumps(report).encode())
    finally:
        os._exit(127)


def default_signal_dispositions() -> None:
    """Give every signal its default action, as runc gives it to the app it starts
    (``docker run``'s app has them whatever its caller ignored).

    A signal is otherwise ignored by the app when the runner's caller ignored it (``nohup``:
    ``SIGHUP``; a script's ``&``: ``SIGINT`` and ``SIGQUIT``): ``execve`` keeps ignored
    signals ignored, and the app could not be stopped by the signals the runner forwards.
    Python ignores ``SIGPIPE`` and ``SIGXFSZ`` itself, and a handler of the runner's (the
    CLI's) must not run in the child before ``execve``. An appc image cannot ask for a
    signal to be ignored (``spec/types.md`` has no such field), so none is kept. ``SIGKILL``
    and ``SIGSTOP`` cannot be changed and are left alone; the signal mask is the caller's
    business (:func:`run_fly` restores it).
    """
    for signum in signal.valid_signals():
        if signum not in (signal.SIGKILL, signal.SIGSTOP) and signal.getsignal(signum) != signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)


def close_on_exec_except(pass_fds: Iterable[int]) -> None:
    """Mark every descriptor above 2 close-on-exec, except ``pass_fds``.

    What the runner's caller left inheritable (a shell's descriptors, a pipe of the
    process that started the runner) would otherwise reach the app, which Docker's
    never do (an app holding a caller's pipe keeps its reader waiting for an end).
    Descriptors are listed in ``/proc/self/fd`` (in the child, after ``chroot``: the
    ``/proc`` the stage mounted, of the runner's pid namespace); without it, every
    number below the ``RLIMIT_NOFILE`` soft limit is tried.

    Args:
        pass_fds: the descriptors the app keeps (their inheritable flag is unchanged).
    """
    kept = set(pass_fds)
    try:
        fds: Iterable[int] = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = range(3, min(os.sysconf("SC_OPEN_MAX"), 1 << 20))
    for fd in fds:
        if fd > 2 and fd not in kept:
            with contextlib.suppress(OSError):  # the listing's own descriptor, closed by now
                os.set_inheritable(fd, False)


def make_private(rootfs: str) -> None:
    """Stop mounts made in this (new) namespace from propagating to the host's.

    Makes ``/`` recursively private. When ``/`` is not a mount point (the runner itself
    runs inside a chroot), the nearest mount point above ``rootfs`` is made private
    instead: ``mount(2)`` answers EINVAL for every directory that is not one.

    Raises:
        OSError: no mount point could be made private.
    """
    candidates = ["/"]
    path = os.path.abspath(rootfs)
    while True:
        candidates.append(path)
        if path == "/":
            break
        path = os.path.dirname(path)
    for candidate in candidates:
        try:
            mount(Mount(None, candidate, flags=MS_REC | MS_PRIVATE))
            return
        except OSError as err:
            if err.errno != errno.EINVAL:
                raise
    raise OSError(errno.EINVAL, f"no mount point above {rootfs} could be made private")


def hand_over_stdio(uid: int) -> None:
    """Give the app's user the stdio pipes and sockets, so it can reopen ``/dev/stdout``.

    Reopening ``/proc/self/fd/1`` checks the pipe's own permissions (owner only), so an
    app running as another user could not write to ``/dev/stdout`` (runc does the same:
    ``fixStdioPermissions``). Terminals, files and named FIFOs are left alone: they are
    the host's and outlive the run (a FIFO made with ``mkfifo`` is a file on disk; only
    an anonymous pipe, ``pipe:[inode]`` in ``/proc/self/fd``, is handed over). Failures
    are ignored.

    Args:
        uid: the app's user id.
    """
    for fd in (0, 1, 2):
        try:
            info = os.fstat(fd)
            if info.st_uid == uid:
                continue
            if stat.S_ISSOCK(info.st_mode) or (stat.S_ISFIFO(info.st_mode)
                                               and os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:")):
                os.fchown(fd, uid, -1)
        except OSError:
            continue


def find_executable(name: str, search_path: str) -> str:
    """Find the program to execute, inside the current root (public case 41).

    Args:
        name: ``argv[0]``. With a ``/`` it is used as it is (absolute, or relative to
            the working directory, like ``./run.sh``); a bare name is looked up in
            ``search_path``.
        search_path: a ``PATH`` value; an empty entry means the working directory.

    Returns:
        The path to pass to ``execve``.

    Raises:
        FileNotFoundError: no directory of ``search_path`` has an executable ``name``
            (:data:`NOT_IN_PATH`).
        PermissionError: only non-executable files named ``name`` were found.
    """
    if "/" in name:
        return name
    denied = False
    for directory in search_path.split(":"):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate):
            if os.access(candidate, os.X_OK):
                return candidate
            denied = True
    if denied:
        raise PermissionError(errno.EACCES, f"not executable in the image's PATH {search_path}")
    raise FileNotFoundError(errno.ENOENT, NOT_IN_PATH.format(search_path))


def _describe(err: BaseException, step: str) -> str:
    """Explain a failure in the child in one line (the step is said separately)."""
    if not isinstance(err, OSError):
        return f"{type(err).__name__}: {err}"
    reason = err.strerror or str(err)
    if err.filename is not None:
        name = os.fsdecode(err.filename)
        if name not in step:
            reason = f"{name}: {reason}"
        if err.errno == errno.ENOENT and os.path.exists(err.filename):  # a dangling link is missing
            reason += INTERPRETER_MISSING
    return reason


def wait_forwarding(pid: int, watched: set[signal.Signals],
                    force_stop: Callable[[], None] | None = None) -> int:
    """Wait for a child (the fly app, or the OCI runtime), forwarding the signals in
    ``watched`` (blocked by the caller) that were sent to the runner.

    A signal a terminal sent (``si_code`` ``SI_KERNEL``) reached the child's process
    group already and is not sent twice.

    Args:
        pid: the child.
        watched: the signals blocked by the caller, ``SIGCHLD`` among them.
        force_stop: for an app that is pid 1 of its namespace (the isolated stage), which
            gets only the signals it handles: called at a second :data:`STOP_SIGNALS`
            signal (Ctrl-C or ``SIGTERM`` again) to kill it, as ``docker compose`` does;
            if the app is still running :data:`STOP_HINT_SECONDS` after the first, the
            runner says so. ``None``: every signal is only forwarded.

    Returns:
        The child's exit status (:func:`exit_status`).
    """
    stopping: signal.Signals | None = None  # the first stop signal
    stopped_at = 0.0  # when it came
    hinted = forced = False
    while True:
        info = signal.sigtimedwait(watched, _WAIT_POLL_SECONDS if stopping is None else _STOP_POLL_SECONDS)
        if info is not None and info.si_signo != signal.SIGCHLD:
            signo = signal.Signals(info.si_signo)
            if force_stop is not None and signo in STOP_SIGNALS and stopping is not None:
                if not forced:
                    forced = True
                    logger.warning("%s: killing the app", f"{signo.name} again" if signo == stopping
                                   else f"{signo.name} after {stopping.name}")
                    force_stop()
                continue
            if force_stop is not None and signo in STOP_SIGNALS:
                stopping, stopped_at = signo, time.monotonic()
            if info.si_code != _SI_KERNEL:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, info.si_signo)
            continue
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return exit_status(status)
        if stopping is not None and not hinted and not forced and time.monotonic() - stopped_at >= STOP_HINT_SECONDS:
            hinted = True
            logger.warning("the app is still running (as pid 1 of its namespace it may ignore %s); Ctrl-C again "
                           "(or SIGTERM) kills it", stopping.name)


def discard_pending(watched: set[signal.Signals]) -> None:
    """Take every signal of ``watched`` (blocked by the caller) still pending, without
    acting on it: one that came after the app ended (Ctrl-C while the runner cleans up)
    would otherwise be delivered when the caller unblocks them, and a
    ``KeyboardInterrupt`` would replace the app's exit status. Call it before restoring
    the signal mask."""
    while signal.sigtimedwait(watched, 0) is not None:
        pass


def exit_status(wait_status: int) -> int:
    """Turn a ``waitpid`` status into a shell-style exit status.

    Args:
        wait_status: the status word from :func:`os.waitpid`.

    Returns:
        The exit code, or ``128 + N`` for a process killed by signal ``N``.
    """
    code = os.waitstatus_to_exitcode(wait_status)
    return code if code >= 0 else 128 - code
