"""A deadline for each read of a response body, enforced by cutting the connection.

A socket read timeout fires only when nothing at all arrives for that long: a server that
sends one byte every few seconds holds a download open forever. Here every read of a body
(a piece of at most :data:`SLOW_READ`'s bytes) must end within its seconds; a thread
watches and, past the deadline, shuts the connection's socket down, so the read fails as
on a broken connection and the caller resumes or retries as it does then; the bytes that
read brought are kept. The registry client (blobs, manifests, tokens, error bodies) and
appc discovery (ACI downloads) read bodies through :func:`body_pieces`. What comes before
a body has its deadline too, in the connections both use (:class:`DeadlineConnection`):
a TLS handshake, and a response's status line and headers, must each end within
:data:`HEAD_SECONDS`.

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
import os
import socket
import threading
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import urllib3
import urllib3.connection

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


HEAD_SECONDS = 120.0
"""The longest a TLS handshake, or a response's status line and headers from the moment the
request is sent, may take (seconds). A server that is silent fails sooner, at the socket's
read timeout (60 s); this is for one that drips them."""


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
    raw = response.raw
    with ReadDeadline(lambda: _socket_of(raw), seconds) as deadline:
        while limit is None or total < limit:
            try:
                with deadline.read():
                    chunk = raw.read(piece if limit is None else min(piece, limit - total),
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
    """Cut a connection (shut its socket down) when one read takes longer than
    ``seconds``; that read then raises :class:`TooSlow`, or returns what it had and the
    next one ends the body (see :meth:`check`). A thread of its own watches (every
    second, or a quarter of ``seconds`` if less) while the ``with`` block lasts; wrap each
    read in :meth:`read`. :func:`body_pieces` does all that for a body.

    Args:
        find_socket: the socket to cut, or its file descriptor, looked up when the
            deadline passes (``None``: there is none any more, or not yet; nothing is
            cut). A descriptor must stay open while a read is under way.
        seconds: the longest one read may take.
        what: what is read, in the :class:`TooSlow` message.
        always: watch even when there is no socket yet (a connection being set up);
            otherwise no thread is started for a body that has ended already.
    """

    def __init__(self, find_socket: Callable[[], socket.socket | int | None], seconds: float,
                 what: str = "a read of the body", *, always: bool = False) -> None:
        self._find_socket = find_socket
        self._what = what
        self._always = always
        self.seconds = seconds
        self._lock = threading.Lock()
        self._deadline: float | None = None
        self.fired = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ReadDeadline:
        if self._always or self._find_socket() is not None:
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

    def restart(self) -> None:
        """Start the read under way's clock again (the connection's socket exists only
        now: the name lookup and the TCP connect before it have limits of their own)."""
        with self._lock:
            if self._deadline is not None:
                self._deadline = time.monotonic() + self.seconds

    def check(self) -> None:
        """Raise TooSlow if a read was cut: whatever the read raised then, or the end of
        the body it met, came of the cut."""
        if self.fired:
            raise TooSlow(errno.ETIMEDOUT, f"too slow: {self._what} took over {self.seconds:g} s")

    def _watch(self) -> None:
        tick = min(1.0, self.seconds / 4)
        while not self._stop.wait(tick):
            with self._lock:
                if self._deadline is None or time.monotonic() <= self._deadline:
                    continue
                sock = self._find_socket()
                if sock is None:  # the body has ended meanwhile (or the connection was never made)
                    continue
                self.fired = True
                self._deadline = None
                try:
                    _shutdown(sock)
                except Exception as err:  # noqa: BLE001 (an fd already closed: the read ends anyway)
                    log.debug("cutting a slow read: %r", err)
                return


def _shutdown(target: socket.socket | int) -> None:
    """Shut a socket's reading side down, given as an object or as its file descriptor (a
    connection being set up: its socket object is being wrapped in TLS, which takes its
    descriptor over). The descriptor is lent, never closed.

    A read blocked on the socket then returns what it has and the next one the end. Only
    the reading side: once this side has sent its FIN as well (``SHUT_RDWR``), Linux
    answers a byte that still arrives (a dripping server's next one) with a reset, and a
    read that has not returned by then raises ``ECONNRESET``, losing what it had read."""
    if isinstance(target, int):
        borrowed = socket.socket(fileno=target)
        try:
            borrowed.shutdown(socket.SHUT_RD)
        finally:
            borrowed.detach()
        return
    socket.socket.shutdown(target, socket.SHUT_RD)


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


class DeadlineConnection:
    """A mixin for urllib3's connection classes: the TLS handshake (with the rest of the
    connection's set-up) and the reading of each response's status line and headers must
    each end within :attr:`head_seconds` (:data:`HEAD_SECONDS`), or the socket is shut
    down and they fail with :class:`TooSlow` (which urllib3 and requests report as a
    read timeout or a broken connection, retried as those are). A socket timeout alone
    fires only when nothing arrives at all.

    :class:`DeadlineHTTPConnection` and :class:`DeadlineHTTPSConnection` are the two
    connections; :data:`DEADLINE_POOLS` the pool classes that make them, for a pool
    manager's ``pool_classes_by_scheme``.
    """

    head_seconds: float = HEAD_SECONDS
    _cut_fd: int | None = None  # a duplicate of the socket's descriptor, held while a deadline runs: what is cut
    _setting_up: ReadDeadline | None = None

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        if self._setting_up is not None:
            # The clock first: the watchdog cuts nothing while there is no descriptor, and
            # the name lookup and TCP connect may have used up the old deadline.
            self._setting_up.restart()
            # A duplicate, not the number: a failed TLS handshake closes the socket's own
            # descriptor at once (its TLS layers take that descriptor over), and another
            # thread may get its number before the deadline ends. Shutting the duplicate
            # down cuts the same connection.
            self._cut_fd = os.dup(sock.fileno())
        return sock

    def connect(self) -> None:
        deadline = self._setting_up = ReadDeadline(lambda: self._cut_fd, self.head_seconds,
                                                   "setting up the connection", always=True)
        try:
            self._within(deadline, super().connect)  # type: ignore[misc]
        finally:
            self._setting_up = None
            self._release_cut_fd()

    def getresponse(self) -> Any:
        sock = getattr(self, "sock", None)
        fd = sock.fileno() if sock is not None else -1
        if fd < 0:
            return super().getresponse()  # type: ignore[misc]
        self._cut_fd = os.dup(fd)  # the connection is ours while its response is read
        try:
            return self._within(ReadDeadline(lambda: self._cut_fd, self.head_seconds,
                                             "reading the status line and headers"),
                                super().getresponse)  # type: ignore[misc]
        finally:
            self._release_cut_fd()

    def _within(self, deadline: ReadDeadline, step: Callable[[], Any]) -> Any:
        """Run ``step`` (a connect, or the reading of a response's head) as one read of
        ``deadline``. If the deadline cut it, what it returned is not whole either
        (http.client takes the end of the stream inside the headers for their end, and a
        status line without a reason for a whole one): it is closed, with the connection,
        and TooSlow raised."""
        with deadline:
            with deadline.read():
                try:
                    result = step()
                except Exception:
                    deadline.check()
                    raise
            if deadline.fired:  # set under the lock that the end of the read took: final here
                if result is not None:
                    result.close()
                self.close()  # type: ignore[attr-defined]
                deadline.check()
            return result

    def _release_cut_fd(self) -> None:
        if self._cut_fd is not None:
            os.close(self._cut_fd)
            self._cut_fd = None


class DeadlineHTTPConnection(DeadlineConnection, urllib3.connection.HTTPConnection):
    """urllib3's HTTP connection, with the :class:`DeadlineConnection` deadlines."""


class DeadlineHTTPSConnection(DeadlineConnection, urllib3.connection.HTTPSConnection):
    """urllib3's HTTPS connection, with the :class:`DeadlineConnection` deadlines."""


class _DeadlineHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = DeadlineHTTPConnection


class _DeadlineHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = DeadlineHTTPSConnection


DEADLINE_POOLS: dict[str, type[urllib3.HTTPConnectionPool]] = {"http": _DeadlineHTTPPool,
                                                                  "https": _DeadlineHTTPSPool}
"""Pool classes by scheme whose connections have the :class:`DeadlineConnection`
deadlines (for ``PoolManager.pool_classes_by_scheme``)."""
