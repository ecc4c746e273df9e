"""A fault-injecting reverse proxy in front of a real registry, for tests.

It is a reverse proxy (give the client its ``host``) and also works as a forward proxy
(``HTTP_PROXY=http://<host>``: absolute-form request lines are accepted). It injects what
a real registry will not do on request (style.md rule 15): cut a blob body
after N bytes, answer 500 or 429 (``Retry-After``) before passing requests on, corrupt
bytes, send a different manifest than the one asked for, override a header, send a wrong
``Content-Range``, drop ``Range``, or redirect blob GETs (307) to a second server on
another host name (``localhost`` instead of ``127.0.0.1``: the "object store"), which
records the headers it receives and serves the blob from the registry itself.

Both servers listen on 127.0.0.1 on free ports, run in daemon threads, record every
request, and stop when the ``with`` block ends or, at the latest, after ``lifetime``
seconds. Only GET and HEAD are proxied (push to the registry directly). Bodies are
buffered: the test images are small.
"""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import Enum
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import TracebackType
from typing import Literal, Self, TypeVar
from urllib.parse import urlsplit

from services import QuietHTTPServer

Target = Literal["ping", "manifest", "blob", "list", "aci", "any"]
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                         "trailers", "transfer-encoding", "upgrade", "host", "content-length"})
OBJECT_STORE_HOSTNAME = "localhost"
"""The other host name blob redirects go to (the proxy itself is ``127.0.0.1``)."""
REDIRECT_SIGNATURE = "injected-presigned-signature"
"""The fake ``X-Amz-Signature`` query value of redirect URLs."""


class FaultKind(Enum):
    """What a :class:`Fault` does."""

    CUT = "cut"                      # send the headers and the first after_bytes of the body, then close
    STATUS = "status"                # answer status/headers/body without asking the registry
    CORRUPT = "corrupt"              # flip one byte in the middle of the body
    REDIRECT = "redirect"            # 307 to the object store on the other host name
    STRIP_RANGE = "strip-range"      # drop the Range header (the registry answers 200)
    BAD_CONTENT_RANGE = "bad-range"  # shift the Content-Range start of a 206 by one
    SET_HEADER = "set-header"        # override a response header
    REWRITE = "rewrite"              # ask the registry for another path (replace old by new)
    DRIP = "drip"                    # send after_bytes of the body, then one byte every interval seconds
    DRIP_HEAD = "drip-head"          # send the status line and headers one byte every interval seconds


