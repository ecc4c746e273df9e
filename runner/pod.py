"""Pods: the per-run directory where an app's writable root file system lives.

A run never writes into the tree store. Each run gets ``pods/<id>/`` under the store's
root, holding:

* ``rootfs/``: an overlay mount (``lowerdir`` = the tree, read-only and shared by every
  run of the image; ``upperdir`` = ``upper/``, this run's writes; ``workdir`` =
  ``work/``), as rkt's stage0 does; or, where overlayfs is not available (the store on
  an overlay or a network file system) or ``overlay=False``, a private render of the ACI
  (slower, the same content);
* ``volumes/``: the directories of ``kind=empty`` volumes;
* ``lock``: held (``flock``, exclusive) by the runner for the whole run, so
  :func:`gc_pods` leaves running pods alone.

The overlay is mounted in the runner's mount namespace (the stages need it there:
runc is given the path) and unmounted when the run ends; after a crash (``kill -9``)
:func:`gc_pods` unmounts what is left and removes the directory. Nothing under a pod
is removed while anything is still mounted there.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from docker2aci.errors import RunnerError
from runner.fstree import remove_tree
from runner.linux import Mount, mount, mount_points_under, umount, unescape_mountinfo
from runner.locks import try_locked

logger = logging.getLogger(__name__)

_NEW_PREFIX = ".new-"
#: A pod directory still named ``.new-*`` after this many seconds was left by a crash.
NEW_POD_GRACE_SECONDS = 60.0


@dataclass
class Pod:
    """One run's directory (see the module's description).

    Attributes:
        path: ``<store>/pods/<id>``.
        rootfs: the app's root file system (an overlay on the tree, or a private copy).
        volumes_dir: where ``kind=empty`` volumes are made.
        overlay: whether ``rootfs`` is an overlay mount.
        lock_fd: the descriptor (read-only) holding the pod's lock.
    """

    path: str
    rootfs: str
    volumes_dir: str
    overlay: bool
    lock_fd: int = field(default=-1, repr=False)


@dataclass
class PodGcReport:
    """What :func:`gc_pods` did.

    Attributes:
        removed: the paths of the pods removed.
        in_use: the paths of the pods kept because their run goes on: their lock is held,
            their container still has processes, or they are still being made.
    """

    removed: list[str] = field(default_factory=list)
    in_use: list[str] = field(default_factory=list)


@contextlib.contextmanager
def open_pod(store_root: str, lower: str, *, overlay: bool = True,
             render: Callable[[str], None] | None = None) -> Iterator[Pod]:
    """Make a pod whose rootfs shows ``lower`` writable; remove it afterwards.

    Args:
        store_root: the store's root (pods go to ``<store_root>/pods``).
        lower: the tree's rendered rootfs (never written to).
        overlay: use an overlay mount; ``False`` always renders a private copy.
        render: fills an empty directory with a private copy of the tree (used when the
            overlay cannot be mounted, or ``overlay`` is false).

    Yields:
        The :class:`Pod`.

    Raises:
        RunnerError: the pod cannot be made, or no overlay can be mounted and no
            ``render`` was given.
    """
    pods = os.path.join(store_root, "pods")
    name = secrets.token_hex(8)
    path = os.path.join(pods, name)
    try:
        os.makedirs(pods, mode=0o700, exist_ok=True)
        new = os.path.join(pods, f"{_NEW_PREFIX}{name}")  # gc leaves it alone until it is locked
        os.mkdir(new, 0o700)
        lock_fd = os.open(os.path.join(new, "lock"), os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        os.rename(new, path)
    except OSError as err:
        raise RunnerError(f"creating a pod under {pods}: {err.strerror}") from err
    rootfs = os.path.join(path, "rootfs")
    volumes = os.path.join(path, "volumes")
    pod = Pod(path, rootfs, volumes, overlay=False, lock_fd=lock_fd)
    try:
        try:
            os.mkdir(rootfs, 0o755)
            os.mkdir(volumes, 0o700)
            if overlay:
                pod.overlay = _mount_overlay(lower, path, rootfs)
        except OSError as err:  # a full disk
            raise RunnerError(f"creating the pod {path}: {err.strerror or err}") from err
        if not pod.overlay:
            if render is None:
                raise RunnerError(f"cannot mount an overlay on {lower} and no copy can be made")
            render(rootfs)
        yield pod
    finally:
        try:
            _remove_pod(path)
        finally:
            os.close(lock_fd)


def gc_pods(store_root: str) -> PodGcReport:
    """Remove the pods of runs that have ended (their lock is free): unmount what a
    crash left mounted there, remove the cgroups of the isolated stage's container when
    runc was killed before it could, then delete the directory.

    Args:
        store_root: the store's root.

    Returns:
        The pods removed and those kept in use, in name order (:class:`PodGcReport`).
    """
    report = PodGcReport()
    pods = os.path.join(store_root, "pods")
    try:
        names = sorted(os.listdir(pods))
    except FileNotFoundError:
        return report
    removed, in_use = report.removed, report.in_use
    for name in names:
        path = os.path.join(pods, name)
        if name.startswith(_NEW_PREFIX):
            try:
                age = time.time() - os.lstat(path).st_mtime
            except FileNotFoundError:
                continue
            if age < NEW_POD_GRACE_SECONDS:
                in_use.append(path)
                continue  # being made: its lock may not exist yet
        lock = os.path.join(path, "lock")
        if not os.path.lexists(lock):  # a pod that never got its lock (a crash), or half removed
            if _remove_pod(path):
                removed.append(path)
            continue
        with try_locked(lock, create=False) as free:
            if free:
                from runner.isolated import container_running, remove_leftover_cgroups  # only when a pod ended

                if container_running(path):
                    in_use.append(path)
                    continue
                remove_leftover_cgroups(path)
                if _remove_pod(path):
                    removed.append(path)
            elif os.path.lexists(lock):  # else the pod went meanwhile: its run ended
                in_use.append(path)
    return report


def overlay_lowers() -> set[str]:
    """The ``lowerdir`` options (as :func:`_mount_overlay` wrote them) of the overlay
    mounts in this mount namespace: the trees pods still show, whatever their locks say."""
    lowers = set()
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as handle:
            for line in handle:
                fields = line.rstrip("\n").partition(" - ")[2].split(" ")
                if len(fields) >= 3 and fields[0] == "overlay":
                    lowers.update(unescape_mountinfo(option[len("lowerdir="):])
                                  for option in fields[2].split(",") if option.startswith("lowerdir="))
    except OSError:
        pass
    return lowers


def mounted_on(tree_rootfs: str, lowers: set[str]) -> bool:
    """Whether a pod's overlay (one of :func:`overlay_lowers`) is mounted on ``tree_rootfs``."""
    return _escape(tree_rootfs) in lowers


