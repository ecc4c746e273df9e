"""A deadline for each read of a response body, enforced by cutting the connection.

A socket read timeout fires only when nothing at all arrives for that long: a server that
sends one byte every few seconds holds a download open forever. Here every read of a body
(a piece of at most :data:`SLOW_READ`'s bytes) must end within its seconds; a thread
watches and, past the deadline, shuts the connection's socket down, so the read fails as
on a broken connection and the caller resumes or retries as it does then; the bytes that
read brought are kept. The registry client (blobs, manifests, tokens, error bodies) and
appc discovery (ACI downloads) read bodies through :func:`body_pieces`. (Response headers
are not covered: http.client reads them before the response is ours.)

The socket is found through urllib3's and http.client's response objects (the
connection's ``sock``; for a response that closes its connection, http.client's own file
object, which is the only holder left), and looked up again when the deadline passes: a
body that has ended, whose connection may be back in urllib3's pool, has none, and is left
alone. Only the file descriptor is shut down, never the TLS state the reading thread uses.
"""

from __future__ import annotations

import errno
import http.client
import logging
import socket
import threading
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .diagnostics import causes

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

SLOW_READ = (256 * 1024, 60.0)
"""A body is read in pieces of at most the first number of bytes (256 KiB), and a piece
that takes longer than the second number of seconds (60: under about 4 KiB/s) cuts the
connection, as a broken one is cut: the registry client resumes a blob (a cut that brought
a quarter of a piece does not use up an attempt, so a slow but steady link gets there) and
asks for a manifest again, up to its retry policy's attempts (a token, catalogue page or
error body fails). Discovery, which starts a download again from 0, reads smaller pieces
(:data:`docker2aci.discovery.DISCOVERY_SLOW_READ`)."""


class TooSlow(TimeoutError):
    """A read of a body was cut by its :class:`ReadDeadline` (a TimeoutError, whose
    ``strerror`` says why)."""


def body_pieces(response: requests.Response, slow_read: tuple[int, float] = SLOW_READ, *,
                decode_content: bool, limit: int | None = None) -> Generator[bytes, None, None]:
    """The body of a streamed response, in pieces, each read within the deadline.

    Close the generator (``contextlib.closing``) when done with it early: that stops the
    watching thread.

    Args:
        response: a response made with ``stream=True``.
        slow_read: ``(bytes, seconds)``: the largest piece read at once, and the longest
            one read may take (:data:`SLOW_READ`).
        decode_content: undo ``Content-Encoding`` (urllib3's flag).
        limit: stop after this many bytes (of the pieces as given); ``None``: the whole body.

    Yields:
        non-empty pieces of at most ``slow_read[0]`` bytes, until the end of the body.

    Raises:
        TooSlow: a read was cut (after the bytes it brought were given, also those of a
            chunked read that http.client reports in its IncompleteRead when the body is
            not decoded), or the body ended because of the cut.
        (and whatever urllib3 raises for a broken connection or a short body, after the
        same salvage)
    """
    piece, seconds = slow_read
    total = 0
    with ReadDeadline(response, seconds) as deadline:
        while limit is None or total < limit:
            try:
                with deadline.read():
                    chunk = response.raw.read(piece if limit is None else min(piece, limit - total),
                                              decode_content=decode_content)
            except Exception as err:
                # http.client drops what a chunked read had when the connection ends under
                # it, but says what it was: those bytes are the body's, as a plain read's are
                partial = b"" if decode_content else _partial_of(err)
                if partial:
                    yield partial
                deadline.check()
                raise
            if not chunk:
                deadline.check()  # an end the cut made is no end
                return
            total += len(chunk)
            yield chunk


class ReadDeadline:
    """Cut a response's connection (shut its socket down) when one read of its body takes
    longer than ``seconds``; that read then raises :class:`TooSlow`, or returns what it
    had and the next one ends the body (see :meth:`check`). A thread of its own watches
    (every second, or a quarter of ``seconds`` if less) while the ``with`` block lasts;
    wrap each read in :meth:`read`. :func:`body_pieces` does all that.

    Args:
        response: a streamed response (``stream=True``) whose body is to be read.
        seconds: the longest one read may take.
    """

    def __init__(self, response: requests.Response, seconds: float) -> None:
        self._raw = response.raw
        self.seconds = seconds
        self._lock = threading.Lock()
        self._deadline: float | None = None
        self.fired = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ReadDeadline:
        if _socket_of(self._raw) is not None:
            self._thread = threading.Thread(target=self._watch, daemon=True, name="docker2aci-read-deadline")
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @contextmanager
    def read(self) -> Iterator[None]:
        """One read, which must end within ``seconds`` (then see :meth:`check`)."""
        with self._lock:
            self._deadline = time.monotonic() + self.seconds
        try:
            yield
        finally:
            with self._lock:
                self._deadline = None

    def check(self) -> None:
        """Raise TooSlow if a read was cut: whatever the read raised then, or the end of
        the body it met, came of the cut."""
        if self.fired:
            raise TooSlow(errno.ETIMEDOUT, f"too slow: a read of the body took over {self.seconds:g} s")

    def _watch(self) -> None:
        tick = min(1.0, self.seconds / 4)
        while not self._stop.wait(tick):
            with self._lock:
                if self._deadline is None or time.monotonic() <= self._deadline:
                    continue
                sock = _socket_of(self._raw)
                if sock is None:  # the body has ended meanwhile
                    continue
                self.fired = True
                self._deadline = None
                try:
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except Exception as err:  # noqa: BLE001 (an fd already closed: the read ends anyway)
                    log.debug("cutting a slow read: %r", err)
                return


def _socket_of(raw: Any) -> socket.socket | None:
    """The socket a streamed response's body still comes from; ``None`` once the body has
    ended (the connection released to urllib3's pool, http.client's file closed) or when
    it cannot be found."""
    sock = getattr(getattr(raw, "connection", None), "sock", None)  # urllib3: until released
    if sock is None:  # a response that closes its connection: http.client holds the only file
        reader = getattr(getattr(raw, "_fp", None), "fp", None)  # http.client: until the body ends
        sock = getattr(getattr(reader, "raw", None), "_sock", None)
    sock = getattr(sock, "socket", sock)  # TLS in TLS (an https proxy): urllib3's SSLTransport
    return sock if isinstance(sock, socket.socket) else None


def _partial_of(err: BaseException) -> bytes:
    """The bytes the first ``http.client.IncompleteRead`` behind ``err`` holds (urllib3
    wraps it in a ProtocolError; for a chunked body, the chunks that were complete), or
    ``b""``."""
    for cause in causes(err):
        if isinstance(cause, http.client.IncompleteRead) and isinstance(cause.partial, bytes):
            return cause.partial
    return b""
