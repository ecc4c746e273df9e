"""Files that appear whole or not at all: written under a temporary name in the target's
directory, flushed to disk, then renamed into place; removed on any error."""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import BinaryIO, Iterator


def remove_quietly(path: str) -> None:
    """Remove ``path`` if it exists."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@contextlib.contextmanager
def atomic_file(dest: str, mode: int, *, replace: bool = True) -> Iterator[tuple[str, BinaryIO]]:
    """A new file that becomes ``dest`` only when the ``with`` block ends without error.

    Args:
        dest: the final path; its directory must exist.
        mode: the file's permission bits, set before anything is written (a secret key
            is never readable by others, not even for a moment).
        replace: replace an existing ``dest`` atomically; when false, an existing
            ``dest`` is an error (``FileExistsError``) and is left untouched.

    Yields:
        ``(temporary path, file open for writing and reading)``; the caller may also
        write through the path (an external program), the file is synced either way.

    Raises:
        OSError: the file cannot be created, written or renamed (nothing is left behind).
    """
    directory = os.path.dirname(os.path.abspath(dest))
    fd, tmp = tempfile.mkstemp(prefix=".docker2aci-", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w+b") as f:
            yield tmp, f
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, dest)
        else:
            os.link(tmp, dest)  # fails if dest exists: never clobbers it
            os.unlink(tmp)
    except BaseException:
        remove_quietly(tmp)
        raise
