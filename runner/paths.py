"""Resolve paths inside a rendered root file system without leaving it.

A rendered ACI rootfs is a directory on the host, but its symbolic links mean what they
mean inside the container: an absolute target names the rootfs root, and ``..`` never
climbs above it. Host code that creates, reads or mounts things in the tree must resolve
each path one component at a time with those rules, or an image could make it touch
host files (public cases 12, 13 and 59).

The functions here are path based. They are safe because the tree belongs to the runner
(a fresh private temporary directory) and nothing else changes it while they run.
"""

from __future__ import annotations

import os
import stat
from collections import deque
from enum import Enum

from docker2aci.errors import RunnerError

#: Symbolic links followed during one resolution before giving up (Linux's MAXSYMLINKS).
MAX_LINK_HOPS = 40


class Escape(Enum):
    """What to do when ``..`` would climb above the root.

    Attributes:
        CLAMP: stay at the root, as the kernel does inside a chroot (run time).
        REFUSE: raise :class:`PathEscapeError` (rendering an archive).
    """

    CLAMP = "clamp"
    REFUSE = "refuse"


class PathEscapeError(RunnerError):
    """A path, or a symbolic link on its way, leads outside the root."""

    reference = "path-escape"


def split_components(path: str) -> list[str]:
    """Split a slash-separated path into its non-empty components, dropping ``.``.

    Args:
        path: a path in the tree's own terms (``/etc/passwd``, ``etc/passwd``).

    Returns:
        The components in order; ``..`` is kept for the caller to interpret.
    """
    return [part for part in path.split("/") if part not in ("", ".")]


def resolve_in_root(
    root: str | os.PathLike[str],
    path: str,
    *,
    follow_final: bool = True,
    escape: Escape = Escape.CLAMP,
) -> str:
    """Map a path inside ``root`` to a host path with every symbolic link resolved in root.

    Components are resolved one at a time with :func:`os.lstat`: a symbolic link is
    replaced by its target (an absolute target restarts at ``root``), ``..`` pops the last
    real component. Components that do not exist are kept as written, so the result also
    names files that are about to be created.

    Args:
        root: the host directory that is ``/`` for the path.
        path: the path in the tree's terms; absolute or relative to ``root``.
        follow_final: resolve the last component if it is a symbolic link; ``False``
            names the link itself (like ``lstat``).
        escape: what to do when ``..`` climbs above ``root``.

    Returns:
        A host path under ``root`` that contains no symbolic link, except possibly its
        last component when ``follow_final`` is false.

    Raises:
        PathEscapeError: ``escape`` is :attr:`Escape.REFUSE` and the path leaves ``root``.
        RunnerError: more than :data:`MAX_LINK_HOPS` links were followed.
    """
    root_str = os.fspath(root)
    pending: deque[str] = deque(path.split("/"))
    resolved: list[str] = []
    hops = 0
    while pending:
        part = pending.popleft()
        if part in ("", "."):
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            elif escape is Escape.REFUSE:
                raise PathEscapeError(f"path {path!r} leads outside the root")
            continue
        candidate = os.path.join(root_str, *resolved, part)
        is_last = all(rest in ("", ".") for rest in pending)
        try:
            mode = os.lstat(candidate).st_mode
        except FileNotFoundError:
            resolved.append(part)
            continue
        except NotADirectoryError:
            raise RunnerError(f"resolving {path!r}: {'/'.join(resolved) or '/'} is not a directory") from None
        if stat.S_ISLNK(mode) and (follow_final or not is_last):
            hops += 1
            if hops > MAX_LINK_HOPS:
                raise RunnerError(f"resolving {path!r}: too many levels of symbolic links")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved.clear()
            pending.extendleft(reversed(target.split("/")))
            continue
        resolved.append(part)
    return os.path.join(root_str, *resolved)


def make_dirs_in_root(
    root: str | os.PathLike[str], path: str, *, escape: Escape = Escape.CLAMP, mode: int = 0o755
) -> str:
    """Resolve ``path`` inside ``root`` and create the directories that are missing.

    New directories get ``mode`` (umask ignored) and keep the creating process's owner
    (root when the runner runs as root).

    Args:
        root: the host directory that is ``/`` for the path.
        path: the directory to make, in the tree's terms.
        escape: what to do when ``..`` climbs above ``root``.
        mode: permission bits of the directories created.

    Returns:
        The host path of the directory.

    Raises:
        PathEscapeError: ``escape`` is :attr:`Escape.REFUSE` and the path leaves ``root``.
        RunnerError: a component exists and is not a directory, or a directory cannot be
            created.
    """
    host_path = resolve_in_root(root, path, escape=escape)
    root_str = os.fspath(root)
    relative = os.path.relpath(host_path, root_str)
    current = root_str
    for part in split_components(relative):
        current = os.path.join(current, part)
        try:
            os.mkdir(current, mode)
            os.chmod(current, mode)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(current).st_mode):
                raise RunnerError(
                    f"creating directory {path!r}: {part!r} is not a directory"
                ) from None
        except OSError as err:
            raise RunnerError(f"creating directory {path!r}: {err.strerror}") from err
    return host_path


