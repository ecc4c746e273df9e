"""Build the OCI runtime configuration (``config.json``) of the ``isolated`` stage.

Pure functions: everything that depends on the host (its current ``RLIMIT_NOFILE``,
its capability bounding set, which device nodes it has, the generated ``/etc`` files)
arrives as arguments. The result follows the OCI runtime specification 1.0.2
(``config.md``, ``config-linux.md``) and is what runc 1.1 and crun 1.8 accept.

What the app gets, and where it comes from:

* namespaces pid, mount, uts and ipc, plus network unless ``net="host"`` (the runtime
  brings up ``lo`` in a new network namespace); the cgroup namespace stays the host's,
  as Docker does on cgroup v1;
* Docker's default capabilities (moby ``oci/caps/defaults.go``): in the bounding,
  effective and permitted sets for root; only in the bounding set for any other user,
  as moby ``oci.SetCapabilities`` does since the fix for CVE-2022-24769, so that a
  non-root app has the capabilities ``execve`` would give it (none). The inheritable
  and ambient sets are always empty. ``noNewPrivileges`` is set;
* Docker's masked and read-only paths (moby ``oci/defaults.go``);
* ``/proc``, ``/sys`` (read-only), ``/sys/fs/cgroup`` (read-only, the app's own
  cgroups), ``/dev/pts`` (a new devpts instance), ``/dev/shm`` and ``/dev/mqueue``;
* **no** tmpfs on ``/dev``: the image's own ``/dev`` directory is the app's ``/dev``, so
  an image's entries (a ``/dev/log`` link) stay visible (``decisions.md``, "Runner").
  The host's null, zero, full, random, urandom and tty are bind-mounted onto their
  names there (a bind keeps working even when the tree lives on a ``nodev`` file
  system, where the node runc would create could not be opened). runc itself adds the
  ``/dev/fd``, ``/dev/stdin``, ``/dev/stdout`` and ``/dev/stderr`` links when the image
  has no entry of that name, and makes ``/dev/ptmx`` a link to ``pts/ptmx``;
* volumes (appc ``spec/ace.md``, "Volumes"): bind mounts (``rbind``, or ``bind`` for a
  volume with ``recursive=false``; ``rprivate``; ``rw``, or ``ro`` and ``rro``: the
  mounts below a read-only volume's source are read-only too, as rkt makes them (runc 1.1
  and crun apply it with ``mount_setattr``; crun 1.8 binds them even for ``bind``)) after
  the ``/etc`` binds, onto destinations that
  :func:`runner.volumes.prepare_volumes` resolved inside the rootfs, so they contain no
  symbolic link and the runtime follows none of the image's;
* a device cgroup that denies every device except the runtime's defaults (null, zero,
  full, random, urandom, tty, ptmx and pts): device nodes shipped in an image cannot
  be opened;
* ``resources``: a memory limit in bytes (``memory.limit_in_bytes`` on cgroup v1) and
  a CFS quota of ``cpu_millis * 100`` microseconds per 100 ms period;
* ``RLIMIT_NOFILE`` as the runner has it (never above its hard limit: the runner may
  lack ``CAP_SYS_RESOURCE``).

The isolator parsers read appc ``spec/ace.md`` ("Resource Isolators"): values are
Kubernetes-style quantities, as rkt reads them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any

from docker2aci.errors import RunnerError
from runner.spec import ProcessSpec
from runner.volumes import Bind

#: The OCI runtime specification version written into ``config.json``.
OCI_VERSION = "1.0.2"

#: Docker's default capabilities (moby ``oci/caps/defaults.go``).
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

#: Every Linux capability, by name, with its number: the kernel's list
#: (``linux/capability.h``, up to ``CAP_LAST_CAP`` 40 since Linux 5.9), which runc and
#: Docker know by these names. An isolator or ``config.json`` may name no other.
CAPABILITIES: Mapping[str, int] = MappingProxyType({name: number for number, name in enumerate((
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
    "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
))})

#: Paths hidden from the app (moby ``oci/defaults.go`` ``DefaultLinuxSpec``).
MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)

#: Paths the app may read but not write (moby ``oci/defaults.go``).
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

#: Network modes: ``none`` (a new network namespace with only ``lo``) or ``host``.
NET_MODES = ("none", "host")

#: The CFS period, in microseconds; the quota is ``cpu_millis * CPU_PERIOD_US / 1000``.
CPU_PERIOD_US = 100_000

#: The smallest CPU limit, in millicores: the kernel refuses a quota below 1 ms.
MIN_CPU_MILLIS = 10

#: The largest CPU limit, in millicores (a quota that still fits the kernel's int64).
MAX_CPU_MILLIS = 2**40

#: The smallest memory limit, in bytes (Docker's minimum): below it, the runtime's own
#: init process is killed before the app starts.
MIN_MEMORY_BYTES = 6 * 1024 * 1024

#: The largest memory limit, in bytes (the kernel's counter is an int64).
MAX_MEMORY_BYTES = 2**63 - 1

#: Options of a bind mount of a generated ``/etc`` file (``/etc/hosts``): writable, as
#: Docker's, since the file is the run's own copy.
ETC_BIND_OPTIONS = ("bind", "rw", "nosuid", "nodev", "noexec")

#: Options of a bind mount of a host device node (``/dev/null``).
DEVICE_BIND_OPTIONS = ("bind", "nosuid", "noexec")

#: Options of a volume's bind mount (``"bind"`` instead of ``"rbind"`` for a
#: non-recursive volume), followed by :data:`VOLUME_READ_ONLY_OPTIONS` or ``"rw"``.
VOLUME_BIND_OPTIONS = ("rbind", "rprivate")

#: Options of a read-only volume: ``"rro"`` makes the mounts below it read-only too.
VOLUME_READ_ONLY_OPTIONS = ("ro", "rro")

_HOSTNAME_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_HOSTNAME_LABEL}(?:\.{_HOSTNAME_LABEL})*")
_MAX_HOSTNAME = 64  # HOST_NAME_MAX on Linux

_QUANTITY = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?P<suffix>[A-Za-z]*)")

#: Memory suffixes and their multipliers (Kubernetes quantities as rkt reads them; ``K``
#: is accepted beside the canonical ``k``).
MEMORY_SUFFIXES: Mapping[str, int] = {
    "": 1,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}

#: The appc isolators the isolated stage applies.
LIMIT_ISOLATORS = ("resource/memory", "resource/cpu")
RETAIN_SET = "os/linux/capabilities-retain-set"
REMOVE_SET = "os/linux/capabilities-remove-set"
NO_NEW_PRIVILEGES = "os/linux/no-new-privileges"
SUPPORTED_ISOLATORS = (*LIMIT_ISOLATORS, RETAIN_SET, REMOVE_SET, NO_NEW_PRIVILEGES)
"""The isolators the isolated stage applies (appc ``spec/types.md``, "Isolators";
:func:`isolator_limits`, :func:`isolator_capabilities`)."""


def parse_memory(text: str) -> int:
    """Parse a memory quantity (appc ``resource/memory``, ``--memory``) into bytes.

    A decimal number, optionally with a fraction, and a suffix: none (bytes), ``k``/``K``,
    ``M``, ``G``, ``T``, ``P``, ``E`` (powers of 1000) or ``Ki``, ``Mi``, ``Gi``, ``Ti``,
    ``Pi``, ``Ei`` (powers of 1024). A fractional byte count is rounded up
    (``1.5Ki`` → 1536).

    Args:
        text: the quantity, e.g. ``"128M"``, ``"64Mi"``, ``"1.5G"``, ``"1048576"``.

    Returns:
        The number of bytes, at least 1.

    Raises:
        RunnerError: the text is not a quantity, its suffix is unknown (``m`` is refused:
            it means thousandths, not megabytes), or the value is zero or too large.
    """
    number, suffix = _split_quantity(text, "memory")
    if suffix not in MEMORY_SUFFIXES:
        hint = " (m means thousandths: write M or Mi for megabytes)" if suffix == "m" else ""
        raise RunnerError(
            f"memory {text!r}: unknown suffix {suffix!r}{hint}; use none (bytes), "
            f"{', '.join(s for s in MEMORY_SUFFIXES if s)}"
        )
    value = int((number * MEMORY_SUFFIXES[suffix]).to_integral_value(ROUND_CEILING))
    if value <= 0:
        raise RunnerError(f"memory {text!r}: must be more than 0 bytes")
    if value > MAX_MEMORY_BYTES:
        raise RunnerError(f"memory {text!r}: larger than {MAX_MEMORY_BYTES} bytes")
    return value


def parse_cpu(text: str) -> int:
    """Parse a CPU quantity (appc ``resource/cpu``, ``--cpu``) into millicores.

    Either cores (``"1"``, ``"0.5"``, ``"2"``) or millicores with the ``m`` suffix
    (``"500m"``). A fractional millicore is rounded up.

    Args:
        text: the quantity.

    Returns:
        Millicores (1000 = one CPU's full time), at least 1.

    Raises:
        RunnerError: the text is not a quantity, has another suffix, or is zero or too
            large.
    """
    number, suffix = _split_quantity(text, "cpu")
    if suffix not in ("", "m"):
        raise RunnerError(
            f'cpu {text!r}: unknown suffix {suffix!r}; write cores ("1", "0.5") '
            'or millicores ("500m")'
        )
    millis = number if suffix == "m" else number * 1000
    value = int(millis.to_integral_value(ROUND_CEILING))
    if value <= 0:
        raise RunnerError(f"cpu {text!r}: must be more than 0")
    if value > MAX_CPU_MILLIS:
        raise RunnerError(f"cpu {text!r}: larger than {MAX_CPU_MILLIS}m")
    return value


def _split_quantity(text: object, what: str) -> tuple[Decimal, str]:
    if not isinstance(text, str):
        raise RunnerError(f"{what} {text!r}: not a string")
    match = _QUANTITY.fullmatch(text.strip())
    if match is None:
        raise RunnerError(
            f"{what} {text!r}: not a quantity (a number and an optional suffix, e.g. "
            + ('"128M", "64Mi")' if what == "memory" else '"500m", "1")')
        )
    try:
        return Decimal(match["number"]), match["suffix"]
    except InvalidOperation as err:  # pragma: no cover - the pattern admits only numbers
        raise RunnerError(f"{what} {text!r}: not a number") from err


def isolator_limits(isolators: Iterable[Mapping[str, Any]] | None) -> tuple[int | None, int | None]:
    """Read the memory and CPU limits from an appc app's ``isolators``.

    ``resource/memory`` and ``resource/cpu`` give their ``limit``; a ``request`` alone
    sets no limit (rkt applies only limits). The capability isolators are
    :func:`isolator_capabilities`'; others are not applied: see
    :func:`unsupported_isolators`. A later isolator of the same name wins.

    Args:
        isolators: the manifest's ``app.isolators`` (``None`` when absent).

    Returns:
        ``(memory_bytes, cpu_millis)``, each ``None`` when not limited.

    Raises:
        RunnerError: the list or an isolator is malformed, or a limit does not parse.
    """
    memory: int | None = None
    cpu: int | None = None
    for name, value in _isolator_entries(isolators):
        if name not in LIMIT_ISOLATORS:
            continue
        if not isinstance(value, Mapping):
            raise RunnerError(f"isolator {name}: its value is not an object")
        limit = value.get("limit")
        if limit is None:
            continue
        if not isinstance(limit, str):
            raise RunnerError(f"isolator {name}: limit {limit!r} is not a string")
        if name == "resource/memory":
            memory = parse_memory(limit)
        else:
            cpu = parse_cpu(limit)
    return memory, cpu


def isolator_capabilities(isolators: Iterable[Mapping[str, Any]] | None,
                          default: Sequence[str] = DEFAULT_CAPABILITIES) -> tuple[list[str], list[str]]:
    """The app's capabilities by its ``os/linux/capabilities-*`` isolators (appc
    ``spec/types.md``; rkt's capabilities guide): ``remove-set`` takes its ``set`` out of
    ``default``; ``retain-set`` keeps only its ``set`` of them. A capability a retain set
    names beyond ``default`` is not granted: an image never widens what the runner gives
    (rkt lets it, with ``CAP_SYS_ADMIN`` among them). A ``no-new-privileges`` isolator
    must be ``true`` or ``false``; the stage sets ``no_new_privs`` either way.

    Args:
        isolators: the manifest's ``app.isolators``.
        default: the capabilities without any isolator (Docker's default set).

    Returns:
        ``(capabilities, refused)``: the capabilities to give, in ``default``'s order, and
        those a retain set asked for beyond ``default``, not given.

    Raises:
        RunnerError: an isolator is malformed (a ``set`` that is not a list of strings,
            or names a capability not in :data:`CAPABILITIES`: the message names it), or
            both a retain and a remove set are given (rkt refuses them together).
    """
    retain: list[str] | None = None
    remove: list[str] | None = None
    for name, value in _isolator_entries(isolators):
        if name == NO_NEW_PRIVILEGES:
            if not isinstance(value, bool):
                raise RunnerError(f"isolator {name}: {value!r} is not true or false")
        if name not in (RETAIN_SET, REMOVE_SET):
            continue
        names = value.get("set") if isinstance(value, Mapping) else None
        if not isinstance(names, list) or not all(isinstance(c, str) for c in names):
            raise RunnerError(f"isolator {name}: its value is not {{\"set\": [\"CAP_...\", ...]}}: {value!r}")
        unknown = [c for c in names if c not in CAPABILITIES]
        if unknown:
            raise RunnerError(f"isolator {name}: unknown capabilit{'y' if len(unknown) == 1 else 'ies'} "
                              f"{', '.join(map(repr, unknown))} (not a Linux capability)")
        if name == RETAIN_SET:
            retain = list(names)
        else:
            remove = list(names)
    if retain is not None and remove is not None:
        raise RunnerError(f"isolators {RETAIN_SET} and {REMOVE_SET} cannot be given together")
    if retain is not None:
        return [c for c in default if c in retain], [c for c in dict.fromkeys(retain) if c not in default]
    return [c for c in default if c not in (remove or ())], []


def unsupported_isolators(isolators: Iterable[Mapping[str, Any]] | None) -> list[str]:
    """Name the isolators of an app that the isolated stage does not apply.

    Args:
        isolators: the manifest's ``app.isolators``.

    Returns:
        Their names, in order, without duplicates.

    Raises:
        RunnerError: the list or an isolator is malformed.
    """
    names: list[str] = []
    for name, _ in _isolator_entries(isolators):
        if name not in SUPPORTED_ISOLATORS and name not in names:
            names.append(name)
    return names


def _isolator_entries(isolators: Iterable[Mapping[str, Any]] | None) -> list[tuple[str, object]]:
    if isolators is None:
        return []
    if isinstance(isolators, (str, bytes, Mapping)) or not isinstance(isolators, Iterable):
        raise RunnerError("manifest field app.isolators is not a list")
    entries = []
    for item in isolators:
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise RunnerError(f"manifest field app.isolators has a malformed entry: {item!r}")
        entries.append((item["name"], item.get("value")))
    return entries


def check_hostname(hostname: str) -> str:
    """Check a host name for the app's UTS namespace.

    Args:
        hostname: dot-separated labels of letters, digits and inner hyphens.

    Returns:
        The host name, unchanged.

    Raises:
        RunnerError: the name is empty, longer than 64 characters or not of that form.
    """
    if (
        not isinstance(hostname, str)
        or len(hostname) > _MAX_HOSTNAME
        or not _HOSTNAME.fullmatch(hostname)
    ):
        raise RunnerError(
            f"hostname {hostname!r}: use at most {_MAX_HOSTNAME} letters, digits, "
            "hyphens and dots (labels neither start nor end with a hyphen)"
        )
    return hostname


def runtime_config(
    spec: ProcessSpec,
    rootfs: str,
    *,
    hostname: str,
    net: str = "none",
    memory_bytes: int | None = None,
    cpu_millis: int | None = None,
    etc_binds: Sequence[tuple[str, str]] = (),
    device_binds: Sequence[tuple[str, str]] = (),
    volume_binds: Sequence[Bind] = (),
    cgroups_path: str,
    nofile: tuple[int, int] | None = None,
    capabilities: Sequence[str] = DEFAULT_CAPABILITIES,
) -> dict[str, Any]:
    """Build the OCI runtime ``config.json`` of an app (see the module's description).

    Args:
        spec: the app's process (argv, environment, working directory, identity).
        rootfs: the absolute host path of the rendered tree.
        hostname: the app's host name (:func:`check_hostname`).
        net: ``"none"`` (a private network namespace with ``lo`` only) or ``"host"``.
        memory_bytes: the memory limit, or ``None``.
        cpu_millis: the CPU limit in millicores, or ``None``.
        etc_binds: ``(host file, path in the app)`` pairs bind-mounted writable
            (the run's generated ``/etc/hosts`` and ``/etc/resolv.conf``), in order.
        device_binds: ``(host device, path in the app)`` pairs bind-mounted read-write
            (``("/dev/null", "/dev/null")``), in order.
        volume_binds: the volumes (:func:`runner.volumes.prepare_volumes`), mounted in
            order after the other binds: ``{"destination": bind.target, "type": "bind",
            "source": bind.source, "options": ["rbind", "rprivate", "ro", "rro" | "rw"]}``
            (``"bind"`` when ``bind.recursive`` is false).
        cgroups_path: the app's cgroup, absolute (``/docker2aci/<id>``): relative to
            the root of each cgroup hierarchy.
        nofile: ``(soft, hard)`` ``RLIMIT_NOFILE`` for the app (the runner's own, so
            never above its hard limit); ``None`` leaves the runtime's.
        capabilities: the capability set (``CAP_*`` names); Docker's by default.

    Returns:
        The configuration, ready for :func:`json.dump`.

    Raises:
        RunnerError: an argument is out of range (unknown ``net``, bad host name,
            limits below :data:`MIN_MEMORY_BYTES` or :data:`MIN_CPU_MILLIS`, relative
            paths).
    """
    if net not in NET_MODES:
        raise RunnerError(f"network {net!r}: choose one of {', '.join(NET_MODES)}")
    check_hostname(hostname)
    for path, what in (
        (rootfs, "rootfs"),
        (cgroups_path, "cgroups path"),
        (spec.cwd, "working directory"),
    ):
        if not path.startswith("/"):
            raise RunnerError(f"{what} {path!r} is not absolute")
    return {
        "ociVersion": OCI_VERSION,
        "process": _process(spec, nofile, capabilities),
        "root": {"path": rootfs, "readonly": False},
        "hostname": hostname,
        "mounts": _mounts(etc_binds, device_binds, volume_binds),
        "linux": {
            "namespaces": [
                {"type": kind}
                for kind in ("pid", "mount", "uts", "ipc", *(("network",) if net == "none" else ()))
            ],
            "cgroupsPath": cgroups_path,
            "resources": _resources(memory_bytes, cpu_millis),
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }


def _process(
    spec: ProcessSpec, nofile: tuple[int, int] | None, capabilities: Sequence[str]
) -> dict[str, Any]:
    groups = list(spec.groups)  # as the fly stage
    caps = list(capabilities)
    process: dict[str, Any] = {
        "terminal": False,
        "user": {"uid": spec.uid, "gid": spec.gid, "additionalGids": groups},
        "args": list(spec.argv),
        "env": [f"{name}={value}" for name, value in spec.env.items()],
        "cwd": spec.cwd,
        "capabilities": {
            "bounding": caps,
            "effective": caps if spec.uid == 0 else [],
            "permitted": caps if spec.uid == 0 else [],
            "inheritable": [],
            "ambient": [],
        },
        "noNewPrivileges": True,
    }
    if nofile is not None:
        soft, hard = nofile
        process["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": hard, "soft": min(soft, hard)}]
    return process


def _mounts(
    etc_binds: Sequence[tuple[str, str]],
    device_binds: Sequence[tuple[str, str]],
    volume_binds: Sequence[Bind],
) -> list[dict[str, Any]]:
    kernel = ["nosuid", "noexec", "nodev"]
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": kernel},
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": [*kernel, "mode=1777", "size=65536k"],
        },
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": kernel},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": [*kernel, "ro"]},
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": [*kernel, "relatime", "ro"],
        },
    ]
    for source, destination in device_binds:
        mounts.append(_bind(source, destination, DEVICE_BIND_OPTIONS))
    for source, destination in etc_binds:
        mounts.append(_bind(source, destination, ETC_BIND_OPTIONS))
    for volume in volume_binds:
        kind, *options = VOLUME_BIND_OPTIONS
        if not volume.recursive:
            kind = kind.removeprefix("r")
        options += VOLUME_READ_ONLY_OPTIONS if volume.read_only else ["rw"]
        mounts.append(_bind(volume.source, volume.target, (kind, *options)))
    return mounts


def _bind(source: str, destination: str, options: Sequence[str]) -> dict[str, Any]:
    if not source.startswith("/") or not destination.startswith("/"):
        raise RunnerError(f"bind mount {source!r} on {destination!r}: paths must be absolute")
    return {"destination": destination, "type": "bind", "source": source, "options": list(options)}


def check_memory_limit(memory_bytes: int) -> int:
    """``memory_bytes`` (bytes), when the runtime accepts it as a limit (6 MiB and up).

    Raises:
        RunnerError: it is out of that range.
    """
    return _in_range(memory_bytes, MIN_MEMORY_BYTES, MAX_MEMORY_BYTES, "memory limit {} bytes",
                     f"{MIN_MEMORY_BYTES} (6Mi) to {MAX_MEMORY_BYTES}")


def check_cpu_limit(cpu_millis: int) -> int:
    """``cpu_millis`` (millicores), when the runtime accepts it as a limit.

    Raises:
        RunnerError: it is out of that range.
    """
    return _in_range(cpu_millis, MIN_CPU_MILLIS, MAX_CPU_MILLIS, "cpu limit {}m",
                     f"{MIN_CPU_MILLIS}m to {MAX_CPU_MILLIS}m")


def _in_range(value: int, low: int, high: int, what: str, allowed: str) -> int:
    """``value`` if ``low <= value <= high``, else a RunnerError: ``<what>: choose from <allowed>``."""
    if not low <= value <= high:
        raise RunnerError(f"{what.format(value)}: choose from {allowed}")
    return value


def _resources(memory_bytes: int | None, cpu_millis: int | None) -> dict[str, Any]:
    # Deny every device first: the runtime appends its default allow list after it.
    resources: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    if memory_bytes is not None:
        resources["memory"] = {"limit": check_memory_limit(memory_bytes)}
    if cpu_millis is not None:
        quota = check_cpu_limit(cpu_millis) * CPU_PERIOD_US // 1000
        resources["cpu"] = {"quota": quota, "period": CPU_PERIOD_US}
    return resources
