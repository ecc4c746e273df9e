"""Files that appear whole or not at all: written under a temporary name in the target's
directory, flushed to disk, then renamed into place; removed on any error.

A temporary file is ``flock``-ed by its writer for as long as it is written, so a file
left by a killed writer is told from one being written (:func:`remove_if_abandoned`) and removed
by ``docker2aci gc`` (:func:`docker2aci.store.remove_abandoned_temporaries`)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import shutil
import stat
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from typing import BinaryIO

from .errors import OutputError
from .stdio import write_all

TEMP_PREFIX = ".docker2aci-"
TEMP_SUFFIX = ".tmp"
_NO_FLOCK = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL})
"""``flock`` errors of file systems that do not support it."""
_NO_PROC_FD = frozenset({errno.ENOENT, errno.EACCES, errno.EPERM})
"""Errors of reaching ``/proc/self/fd``: not mounted, or masked by a directory nobody may
search (systemd's ``InaccessiblePaths=/proc``), or refused by a security module. One the
directory caused (no hard links there) is raised again by the ``mkstemp`` that follows."""


def anonymous_file(directory: str | None, purpose: str) -> BinaryIO:
    """A new read-write file without a name in ``directory`` (default: the system's
    temporary directory), for a spool: ``O_TMPFILE`` where the file system has it, else
    made and unlinked at once (:func:`tempfile.TemporaryFile`). The kernel frees it when
    its last descriptor closes, so a process killed at any moment leaves nothing behind.
    Its ``name``, for messages, is ``"<a temporary file in DIRECTORY>"``.

    Args:
        directory: where the file goes.
        purpose: what it is for, in the error message (``the export of IMAGE``).

    Raises:
        OutputError: the file cannot be made (naming ``directory``).
    """
    try:
        spool = tempfile.TemporaryFile(dir=directory or default_temp_dir())  # noqa: SIM115 (the caller closes it)
    except OSError as err:
        raise OutputError(f"creating a temporary file in {temp_dir_name(directory)} for {purpose}: {err}") from err
    spool.raw.name = f"<a temporary file in {temp_dir_name(directory)}>"  # type: ignore[attr-defined]
    return spool  # type: ignore[return-value]


def temp_dir_name(directory: str | None) -> str:
    """How messages name the directory a spool goes to (``None``: the system's)."""
    return directory or default_temp_dir()


def default_temp_dir() -> str:
    """The system's temporary directory: the first of ``$TMPDIR``, ``$TEMP`` and ``$TMP``
    that names a directory, else ``/tmp``, as :func:`tempfile.gettempdir` chooses, but
    without its probe: on first use it writes a file with a random name there and
    removes it, and a process killed in between leaves that file behind."""
    for name in ("TMPDIR", "TEMP", "TMP"):
        value = os.environ.get(name)
        if value and os.path.isdir(value):
            return value
    return "/tmp"


def make_output_dir(path: str) -> list[str]:
    """Create the output directory ``path`` and its parents if missing.

    Returns:
        The directories this call made (absolute, outermost first; none when ``path`` was
        there): what :func:`remove_made_dirs` takes away again after a failure. One that
        another process makes at the same moment is not counted.

    Raises:
        OutputError: naming it: something else is there (a file), or it cannot be made.
    """
    missing = []
    here = os.path.abspath(path)
    while not os.path.lexists(here):
        missing.append(here)
        here = os.path.dirname(here)
    made = []
    try:
        for directory in reversed(missing):
            try:
                os.mkdir(directory)
            except FileExistsError:
                if not os.path.isdir(directory):
                    raise
                continue
            made.append(directory)
        os.makedirs(path, exist_ok=True)  # what was there: a directory, or a link to one
    except (FileExistsError, NotADirectoryError):
        remove_made_dirs(made)
        if os.path.islink(path) and not os.path.exists(path):  # a link to a directory not made yet
            target = os.readlink(path)
            chained = os.path.islink(os.path.join(os.path.dirname(path), target))  # a link to a link
            leads = f" (leading to {os.path.realpath(path)})" if chained else ""
            raise OutputError(f"output directory {path}: it is a symbolic link to {target}{leads}, which does "
                              "not exist") from None
        raise OutputError(f"output directory {path}: it, or a directory above it, is a file, not a "
                          "directory") from None
    except OSError as err:
        remove_made_dirs(made)
        raise OutputError(f"creating the output directory {path}: {err.strerror or err}") from err
    return made


def remove_made_dirs(made: Sequence[str]) -> None:
    """Remove the directories :func:`make_output_dir` made, innermost first, each only
    while it is empty: what something else put there stays, and so do its parents."""
    for directory in reversed(made):
        try:
            os.rmdir(directory)
        except OSError:
            return


def remove_quietly(path: str) -> None:
    """Remove ``path`` if it exists."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@contextlib.contextmanager
def atomic_file(dest: str, mode: int, *, replace: bool = True, sync: bool = True) -> Iterator[tuple[str, BinaryIO]]:
    """A new file that becomes ``dest`` only when the ``with`` block ends without error.

    Args:
        dest: the final path; its directory must exist.
        mode: the file's permission bits, set before anything is written (a secret key
            is never readable by others, not even for a moment).
        replace: replace an existing ``dest`` atomically; when false, an existing
            ``dest`` is an error (``FileExistsError``) and is left untouched.
        sync: ``fsync`` the file before it is renamed; off only for files whose loss
            or emptiness after a crash costs nothing but time (memos), or that the
            caller syncs itself (a large file written under :func:`syncing_ahead`).

    Yields:
        ``(temporary path, file open for writing and reading)``; the caller may also
        write through the path (an external program), the file is synced either way
        (unless ``sync`` is off).

    Raises:
        OSError: the file cannot be created, written or renamed (nothing is left behind).
    """
    directory = os.path.dirname(os.path.abspath(dest))
    fd, tmp = locked_temp(directory, TEMP_PREFIX, TEMP_SUFFIX)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w+b") as f:
            yield tmp, f
            f.flush()
            if sync:
                os.fsync(f.fileno())
            # Still open, so still locked: a cleaner cannot take it for abandoned.
            if replace:
                os.replace(tmp, dest)
            else:
                os.link(tmp, dest)  # fails if dest exists: never clobbers it
                os.unlink(tmp)
    except BaseException:
        remove_quietly(tmp)
        raise


_DESCRIPTOR_PATH = re.compile(r"/dev/(?:stdout|stderr|fd/[0-9]+)|/proc/(?:self|[0-9]+)/fd/[0-9]+")
"""A path that names a process's descriptor (``/dev/stdout``, ``/proc/self/fd/1``), which
may lead to a regular file: the shell's ``> file``."""
_OWN_DESCRIPTOR = re.compile(r"/(?:proc/self|dev)/fd/([0-9]+)")
"""A path that names one of this process's descriptors."""


def _hops(path: str) -> Iterator[str]:
    """``path`` made absolute, then each path its chain of symbolic links leads to (40
    at most, the kernel's own limit)."""
    here = os.path.abspath(path)
    for _ in range(40):
        yield here
        if not os.path.islink(here):
            return
        here = os.path.join(os.path.dirname(here), os.readlink(here))


def is_special(path: str) -> bool:
    """Whether ``path`` is to be written to, not replaced: a device (``/dev/full``), a FIFO
    or a socket (its links followed), or a process's descriptor (``/dev/stdout``,
    ``/proc/self/fd/N``), or a link to one, whatever it leads to (``/dev/stdout`` of a
    shell's ``> file`` leads to that regular file: a rename would replace the link
    itself). A regular file elsewhere under ``/dev`` (``/dev/shm``) is not special."""
    return _is_special(path, list(_hops(path)))


def _is_special(path: str, hops: list[str]) -> bool:
    """:func:`is_special`, given the hops of ``path`` (:func:`_hops`)."""
    if any(_DESCRIPTOR_PATH.fullmatch(hop) for hop in hops):
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def write_small_file(dest: str, data: bytes, mode: int) -> None:
    """Write ``data`` to ``dest``: atomically, an existing file replaced
    (:func:`atomic_file`), but for a device, a FIFO or a descriptor (:func:`is_special`),
    which is written to, never created nor replaced: a rename put a regular file in its
    place (as root, ``--report /dev/full`` replaced the device). One of this process's own
    descriptors (``/dev/stdout``, ``/dev/fd/N``) is written through itself, after what
    ``sys.stdout`` and ``sys.stderr`` hold, so that the output stays in order; another
    special file is opened for appending.

    Raises:
        OSError: it cannot be written (``FileNotFoundError`` if it went away).
    """
    hops = list(_hops(dest))  # the link chain walked once, for both questions
    if not _is_special(dest, hops):
        with atomic_file(os.path.abspath(dest), mode) as (_, f):
            f.write(data)
        return
    own = next((int(m.group(1)) for hop in hops if (m := _OWN_DESCRIPTOR.fullmatch(hop))), None)
    if own is None:
        with open(os.open(dest, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC), "wb") as f:
            f.write(data)
        return
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    write_all(own, data)


SYNC_AHEAD_BYTES = 16 << 20
"""How much more of a file :class:`SyncAhead` lets be written before it syncs again (bytes)."""
SYNC_AHEAD_SECONDS = 0.05
"""How often :class:`SyncAhead` looks at the file's size (seconds)."""


class SyncAhead:
    """A thread that ``fdatasync``-s a file being written each time another
    :data:`SYNC_AHEAD_BYTES` have been written: the disk writes while the writer computes
    (the thread only waits on the disk), and the ``fsync`` before the rename finds little
    left to do (a 60 MB ACI: 0.1 s less at the end). A failing sync stops the thread and
    is raised by :meth:`stop`: Linux reports a write-back error once per open file, so the
    final ``fsync`` would not see it again.

    Args:
        fd: the file's descriptor, open until :meth:`stop` has returned.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._error: OSError | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="docker2aci-sync-ahead", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        synced = 0
        try:
            while not self._stopped.wait(SYNC_AHEAD_SECONDS):
                size = os.fstat(self._fd).st_size
                if size - synced >= SYNC_AHEAD_BYTES:
                    os.fdatasync(self._fd)
                    synced = size
        except OSError as err:
            self._error = err

    def stop(self, check: bool = True) -> None:
        """Stop syncing ahead (waits for a sync under way).

        Raises:
            OSError: a sync failed (when ``check``).
        """
        self._stopped.set()
        self._thread.join()
        if check and self._error is not None:
            raise self._error


@contextlib.contextmanager
def syncing_ahead(f: BinaryIO) -> Iterator[None]:
    """Sync ``f`` ahead (:class:`SyncAhead`) while the ``with`` block writes it; the thread
    ends with the block (a file whose rename waits for other work, as each ACI of a
    ``--nosquash`` chain waits for the top, keeps no thread).

    Raises:
        OSError: a sync failed (a write-back error is reported once per open file: the
            final ``fsync`` would not see it again).
    """
    ahead = SyncAhead(f.fileno())
    try:
        yield
    except BaseException:
        ahead.stop(check=False)
        raise
    ahead.stop()


def locked_temp(directory: str, prefix: str, suffix: str = "") -> tuple[int, str]:
    """A new file ``PREFIX<random>SUFFIX`` in ``directory`` (mode 0600), ``flock``-ed
    (exclusively) by the returned descriptor until it is closed. Where the file system
    can (``O_TMPFILE``), it is locked before it gets its name, so a cleaner never sees it
    unlocked (:func:`_named_after_locking`); else made by ``mkstemp`` and locked, and made
    again when a cleaner removed it before the lock was taken (whose log then speaks of a
    killed writer).

    Raises:
        OSError: it cannot be created.
    """
    named = _named_after_locking(directory, prefix, suffix)
    if named is not None:
        return named
    while True:
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # waits only while a cleaner looks at it
            except OSError as err:
                if err.errno not in _NO_FLOCK:
                    raise
                return fd, tmp  # a file system without flock: written unlocked, as before
            same = _still_at(tmp, fd)
        except BaseException:
            os.close(fd)
            remove_quietly(tmp)
            raise
        if same:
            return fd, tmp
        os.close(fd)


def _named_after_locking(directory: str, prefix: str, suffix: str) -> tuple[int, str] | None:
    """An unnamed file (``O_TMPFILE``) in ``directory``, locked, then linked as
    ``PREFIX<random>SUFFIX`` through ``/proc/self/fd``; ``None`` where that cannot be done
    (no ``O_TMPFILE`` on this file system or kernel, no ``flock``, no ``/proc`` this
    user may read: :data:`_NO_PROC_FD`).

    Raises:
        OSError: the directory refuses new files (permission, a full disk).
    """
    try:
        fd = os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except OSError as err:
        if err.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            return None
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        # linkat(2) with AT_SYMLINK_FOLLOW, which os.link uses only with a directory
        # descriptor: link(2) would link /proc's symbolic link itself
        fds = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            while True:
                path = os.path.join(directory, f"{prefix}{secrets.token_hex(6)}{suffix}")
                try:
                    os.link(str(fd), path, src_dir_fd=fds, follow_symlinks=True)
                    return fd, path
                except FileExistsError:
                    continue
        finally:
            os.close(fds)
    except OSError as err:
        os.close(fd)
        if err.errno in _NO_FLOCK or err.errno in _NO_PROC_FD:
            return None
        raise
    except BaseException:
        os.close(fd)
        raise


def open_locked(path: str, how: int, *, writable: bool = False) -> int:
    """Open the lock file ``path`` (creating it, mode 0600; never through a symbolic link)
    and ``flock`` it with ``how`` (``LOCK_SH`` or ``LOCK_EX``, with ``LOCK_NB`` not
    waiting). A cleaner may unlink a lock file while it holds it: a lock taken on a file
    that is no longer the one at ``path`` guards nothing, so it is taken again on the
    file there now.

    Args:
        writable: open it for writing too: on NFS, Linux emulates ``flock`` with
            byte-range locks, and an exclusive one needs a descriptor open for writing
            (``flock(2)``). A descriptor handed to another process (the tree store's, to
            the app) stays read-only.

    Returns:
        The locked descriptor (the caller closes it, which unlocks it).

    Raises:
        BlockingIOError: ``LOCK_NB`` and another holds the lock.
        OSError: ``path`` cannot be opened (``ELOOP``: it is a symbolic link).
    """
    while True:
        mode = os.O_RDWR if writable else os.O_RDONLY
        fd = os.open(path, mode | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, how)
            same = _still_at(path, fd)
        except BaseException:
            os.close(fd)
            raise
        if same:
            return fd
        os.close(fd)


def _still_at(path: str, fd: int) -> bool:
    """Whether the open file ``fd`` is still the file at ``path``: a cleaner may have
    removed it, or another file taken its name, before its lock was taken."""
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def _held_if_abandoned(path: str) -> Iterator[bool]:
    """Take the lock of the regular file ``path`` if nobody holds it and it is still the
    file at ``path``; yields whether it was taken (held until the block ends)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)  # a FIFO never blocks
    except OSError:
        yield False
        return
    try:
        taken = stat.S_ISREG(os.fstat(fd).st_mode)
        if taken:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                taken = _still_at(path, fd)  # not renamed or replaced meanwhile
            except OSError:
                taken = False  # being written (EWOULDBLOCK), no locks here (ENOLCK), or gone
        yield taken
    finally:
        os.close(fd)


