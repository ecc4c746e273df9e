"""The ``isolated`` stage: run a rendered rootfs with an installed OCI runtime (runc).

The app gets its own pid, mount, uts and ipc namespaces (and network namespace unless
``net="host"``), cgroup limits from the appc ``resource/memory`` and ``resource/cpu``
isolators (or the ``memory``/``cpu`` options), Docker's default capabilities (narrowed by
the ``os/linux/capabilities-retain-set`` or ``-remove-set`` isolator) and
``noNewPrivileges`` (:mod:`runner.ocispec` builds the configuration).

How a run goes:

1. The tree is prepared with every path resolved inside it (:mod:`runner.paths`): the
   working directory is created; ``/dev`` must be a real directory (it is created when
   missing); docker2aci's ``/dev/stdout`` and ``/dev/stderr`` links to
   ``/dev/console`` are removed (there is no console), so that the runtime links them
   to the app's own stdio.
2. A bundle directory is made beside the rootfs: ``config.json``, the generated
   ``hosts`` and ``resolv.conf`` (bind-mounted on ``/etc/hosts`` and
   ``/etc/resolv.conf``, hiding the image's, as Docker does: the stage owns the host
   name; writable by the app's root, as under Docker, for an entrypoint that adds a
   host: the files are this run's own), the runtime's log and, unless ``state_dir``
   is given, its private state directory (``--root``, so nothing is left in
   ``/run/runc``).
3. ``runc --root STATE --log LOG --log-format json run [--preserve-fds N] --bundle BUNDLE ID``
   runs in the foreground with the caller's stdin and stdout, and a pipe the runner
   copies to its stderr (no terminal is allocated). The lock descriptors of the pod and
   its tree (``preserve_fds``) go to the app as its descriptors 3, 4 ..., as the fly
   stage's app inherits them: a ``kill -9`` of
   the runner and runc together (its process group) leaves the app running, in its own
   session, and ``gc`` must then leave its pod and tree alone until it ends.
   runc hands the app pipes owned by the app's user and copies between them and the
   caller's descriptors. crun would hand the caller's own descriptors over and change
   their owner to the app's user (the caller's terminal, a log file, even the host's
   ``/dev/null``), so for crun the runner makes such pipes itself and copies.
   runc prints each error it logs on its stderr too: the copy leaves those lines out,
   so that an error is shown once (step 4).
   The signals of :data:`runner.run.FORWARDED_SIGNALS` (``SIGINT``, ``SIGTERM``,
   ``SIGHUP``, ``SIGQUIT``, ``SIGUSR1``, ``SIGUSR2``) sent to the runner are passed to
   runc, which passes them to the app (a signal a terminal sent to the whole process
   group reached runc already and is not sent twice). Note that the app is pid 1 of its namespace:
   like under Docker, it only gets the signals it handles. A second ``SIGINT`` or ``SIGTERM``
   (Ctrl-C again) kills it (``runc kill ID KILL``: status 137), as ``docker compose`` does; if
   it is still running 2 s after the first, the runner says so.
4. runc's exit status is the app's (``128 + N`` for signal ``N``: 137 after the
   kernel's OOM killer). When runc itself failed (a mount failed), its log holds error
   entries and :class:`RunnerError` carries them; when it could not execute the app's
   program (not found, permission denied), :class:`ExecError` says so (exit status 127
   or 126: :func:`_exec_failure`). crun says so in other words, and also when
   ``execve`` refuses the program (exec format error, a missing interpreter), which
   runc 1.1 reports as the app's status 1 (:func:`_crun_exec_failure`).
5. Always: ``runc delete --force ID`` (kills what is left and removes the container's
   cgroups), then any of the container's cgroup directories still present are
   removed, then the bundle.

Volumes (appc ``spec/ace.md``, "Volumes"): the :class:`runner.volumes.Bind` objects of
:func:`runner.volumes.prepare_volumes` become bind mounts of the configuration, after
the ``/etc`` binds, onto their resolved destinations (no symbolic link in them, so runc
follows none of the image's); ``ro`` ones are made read-only by the runtime.

``/dev``: there is no tmpfs on ``/dev``. With none, runc uses the rootfs's own ``/dev``
directory: it creates the default device nodes there unless an entry of that name
exists, adds the ``/dev/fd``, ``stdin``, ``stdout``, ``stderr`` links when missing and
makes ``/dev/ptmx`` a link to ``pts/ptmx``, and mounts ``/dev/pts``, ``/dev/shm`` and
``/dev/mqueue`` there. So an image's own entries (a ``/dev/log`` link) stay visible
(``decisions.md``, "Runner"). Two consequences: the rendered tree is modified (it is a
per-run tree), and an image whose ``/dev`` is a symbolic link is refused (runc writes
those links with host path resolution, which would follow it out of the tree). The
host's null, zero, full, random, urandom and tty are bind-mounted onto their names
(resolved in the tree), so they work even when the tree is on a ``nodev`` file system
and whatever the image put there; a device cgroup denies all other devices. There is no
``/dev/console`` (no terminal, as in the fly stage).

Cgroups: ``cgroupsPath`` is ``/<id>`` with the cgroupfs driver (runc's
``--systemd-cgroup`` needs systemd): no shared parent group that would be left behind,
or removed by one run while another is creating its group in it. On a hybrid host (cgroup v1 controllers and a v2
``unified`` tree) runc 1.1 creates the group in every v1 hierarchy, in ``name=systemd``
and in the v2 tree; limits are the v1 files (``memory.limit_in_bytes``,
``cpu.cfs_quota_us``). crun 1.8 refuses a hybrid host ("cgroups in hybrid mode not
supported"), so there it runs in a private mount namespace where the v2 tree is
unmounted (``unshare -m``), which changes nothing on the host.

``RLIMIT_NOFILE`` is the runner's own (never above its hard limit: the host may not
grant ``CAP_SYS_RESOURCE``). Capabilities the host's bounding set lacks are dropped with a
warning instead of failing the start.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import glob
import json
import logging
import os
import re
import resource
import secrets
import select
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from docker2aci.errors import ExecError, RunnerError
from docker2aci.stdio import write_all
from docker2aci.terminal import go_quoted
from runner.ocispec import (
    CAPABILITIES,
    NET_MODES,
    RETAIN_SET,
    check_hostname,
    isolator_capabilities,
    isolator_limits,
    parse_cpu,
    parse_memory,
    runtime_config,
    unsupported_isolators,
)
from runner.paths import in_kernel_fs, resolve_in_root
from runner.run import (
    CONSOLE_LINKS,
    DEVICE_NODES,
    FORWARDED_SIGNALS,
    HOSTS,
    INTERPRETER_MISSING,
    NOT_IN_PATH,
    discard_pending,
    wait_forwarding,
    working_directory,
)
from runner.spec import ProcessSpec, with_hostname
from runner.volumes import Bind

logger = logging.getLogger(__name__)

#: Runtimes the stage can drive, in order of preference.
RUNTIMES = ("runc", "crun")

#: Where runtimes are looked for besides ``PATH`` (``sbin`` is often not in a user's).
EXTRA_SEARCH_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")

#: Prefix of the container ids (and of their cgroups, ``/<id>``).
CONTAINER_PREFIX = "docker2aci-"

#: The cgroup v2 tree mounted beside the v1 controllers on a hybrid host.
UNIFIED_MOUNT = "/sys/fs/cgroup/unified"

#: Log levels of a runtime's JSON log that mean the runtime itself failed.
ERROR_LEVELS = frozenset({"error", "fatal", "panic"})

#: Characters of the runtime's error messages kept in a :class:`RunnerError`.
MAX_ERROR_CHARS = 2000

_RELAY_CHUNK = 1 << 16

#: Seconds without output after which the stderr copy shows a line it held back as maybe
#: crun's failure to execute the app (:meth:`_StdioRelay._copy_stderr`): crun logs that
#: failure, or exits, within milliseconds of printing it; an app's own line is shown that late.
_CRUN_HOLD_SECONDS = 0.2


def available_runtime() -> str | None:
    """Find the OCI runtime the isolated stage would use.

    runc is preferred. crun is used only when it can work here: on a hybrid cgroup host
    it needs ``unshare`` (util-linux) for its private mount namespace.

    Returns:
        The runtime's absolute path, or ``None`` when none is installed.
    """
    for name in RUNTIMES:
        path = _which(name)
        if path is None:
            continue
        if _flavour(path) == "crun" and _is_hybrid_cgroup_host() and _which("unshare") is None:
            logger.debug("crun at %s needs unshare on this hybrid cgroup host", path)
            continue
        return path
    return None


def run_isolated(
    rootfs: str,
    spec: ProcessSpec,
    *,
    hostname: str | None = None,
    net: str = "none",
    memory: str | None = None,
    cpu: str | None = None,
    isolators: Iterable[Mapping[str, Any]] | None = (),
    runtime: str = "runc",
    state_dir: str | None = None,
    container_id: str | None = None,
    host_resolv_conf: str = "/etc/resolv.conf",
    binds: Sequence[Bind] = (),
    preserve_fds: Sequence[int] = (),
) -> int:
    """Run the app of a rendered rootfs with an OCI runtime and wait for it.

    Args:
        rootfs: the rendered tree (a host directory); it is modified (see the module's
            description) and must not be in use by another run.
        spec: the process to start.
        hostname: the app's host name, and its ``HOSTNAME`` unless ``spec``'s environment
            has one (:func:`runner.spec.with_hostname`); default: the container id.
        net: ``"none"`` (own network namespace, only ``lo``) or ``"host"``.
        memory: a memory limit (``"128M"``, ``"64Mi"``; :func:`runner.ocispec.parse_memory`);
            overrides a ``resource/memory`` isolator.
        cpu: a CPU limit (``"500m"``, ``"1"``; :func:`runner.ocispec.parse_cpu`);
            overrides a ``resource/cpu`` isolator.
        isolators: the manifest's ``app.isolators``; ``resource/memory`` and
            ``resource/cpu`` limits and the ``os/linux/capabilities-retain-set`` and
            ``-remove-set`` are applied (:func:`runner.ocispec.isolator_capabilities`:
            they only narrow Docker's default capabilities), ``os/linux/no-new-privileges``
            is always in force; others are ignored with a warning.
        runtime: ``"runc"``, ``"crun"`` or the path of either.
        state_dir: the runtime's state directory (``--root``); default: a private one,
            removed afterwards.
        container_id: the container's id; default: ``docker2aci-<16 hex digits>``.
        host_resolv_conf: the host file copied to the app's ``/etc/resolv.conf``.
        binds: the volumes to mount, from :func:`runner.volumes.prepare_volumes` on this
            ``rootfs``; mounted in order after the ``/etc`` binds.
        preserve_fds: descriptors (the pod's and the tree's locks) the app holds as its
            descriptors 3, 4 ... for as long as it runs (runc's ``--preserve-fds``).

    Returns:
        The app's exit status (0–255); ``128 + N`` when it was killed by signal ``N``
        (137 when the memory limit made the kernel kill it).

    Raises:
        RunnerError: not root; the runtime is not installed; an option, isolator or
            limit is invalid; the tree cannot be prepared (``/dev`` is not a directory);
            or the runtime could not start the app (the message holds the runtime's
            errors, e.g. a mount that failed).
        ExecError: the runtime could not execute the program: not found (127) or not
            executable (126).
    """
    if os.geteuid() != 0:
        raise RunnerError(
            "the isolated stage needs root: the OCI runtime creates namespaces and cgroups"
        )
    if net not in NET_MODES:
        raise RunnerError(f"network {net!r}: choose one of {', '.join(NET_MODES)}")
    runtime_path = _find_runtime(runtime)
    if isinstance(isolators, Iterator):  # read twice below
        isolators = list(isolators)
    memory_bytes, cpu_millis = isolator_limits(isolators)
    capabilities, refused = isolator_capabilities(isolators)
    if refused:
        logger.warning("isolator %s: %s not granted: an image's isolators only narrow the default "
                       "capabilities", RETAIN_SET, ", ".join(refused))
    for name in unsupported_isolators(isolators):
        logger.warning("isolator %s is not supported by the isolated stage: not applied", name)
    if memory is not None:
        memory_bytes = parse_memory(memory)
    if cpu is not None:
        cpu_millis = parse_cpu(cpu)
    cid = container_id or CONTAINER_PREFIX + secrets.token_hex(8)
    hostname = check_hostname(hostname if hostname is not None else cid)
    spec = with_hostname(spec, hostname)

    rootfs = os.path.abspath(rootfs)
    spec = _prepare_tree(rootfs, spec)
    bundle = tempfile.mkdtemp(prefix="bundle-", dir=os.path.dirname(rootfs))
    try:
        device_binds = _device_binds(rootfs)
        config = runtime_config(
            spec,
            rootfs,
            hostname=hostname,
            net=net,
            memory_bytes=memory_bytes,
            cpu_millis=cpu_millis,
            etc_binds=_etc_binds(rootfs, bundle, hostname, host_resolv_conf, device_binds),
            device_binds=device_binds,
            volume_binds=binds,
            cgroups_path=f"/{cid}",
            nofile=_nofile_limits(),
            capabilities=_host_capabilities(capabilities),
        )
        if (found := _not_utf8(config)) is not None:
            where, value = found
            try:
                shown = repr(os.fsencode(value))  # the bytes as they were read
            except UnicodeEncodeError:  # a lone surrogate from a JSON escape ("\\ud800"): no bytes at all
                raise RunnerError(f"{where} {ascii(value)} holds an escape that names no character (a lone "
                                  "surrogate, from the manifest's JSON): no program can be given it") from None
            raise RunnerError(f"the isolated stage cannot pass {where} {shown}: it is not UTF-8, and the "
                              "runtime's configuration is JSON, where such bytes become U+FFFD (another path, "
                              "another argument); the fly stage passes them as they are (--stage fly)")
        with open(os.path.join(bundle, "config.json"), "w", encoding="utf-8") as handle:
            json.dump(config, handle, indent=1)
        state = state_dir or os.path.join(bundle, "state")
        return _run_container(runtime_path, state, bundle, cid, spec, preserve_fds)
    finally:
        shutil.rmtree(bundle, ignore_errors=True)


def _not_utf8(value: object, where: str = "") -> tuple[str, str] | None:
    """The first string of an OCI runtime configuration (its JSON path, and the string)
    that holds bytes that are not UTF-8 (surrogate escapes, from a name, an argument or an
    environment value read from bytes), else ``None``. :func:`json.dump` writes them as
    ``\\udcXX``, which Go's decoder (runc, crun's parser likewise) turns into U+FFFD."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where, value
        return None
    items: Iterable[tuple[object, object]]
    if isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _not_utf8(key, where) if isinstance(key, str) else None
        found = found or _not_utf8(item, f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}".lstrip("."))
        if found is not None:
            return found
    return None


def _prepare_tree(rootfs: str, spec: ProcessSpec) -> ProcessSpec:
    """Make ``/dev`` a usable directory, drop console links, create the working dir;
    give the spec with the working directory resolved inside the tree.

    The runtime changes to the working directory inside the container, after ``/proc``
    is mounted: as in the fly stage, one that leads into ``/proc`` or ``/sys``
    (``/proc/self/fd/N``, the descriptors the runtime leaks into its init: runc's
    CVE-2024-21626) is refused, and the runtime is given a path without links."""
    dev = os.path.join(rootfs, "dev")
    try:
        os.mkdir(dev, 0o755)
    except FileExistsError:
        if os.path.islink(dev) or not os.path.isdir(dev):
            raise RunnerError(
                "the isolated stage needs the image's /dev to be a directory; "
                "it is a symbolic link or a file (use the fly stage)"
            ) from None
    except OSError as err:
        raise RunnerError(f"creating /dev in the tree: {err.strerror}") from err
    for name in CONSOLE_LINKS:
        link = os.path.join(dev, name)
        if os.path.islink(link) and os.readlink(link) == "/dev/console":
            os.unlink(link)
    return dataclasses.replace(spec, cwd=working_directory(rootfs, spec.cwd))


def _in_root(rootfs: str, path: str, action: str) -> str | None:
    """The path inside the tree that ``path`` leads to, the target of a bind; ``None``,
    with a warning (``"not <action> <path>: ..."``), for a directory, or for a path the
    image's links lead into ``/proc`` or ``/sys`` (``/etc -> /proc/self/cwd/etc``): the
    runtime would resolve it once those are mounted, through the kernel's magic links,
    and bind the file where the app does not look (as volumes and the working directory,
    it is never bound there)."""
    host_path = resolve_in_root(rootfs, path)
    if in_kernel_fs(rootfs, host_path):
        logger.warning("not %s %s: the image's links lead it into /proc or /sys", action, path)
        return None
    if os.path.isdir(host_path):
        logger.warning("not %s %s: the image has a directory there", action, path)
        return None
    return "/" + os.path.relpath(host_path, rootfs)


def _device_binds(rootfs: str) -> list[tuple[str, str]]:
    binds = []
    for name in DEVICE_NODES:
        source = f"/dev/{name}"
        if not os.path.exists(source):
            logger.warning("the host has no %s: the app will not have it either", source)
            continue
        target = _in_root(rootfs, source, "binding")
        if target is None:
            continue
        binds.append((source, target))
    return binds


def _etc_binds(
    rootfs: str, bundle: str, hostname: str, host_resolv_conf: str,
    device_binds: Sequence[tuple[str, str]] = (),
) -> list[tuple[str, str]]:
    """Write ``hosts`` and ``resolv.conf`` into the bundle; list their bind mounts.

    A file the image links to a device the stage binds (``/etc/hosts -> /dev/null``, of
    ``device_binds``) is not mounted, with a warning: bound over the app's ``/dev/null``,
    the file would take its writes, and the app's stdio too (runc reopens a standard
    stream that is not a device on the container's ``/dev/null``)."""
    devices = {target for _, target in device_binds}
    files = {"hosts": f"{HOSTS}127.0.1.1\t{hostname}\n".encode()}
    try:
        with open(host_resolv_conf, "rb") as handle:
            files["resolv.conf"] = handle.read()
    except OSError:
        logger.warning("the host has no readable %s: not adding one", host_resolv_conf)
    binds = []
    for name, content in files.items():
        target = _in_root(rootfs, f"/etc/{name}", "mounting")
        if target is None:
            continue
        if target in devices:
            logger.warning("not mounting /etc/%s: the image links it to %s, a device the stage binds", name, target)
            continue
        source = os.path.join(bundle, name)
        with open(source, "wb") as handle:
            handle.write(content)
        os.chmod(source, 0o644)
        binds.append((source, target))
    return binds


def _nofile_limits() -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    infinity = 2**64 - 1
    hard = infinity if hard == resource.RLIM_INFINITY else hard
    soft = infinity if soft == resource.RLIM_INFINITY else soft
    return min(soft, hard), hard


def _host_capabilities(wanted: Sequence[str]) -> list[str]:
    """Keep the capabilities the runner's bounding set has (runc fails on others)."""
    bounding = None
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("CapBnd:"):
                    bounding = int(line.split()[1], 16)
    except (OSError, ValueError):
        return list(wanted)
    if bounding is None:
        return list(wanted)
    kept = []
    for name in wanted:
        number = CAPABILITIES.get(name)
        if number is not None and not bounding >> number & 1:
            logger.warning("the host's bounding set lacks %s: the app will not have it", name)
            continue
        kept.append(name)
    return kept


def _which(name: str) -> str | None:
    search = os.pathsep.join([os.environ.get("PATH", ""), *EXTRA_SEARCH_PATH])
    return shutil.which(name, path=search)


def _flavour(path: str) -> str:
    return "crun" if os.path.basename(path).startswith("crun") else "runc"


def _find_runtime(runtime: str) -> str:
    if "/" in runtime:
        path = runtime if os.path.isfile(runtime) and os.access(runtime, os.X_OK) else None
    elif runtime in RUNTIMES:
        path = _which(runtime)
    else:
        raise RunnerError(f"unknown OCI runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
    if path is None:
        raise RunnerError(
            f"the isolated stage needs the OCI runtime {runtime!r}, which is not installed "
            "(apt-get install runc), or use the fly stage"
        )
    return os.path.abspath(path)


def _is_hybrid_cgroup_host() -> bool:
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as handle:
            mounts = [line.split()[1:3] for line in handle if len(line.split()) >= 3]
    except OSError:
        return False
    has_v1 = any(fstype == "cgroup" for _, fstype in mounts)
    return has_v1 and [UNIFIED_MOUNT, "cgroup2"] in mounts


def _cgroup_mount_points() -> list[str]:
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as handle:
            fields = [line.split() for line in handle]
    except OSError:
        return []
    return [f[1] for f in fields if len(f) >= 3 and f[2] in ("cgroup", "cgroup2")]


def _runtime_argv(runtime_path: str, state: str, log: str, *command: str) -> list[str]:
    argv = [runtime_path, "--root", state, "--log", log, "--log-format", "json", *command]
    if _flavour(runtime_path) == "crun" and _is_hybrid_cgroup_host():
        unshare = _which("unshare")
        if unshare is None:
            raise RunnerError("crun needs unshare (util-linux) on this hybrid cgroup host")
        script = f'umount {UNIFIED_MOUNT} 2>/dev/null; exec "$@"'
        argv = [
            unshare,
            "--mount",
            "--propagation",
            "private",
            "/bin/sh",
            "-c",
            script,
            "sh",
            *argv,
        ]
    return argv


def _spawn(
    argv: list[str],
    signal_mask: Iterable[int],
    *,
    quiet: bool = False,
    stdio: Sequence[int] | None = None,
    extra_fds: Sequence[int] = (),
) -> int:
    """Start a program with the caller's stdio (``stdio``: three descriptors to use
    instead; ``quiet``: ``/dev/null``), ``extra_fds`` as its descriptors 3, 4 ...,
    default dispositions for the signals Python ignores, and ``signal_mask``."""
    actions: list[tuple[Any, ...]] = []
    if quiet:
        actions = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
    elif stdio is not None:
        actions = [(os.POSIX_SPAWN_DUP2, source, fd) for fd, source in enumerate(stdio)]
    # copies above the targets first: a source may itself be 3 or 4
    copies = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3 + len(extra_fds)) for fd in extra_fds]
    actions += [(os.POSIX_SPAWN_DUP2, copy, 3 + i) for i, copy in enumerate(copies)]
    try:
        return os.posix_spawn(
            argv[0],
            argv,
            os.environ,
            file_actions=actions,
            setsigmask=signal_mask,
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),  # Python ignores them; the app must not
        )
    finally:
        for copy in copies:
            os.close(copy)


