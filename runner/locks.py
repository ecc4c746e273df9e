"""flock helpers shared by the tree store, pods and the pre-run hook's work directories.

Locks are ``flock(2)`` locks on files opened read-only: they belong to the open file
description, so a child that inherits the descriptor (the app, runc) keeps the lock for as
long as it runs, and the kernel drops it when the last holder exits, even after ``kill -9``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator

from docker2aci.atomic import open_locked
from docker2aci.errors import RunnerError


@contextlib.contextmanager
def locked(path: str, how: int) -> Iterator[int]:
    """Open ``path`` (creating it, mode 0600) and ``flock`` it with ``how``
    (``LOCK_SH`` or ``LOCK_EX``, waiting); retry when the file was replaced meanwhile
    (gc unlinks lock files it holds).

    Yields:
        The locked descriptor (closed, so unlocked, when the block ends).

    Raises:
        RunnerError: ``path`` is a symbolic link.
    """
    try:
        fd = open_locked(path, how)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise RunnerError(f"lock file {path} is a symbolic link, not a file of the store: "
                              "remove it") from err
        raise
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def try_locked(path: str, *, create: bool = True) -> Iterator[bool]:
    """Take ``path``'s lock exclusively if nobody holds it, without waiting.

    Args:
        path: the lock file.
        create: create it when missing; else a missing file counts as not taken.

    Yields:
        Whether the lock was taken (held until the block ends).

    Raises:
        OSError: ``flock`` failed for another reason than the lock being held.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | (os.O_CREAT if create else 0), 0o600)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            yield False
            return
        yield True
    finally:
        os.close(fd)