@dataclass(frozen=True)
class Fault:
    """One injected fault. Build them with the class methods.

    Attributes:
        kind: what it does.
        target: which requests it applies to (``/v2/``, manifests, blobs, the listings
            ``tags/list`` and ``_catalog``, or any).
        times: how many matching requests it applies to; ``None`` = all of them.
        after_bytes: for CUT, how many body bytes get through.
        status: for STATUS, the status to answer.
        headers: for STATUS and SET_HEADER, the headers to send.
        body: for STATUS, the body.
        replace: for REWRITE, ``(old, new)`` substrings of the request path.
        interval: for DRIP, the seconds between bytes.
    """

    kind: FaultKind
    target: Target = "blob"
    times: int | None = 1
    after_bytes: int = 0
    status: int = 500
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    replace: tuple[str, str] = ("", "")
    interval: float = 0.0

    @classmethod
    def cut(cls, after_bytes: int, *, times: int | None = 1, target: Target = "blob") -> Fault:
        """Close the connection after ``after_bytes`` of the body (full Content-Length sent)."""
        return cls(FaultKind.CUT, target, times, after_bytes=after_bytes)

    @classmethod
    def drip(cls, after_bytes: int, interval: float, *, times: int | None = 1, target: Target = "blob",
             close: bool = False, chunked: bool = False) -> Fault:
        """Send ``after_bytes`` of the body at once, then one byte every ``interval`` seconds
        (a server that stalls without ever letting a socket read time out); with ``close``,
        the answer says ``Connection: close``; with ``chunked``, the body is sent in chunks
        (the first ``after_bytes``, then one per byte) without a ``Content-Length``."""
        headers = ((("Connection", "close"),) if close else ()) + ((("Transfer-Encoding", "chunked"),) if chunked
                                                                   else ())
        return cls(FaultKind.DRIP, target, times, after_bytes=after_bytes, interval=interval, headers=headers)

    @classmethod
    def drip_head(cls, interval: float, *, times: int | None = 1, target: Target = "manifest") -> Fault:
        """Send the status line and headers one byte every ``interval`` seconds (each
        socket read gets a byte in time, so no read timeout fires), then the body."""
        return cls(FaultKind.DRIP_HEAD, target, times, interval=interval)

    @classmethod
    def respond(cls, status: int, *, target: Target = "blob", times: int | None = 1,
                headers: Iterable[tuple[str, str]] = (), body: bytes | None = None,
                drip_interval: float = 0.0) -> Fault:
        """Answer ``status`` without asking the registry (default body: a distribution error);
        with ``drip_interval``, the body's first 10 bytes at once, then one byte every that
        many seconds."""
        if body is None:
            body = b'{"errors":[{"code":"UNKNOWN","message":"injected failure"}]}'
        return cls(FaultKind.STATUS, target, times, status=status, headers=tuple(headers), body=body,
                   after_bytes=10, interval=drip_interval)

    @classmethod
    def too_many_requests(cls, retry_after: str = "1", *, target: Target = "blob", times: int | None = 1) -> Fault:
        """429 with ``Retry-After`` and a ``TOOMANYREQUESTS`` error body."""
        return cls.respond(429, target=target, times=times, headers=(("Retry-After", retry_after),),
                           body=b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}')

    @classmethod
    def corrupt(cls, *, target: Target = "blob", times: int | None = None) -> Fault:
        """Flip one byte in the middle of the body."""
        return cls(FaultKind.CORRUPT, target, times)

    @classmethod
    def redirect(cls, *, times: int | None = None) -> Fault:
        """Answer blob GETs with 307 to the object store (another host name)."""
        return cls(FaultKind.REDIRECT, "blob", times)

    @classmethod
    def strip_range(cls, *, times: int | None = None) -> Fault:
        """Drop ``Range`` from blob requests (the registry then sends the whole blob)."""
        return cls(FaultKind.STRIP_RANGE, "blob", times)

    @classmethod
    def bad_content_range(cls, *, times: int | None = None) -> Fault:
        """Shift the start of a 206's ``Content-Range`` by one byte."""
        return cls(FaultKind.BAD_CONTENT_RANGE, "blob", times)

    @classmethod
    def set_header(cls, name: str, value: str, *, target: Target = "manifest", times: int | None = None) -> Fault:
        """Override response header ``name``."""
        return cls(FaultKind.SET_HEADER, target, times, headers=((name, value),))

    @classmethod
    def rewrite(cls, old: str, new: str, *, target: Target = "manifest", times: int | None = None) -> Fault:
        """Ask the registry for the path with ``old`` replaced by ``new`` (serve other content)."""
        return cls(FaultKind.REWRITE, target, times, replace=(old, new))


@dataclass(frozen=True)
class Seen:
    """A request a server received: method, path (with query) and headers (names lower-case)."""

    method: str
    path: str
    headers: dict[str, str]


def _target_of(path: str) -> Target:
    bare = urlsplit(path).path
    if bare in ("/v2", "/v2/"):
        return "ping"
    if "/manifests/" in bare:
        return "manifest"
    if "/blobs/" in bare:
        return "blob"
    if bare.endswith(("/tags/list", "/_catalog")):
        return "list"
    if bare.endswith(".aci"):  # appc discovery's downloads
        return "aci"
    return "any"


@dataclass(frozen=True)
class _Upstream:
    host: str
    port: int
    tls: ssl.SSLContext | None
    authorization: str | None  # used by the object store only

    def fetch(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
        conn: http.client.HTTPConnection
        if self.tls is not None:
            conn = http.client.HTTPSConnection(self.host, self.port, timeout=30, context=self.tls)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, path, headers=headers)
            resp = conn.getresponse()
            body = resp.read() if method != "HEAD" else b""
            return resp.status, resp.getheaders(), body
        finally:
            conn.close()


