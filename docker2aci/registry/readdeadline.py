"""A deadline for each read of a response body, enforced by cutting the connection.

A socket read timeout fires only when nothing at all arrives for that long: a server that
sends one byte every few seconds holds a download open forever. Here every read of a body
(a piece of at most :data:`SLOW_READ`'s bytes) must end within its seconds; a thread
watches and, past the deadline, shuts the connection's socket down, so the read fails as
on a broken connection and the caller resumes or retries as it does then. The registry
client (blobs, manifests, tokens, error bodies) and appc discovery (ACI downloads) use it.
(Response headers are not covered: http.client reads them before the response is ours.)
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import requests

SLOW_READ = (256 * 1024, 60.0)
"""A body is read in pieces of at most the first number of bytes (256 KiB), and a piece
that takes longer than the second number of seconds (60: under about 4 KiB/s) cuts the
connection, as a broken one is cut: the registry client resumes a blob and asks for a
manifest again, up to its retry policy's attempts (a token, catalogue page or error body
fails); discovery downloads an ACI again."""


class TooSlow(TimeoutError):
    """A read of a body was cut by its :class:`ReadDeadline` (a TimeoutError, whose
    ``strerror`` says why)."""


class ReadDeadline:
    """Cut a response's connection (shut its socket down) when one read of its body takes
    longer than ``seconds``; that read then raises :class:`TooSlow`. A thread of its own
    watches (every second, or a quarter of ``seconds`` if less) while the ``with`` block
    lasts; wrap each read in :meth:`read`.

    The socket is shut down only while a read is under way, under the lock that ends the
    read: a connection handed back to the pool is never touched. Only the file descriptor
    is shut down, never the TLS state another thread is using.

    Args:
        response: a streamed response (``stream=True``) whose body is to be read.
        seconds: the longest one read may take.
    """

    def __init__(self, response: requests.Response, seconds: float) -> None:
        connection = getattr(response.raw, "connection", None)
        self._sock: socket.socket | None = getattr(connection, "sock", None)
        self.seconds = seconds
        self._lock = threading.Lock()
        self._deadline: float | None = None
        self.fired = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ReadDeadline:
        if self._sock is not None:
            self._thread = threading.Thread(target=self._watch, daemon=True, name="docker2aci-read-deadline")
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @contextmanager
    def read(self) -> Iterator[None]:
        """One read, which must end within ``seconds``.

        Raises:
            TooSlow: the read was cut (whatever it raised instead); a TimeoutError.
        """
        with self._lock:
            self._deadline = time.monotonic() + self.seconds
        try:
            yield
        except BaseException:
            if self.fired:
                raise TooSlow(errno.ETIMEDOUT, self.reason()) from None
            raise
        finally:
            with self._lock:
                self._deadline = None
        if self.fired:  # the cut came as the read ended well
            raise TooSlow(errno.ETIMEDOUT, self.reason())

    def reason(self) -> str:
        return f"too slow: a read of the body took over {self.seconds:g} s"

    def _watch(self) -> None:
        tick = min(1.0, self.seconds / 4)
        while not self._stop.wait(tick):
            with self._lock:
                if self._deadline is not None and time.monotonic() > self._deadline:
                    self.fired = True
                    self._deadline = None
                    assert self._sock is not None
                    with suppress(OSError):
                        socket.socket.shutdown(self._sock, socket.SHUT_RDWR)  # the fd: not the TLS state
                    return
