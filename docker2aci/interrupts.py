"""Stopping on a signal: Ctrl-C (``SIGINT``), ``SIGTERM`` and ``SIGHUP`` are handled alike.

* :class:`Terminated` is raised by ``SIGTERM`` and ``SIGHUP`` while
  :func:`unwinding_on_termination` is in force (the CLI's whole run). It is a
  ``KeyboardInterrupt``, so it unwinds as Ctrl-C does: every ``with`` block and
  ``except BaseException`` on the way removes what it made (temporary files, partial
  downloads, work directories), and the exit status is ``128 + signum`` (143, 129), as
  the signal's own would be.
* :func:`stopping_on_signals` asks work in progress to stop at its next step instead
  (``batch`` and ``mirror``: no new item starts, and an item past its last step is
  finished, not cut short); a second signal interrupts work in this process at once.

``run`` is not changed by either: its stages block these signals while the app runs and
forward them to the app (:data:`runner.run.FORWARDED_SIGNALS`).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""The signals that stop a command (with cleanup): Ctrl-C, ``kill``, a closed terminal."""


class Terminated(KeyboardInterrupt):
    """``SIGTERM`` or ``SIGHUP`` arrived: unwinds as Ctrl-C does, with exit status
    ``128 + signum``.

    Attributes:
        signum: the signal's number.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def signal_of(interrupt: KeyboardInterrupt) -> int:
    """The signal behind an interrupt: a :class:`Terminated`'s, else ``SIGINT`` (Ctrl-C)."""
    return interrupt.signum if isinstance(interrupt, Terminated) else int(signal.SIGINT)


def interrupt_for(signum: int) -> KeyboardInterrupt:
    """The exception that signal ``signum`` raises: ``KeyboardInterrupt`` for ``SIGINT``,
    else :class:`Terminated`."""
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def exit_status(signum: int) -> int:
    """The exit status of a command stopped by signal ``signum``: ``128 + signum``."""
    return 128 + signum


@contextlib.contextmanager
def _handling(signums: tuple[int, ...], handler: Callable[[int, object], None]) -> Iterator[None]:
    """Install ``handler`` for those of ``signums`` that are not ignored (an ignored
    ``SIGHUP`` under ``nohup``, an ignored ``SIGINT`` in a background job, stay ignored)
    while the block runs, then put the previous handlers back. Outside the main thread,
    where Python cannot handle signals, nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    try:
        for signum in signums:
            if signal.getsignal(signum) != signal.SIG_IGN:
                previous[signum] = signal.signal(signum, handler)
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextlib.contextmanager
def unwinding_on_termination() -> Iterator[None]:
    """Raise :class:`Terminated` on ``SIGTERM`` and ``SIGHUP`` while the block runs, in
    the main thread (see :func:`_handling` for ignored signals). Nested uses are harmless:
    the inner one installs the same behaviour again."""

    def terminated(signum: int, _frame: object) -> None:
        raise Terminated(signum)

    with _handling((signal.SIGTERM, signal.SIGHUP), terminated):
        yield


@contextlib.contextmanager
def stopping_on_signals(stop: Callable[[int], None]) -> Iterator[None]:
    """While the block runs, the first of :data:`STOP_SIGNALS` calls ``stop(signum)``
    (which asks the work to stop at its next step, and must not block); a later one
    raises at once (:func:`interrupt_for`), as without this block.

    Args:
        stop: called once, with the first signal's number, in the main thread.
    """
    stopping = False

    def handler(signum: int, _frame: object) -> None:
        nonlocal stopping
        if stopping:
            raise interrupt_for(signum)
        stopping = True
        stop(signum)

    with _handling(STOP_SIGNALS, handler):
        yield