def remove_if_abandoned(path: str) -> bool:
    """Remove the temporary file ``path`` when no writer holds its lock (its writer was
    killed, or wrote it before writers locked their files).

    Returns:
        Whether it was removed.
    """
    with _held_if_abandoned(path) as abandoned:
        if abandoned:
            os.unlink(path)
        return abandoned


def remove_abandoned_in(directory: str, prefix: str = TEMP_PREFIX, suffix: str = TEMP_SUFFIX) -> list[str]:
    """Remove the temporary files (``PREFIX*SUFFIX``; by default ``.docker2aci-*.tmp``,
    :func:`atomic_file`'s) that killed writers left in ``directory`` (not below it); one a
    live writer holds is left alone (:func:`remove_if_abandoned`).

    Returns:
        the paths removed.
    """
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    paths = [os.path.join(directory, n) for n in names if is_temporary(n, prefix, suffix)]
    return [path for path in paths if remove_if_abandoned(path)]


def is_temporary(name: str, prefix: str = TEMP_PREFIX, suffix: str = TEMP_SUFFIX) -> bool:
    """Whether ``name`` is a temporary file's name (``.docker2aci-*.tmp`` by default)."""
    return len(name) >= len(prefix) + len(suffix) and name.startswith(prefix) and name.endswith(suffix)