def _escape(path: str) -> str:
    """Escape a path for an overlay mount option (``,``, ``:`` and ``\\`` are special)."""
    return path.replace("\\", "\\\\").replace(",", "\\,").replace(":", "\\:")


def _mount_overlay(lower: str, pod_path: str, rootfs: str) -> bool:
    """Mount the overlay; ``False`` (with the reason logged) when the kernel refuses."""
    upper = os.path.join(pod_path, "upper")
    work = os.path.join(pod_path, "work")
    os.mkdir(upper, 0o755)
    os.mkdir(work, 0o700)
    top = os.stat(lower)  # the merged root takes the upper directory's attributes
    os.chown(upper, top.st_uid, top.st_gid)
    os.chmod(upper, top.st_mode & 0o7777)
    options = f"lowerdir={_escape(lower)},upperdir={_escape(upper)},workdir={_escape(work)}"
    try:
        mount(Mount("overlay", rootfs, "overlay", 0, options))
    except OSError as err:
        logger.info("overlayfs is not available for %s (%s): rendering a private copy", pod_path,
                    err.strerror or err)
        return False
    return True


def _remove_pod(path: str) -> bool:
    """Unmount everything under the pod, then remove it; ``False`` (logged) when a mount
    could not be undone: the directory is then left alone rather than deleted through a
    mount."""
    for point in mount_points_under(path):
        try:
            umount(point)
        except OSError as err:
            if err.errno != errno.EINVAL:  # EINVAL: not a mount point (any more)
                logger.warning("cannot unmount %s: %s", point, err.strerror)
    if mount_points_under(path):
        logger.warning("pod %s still has mounts: left in place", path)
        return False
    remove_tree(path, make_writable=True, ignore_errors=True)
    return True