class _StdioRelay:
    """Pipes between the caller's stdio and a runtime's, copied by threads.

    crun hands its own stdin, stdout and stderr to the app and changes their owner to
    the app's user: the caller's terminal, log file, or even the host's ``/dev/null``
    would then belong to that uid. Given these pipes instead, crun changes only them:
    all three are relayed. runc makes such pipes for the app itself; only its stderr is
    relayed. On the way, stderr loses the runtime's own error lines: runc and crun print
    each error they log on their stderr too, and the runner reports it once
    (:func:`_run_container`). The threads are made while the caller blocks the forwarded
    signals, so they inherit that mask.

    Attributes:
        unshown: the JSON log entry of crun's failure to execute the app's program that
            ended its stderr (:func:`_crun_exec_entry`), left out for the runner to
            report; else empty.
    """

    def __init__(self, log: str, flavour: str) -> None:
        self._log = log
        self._crun = flavour == "crun"
        self._log_read: tuple[int, list[str]] = (0, [])  # the log's size when last parsed, its errors
        self._ends: dict[int, tuple[int, int]] = {}  # stdio number -> (the runtime's end, ours)
        self.unshown = b""
        for fd in (0, 1, 2) if self._crun else (2,):
            read, write = os.pipe()
            self._ends[fd] = (read, write) if fd == 0 else (write, read)
        self._stop_r, self._stop_w = os.pipe()
        self._threads: list[threading.Thread] = []

    @property
    def child_fds(self) -> tuple[int, int, int]:
        """The descriptors the runtime gets as its stdin, stdout and stderr (the caller's
        own for a stream not relayed)."""
        stdin, stdout, stderr = (self._ends[fd][0] if fd in self._ends else fd for fd in (0, 1, 2))
        return stdin, stdout, stderr

    def start(self) -> None:
        """Close the runtime's ends here and start copying."""
        copiers = {0: self._copy_stdin, 1: self._copy, 2: self._copy_stderr}
        for fd, (theirs, ours) in self._ends.items():
            os.close(theirs)
            self._threads.append(threading.Thread(target=copiers[fd], args=(ours,), daemon=True))
        for thread in self._threads:
            thread.start()

    def finish(self, timeout: float = 5.0) -> None:
        """Stop reading stdin (waiting ``timeout`` seconds for it), wait for the app's
        output to drain whole, close everything.

        The output is copied to its end however slowly the caller's stdout and stderr
        are read (a pager, a pipe): called once the runtime has exited and the container
        was deleted, no process holds the runtime's ends any more, so each copy ends.
        """
        os.write(self._stop_w, b"x")
        for thread, fd in zip(self._threads, self._ends):
            thread.join(timeout if fd == 0 else None)
        # each copier closes its own end; never started, the runtime's are still open here too
        ends = [] if self._threads else [end for pair in self._ends.values() for end in pair]
        for fd in (*ends, self._stop_r, self._stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _copy_stdin(self, target: int) -> None:
        try:
            while True:
                ready, _, _ = select.select([0, self._stop_r], [], [])
                if self._stop_r in ready:
                    return
                data = os.read(0, _RELAY_CHUNK)
                if not data:
                    return
                write_all(target, data)
        except OSError:  # stdin closed or unreadable; the app closed its stdin
            return
        finally:
            os.close(target)

    @staticmethod
    def _copy(source: int) -> None:
        """Copy ``source`` to stdout until the runtime closes its end, then close
        ``source``. Closed also when stdout cannot be written (its reader went away:
        ``run IMG | head``), so that the writer's next write fails (``EPIPE``), as it
        would on that pipe, rather than block on a full one forever."""
        try:
            while data := os.read(source, _RELAY_CHUNK):
                write_all(1, data)
        except OSError:
            return
        finally:
            os.close(source)

    def _copy_stderr(self, source: int) -> None:
        """Copy the runtime's stderr without the errors it logged, as :meth:`_copy` does.

        Under crun, a last line that reads like crun's failure to execute the app's
        program (:func:`_reads_like_crun_exec_error`) is held back until more output
        comes, the end, or :data:`_CRUN_HOLD_SECONDS` without output: crun's container
        process prints it before crun logs it, so it is compared with the log then (it
        was shown twice). Such a line in JSON that ends the output is crun's container
        process failing in ``execve``, an error crun logs nowhere else: it goes to
        :attr:`unshown`, not to stderr. An app's own line that reads so is shown that
        late at most (it was held until more output came, under runc too: for ever when
        the app then waited).
        """
        def show(data: bytes) -> None:
            write_all(2, _without_logged_errors(data, self._logged_errors()))

        held = b""
        try:
            while True:
                if held and not select.select([source], [], [], _CRUN_HOLD_SECONDS)[0]:
                    show(held)
                    held = b""
                data = os.read(source, _RELAY_CHUNK)
                if not data:
                    break
                data, held = held + data, b""
                start = data.rfind(b"\n", 0, len(data) - 1) + 1
                if self._crun and _reads_like_crun_exec_error(data[start:]):
                    data, held = data[:start], data[start:]
                show(data)
            if _crun_exec_entry(held) is not None:
                self.unshown = held
            elif held:
                show(held)
        except OSError:
            return
        finally:
            os.close(source)

    def _logged_errors(self) -> list[str]:
        """The error messages of the runtime's log, parsed again only when it has grown
        (the app's stderr comes through here a chunk at a time; the log is empty but on
        the runtime's own failure)."""
        try:
            size = os.stat(self._log).st_size
        except OSError:
            return []
        if size != self._log_read[0]:
            self._log_read = (size, _runtime_error_messages(self._log))
        return self._log_read[1]


def _without_logged_errors(data: bytes, messages: Sequence[str]) -> bytes:
    """``data`` (read from a runtime's stderr) without a last line that is one of the
    error ``messages`` of its JSON log: the runtime writes each error to its log, then
    prints it, so a line it printed is in the log by the time it is read here."""
    for message in messages:
        line = f"{message}\n".encode("utf-8", "surrogateescape")
        if data.endswith(line):
            return data[: -len(line)]
    return data


def _run_container(runtime_path: str, state: str, bundle: str, cid: str, spec: ProcessSpec,
                   preserve_fds: Sequence[int] = ()) -> int:
    log = os.path.join(bundle, "runtime.log")
    preserve = ["--preserve-fds", str(len(preserve_fds))] if preserve_fds else []
    argv = _runtime_argv(runtime_path, state, log, "run", *preserve, "--bundle", bundle, cid)
    watched = {*FORWARDED_SIGNALS, signal.SIGCHLD}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    relay = _StdioRelay(log, _flavour(runtime_path))
    pid = None
    try:
        try:
            pid = _spawn(argv, old_mask, stdio=relay.child_fds, extra_fds=preserve_fds)
        except OSError as err:
            raise RunnerError(f"starting {runtime_path}: {err.strerror or err}") from err
        relay.start()
        runtime_pid = pid
        status = wait_forwarding(
            pid, watched, force_stop=lambda: _kill(runtime_path, state, bundle, cid, runtime_pid, old_mask))
        pid = None
    finally:
        try:
            if pid is not None:  # interrupted by an exception: do not leave runc behind
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
            _delete(runtime_path, state, bundle, cid, old_mask)
            relay.finish()
        finally:
            discard_pending(watched)
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    messages = _runtime_error_messages(log)
    if relay.unshown and status != 0:  # crun's container process could not execute the app
        messages.append(str(_crun_exec_entry(relay.unshown)))
    elif relay.unshown:  # the app ran: the line was its own
        with contextlib.suppress(OSError):
            write_all(2, relay.unshown)
    errors = _joined_errors(messages)
    if status != 0 and errors:
        failure = (_exec_failure if _flavour(runtime_path) == "runc" else _crun_exec_failure)(messages, spec)
        if failure is not None:
            raise failure
        raise RunnerError(f"starting the app with {os.path.basename(runtime_path)}: {errors}")
    return status


def _kill(runtime_path: str, state: str, bundle: str, cid: str, runtime_pid: int, signal_mask: Iterable[int]) -> None:
    """Kill the container's processes (``runc kill ID KILL``), so that ``runc run``
    (``runtime_pid``) ends with status 137. If the runtime cannot (the app ended
    meanwhile, and ``runc run`` is tearing down; a runtime that hangs, given
    :data:`_KILL_WAIT_SECONDS`), ``runc run`` gets as long again to end by itself before
    it is killed, and :func:`_delete` then kills what is left."""
    try:
        pid = _spawn(_runtime_argv(runtime_path, state, os.path.join(bundle, "kill.log"), "kill", cid, "KILL"),
                     signal_mask, quiet=True)
        ended = _wait_child(pid, _KILL_WAIT_SECONDS, reap=True)
        if ended is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        elif ended.si_code == os.CLD_EXITED and ended.si_status == 0:
            return
    except (OSError, RunnerError):
        pass
    if _wait_child(runtime_pid, _KILL_WAIT_SECONDS, reap=False) is None:
        os.kill(runtime_pid, signal.SIGKILL)


_KILL_WAIT_SECONDS = 2.0
"""How long :func:`_kill` waits for ``runc kill`` to end, and then for ``runc run`` to
end by itself, in seconds."""


def _wait_child(pid: int, seconds: float, *, reap: bool) -> os.waitid_result | None:
    """The ``waitid`` result (``si_code``, ``si_status``) of child ``pid`` once it ends,
    or ``None`` if it is still running after ``seconds``. With ``reap`` false it is left
    for the caller to reap (``WNOWAIT``)."""
    deadline = time.monotonic() + seconds
    while (info := os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | (0 if reap else os.WNOWAIT))) is None:
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)
    return info