def read_text_in_root(
    root: str | os.PathLike[str], path: str, *, limit: int = 8 << 20
) -> str | None:
    """Read a small text file of the tree (``/etc/passwd``), links resolved in root.

    Args:
        root: the host directory that is ``/`` for the path.
        path: the file, in the tree's terms.
        limit: the largest size read, in bytes.

    Returns:
        The contents (UTF-8, undecodable bytes kept as surrogates), or ``None`` when the
        file is absent or not a regular file.

    Raises:
        RunnerError: the file is larger than ``limit`` or cannot be read.
    """
    try:
        host_path = resolve_in_root(root, path)
    except RunnerError:
        return None  # a parent is not a directory: there is no such file
    try:
        # O_PATH opens nothing: a device node the image ships is never opened for real
        probe = os.open(host_path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        raise RunnerError(f"reading {path} in the image: {err.strerror}") from err
    try:
        if not stat.S_ISREG(os.fstat(probe).st_mode):
            return None
        fd = os.open(f"/proc/self/fd/{probe}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        raise RunnerError(f"reading {path} in the image: {err.strerror}") from err
    finally:
        os.close(probe)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if info.st_size > limit:
            raise RunnerError(f"reading {path} in the image: larger than {limit} bytes")
        return handle.read(limit).decode("utf-8", "surrogateescape")


def owner_in_root(root: str | os.PathLike[str], path: str) -> tuple[int, int]:
    """Give the owner of a file of the tree, links resolved in root.

    Args:
        root: the host directory that is ``/`` for the path.
        path: the file, in the tree's terms.

    Returns:
        ``(uid, gid)`` of the file.

    Raises:
        RunnerError: the file does not exist.
    """
    try:
        info = os.lstat(resolve_in_root(root, path))
    except OSError as err:
        raise RunnerError(f"looking up the owner of {path} in the image: {err.strerror}") from err
    return info.st_uid, info.st_gid


#: Where the stages mount kernel file systems: a path resolved under them before they
#: are mounted would, once they are, go through procfs's magic links to the host.
KERNEL_FS_DIRS = ("proc", "sys")


#: Host device nodes bound into the app's ``/dev`` by both stages (appc ``spec/ace.md``,
#: "Linux").
DEVICE_NODES = ("null", "zero", "full", "random", "urandom", "tty")
#: What else a stage mounts or makes in the app's ``/dev``: a devpts instance (and
#: ``ptmx``, its link), ``shm`` and ``mqueue``.
DEV_MOUNTS = ("pts", "ptmx", "shm", "mqueue")


def stage_dev_path(root: str | os.PathLike[str], host_path: str) -> str | None:
    """What a stage mounts in the app's ``/dev`` that a resolved host path of the tree is,
    or lies in (``/dev`` itself, ``/dev/null``, ``/dev/pts/0``), as a path in the app
    (``/dev/null``); ``None`` for anything else (``/dev/kvm``, ``/dev/log``). An image
    whose ``/dev`` is a link has the stage's mounts where the link leads (the fly stage
    follows it), so that place is compared.

    Args:
        root: the tree.
        host_path: a path :func:`resolve_in_root` gave.
    """
    dev = resolve_in_root(root, "/dev")
    rel = os.path.relpath(host_path, dev)
    if rel == ".":
        return "/dev"
    first = rel.split(os.sep, 1)[0]
    return f"/dev/{first}" if first in DEVICE_NODES or first in DEV_MOUNTS else None


def in_kernel_fs(root: str | os.PathLike[str], host_path: str) -> bool:
    """Whether a resolved host path of the tree lies in (or is) its ``/proc`` or ``/sys``.

    Args:
        root: the tree.
        host_path: a path :func:`resolve_in_root` gave.
    """
    rel = os.path.relpath(host_path, os.fspath(root))
    return rel.split(os.sep, 1)[0] in KERNEL_FS_DIRS

