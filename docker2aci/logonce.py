"""Log messages said once per run (the plain-http warning of a registry host), whichever
process of the run says them.

:func:`log_once` logs a message the first time this process logs its key, and marks the
record with that key (attribute :data:`ONCE`). A batch's worker process relays its records
to the calling process (:mod:`docker2aci.jobs`), which logs one only when :func:`is_new`
there: a key said by the caller itself or by another worker before is not said again.
"""

from __future__ import annotations

import logging

ONCE = "once"
"""The attribute of a :func:`log_once` record that holds its key."""

_said: set[str] = set()
"""The keys this process has logged."""


def log_once(logger: logging.Logger, level: int, key: str, msg: str, *args: object) -> None:
    """Log ``msg % args`` at ``level`` unless this process logged a record of ``key`` before.

    Args:
        logger: where to log.
        level: the level (``logging.WARNING``...).
        key: what makes two messages the same one (``plain http 127.0.0.1:5000``).
        msg: the message, with ``%`` placeholders for ``args``.
        args: the message's arguments.
    """
    if key not in _said:
        _said.add(key)
        logger.log(level, msg, *args, extra={ONCE: key})


def is_new(record: logging.LogRecord) -> bool:
    """Whether this process is to log ``record``: false for a :func:`log_once` record
    whose key this process logged before (the key is noted as logged otherwise).

    Args:
        record: a record made in another process (a worker's, relayed).
    """
    key = getattr(record, ONCE, None)
    if key is None:
        return True
    if key in _said:
        return False
    _said.add(key)
    return True