def _delete(
    runtime_path: str, state: str, bundle: str, cid: str, signal_mask: Iterable[int]
) -> None:
    """Remove the container and its cgroups, whatever state it is in."""
    log = os.path.join(bundle, "delete.log")
    try:
        pid = _spawn(
            _runtime_argv(runtime_path, state, log, "delete", "--force", cid),
            signal_mask,
            quiet=True,
        )
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            logger.warning("deleting container %s: %s", cid, _joined_errors(_runtime_error_messages(log)) or "failed")
    except (OSError, RunnerError) as err:
        logger.warning("deleting container %s: %s", cid, err)
    _remove_cgroups(cid)


def _remove_cgroups(cid: str) -> list[str]:
    """Remove the container's cgroup in every hierarchy (one that still holds a process
    stays, with a warning); returns the groups removed."""
    removed = []
    for mount_point in _cgroup_mount_points():
        group = os.path.join(mount_point, cid)
        try:
            os.rmdir(group)
        except FileNotFoundError:
            continue
        except OSError as err:
            logger.warning("removing cgroup %s: %s", group, err.strerror)
            continue
        removed.append(group)
    return removed


_CONTAINER_ID = re.compile(re.escape(CONTAINER_PREFIX) + "[0-9a-f]{16}")


def _pod_containers(pod_path: str) -> list[str]:
    """The ids of the containers runs in ``pod_path`` started, as their bundles
    (``bundle-*/config.json``) name them."""
    found = []
    for config in sorted(glob.glob(os.path.join(glob.escape(pod_path), "bundle-*", "config.json"))):
        try:
            with open(config, encoding="utf-8") as handle:
                cid = str(json.load(handle)["linux"]["cgroupsPath"]).lstrip("/")
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if _CONTAINER_ID.fullmatch(cid):  # ours: never a path elsewhere in the hierarchy
            found.append(cid)
    return found


