"""Walking and removing host directory trees of any depth, without recursion.

Python 3.11's :func:`os.walk` and :func:`shutil.rmtree` call themselves once per level
of directories; past about a thousand levels they raise :class:`RecursionError`, which
is no :class:`OSError` (``ignore_errors`` lets it through). An image may nest
directories some two thousand deep within its 4 KiB names, and an app may nest them in
its pod as deep as it likes (each ``mkdir`` relative to the last): a run then ended with
a traceback instead of the app's status, and every later ``gc`` failed on the same
tree. Here each walk keeps its own stack.

:func:`remove_tree` works through directory descriptors, one level at a time, holding
at most two descriptors: it never follows a symbolic link (nor changes a mode through
one), goes back up only into the directory it came from, and reaches entries whose full
path is longer than ``PATH_MAX``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterator

_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def walk(top: str, *, topdown: bool = True) -> Iterator[tuple[str, list[str], list[str]]]:
    """:func:`os.walk` of ``top`` (``followlinks=False``, errors skipped), without
    recursion: ``(directory, subdirectory names, other names)`` for every directory,
    parents first (``topdown``; the caller may prune the names list) or last. A link to
    a directory is listed among the subdirectories and not entered, as os.walk does.

    Args:
        top: the directory to walk (a host path).
        topdown: parents before their subdirectories (else after).
    """
    stack: list[tuple[str, tuple[list[str], list[str]] | None]] = [(top, None)]
    while stack:
        directory, listed = stack.pop()
        if listed is not None:  # bottom-up: its subdirectories are done
            yield directory, *listed
            continue
        dirs: list[str] = []
        files: list[str] = []
        entered: list[str] = []
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    try:
                        is_dir = entry.is_dir()
                    except OSError:
                        is_dir = False
                    (dirs if is_dir else files).append(entry.name)
                    if is_dir and not entry.is_symlink():
                        entered.append(entry.name)
        except OSError:
            continue
        if topdown:
            yield directory, dirs, files
            enterable = set(entered)
            entered = [name for name in dirs if name in enterable]  # as the caller pruned them
        else:
            stack.append((directory, (dirs, files)))
        stack.extend((os.path.join(directory, name), None) for name in reversed(entered))


def remove_tree(path: str, *, make_writable: bool = False, ignore_errors: bool = False) -> None:
    """Remove the directory ``path`` and everything in it (:func:`shutil.rmtree`), at any
    depth, never following a symbolic link. Names already gone are done with (another
    process removing the same tree). Each level is left through its ``..``, checked to be
    the directory it was entered from (device and inode): a directory moved elsewhere
    meanwhile stops the removal rather than lead it out of the tree.

    Args:
        path: the directory (a host path); a link or a file there is an error.
        make_writable: a directory whose entries cannot be removed, or that cannot be
            opened, is given mode ``0700`` (and so is the one holding it) and tried again:
            an image's ``0555``, ``0311`` or ``0600`` directories, for a caller that is not
            root.
        ignore_errors: skip what cannot be removed instead of raising.

    Raises:
        OSError: the first entry that could not be removed, or a directory moved out of
            the tree during the removal (unless ``ignore_errors``).
    """
    try:
        fd = _open_dir(None, path, make_writable)
    except FileNotFoundError:
        return
    except OSError:
        if ignore_errors:
            return
        raise
    pending: list[list[str]] = []  # per level from ``path`` down: the subdirectories still to remove
    names: list[str] = []  # the name of each level's directory below ``path``, entered from its parent
    entered: list[tuple[int, int]] = []  # (device, inode) of each level's directory
    try:
        entered.append(_identity(fd))
        pending.append(_clear_files(fd, make_writable, ignore_errors))
        while True:
            if pending[-1]:
                name = pending[-1].pop()
                try:
                    child = _open_dir(fd, name, make_writable)
                except FileNotFoundError:
                    continue
                except OSError:
                    if ignore_errors:
                        continue
                    raise
                os.close(fd)
                fd = child
                names.append(name)
                entered.append(_identity(fd))
                pending.append(_clear_files(fd, make_writable, ignore_errors))
                continue
            pending.pop()
            entered.pop()
            if not names:
                break
            try:
                parent = os.open("..", _OPEN_DIR, dir_fd=fd)
            except OSError:  # no search permission here (a caller that is not root, without make_writable)
                if ignore_errors:
                    return
                raise
            os.close(fd)
            fd = parent
            if _identity(fd) != entered[-1]:
                if ignore_errors:
                    return
                raise OSError(errno.EBUSY, f"a directory under {path} was moved while it was removed: stopped")
            _remove(fd, names.pop(), os.rmdir, make_writable, ignore_errors)
    finally:
        os.close(fd)
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        if not ignore_errors:
            raise


def _identity(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _open_dir(dir_fd: int | None, name: str, make_writable: bool) -> int:
    """The directory ``name`` (in ``dir_fd``, else a path), opened without following a
    link; when that is refused and ``make_writable``, once more after giving it (and the
    directory ``dir_fd``, which may lack search permission) mode ``0700``; with
    ``make_writable``, an opened directory its owner cannot search and write gets ``0700``.

    Raises:
        OSError: it cannot be opened (``FileNotFoundError``: it is gone).
    """
    try:
        fd = os.open(name, _OPEN_DIR, dir_fd=dir_fd)
    except PermissionError:
        if not make_writable:
            raise
        if dir_fd is not None:
            os.chmod(dir_fd, 0o700)
        _chmod_directory(dir_fd, name, 0o700)
        fd = os.open(name, _OPEN_DIR, dir_fd=dir_fd)
    if make_writable and os.fstat(fd).st_mode & 0o700 != 0o700:  # readable only (0600, 0400): its entries
        with contextlib.suppress(OSError):  # cannot be removed, nor its ".." looked up, without search and write
            os.chmod(fd, 0o700)
    return fd


def _chmod_directory(dir_fd: int | None, name: str, mode: int) -> None:
    """``chmod`` the directory ``name`` without following a link: through an ``O_PATH``
    descriptor of it (Linux has no ``fchmodat`` that leaves a link alone before 6.6).

    Raises:
        OSError: it cannot be reached, or is no directory (``NotADirectoryError``).
    """
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", name)
        os.chmod(f"/proc/self/fd/{fd}", mode)
    finally:
        os.close(fd)


def _clear_files(fd: int, make_writable: bool, ignore_errors: bool) -> list[str]:
    """Remove every entry of the directory ``fd`` but its subdirectories; their names, last
    first."""
    subdirectories = []
    try:
        with os.scandir(fd) as entries:
            listed = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
    except OSError:
        if ignore_errors:
            return []
        raise
    for name, is_dir in listed:
        if is_dir:
            subdirectories.append(name)
        else:
            _remove(fd, name, os.unlink, make_writable, ignore_errors)
    return sorted(subdirectories, reverse=True)  # taken from the end: in name order


def _remove(fd: int, name: str, remove: Callable[..., None], make_writable: bool, ignore_errors: bool) -> None:
    """``remove`` (unlink or rmdir) ``name`` in the directory ``fd``; once more after
    making the directory writable when that is asked for."""
    try:
        remove(name, dir_fd=fd)
    except FileNotFoundError:
        pass
    except PermissionError:
        if make_writable:
            with contextlib.suppress(OSError):
                os.chmod(fd, 0o700)
                remove(name, dir_fd=fd)
                return
        if not ignore_errors:
            raise
    except OSError:
        if not ignore_errors:
            raise