@contextlib.contextmanager
def scratch_dir(parent: str | None, prefix: str, what: str) -> Iterator[str]:
    """A new directory ``PARENT/PREFIX<random>`` (``parent`` made if missing; ``None``: the
    system's temporary directory), removed with what it holds when the block ends.

    Raises:
        OutputError: it cannot be made: "creating ``what`` in PARENT: reason".
    """
    try:
        if parent is not None:
            os.makedirs(parent, exist_ok=True)
        directory = tempfile.mkdtemp(prefix=prefix, dir=parent)
    except OSError as err:
        raise OutputError(f"creating {what} in {parent or tempfile.gettempdir()}: {err.strerror or err}") from err
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


LOCK_SUFFIX = ".lock"
"""The lock file of a work directory is named after it with this suffix (:func:`locked_work_dir`)."""


@contextlib.contextmanager
def locked_work_dir(parent: str, prefix: str, mode: int = 0o700) -> Iterator[str]:
    """A new directory ``PARENT/PREFIX<random>``, made after its lock file
    ``PARENT/PREFIX<random>.lock``, which is held until the block ends and then removed.
    The caller removes or renames the directory inside the block. A directory is thus
    never without a lock its owner holds, and :func:`remove_abandoned_work_dirs` can tell
    one a killed process left, whatever the moment of the kill.

    Raises:
        OSError: the lock file or the directory cannot be made.
    """
    lock, lock_path = locked_temp(parent, prefix, LOCK_SUFFIX)
    try:
        os.mkdir(lock_path[:-len(LOCK_SUFFIX)], mode)
        yield lock_path[:-len(LOCK_SUFFIX)]
    finally:
        remove_quietly(lock_path)
        os.close(lock)


def remove_abandoned_work_dirs(parent: str, prefix: str) -> list[str]:
    """Remove what killed processes left of their :func:`locked_work_dir` directories in
    ``parent``: each ``PREFIX*.lock`` nobody holds, and the directory named after it.

    Returns:
        the directories and lock files removed.
    """
    try:
        names = sorted(os.listdir(parent))
    except OSError:
        return []
    removed = []
    for name in names:
        if not is_temporary(name, prefix, LOCK_SUFFIX):
            continue
        lock_path = os.path.join(parent, name)
        work = lock_path[:-len(LOCK_SUFFIX)]
        with _held_if_abandoned(lock_path) as abandoned:  # held: its owner runs
            if abandoned:
                if os.path.isdir(work) and not os.path.islink(work):
                    shutil.rmtree(work, ignore_errors=True)
                    removed.append(work)
                try:
                    os.unlink(lock_path)  # ours while we hold it
                except OSError:
                    continue
                removed.append(lock_path)
    return removed