def container_running(pod_path: str) -> bool:
    """Whether a process of a container started in ``pod_path`` still runs (in one of
    its cgroups), even when nothing holds the pod's lock any more (an app that closed
    the descriptors it was given, after its runner and runc were killed)."""
    for cid in _pod_containers(pod_path):
        for mount_point in _cgroup_mount_points():
            procs = os.path.join(mount_point, cid, "cgroup.procs")
            with contextlib.suppress(OSError), open(procs, encoding="ascii") as handle:
                if handle.read().strip():
                    return True
    return False


def remove_leftover_cgroups(pod_path: str) -> list[str]:
    """Remove the cgroups of the containers a run in ``pod_path`` started, for a pod
    whose lock nobody holds: its runner, runc and app are gone, and a ``kill -9`` of the
    runner and runc left the groups that ``runc delete`` would have removed (the bundle,
    ``bundle-*/config.json``, names them).

    Returns:
        The cgroup directories removed.
    """
    removed = []
    for cid in _pod_containers(pod_path):
        removed += _remove_cgroups(cid)
    return removed


def _runtime_error_messages(log: str) -> list[str]:
    """The error messages of a runtime's JSON log, as written, in order."""
    messages = []
    try:
        with open(log, encoding="utf-8", errors="surrogateescape") as handle:
            for line in handle:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(entry, dict) and entry.get("level") in ERROR_LEVELS:
                    messages.append(str(entry.get("msg", "")))
    except OSError:
        return []
    return messages


