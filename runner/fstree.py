"""Walking and removing host directory trees of any depth, without recursion.

Python 3.11's :func:`os.walk` and :func:`shutil.rmtree` call themselves once per level
of directories; past about a thousand levels they raise :class:`RecursionError`, which
is no :class:`OSError` (``ignore_errors`` lets it through). An image may nest
directories some two thousand deep within its 4 KiB names, and an app may nest them in
its pod as deep as it likes (each ``mkdir`` relative to the last): a run then ended with
a traceback instead of the app's status, and every later ``gc`` failed on the same
tree. Here each walk keeps its own stack.

:func:`remove_tree` works through directory descriptors, one level at a time, holding
at most two descriptors: it never follows a symbolic link, and it reaches entries whose
full path is longer than ``PATH_MAX``.
"""

from __future__ import annotations

import contextlib
import os
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
    process removing the same tree).

    Args:
        path: the directory (a host path); a link or a file there is an error.
        make_writable: a directory whose entries cannot be removed, or that cannot be
            read, is given mode ``0700`` and tried again (an image's ``0555`` or ``0311``
            directories, for a caller that is not root).
        ignore_errors: skip what cannot be removed instead of raising.

    Raises:
        OSError: the first entry that could not be removed (unless ``ignore_errors``).
    """
    try:
        fd = os.open(path, _OPEN_DIR)
    except FileNotFoundError:
        return
    except PermissionError:
        if not make_writable:
            if ignore_errors:
                return
            raise
        os.chmod(path, 0o700)
        fd = os.open(path, _OPEN_DIR)
    except OSError:
        if ignore_errors:
            return
        raise
    pending: list[list[str]] = []  # per level below ``path``: the subdirectories still to remove
    names: list[str] = []  # the name of each level's directory, entered from its parent
    try:
        pending.append(_clear_files(fd, make_writable, ignore_errors))
        while True:
            if pending[-1]:
                name = pending[-1].pop()
                child = _open_child(fd, name, make_writable, ignore_errors)
                if child is None:
                    continue
                os.close(fd)
                fd = child
                names.append(name)
                pending.append(_clear_files(fd, make_writable, ignore_errors))
                continue
            pending.pop()
            if not names:
                break
            parent = os.open("..", _OPEN_DIR, dir_fd=fd)
            os.close(fd)
            fd = parent
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


def _clear_files(fd: int, make_writable: bool, ignore_errors: bool) -> list[str]:
    """Remove every entry of the directory ``fd`` but its subdirectories; their names."""
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
    return subdirectories


def _open_child(fd: int, name: str, make_writable: bool, ignore_errors: bool) -> int | None:
    """The directory ``name`` in ``fd``, opened; ``None`` when it is gone or skipped."""
    try:
        return os.open(name, _OPEN_DIR, dir_fd=fd)
    except FileNotFoundError:
        return None
    except PermissionError:
        if make_writable:
            with contextlib.suppress(OSError):
                os.chmod(name, 0o700, dir_fd=fd)
                return os.open(name, _OPEN_DIR, dir_fd=fd)
        if ignore_errors:
            return None
        raise
    except OSError:
        if ignore_errors:
            return None
        raise


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
