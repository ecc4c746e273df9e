"""Thin ctypes wrappers for the Linux system calls Python 3.11 lacks: unshare, mount.

See ``unshare(2)`` and ``mount(2)``. Errors are raised as :class:`OSError` with the
system call's errno, like the :mod:`os` functions.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

CLONE_NEWNS = 0x00020000

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21

_libc = ctypes.CDLL(None, use_errno=True)
_libc.unshare.argtypes = [ctypes.c_int]
_libc.unshare.restype = ctypes.c_int
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.mount.restype = ctypes.c_int
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.umount2.restype = ctypes.c_int

#: ``umount2`` flag: detach now, free when no longer busy.
MNT_DETACH = 2


@dataclass(frozen=True)
class Mount:
    """One ``mount(2)`` call.

    Attributes:
        source: the device, file system name or bind source (``None`` for a change of
            propagation).
        target: the host path mounted on; it must contain no symbolic link.
        fstype: the file system type (``None`` for bind mounts and propagation).
        flags: ``MS_*`` flags.
        data: file-system-specific options (``"newinstance,ptmxmode=0666"``).
    """

    source: str | None
    target: str
    fstype: str | None = None
    flags: int = 0
    data: str | None = None


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def _encode(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def unshare(flags: int) -> None:
    """Move the calling process into new namespaces (``unshare(2)``).

    Args:
        flags: ``CLONE_*`` flags, e.g. :data:`CLONE_NEWNS`.

    Raises:
        OSError: the call failed (``EPERM`` without ``CAP_SYS_ADMIN``).
    """
    _check(_libc.unshare(flags), "unshare")


def mount(spec: Mount) -> None:
    """Perform one ``mount(2)`` call.

    Args:
        spec: what to mount where.

    Raises:
        OSError: the call failed; the message names the target.
    """
    result = _libc.mount(
        _encode(spec.source),
        _encode(spec.target),
        _encode(spec.fstype),
        spec.flags,
        _encode(spec.data),
    )
    _check(result, f"mounting {spec.fstype or spec.source or 'propagation'} on {spec.target}")


def umount(target: str, *, detach: bool = True) -> None:
    """Unmount ``target`` (``umount2(2)``; lazily with ``detach``: the mount disappears
    from the namespace now, and is freed when nothing uses it any more).

    Raises:
        OSError: the call failed (``EINVAL``: not a mount point).
    """
    _check(_libc.umount2(os.fsencode(target), MNT_DETACH if detach else 0), f"unmounting {target}")


def root_is_mount_point() -> bool:
    """Whether ``/`` is a mount point of this mount namespace. It is not inside a plain
    chroot, where runc (making ``/`` a slave mount) and dockerd cannot work."""
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return any(line.split()[4] == "/" for line in f)


def mount_points_under(path: str) -> list[str]:
    """The mount points at or below ``path`` in this mount namespace, deepest first.

    Args:
        path: an absolute path without symbolic links (mountinfo's are resolved).

    Returns:
        The mount points as ``/proc/self/mountinfo`` lists them (unescaped); empty when
        it cannot be read.
    """
    prefix = path.rstrip("/") + "/"
    found = [point for _, point in _mount_points() if point == path or point.startswith(prefix)]
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


def mounts_bound_along(source: str) -> list[str]:
    """The mount points strictly below ``source`` that their path reaches, shallowest
    first: those a recursive bind of ``source`` brings along (after the runner made the
    namespace private, unbindable ones too), not one hidden by a mount over it or over a
    directory above it, nor one whose directory is gone (:func:`mount_points_under` lists
    them all: there is no such mount point at the bind's target).

    Args:
        source: an absolute path without symbolic links (mountinfo's are resolved).

    Returns:
        The mount points (unescaped); empty when ``/proc/self/mountinfo`` cannot be read.
    """
    prefix = source.rstrip("/") + "/"
    below = [(mount_id, point) for mount_id, point in _mount_points() if point.startswith(prefix)]
    return sorted((point for mount_id, point in below if _mount_id_at(point) == mount_id), key=lambda p: p.count("/"))


def _mount_points() -> list[tuple[int, str]]:
    """``(mount ID, mount point)`` of every line of ``/proc/self/mountinfo`` (``ID PARENT
    MAJ:MIN ROOT POINT ...``; the point unescaped), in its order; empty when it cannot be
    read."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as handle:
            return [(int(fields[0]), unescape_mountinfo(fields[4])) for fields in (line.split(" ") for line in handle)]
    except OSError:
        return []


def _mount_id_at(path: str) -> int | None:
    """The ID of the mount that ``path`` leads to (``mnt_id`` of ``/proc/self/fdinfo``),
    ``None`` when it cannot be opened."""
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as info:
            for line in info:
                if line.startswith("mnt_id:"):
                    return int(line.split()[1])
    except OSError:
        pass
    finally:
        os.close(fd)
    return None


def unescape_mountinfo(text: str) -> str:
    """Decode a ``/proc/self/mountinfo`` field: it writes space, tab, newline and
    backslash as ``\\ooo`` (octal)."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 3 < len(text) and text[i + 1:i + 4].isdigit():
            out.append(chr(int(text[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)