def _joined_errors(messages: Sequence[str]) -> str:
    """A runtime's error ``messages`` (:func:`_runtime_error_messages`), joined; the tail if long."""
    text = "; ".join(message.strip() for message in messages if message.strip())
    return text if len(text) <= MAX_ERROR_CHARS else "…" + text[-MAX_ERROR_CHARS:]


#: ``errno`` numbers by Go's text of them (glibc's, lower-cased: ``permission denied``).
_ERRNO_BY_TEXT: Mapping[str, int] = {os.strerror(number).lower(): number for number in errno.errorcode}


def _exec_failure(messages: Sequence[str], spec: ProcessSpec) -> ExecError | None:
    """The :class:`ExecError` a runc error means, if runc could not execute the app's
    program; else ``None``.

    runc checks the program inside the container, as the app's user and with the
    volumes mounted, before it starts it (Go's ``exec.LookPath``, then ``access``), and
    fails with ``exec: "NAME": [stat PATH: ]REASON`` or ``exec PATH: REASON``: REASON is
    Go's text of an ``errno`` or ``executable file not found in $PATH``. A program that
    passes them and then fails in ``execve`` (exec format error, a missing interpreter)
    is reported by runc 1.1 as the app's own exit status 1, with ``exec PATH: REASON``
    on the app's stderr, as ``docker run`` shows it: it cannot be told from the app's.
    crun words its errors otherwise (:func:`_crun_exec_failure`).
    """
    program = spec.argv[0]
    path = re.escape(program) if "/" in program else rf"\S*/{re.escape(program)}"
    pattern = re.compile(rf"(?:^|: )exec(?:: {re.escape(go_quoted(program))}| {path}): (?:.*: )?(?P<reason>[^:]*)\Z")
    for message in reversed(messages):
        match = pattern.search(message.strip())
        if match is None:
            continue
        if match["reason"] == "executable file not found in $PATH":
            return ExecError(program, NOT_IN_PATH.format(spec.env.get("PATH", "")), errno.ENOENT)
        number = _ERRNO_BY_TEXT.get(match["reason"])
        if number is not None:
            return ExecError(program, os.strerror(number), number)
    return None