class _Server:
    """A ThreadingHTTPServer on 127.0.0.1 with a handler function."""

    def __init__(self, handle: Callable[[BaseHTTPRequestHandler], None],
                 tls: tuple[Path, Path] | None = None) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                handle(self)

            def do_HEAD(self) -> None:
                handle(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:  # https: the handshake in accept(), on the serving thread
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def _send(handler: BaseHTTPRequestHandler, status: int, headers: Iterable[tuple[str, str]], body: bytes,
          *, cut_after: int | None = None, drip: tuple[int, float] | None = None,
          extra_headers: Iterable[tuple[str, str]] = (), drip_head: float | None = None) -> None:
    handler.send_response(status)
    for name, value in headers:
        if name.lower() not in _HOP_BY_HOP:
            handler.send_header(name, value)
    for name, value in extra_headers:  # hop-by-hop ones we mean (Connection: close)
        handler.send_header(name, value)
        if name.lower() == "connection" and value.lower() == "close":
            handler.close_connection = True
    chunked = any(name.lower() == "transfer-encoding" for name, _ in extra_headers)
    if not chunked:
        handler.send_header("Content-Length", str(len(body)))
    if drip_head is not None:
        head = b"".join(handler._headers_buffer) + b"\r\n"  # type: ignore[attr-defined]
        handler._headers_buffer = []  # type: ignore[attr-defined]
        try:
            for i in range(len(head)):  # until the client gives up and closes
                handler.wfile.write(head[i:i + 1])
                handler.wfile.flush()
                time.sleep(drip_head)
        except OSError:
            handler.close_connection = True
            return
    else:
        handler.end_headers()
    if handler.command == "HEAD":
        return
    if drip is not None:
        after, interval = drip

        def put(data: bytes) -> None:
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            handler.wfile.flush()

        try:
            put(body[:after])
            for i in range(after, len(body)):  # until the client gives up and closes
                time.sleep(interval)
                put(body[i:i + 1])
            if chunked:
                handler.wfile.write(b"0\r\n\r\n")
        except OSError:
            handler.close_connection = True
        return
    if cut_after is None:
        handler.wfile.write(body)
        return
    handler.wfile.write(body[:cut_after])
    handler.wfile.flush()
    handler.close_connection = True
    try:
        handler.connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


_T = TypeVar("_T")


def finishes_within(seconds: float, work: Callable[[], _T]) -> _T:
    """Run ``work`` in a daemon thread and return what it returns (or raise what it
    raised), failing the test when it has not ended within ``seconds``: against a DRIP
    fault, a client without a limit would otherwise hold the test for days.

    Raises:
        AssertionError: ``work`` is still running after ``seconds``.
    """
    results: list[_T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(work())
        except BaseException as err:  # noqa: BLE001 (raised below, in the test's thread)
            errors.append(err)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still running after {seconds} s"
    if errors:
        raise errors[0]
    return results[0]


class FaultProxy:
    """The proxy and its object store. Use as a context manager.

    Args:
        upstream_url: the registry (``http(s)://127.0.0.1:PORT``).
        ca_file: the CA to verify an https registry with.
        upstream_creds: Basic credentials the *object store* uses to read blobs from the
            registry (it never forwards the client's ``Authorization``).
        lifetime: the servers stop by themselves after this many seconds.
        serve_tls: ``(certificate, key)``: the proxy answers https with them.
    """

    def __init__(self, upstream_url: str, *, ca_file: Path | None = None,
                 upstream_creds: tuple[str, str] | None = None, lifetime: float = 120.0,
                 serve_tls: tuple[Path, Path] | None = None) -> None:
        parts = urlsplit(upstream_url)
        tls = ssl.create_default_context(cafile=str(ca_file)) if parts.scheme == "https" else None
        auth = None
        if upstream_creds is not None:
            auth = "Basic " + base64.b64encode(f"{upstream_creds[0]}:{upstream_creds[1]}".encode()).decode()
        assert parts.hostname is not None and parts.port is not None
        self._upstream = _Upstream(parts.hostname, parts.port, tls, auth)
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self.requests: list[Seen] = []
        self.store_requests: list[Seen] = []
        self._lifetime = lifetime
        self._serve_tls = serve_tls
        self._proxy: _Server | None = None
        self._store: _Server | None = None
        self._timer: threading.Timer | None = None

    def __enter__(self) -> Self:
        self._proxy = _Server(self._handle_proxy, self._serve_tls)
        self._store = _Server(self._handle_store)
        self._timer = threading.Timer(self._lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop both servers (idempotent)."""
        with self._lock:
            servers, self._proxy, self._store = (self._proxy, self._store), None, None
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        for server in servers:
            if server is not None:
                server.stop()

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``: give this to the client as the registry host."""
        assert self._proxy is not None
        return f"127.0.0.1:{self._proxy.port}"

    @property
    def store_host(self) -> str:
        """``localhost:PORT``: the object store blob redirects point at."""
        assert self._store is not None
        return f"{OBJECT_STORE_HOSTNAME}:{self._store.port}"

    def add(self, *faults: Fault) -> FaultProxy:
        """Inject ``faults`` (in addition to those already set)."""
        with self._lock:
            self._faults.extend(faults)
        return self

    def clear(self) -> FaultProxy:
        """Remove every fault: later requests pass through as they are."""
        with self._lock:
            self._faults.clear()
        return self

    def _take(self, target: Target, kinds: Iterable[FaultKind], *, first_only: bool = False) -> list[Fault]:
        """The faults of ``kinds`` that apply to one request of ``target``, their counts consumed."""
        wanted = set(kinds)
        chosen: list[Fault] = []
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.target not in (target, "any") or fault.kind not in wanted:
                    continue
                if fault.times is not None:
                    if fault.times <= 0:
                        continue
                    self._faults[i] = replace(fault, times=fault.times - 1)
                chosen.append(fault)
                if first_only:
                    break
        return chosen

    def _handle_proxy(self, handler: BaseHTTPRequestHandler) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            self.requests.append(Seen(handler.command, handler.path, headers))
        if handler.path.startswith("http://"):  # used as a forward proxy (HTTP_PROXY): absolute-form
            parts = urlsplit(handler.path)
            handler.path = parts.path + (f"?{parts.query}" if parts.query else "")
        target = _target_of(handler.path)
        # Faults that answer by themselves come first; one of them per request.
        for fault in self._take(target, (FaultKind.STATUS, FaultKind.REDIRECT), first_only=True):
            if fault.kind is FaultKind.STATUS:
                _send(handler, fault.status, fault.headers, fault.body,
                      drip=(fault.after_bytes, fault.interval) if fault.interval else None)
            else:
                location = (f"http://{self.store_host}/store{urlsplit(handler.path).path}"
                            f"?X-Amz-Signature={REDIRECT_SIGNATURE}")
                _send(handler, 307, [("Location", location)], b"")
            return
        faults = self._take(target, set(FaultKind) - {FaultKind.STATUS, FaultKind.REDIRECT})
        kinds = {f.kind for f in faults}
        path = handler.path
        for fault in faults:
            if fault.kind is FaultKind.REWRITE:
                path = path.replace(*fault.replace)
        forward = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_BY_HOP}
        if FaultKind.STRIP_RANGE in kinds:
            forward = {k: v for k, v in forward.items() if k.lower() not in ("range", "if-range")}
        status, resp_headers, body = self._upstream.fetch(handler.command, path, forward)
        cut_after = None
        drip_head: float | None = None
        drip: tuple[int, float] | None = None
        closing_headers: list[tuple[str, str]] = []
        for fault in faults:
            if fault.kind is FaultKind.SET_HEADER:
                names = {n.lower() for n, _ in fault.headers}
                resp_headers = [(n, v) for n, v in resp_headers if n.lower() not in names] + list(fault.headers)
            elif fault.kind is FaultKind.CORRUPT and body:
                middle = len(body) // 2
                body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1:]
            elif fault.kind is FaultKind.BAD_CONTENT_RANGE and status == 206:
                resp_headers = [(n, _shift_range(v) if n.lower() == "content-range" else v)
                                for n, v in resp_headers]
            elif fault.kind is FaultKind.CUT and status in (200, 206):
                cut_after = min(fault.after_bytes, len(body))
            elif fault.kind is FaultKind.DRIP and status in (200, 206):
                drip = (fault.after_bytes, fault.interval)
                closing_headers = list(fault.headers)
            elif fault.kind is FaultKind.DRIP_HEAD:
                drip_head = fault.interval
        _send(handler, status, resp_headers, body, cut_after=cut_after, drip=drip, extra_headers=closing_headers,
              drip_head=drip_head)

    def _handle_store(self, handler: BaseHTTPRequestHandler) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            self.store_requests.append(Seen(handler.command, handler.path, headers))
        path = urlsplit(handler.path).path
        if not path.startswith("/store/"):
            _send(handler, 404, [], b"no such object")
            return
        forward = {k: v for k, v in handler.headers.items() if k.lower() in ("range", "if-range", "accept-encoding")}
        if self._upstream.authorization:
            forward["Authorization"] = self._upstream.authorization
        status, resp_headers, body = self._upstream.fetch(handler.command, path[len("/store"):], forward)
        keep = [(n, v) for n, v in resp_headers if n.lower() in ("content-type", "content-range", "etag")]
        _send(handler, status, keep, body)


def _shift_range(value: str) -> str:
    """``bytes A-B/T`` → ``bytes (A+1)-B/T``."""
    unit, _, spec = value.partition(" ")
    first, _, rest = spec.partition("-")
    return f"{unit} {int(first) + 1}-{rest}" if first.isdigit() else value
