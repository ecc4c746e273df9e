"""File stamps: knowing that a file hashed before still holds the same bytes, from
``stat`` alone, as git's index and ``make`` do.

A stamp is ``dev:inode:size:mtime_ns``. Writing a file's bytes sets its mtime to the
current time, so a file whose stamp is unchanged since its bytes were hashed still has
those bytes, unless whatever wrote it also set its mtime back to the same nanosecond
(``utime``): a stamp guards against accidents, not against someone who may write the
file. The ctime is left out on purpose: a hard link to the file, or the removal of one,
changes it, and the conversion cache hands out hard links (the tree store, which keys
files it does not own, adds the ctime). Two paths use stamps to skip
hashing a file they have seen: a warm re-conversion checking the cached ACI
(:func:`docker2aci.store.publish_copy`), and ``run --insecure-options=image`` finding
the image ID of an ACI (:meth:`runner.treestore.TreeStore.identify`). Each saves one
read and SHA-256 of the file (a 60 MB ACI: about 50 ms).

A stamp is only recorded for a *settled* file, whose mtime is at least
:data:`SETTLE_SECONDS` old: a write landing in the same clock tick as the one recorded
(file times advance in ticks of a few milliseconds) would otherwise leave the stamp as it
was (git's "racily clean" entries). Stamps are memos: a missing, unreadable or stale one
only means the file is hashed again.
"""

from __future__ import annotations

import contextlib
import os
import time

from .atomic import atomic_file

SETTLE_SECONDS = 2.0
"""How old a file's mtime must be before its stamp is recorded (seconds)."""
MAX_STAMP_BYTES = 200
"""Longest stamp file read (bytes)."""


def stamp(st: os.stat_result) -> str:
    """The stamp of a file as ``os.stat`` saw it: ``dev:inode:size:mtime_ns``."""
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def is_settled(st: os.stat_result) -> bool:
    """Whether the file's bytes were last written at least :data:`SETTLE_SECONDS` ago."""
    return time.time_ns() - st.st_mtime_ns >= SETTLE_SECONDS * 1e9


def read_memo(path: str) -> str | None:
    """The text of a memo file (a stamp or what it maps to), or ``None`` when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read(MAX_STAMP_BYTES).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def write_memo(path: str, text: str) -> None:
    """Replace the memo file ``path`` with ``text`` (mode 0600, not synced: losing it on a
    crash costs one hash). Errors are ignored."""
    with contextlib.suppress(OSError), atomic_file(path, 0o600, sync=False) as (_, f):
        f.write(text.encode("ascii"))