#: crun's errors when it cannot execute the app's program (crun 1.8): the program not
#: found (``executable file `NAME` not found in $PATH: REASON``, for a path as for a bare
#: name) or refused (``open executable: REASON``), both logged; or ``execve`` failed
#: (``exec container process `PATH`: REASON``, with ``(missing dynamic library?) ``
#: before PATH for ``ENOENT``: PATH is the file found, ``/bin/sh`` for ``sh``), which
#: its container process prints on stderr as a JSON log entry (:func:`_crun_exec_entry`).
_CRUN_EXEC_ERRORS = (
    re.compile(r"executable file `(?P<program>.*)` not found(?: in \$PATH)?: (?P<reason>[^:]*)\Z"),
    re.compile(r"open executable: (?P<reason>[^:]*)\Z"),
    re.compile(r"exec container process (?P<interpreter>\(missing dynamic library\?\) )?`(?P<path>.*)`: "
               r"(?P<reason>[^:]*)\Z"),
)


def _crun_exec_entry(line: bytes) -> str | None:
    """The message of ``line`` if it is an error entry of crun's JSON log that reads like
    crun's failure to execute the app's program (:data:`_CRUN_EXEC_ERRORS`); else ``None``.
    crun's container process prints one on its stderr when ``execve`` fails (exec format
    error, a missing interpreter): that error is in crun's log file only when it fails
    earlier."""
    try:
        entry = json.loads(line)
    except ValueError:  # not JSON, or not UTF-8
        return None
    if not isinstance(entry, dict) or str(entry.get("level")) not in ERROR_LEVELS:
        return None
    message = str(entry.get("msg", ""))
    return message if _is_crun_exec_error(message) else None


