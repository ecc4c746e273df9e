"""The console script's standard streams: descriptors a caller left closed, a stdout whose
reader went away (``| head -1``), and a stdout that cannot be written (``> /dev/full``, a
full or failing disk).

Each of these ended in a Python traceback, or handed the command's own files to the app
``run`` starts. Only :func:`docker2aci.cli.entry` (the ``docker2aci`` process) installs
them; :func:`docker2aci.cli.main`, called inside a longer-lived process, leaves that
process's streams alone.
"""

from __future__ import annotations

import contextlib
import io
import os
import select
import signal
import sys

from .interrupts import exit_status


class StdoutError(OSError):
    """Standard output could not be written, for a reason other than its reader having
    gone (``ENOSPC``, ``EIO``, ``EFBIG``, ``EDQUOT``...): raised, with the ``errno`` and
    ``strerror`` of the failed ``write(2)``, by the stream :func:`guard_stdout` installs."""


class _GuardedStdout(io.FileIO):
    """Descriptor 1, whose failed writes raise :class:`StdoutError`, so that they are told
    apart from the ``OSError`` of any other file a command writes; the first is kept
    (:attr:`failure`), for a caller that swallows it (argparse's ``--help``)."""

    failure: StdoutError | None = None

    def write(self, data: bytes) -> int:  # type: ignore[override]
        """Write all of ``data``, however many calls it takes: unbuffered, the text layer
        above ignores a short count, and the rest of the output was lost without a word
        (a file size limit, a non-blocking pipe whose reader is slow)."""
        try:
            write_all(self.fileno(), data)
        except BrokenPipeError:
            raise
        except OSError as err:
            failure = StdoutError(err.errno, err.strerror)
            if _GuardedStdout.failure is None:
                _GuardedStdout.failure = failure
            raise failure from None
        return len(data)


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to descriptor ``fd``, however many ``write(2)`` calls it
    takes; a non-blocking descriptor that is full (a pipe whose reader is slow) is waited
    on until it takes more.

    Raises:
        OSError: a write failed (``BrokenPipeError``: the reader went away).
    """
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            select.select([], [fd], [])


def reserve() -> None:
    """Open ``/dev/null`` on each of descriptors 0, 1 and 2 that the caller left closed
    (``docker2aci run IMG >&-``), and give Python a stream on it.

    Otherwise the first file or pipe opened later takes that number: ``run`` handed its
    own lock or pipe to the app as its stdout, and Python, which has no ``sys.stdout``
    then, failed with a traceback. Like the app's output under Docker, what is written
    there goes nowhere, without an error.
    """
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:  # the lowest free number is fd itself, unless another thread raced
                os.dup2(null, fd)
                os.close(null)
            os.set_inheritable(fd, True)
        if getattr(sys, name) is None:  # the stream lives as long as the process
            stream = open(fd, mode, closefd=False, encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
            setattr(sys, name, stream)


def guard_stdout() -> None:
    """Make ``sys.stdout`` a stream on descriptor 1 whose write errors raise
    :class:`StdoutError`, buffered as the one it replaces (the same encoding, error handler
    and line buffering; unbuffered under ``python -u`` or ``PYTHONUNBUFFERED``, as
    Python makes it: a text layer writing through to the file). Call it once, before the
    command writes anything."""
    current = sys.stdout
    if current is None or not hasattr(current, "encoding"):
        return
    with contextlib.suppress(OSError, ValueError, AttributeError):
        if current.fileno() != 1:  # already redirected by the caller: leave it
            return
        current.flush()
        raw = _GuardedStdout(1, "w", closefd=False)
        unbuffered = not isinstance(current.buffer, io.BufferedWriter)
        sys.stdout = io.TextIOWrapper(raw if unbuffered else io.BufferedWriter(raw),  # type: ignore[arg-type]
                                      encoding=current.encoding, errors=current.errors,
                                      line_buffering=current.line_buffering,
                                      write_through=unbuffered or current.write_through)


def reader_gone() -> bool:
    """Whether standard output is a pipe whose reader has gone (``| head -1`` after its
    line): poll reports an error on the write end then."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), 0)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def _drop_stdout() -> None:
    """Point descriptor 1 at ``/dev/null``, so that the output still buffered, which the
    interpreter flushes at exit, goes nowhere instead of failing again."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def closed_status() -> int:
    """The exit status of a command whose standard output's reader went away: the
    status a death by ``SIGPIPE`` gives (141, as the reference tool, a Go program,
    gets), without a traceback; what is left in the buffer is dropped."""
    _drop_stdout()
    return exit_status(signal.SIGPIPE)


def failed_status(err: StdoutError, status: int) -> int:
    """Say on stderr, in one line, that standard output could not be written
    (``Error: writing standard output: No space left on device``), drop what is left in
    its buffer, and return ``status`` (the caller's status for an error, 1)."""
    with contextlib.suppress(OSError, ValueError):
        print(f"Error: writing standard output: {err.strerror or os.strerror(err.errno or 0)}", file=sys.stderr)
    _GuardedStdout.failure = None  # said once
    _drop_stdout()
    return status


def flushed(status: int | str | None, error_status: int) -> int | str | None:
    """Write out what is still buffered for standard output and return the exit status:
    ``status`` as it was, or that of a reader gone (:func:`closed_status`) or of an
    output that failed (:func:`failed_status` with ``error_status``), without a traceback."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return closed_status()
    except StdoutError as err:
        return failed_status(err, error_status)
    if _GuardedStdout.failure is not None:  # a write that failed, its error swallowed on the way
        return failed_status(_GuardedStdout.failure, error_status)
    return status