def _is_crun_exec_error(text: str) -> bool:
    """Whether ``text`` is one of :data:`_CRUN_EXEC_ERRORS`."""
    return any(pattern.search(text) for pattern in _CRUN_EXEC_ERRORS)


def _reads_like_crun_exec_error(line: bytes) -> bool:
    """Whether ``line``, read from crun's stderr, is a whole line (ending in a newline)
    that reads like crun's failure to execute the app's program: one of
    :data:`_CRUN_EXEC_ERRORS` as text, or in a JSON log entry (:func:`_crun_exec_entry`)."""
    text = line.decode("utf-8", "replace")
    if not text.endswith("\n"):
        return False
    return _is_crun_exec_error(text[:-1]) or _crun_exec_entry(line) is not None


def _crun_exec_failure(messages: Sequence[str], spec: ProcessSpec) -> ExecError | None:
    """The :class:`ExecError` a crun error means, if crun could not execute the app's
    program; else ``None``: what :func:`_exec_failure` is for runc.

    crun 1.8 exits 1 then (not 127 or 126: its status says nothing), after logging
    ``executable file `NAME` not found in $PATH: REASON`` or
    ``open executable: REASON``, or printing ``exec container process `PATH`: REASON``
    (``messages`` holds it then: :class:`_StdioRelay`); REASON is ``strerror``'s text
    (``No such file or directory``, ``Permission denied``, ``Operation not permitted``
    for a directory, ``Exec format error``). As in the fly stage, a bare name not found
    says so with the image's ``PATH``, and a program whose interpreter or dynamic loader
    is missing (crun's ``(missing dynamic library?)``) says that the file exists.
    """
    program = spec.argv[0]
    for message in reversed(messages):
        for pattern in _CRUN_EXEC_ERRORS:
            match = pattern.search(message.strip())
            if match is None or not _crun_names(match, program):
                continue
            number = _ERRNO_BY_TEXT.get(match["reason"].lower())
            if number is None:
                continue
            if match.groupdict().get("interpreter"):
                return ExecError(program, os.strerror(number) + INTERPRETER_MISSING, number)
            if number == errno.ENOENT and "/" not in program:
                return ExecError(program, NOT_IN_PATH.format(spec.env.get("PATH", "")), number)
            return ExecError(program, os.strerror(number), number)
    return None


def _crun_names(match: re.Match[str], program: str) -> bool:
    """Whether a match of :data:`_CRUN_EXEC_ERRORS` is about ``program``: its ``program``
    is ``program`` as written; its ``path``, the file crun found for it, is ``program``
    or, for a bare name or a relative path, ends with it (``/bin/sh``, ``//./run.sh``)."""
    named = match.groupdict()
    if named.get("program") is not None:
        return named["program"] == program
    path = named.get("path")
    return path is None or path == program or (not program.startswith("/") and path.endswith("/" + program))
