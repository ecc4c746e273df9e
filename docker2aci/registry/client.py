"""The registry client: one HTTP session that owns the registry protocol policy.

Docker registry HTTP API v2 / OCI distribution spec:

* ``GET /v2/`` (API version check, "ping") on first use: 200 or 401 mean a v2 registry
  (401 only says "authenticate", public-cases.md #23); https first, http only when
  allowed and https failed at the connection level.
* ``GET /v2/<name>/manifests/<reference>`` with every manifest type in ``Accept``
  (public-cases.md #25); the body is read with a size cap; a manifest asked for by digest
  must hash to it (public-cases.md #28).
* ``GET /v2/<name>/blobs/<digest>`` streamed to a file, hashed on the way, resumed with
  ``Range`` after a cut connection (public-cases.md #32), redirects followed with GET and
  without ``Authorization`` on another host (public-cases.md #24).
* Any 401 is answered once (RFC 7235 challenge, Bearer token or Basic); 408, 429 and 5xx
  and connection failures are retried with backoff honouring ``Retry-After``
  (public-cases.md #31).

Secrets (passwords, tokens, ``user:pass@`` in URLs, presigned URL signatures) never reach
our messages or logs. (urllib3's own DEBUG records, logger ``urllib3.connectionpool``,
show request paths with their query strings, so a presigned redirect URL appears there;
no password or token does, as those travel in headers.)

TLS: without ``cert_dir`` the CAs requests would trust (``REQUESTS_CA_BUNDLE`` or
certifi), loaded once per process (:mod:`docker2aci.cabundle`); with it, the system CAs
and certifi plus the directory's ``*.crt``.
"""

from __future__ import annotations

import http.client
import logging
import re
import socket
import ssl
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Self
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from requests.utils import DEFAULT_CA_BUNDLE_PATH

from converters.numbers import plain_decimal

from .. import cabundle, mediatypes, untrustedjson
from ..digest import Digest
from ..errors import (
    AuthError,
    DigestMismatch,
    Docker2ACIError,
    ImageNotFound,
    InvalidManifest,
    InvalidReference,
    LimitExceeded,
    RegistryError,
    SizeMismatch,
    UsageError,
)
from ..limits import MAX_MANIFEST_BYTES, read_at_most
from ..redact import redact_url
from ..reference import COMPONENT_RE, api_host, is_valid_host, is_valid_tag
from ..terminal import abridged
from .auth import MAX_TOKEN_RESPONSE_BYTES, Authenticator, TokenCache
from .credentials import Credentials
from .diagnostics import (
    MAX_ERROR_BODY_BYTES,
    causes,
    is_temporary_status,
    parse_error_body,
)
from .readdeadline import DEADLINE_POOLS, SLOW_READ, TooSlow, body_pieces
from .retry import RetryPolicy
from .schemes import PlainHttpHosts
from ..manifest import manifest_digests

log = logging.getLogger(__name__)

MANIFEST_MEDIA_TYPES: tuple[str, ...] = mediatypes.ACCEPT_MANIFESTS
"""Every manifest type we read, sent in ``Accept`` on every manifest request (OCI index,
OCI manifest, Docker list, Docker v2, schema 1 prettyjws, schema 1 json)."""
API_VERSION_HEADER = "Docker-Distribution-API-Version"
MAX_LIST_PAGES = 10_000
"""The most pages a tag or repository listing may have (a guard against a registry that
links pages in a loop)."""
MAX_LIST_ITEMS = 250_000
"""The most names a tag or repository listing may hold in all its pages (about 60 MB of
memory; each listed tag costs a mirror one manifest request): a registry that answers
page after page of names must not exhaust memory."""
DEFAULT_RETRY = RetryPolicy()
"""The default retry policy: 5 attempts, 0.5 s doubling up to 30 s."""
_WARNED_PLAIN_HTTP: set[str] = set()
"""Hosts this process has said it reaches over plain http: a mirror's listing and each of
its conversions make a client of their own, and said it once each (a cron job's log)."""
_CONTENT_RANGE_RE = re.compile(r"^\s*bytes\s+(\d{1,20})-(\d{1,20})/(\d{1,20}|\*)\s*$", re.IGNORECASE | re.ASCII)
# Errors of a body read that mean the connection broke (not our disk).
_BODY_ERRORS = (urllib3.exceptions.HTTPError, http.client.HTTPException, requests.RequestException,
                ConnectionError, TimeoutError)


class _SetAuthorization(AuthBase):
    """Puts our ``Authorization`` on a request (and keeps requests' netrc lookup out of it).

    requests drops the header itself when a redirect goes to another host
    (``Session.rebuild_auth``); tests check that on the wire.
    """

    def __init__(self, value: str | None) -> None:
        self._value = value

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self._value is not None:
            request.headers["Authorization"] = self._value
        return request

    def __repr__(self) -> str:
        return "_SetAuthorization(<hidden>)"


class DeadlineAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections (direct, or through an http or https proxy) have
    a deadline for the TLS handshake and for each response's status line and headers
    (:class:`~.readdeadline.DeadlineConnection`); the registry client and discovery mount
    it (or :class:`ContextAdapter`) for every scheme."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = DEADLINE_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        new = proxy not in self.proxy_manager
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if new and proxy.lower().startswith(("http:", "https:")):  # a SOCKS proxy keeps its own pools
            manager.pool_classes_by_scheme = DEADLINE_POOLS
        return manager


class ContextAdapter(DeadlineAdapter):
    """An HTTPAdapter whose https connections use our SSL context: the shared default
    (:func:`docker2aci.cabundle.default_context`), or one with extra CAs and a client
    certificate (:func:`tls_context`). The TLS hop to an https proxy is verified with
    the shared default, as requests verifies it with its default bundle. It has the
    :class:`DeadlineAdapter`'s deadlines.

    Args:
        context: gives the context, for each request (so that an unusable CA bundle
            fails the request, as requests fails it).
        verify_proxy: verify an https proxy (``False`` with ``--insecure-skip-verify``).
    """

    def __init__(self, context: Callable[[], ssl.SSLContext], *, verify_proxy: bool = True) -> None:
        self._context = context
        self._verify_proxy = verify_proxy
        super().__init__()

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        # urllib3 verifies the proxy with the pool's ca_certs, which cert_verify (below)
        # clears: without a context of its own it would fall back to the system store.
        if self._verify_proxy and proxy.lower().startswith("https:") and proxy not in self.proxy_manager:
            proxy_kwargs.setdefault("proxy_ssl_context", cabundle.default_context())
        return super().proxy_manager_for(proxy, **proxy_kwargs)

    def build_connection_pool_key_attributes(self, request: requests.PreparedRequest, verify: bool | str,
                                             cert: str | tuple[str, str] | None = None,
                                             ) -> tuple[dict[str, object], dict[str, object]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        if host_params.get("scheme") == "https":
            pool_kwargs.pop("ca_certs", None)
            pool_kwargs.pop("ca_cert_dir", None)
            pool_kwargs["ssl_context"] = self._context()
        return host_params, pool_kwargs

    def cert_verify(self, conn: Any, url: str, verify: bool | str, cert: str | tuple[str, str] | None) -> None:
        # (requests would check REQUESTS_CA_BUNDLE's path here; the context holds the CAs)
        super().cert_verify(conn, url, bool(verify), cert)
        # The CAs are in our context; do not let requests add certifi's file path on top.
        conn.ca_certs = None
        conn.ca_cert_dir = None


def tls_context(cert_dir: str | Path, *, verify: bool = True) -> ssl.SSLContext:
    """An SSL context for a registry, from a Docker ``certs.d``-style directory.

    The system CAs and requests' CA bundle are trusted, plus every ``*.crt`` in
    ``cert_dir``; the first ``*.cert`` with a matching ``*.key`` (``client.cert`` /
    ``client.key``) is the client certificate.

    Args:
        cert_dir: the directory.
        verify: ``False`` disables certificate and host name checks (``--insecure-skip-verify``).

    Raises:
        UsageError: the directory does not exist or a file in it is not a usable PEM file.
    """
    directory = Path(cert_dir)
    if not directory.is_dir():
        raise UsageError(f"--cert-dir {directory}: not a directory")
    context = ssl.create_default_context()
    try:
        context.load_verify_locations(cafile=DEFAULT_CA_BUNDLE_PATH)
    except (OSError, ssl.SSLError):
        pass  # the system store alone is fine
    for ca in sorted(directory.glob("*.crt")):
        try:
            context.load_verify_locations(cafile=str(ca))
        except (OSError, ssl.SSLError) as err:
            raise UsageError(f"--cert-dir {directory}: {ca.name} is not a PEM CA certificate ({err})") from err
    for cert in sorted(directory.glob("*.cert")):
        key = cert.with_suffix(".key")
        if not key.exists():
            raise UsageError(f"--cert-dir {directory}: {cert.name} has no matching {key.name}")
        try:
            context.load_cert_chain(str(cert), str(key))
        except (OSError, ssl.SSLError) as err:
            raise UsageError(f"--cert-dir {directory}: cannot load client certificate {cert.name} ({err})") from err
        break
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _connection_cause(err: BaseException) -> str:
    """A short reason for a connection failure, without URLs (they can carry signatures)."""
    best = type(err).__name__
    slow = next((cur for cur in causes(err) if isinstance(cur, TooSlow)), None)
    if slow is not None:  # a deadline of ours cut it (urllib3 calls that a read timeout or a broken connection)
        return slow.strerror or "too slow"
    for cur in causes(err):
        if isinstance(cur, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {cur.verify_message}"
        if isinstance(cur, ssl.SSLError):
            best = f"TLS error: {cur.reason or cur}"
        elif isinstance(cur, (ConnectionRefusedError, ConnectionResetError, TimeoutError)):
            return cur.strerror or type(cur).__name__
        elif isinstance(cur, urllib3.exceptions.NameResolutionError):
            return "the host name does not resolve"
        elif isinstance(cur, urllib3.exceptions.NewConnectionError):  # (a ConnectTimeoutError subclass)
            best = "cannot connect"
        elif isinstance(cur, urllib3.exceptions.ProtocolError):
            best = "the connection broke"
        elif isinstance(cur, (urllib3.exceptions.ConnectTimeoutError, requests.ConnectTimeout)):
            return "connection timed out"
        elif isinstance(cur, (urllib3.exceptions.ReadTimeoutError, requests.ReadTimeout)):
            return "read timed out"
    return best


def _certificate_failed(err: BaseException) -> bool:
    """Whether a connection failed a certificate check: the server's, or an https proxy's
    (requests reports that one as a connection error). Refused at once, never retried."""
    return any(isinstance(cur, ssl.SSLCertVerificationError) for cur in causes(err))


def _same_host(a: str, b: str) -> bool:
    """Whether two URLs name the same host and port (host names compared without case)."""
    return urlsplit(a).netloc.lower() == urlsplit(b).netloc.lower()


def _failed_target(err: requests.RequestException, url: str, shown: str) -> str:
    """Where a request failed, for messages: ``shown`` (``url`` redacted), or the redirect
    target that failed (redacted, a presigned URL's signature among it) when the registry
    answered with a redirect to another host."""
    failed = getattr(err.request, "url", None) if err.request is not None else None
    if isinstance(failed, str) and not _same_host(failed, url):
        return f"{redact_url(failed)} (where {shown} redirected)"
    return shown


def _via_proxy(err: BaseException) -> str:
    """`` through the proxy`` for a failure of the proxy's hop (for messages), else ``""``."""
    return " through the proxy" if isinstance(err, requests.exceptions.ProxyError) else ""


_UNKNOWN_NAME = frozenset({socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)})
"""``getaddrinfo`` errors that say the name does not exist (``EAI_AGAIN``, a resolver that
did not answer, is not among them)."""


def _name_unknown(err: BaseException) -> bool:
    """Whether a connection failed because the host name does not exist: not retried,
    as Go's registry clients do not retry a ``DNSError`` that is not temporary."""
    return any(isinstance(cur, socket.gaierror) and cur.errno in _UNKNOWN_NAME for cur in causes(err))


_PLAIN_HTTP_ANSWERS = ("wrong version number", "wrong_version_number", "unknown protocol", "unknown_protocol",
                       "http request", "http_request", "record layer failure", "record_layer_failure",
                       "packet length too long")
"""What OpenSSL says when the server answers a TLS hello in plain text (lower case)."""


def _plain_http_port(host: str, https_error: RegistryError) -> bool:
    """Whether a failed https attempt shows that the port itself speaks plain http: the
    host names its port (so http went to the same one) and the TLS handshake got a
    plain-text answer. Only then is the host remembered (:mod:`.schemes`): a refused
    connection, a timeout or a certificate problem is never taken for a plain-http
    registry beyond the run it happened in."""
    has_port = host.rpartition("]")[2].count(":") == 1
    cause = https_error.__cause__
    return has_port and isinstance(cause, requests.exceptions.SSLError) and _plain_http_answer(cause)


def _plain_http_answer(err: requests.exceptions.SSLError) -> bool:
    """Whether a TLS failure is a plain-text answer to the TLS hello (an http server)."""
    return any(marker in str(err).lower() for marker in _PLAIN_HTTP_ANSWERS)


def _discard(resp: requests.Response, slow_read: tuple[int, float]) -> None:
    """Close a response whose body we do not need, keeping the connection when the rest is
    small and comes in time (:data:`~.readdeadline.SLOW_READ`)."""
    remaining = getattr(resp.raw, "length_remaining", None)
    if isinstance(remaining, int) and remaining <= MAX_ERROR_BODY_BYTES:
        try:
            with closing(body_pieces(resp, slow_read, decode_content=False)) as pieces:
                for _ in pieces:
                    pass
            resp.raw.drain_conn()  # nothing left: the connection goes back to the pool
        except _BODY_ERRORS:
            pass
    resp.close()


def _media_type(content_type: str | None) -> str:
    """``Content-Type`` without parameters, lower-case (``""`` when absent)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def _check_unlabelled_manifest(untrusted_body: bytes, media_type: str, url: str, source: str) -> None:
    """Refuse a manifest answer whose ``Content-Type`` is no manifest type and whose body
    is no JSON object either: a misconfigured proxy's or a login page's HTML served with
    status 200, say. A JSON object served so is left to the caller, which tells its kind
    from the body (its ``mediaType`` and shape), so a manifest mislabelled ``text/plain``
    or ``application/octet-stream`` is still read, as skopeo reads it (containers/image
    ``manifest.NormalizedMIMEType``: some registries serve ``text/plain``).

    Args:
        untrusted_body: the body as received.
        media_type: the ``Content-Type`` without parameters (``""`` when absent).
        url: the request URL, redacted (:func:`~docker2aci.redact.redact_url`); the
            message shows at most :data:`~docker2aci.terminal.MAX_SHOWN_CHARS` of it and
            of the media type (a redirect or a header can be long).
        source: the manifest reference, for the message.

    Raises:
        InvalidManifest: names the URL, the media type served and the types asked for.
    """
    try:
        doc = untrustedjson.loads(untrusted_body)
    except untrustedjson.BadJSON as err:
        problem = f"is not JSON ({err})"
    else:
        if isinstance(doc, dict):
            return
        problem = "is JSON but not an object"
    served = f"Content-Type {abridged(media_type)!r}" if media_type else "no Content-Type"
    raise InvalidManifest(source, f"fetching the manifest: {abridged(url)} answered with {served}, not a manifest "
                                  f"type ({', '.join(MANIFEST_MEDIA_TYPES)}), and its body {problem}: not a "
                                  "manifest (a proxy or a login page in the way?)")


def _check_repository(repository: str) -> None:
    """Refuse a repository name that is not ``component(/component)*`` (it goes into URLs)."""
    if not repository or not all(COMPONENT_RE.fullmatch(part) for part in repository.split("/")):
        raise InvalidReference(f"invalid repository name {repository!r}")


class _Body:
    """A ``read(n)`` view of a streamed response that undoes ``Content-Encoding``, read
    through :func:`~.readdeadline.body_pieces` (a drip raises TimeoutError)."""

    def __init__(self, response: requests.Response, slow_read: tuple[int, float]) -> None:
        self._response = response
        self._slow_read = slow_read

    def read(self, n: int = -1) -> bytes:
        with closing(body_pieces(self._response, self._slow_read, decode_content=True,
                                 limit=None if n < 0 else n)) as pieces:
            return b"".join(pieces)


class _BodyCut(Exception):
    """Internal: the connection broke (or ended early) in the middle of a blob body."""


class _Download:
    """Internal: what a blob download has written so far (survives a cut connection)."""

    def __init__(self, digest: Digest) -> None:
        self.digest = digest
        self.hasher = digest.new_hash()
        self.received = 0

    def restart(self) -> None:
        self.hasher = self.digest.new_hash()
        self.received = 0


class RegistryClient:
    """A client for one registry host (Docker registry HTTP API v2 / OCI distribution).

    Use it as a context manager; it holds one ``requests.Session``. The constructor does
    no network I/O: the ``/v2/`` ping happens on first use (or :meth:`ping`). One client
    may be shared by threads (parallel blob downloads).

    Args:
        host: the API host[:port], as ``ImageRef.api_host`` gives it (``docker.io`` and
            ``index.docker.io`` are sent to ``registry-1.docker.io``).
        credentials: for Basic auth and the token server; ``None`` = anonymous.
        insecure_skip_verify: do not verify TLS certificates (``--insecure-skip-verify``).
        allow_http: fall back to plain http when https fails at the connection level
            (``--insecure-allow-http``).
        cert_dir: a Docker ``certs.d``-style directory: ``*.crt`` CA files added to the
            system CAs, ``client.cert``/``client.key`` for client authentication; or a
            ``certs.d`` root holding a directory named as ``host`` (``HOST:PORT``), which
            is then used.
        retry: the retry policy.
        timeout: (connect, read) timeouts in seconds; the read timeout is per socket read.
        slow_read: ``(bytes, seconds)``: bodies are read in pieces of at most that many
            bytes, and a piece that takes longer cuts the connection (:data:`SLOW_READ`).
        plain_http: where hosts that fell back to http are remembered, so that with
            ``allow_http`` later clients ask them over http first (:mod:`.schemes`);
            ``None``: https is always tried first.

    Raises:
        InvalidReference: ``host`` is not a host[:port].
        UsageError: ``cert_dir`` is unusable.
    """

    def __init__(self, host: str, *, credentials: Credentials | None = None,
                 insecure_skip_verify: bool = False, allow_http: bool = False,
                 cert_dir: str | None = None, retry: RetryPolicy = DEFAULT_RETRY,
                 timeout: tuple[float, float] = (10.0, 60.0), slow_read: tuple[int, float] = SLOW_READ,
                 plain_http: PlainHttpHosts | None = None) -> None:
        if not is_valid_host(host or ""):
            raise InvalidReference(f"invalid registry host {host!r}")
        self._host = api_host(host)
        self._credentials = credentials
        self._allow_http = allow_http
        self._plain_http = plain_http if allow_http else None
        self._verify = not insecure_skip_verify
        self._retry = retry
        self._timeout = timeout
        self._slow_read = slow_read
        if cert_dir is not None and Path(cert_dir, self._host).is_dir():
            cert_dir = str(Path(cert_dir, self._host))  # a certs.d root: this registry's own directory
        self._cert_dir = cert_dir
        context = tls_context(cert_dir, verify=self._verify) if cert_dir is not None else None
        self._tls_context = context
        self._session = requests.Session()
        self._session.trust_env = True  # HTTP(S)_PROXY / NO_PROXY (public-cases.md #34)
        self._session.verify = self._verify
        self._session.mount("http://", DeadlineAdapter())
        # every https host: the registry, its token service, its blob redirects
        self._session.mount("https://", ContextAdapter(cabundle.default_context) if self._verify else DeadlineAdapter())
        if context is not None:  # the private CA and client certificate: for this registry and its token service only
            self._mount_registry_tls(self._host)
        self._auth = Authenticator(self._host, credentials, self._send_token_request, cache=TokenCache())
        self._base: str | None = None
        self._ping_lock = threading.Lock()
        if insecure_skip_verify:
            log.warning("TLS certificates of %s are not verified (--insecure-skip-verify)", self._host)
            # said once, above; urllib3 would say it again for every connection (on stderr,
            # through the warnings module), also to the hosts a blob request is redirected to
            warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session and its connections."""
        self._session.close()

    def __repr__(self) -> str:
        return (f"RegistryClient(host={self._host!r}, base={self._base!r}, credentials={self._credentials!r}, "
                f"verify={self._verify}, allow_http={self._allow_http})")

    @property
    def host(self) -> str:
        """The API host[:port] requests go to."""
        return self._host

    @property
    def base_url(self) -> str | None:
        """``https://host`` or ``http://host`` once pinged, else ``None``."""
        return self._base

    # -- public operations ---------------------------------------------------------------

    def ping(self) -> str:
        """Check that the host speaks the v2 API and pick the scheme (done once).

        Returns:
            The base URL (``https://host`` or ``http://host``).

        Raises:
            RegistryError: the host cannot be reached, or has no v2 API.
        """
        with self._ping_lock:
            if self._base is None:
                self._base = self._do_ping()
            return self._base

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str]:
        """Fetch a manifest, manifest list or image index.

        Args:
            repository: the repository path (``library/busybox``).
            reference: a tag, or a digest ``sha256:<hex>``.

        Returns:
            ``(untrusted_body, media_type)``: the bytes as served (at most
            ``MAX_MANIFEST_BYTES``) and the ``Content-Type`` without parameters. When
            ``reference`` is a digest the bytes are verified against it.

        Raises:
            InvalidReference: ``repository`` or ``reference`` is malformed.
            ImageNotFound: the registry has no such manifest (404).
            AuthError: authentication failed or access was denied.
            DigestMismatch: the body does not hash to the requested digest.
            LimitExceeded: the body is larger than ``MAX_MANIFEST_BYTES``.
            InvalidManifest: the ``Content-Type`` is no manifest type and the body no
                JSON object (an HTML page).
            RegistryError: any other failure (``temporary`` for 5xx/429/connection).
        """
        _check_repository(repository)
        digest = self._manifest_reference(reference)
        source = f"{self._host}/{repository}{'@' if digest else ':'}{reference}"
        what = "fetching the manifest"
        path = f"/v2/{repository}/manifests/{reference}"
        headers = {"Accept": ", ".join(MANIFEST_MEDIA_TYPES)}
        for attempt in range(1, self._retry.attempts + 1):
            resp = self._request("GET", path, repository=repository, headers=headers, source=source, what=what)
            with closing(resp):
                if resp.status_code != 200:
                    raise self._status_error(resp, source, what)
                try:
                    untrusted_body = read_at_most(_Body(resp, self._slow_read),  # type: ignore[arg-type]
                                                  MAX_MANIFEST_BYTES, f"manifest {source}")
                except _BODY_ERRORS as err:
                    if attempt == self._retry.attempts:
                        raise RegistryError(source, f"{what}: the connection broke while reading the body "
                                                    f"({_connection_cause(err)})", temporary=True) from err
                    self._retry.wait(attempt)
                    continue
                media_type = _media_type(resp.headers.get("Content-Type"))
                header_digest = resp.headers.get("Docker-Content-Digest")
                url = redact_url(resp.url)
            break
        if media_type not in MANIFEST_MEDIA_TYPES:
            _check_unlabelled_manifest(untrusted_body, media_type, url, source)
        self._check_manifest_digest(untrusted_body, digest, header_digest, source)
        log.debug("%s: %s: %d bytes, %s", source, what, len(untrusted_body), media_type or "no Content-Type")
        return untrusted_body, media_type

    def manifest_digest(self, repository: str, tag: str) -> str | None:
        """The digest a tag points to, from a ``HEAD`` request's ``Docker-Content-Digest``
        header (distribution spec "Checking if content exists"), without fetching the
        manifest: Docker Hub counts a manifest ``GET`` against its pull rate limit, not a
        ``HEAD``. The answer is a registry's word, not checked against any bytes: use it
        only to find a tag unchanged since its manifest was fetched and verified.

        Returns:
            ``"sha256:<hex>"`` (any algorithm the header names), or ``None`` when the
            registry does not answer 200 with a well-formed header (then ``GET`` the
            manifest, whose errors say what is wrong).

        Raises:
            InvalidReference: ``repository`` or ``tag`` is malformed.
            AuthError, RegistryError: as :meth:`get_manifest`, before any answer.
        """
        _check_repository(repository)
        if self._manifest_reference(tag) is not None:
            raise InvalidReference(f"invalid tag {tag!r}")
        source = f"{self._host}/{repository}:{tag}"
        resp = self._request("HEAD", f"/v2/{repository}/manifests/{tag}", repository=repository,
                             headers={"Accept": ", ".join(MANIFEST_MEDIA_TYPES)}, source=source,
                             what="checking the manifest's digest")
        with closing(resp):
            header = resp.headers.get("Docker-Content-Digest") if resp.status_code == 200 else None
        try:
            return str(Digest.parse(header.strip())) if header else None
        except InvalidManifest:
            return None

    def list_tags(self, repository: str, *, page_size: int | None = None) -> list[str]:
        """Every tag of a repository (distribution spec "Listing Tags": ``GET
        /v2/<name>/tags/list``), following ``Link: <...>; rel="next"`` pages.

        Args:
            repository: the repository path.
            page_size: ask for pages of at most this many tags (``?n=``); default the
                registry's.

        Returns:
            The tags in the registry's order (lexical for distribution); a tag repeated
            across pages is listed once. Untrusted: a tag that breaks the tag grammar
            (``..``) is listed too, for the caller to refuse on its own
            (:func:`~docker2aci.reference.is_valid_tag`; :meth:`get_manifest` refuses it),
            so that one bad tag does not hide the others.

        Raises:
            ImageNotFound: the repository does not exist (404).
            AuthError, RegistryError, LimitExceeded, InvalidManifest: as :meth:`get_manifest`;
                InvalidManifest also for a page that is not ``{"name": ..., "tags": [...]}``.
        """
        _check_repository(repository)
        tags = self._pages(f"/v2/{repository}/tags/list", "tags", page_size, repository=repository,
                           source=f"{self._host}/{repository}", what="listing the tags")
        return list(dict.fromkeys(tags))

    def catalog(self, *, page_size: int | None = None) -> list[str]:
        """Every repository of the registry (distribution ``GET /v2/_catalog``), following
        ``Link`` pages. A token registry is asked for scope ``registry:catalog:*``.

        Args:
            page_size: ask for pages of at most this many names (``?n=``).

        Raises:
            AuthError: the registry refuses the catalog to these credentials.
            RegistryError, LimitExceeded, InvalidManifest: as :meth:`list_tags`; a
                repository name that breaks the grammar is InvalidManifest.
        """
        repositories = self._pages("/v2/_catalog", "repositories", page_size, repository=None, source=self._host,
                                   what="listing the repositories")
        for name in repositories:
            if not name or not all(COMPONENT_RE.fullmatch(part) for part in name.split("/")):
                raise InvalidManifest(self._host, f"_catalog names an invalid repository {name!r}")
        return list(dict.fromkeys(repositories))

    def _pages(self, path: str, key: str, page_size: int | None, *, repository: str | None, source: str,
               what: str) -> list[str]:
        """The concatenated ``key`` lists of a paginated listing (at most ``MAX_LIST_PAGES``
        pages of ``MAX_MANIFEST_BYTES`` each, ``MAX_LIST_ITEMS`` names in all; a ``Link``
        to another host is refused).

        Raises:
            LimitExceeded: a page over ``MAX_MANIFEST_BYTES``, or over ``MAX_LIST_ITEMS`` names.
        """
        items: list[str] = []
        seen: set[str] = set()
        url_path: str | None = path + (f"?n={int(page_size)}" if page_size else "")
        while url_path is not None:
            if url_path in seen or len(seen) >= MAX_LIST_PAGES:
                raise RegistryError(source, f"{what}: more than {MAX_LIST_PAGES} pages, or a page links back")
            seen.add(url_path)
            resp = self._request("GET", url_path, repository=repository, headers={"Accept": "application/json"},
                                 source=source, what=what)
            with closing(resp):
                if resp.status_code != 200:
                    raise self._status_error(resp, source, what)
                try:
                    body = read_at_most(_Body(resp, self._slow_read),  # type: ignore[arg-type]
                                        MAX_MANIFEST_BYTES, f"{what} of {source}")
                except _BODY_ERRORS as err:
                    raise RegistryError(source, f"{what}: the connection broke ({_connection_cause(err)})",
                                        temporary=True) from err
                url_path = self._next_page(resp, source, what)
            try:
                doc = untrustedjson.loads(body)
            except untrustedjson.BadJSON as err:
                raise InvalidManifest(source, f"{what}: the answer is not JSON ({err})") from err
            page = doc.get(key) if isinstance(doc, dict) else None
            if page is None and isinstance(doc, dict) and key in doc:
                page = []  # distribution answers "tags": null for a repository without tags
            if not isinstance(page, list) or not all(isinstance(item, str) for item in page):
                raise InvalidManifest(source, f"{what}: the answer has no list of strings {key!r}")
            if len(items) + len(page) > MAX_LIST_ITEMS:
                raise LimitExceeded(f"{what} of {source}: more than {MAX_LIST_ITEMS} names")
            items.extend(page)
        return items

    def _next_page(self, resp: requests.Response, source: str, what: str) -> str | None:
        """The path and query of the ``rel="next"`` ``Link``, or ``None`` on the last page."""
        for link in requests.utils.parse_header_links(resp.headers.get("Link", "")):
            if link.get("rel") == "next" and link.get("url"):
                try:
                    target = urlsplit(urljoin(resp.url, link["url"].strip()))
                except ValueError as err:  # http://[bad/...
                    raise RegistryError(source, f"{what}: the next page's Link is not a URL ({err})") from err
                if target.netloc.lower() != urlsplit(resp.url).netloc.lower():
                    raise RegistryError(source, f"{what}: the next page is on another host ({target.netloc})")
                return target.path + (f"?{target.query}" if target.query else "")
        return None

    def fetch_blob(self, repository: str, digest: Digest, size: int | None, dest: BinaryIO,
                   progress: Callable[[int], None] | None = None) -> None:
        """Stream a blob into ``dest``, verified.

        The blob is written from ``dest``'s current position in 1 MiB chunks and hashed as
        it is written. A connection cut mid-body is resumed with ``Range: bytes=<n>-``
        (appended on 206; on 200 ``dest`` is truncated back and the download restarts)
        up to the retry policy's attempts. Redirects (object storage) are followed with
        GET and without ``Authorization`` on another host.

        Args:
            repository: the repository path.
            digest: the blob digest.
            size: the expected length in bytes, or ``None`` when unknown.
            dest: a binary file opened for writing; it must be seekable for a restart.
            progress: called with the number of bytes each chunk added (negative, minus
                everything written so far, when the server makes the download restart).

        Raises:
            InvalidReference: ``repository`` is malformed.
            ImageNotFound: the registry has no such blob (404).
            AuthError: authentication failed or access was denied.
            SizeMismatch: more or fewer bytes than ``size``.
            DigestMismatch: the bytes do not hash to ``digest``.
            RegistryError: any other failure, including a wrong ``Content-Range``.
        """
        _check_repository(repository)
        source = f"{self._host}/{repository}@{digest}"
        what = "fetching the blob"
        path = f"/v2/{repository}/blobs/{digest}"
        start = dest.tell() if dest.seekable() else None
        done = _Download(digest)
        etag: str | None = None
        cuts = 0
        while True:
            headers = {"Accept-Encoding": "identity"}
            if done.received:
                headers["Range"] = f"bytes={done.received}-"
                if etag:
                    headers["If-Range"] = etag
            resp = self._request("GET", path, repository=repository, headers=headers, source=source, what=what)
            with closing(resp):
                if resp.status_code == 206 and done.received:
                    self._check_content_range(resp, done.received, size, source, what)
                elif resp.status_code == 200:
                    if done.received:
                        log.info("%s: the server sent the whole blob again; restarting from 0", source)
                        self._rewind(dest, start, source, what)
                        if progress:
                            progress(-done.received)
                        done.restart()
                    etag = self._strong_etag(resp)
                    self._check_content_length(resp, size, f"blob {source}")
                elif resp.status_code == 206:
                    raise RegistryError(source, f"{what}: partial content (206) to a request without Range",
                                        status=206, url=redact_url(resp.url))
                else:
                    raise self._status_error(resp, source, what)
                before = done.received
                try:
                    self._copy_body(resp, dest, done, size, progress, f"blob {source}")
                except _BodyCut as cut:
                    # A slow but steady link is cut again and again, each time a piece further
                    # on: a cut that brought a quarter of a piece does not use up an attempt.
                    if done.received - before < self._slow_read[0] // 4:
                        cuts += 1
                    cause = (_connection_cause(cut.__cause__) if cut.__cause__ else
                             str(cut) or "the body ended early")
                    if cuts >= self._retry.attempts:
                        raise RegistryError(source, f"{what}: the connection broke {cuts} times, last after "
                                                    f"{done.received} bytes ({cause})", temporary=True) from cut
                    log.info("%s: connection broke after %d bytes (%s); resuming (retry %d/%d)", source,
                             done.received, cause, cuts, self._retry.attempts - 1)
                    self._retry.wait(max(cuts, 1))
                    continue
            break
        if size is not None and done.received != size:
            raise SizeMismatch(f"blob {source}", size, done.received)
        actual = Digest(digest.algorithm, done.hasher.hexdigest())
        if actual != digest:
            raise DigestMismatch(f"blob {source}", str(digest), str(actual))
        log.debug("%s: %d bytes verified", source, done.received)

    # -- protocol internals ------------------------------------------------------------

    def _manifest_reference(self, reference: str) -> Digest | None:
        if ":" in reference:
            try:
                return Digest.parse(reference)
            except InvalidManifest as err:
                raise InvalidReference(f"invalid manifest digest {reference!r}") from err
        if not is_valid_tag(reference):
            raise InvalidReference(f"invalid tag {reference!r}")
        return None

    def _check_manifest_digest(self, untrusted_body: bytes, digest: Digest | None, header: str | None,
                               source: str) -> None:
        if digest is not None:
            known = manifest_digests(untrusted_body, digest.algorithm)
            if digest not in known:
                raise DigestMismatch(f"manifest {source}", str(digest), str(known[0]))
            return
        if not header:
            return
        try:
            claimed = Digest.parse(header.strip())
        except InvalidManifest:
            log.warning("manifest %s: ignoring an invalid Docker-Content-Digest header", source)
            return
        known = manifest_digests(untrusted_body, claimed.algorithm)
        if claimed not in known:
            log.warning("manifest %s: the registry says its digest is %s but the body hashes to %s; "
                        "using the computed digest", source, claimed, known[-1])

    @staticmethod
    def _strong_etag(resp: requests.Response) -> str | None:
        tag = resp.headers.get("ETag")
        return tag if tag and not tag.startswith("W/") else None

    @staticmethod
    def _check_content_length(resp: requests.Response, size: int | None, what: str) -> None:
        length = plain_decimal(resp.headers.get("Content-Length") or "", 20)  # headers are Latin-1 text
        if size is not None and length is not None and length != size:
            raise SizeMismatch(what, size, length)

    @staticmethod
    def _check_content_range(resp: requests.Response, received: int, size: int | None, source: str,
                             what: str) -> None:
        value = resp.headers.get("Content-Range", "")
        m = _CONTENT_RANGE_RE.match(value)
        first = int(m.group(1)) if m else None
        total = m.group(3) if m else None
        if first != received or (size is not None and total not in ("*", str(size))):
            raise RegistryError(source, f"{what}: asked for bytes {received}- but the answer's Content-Range "
                                        f"is {value!r}", status=206, url=redact_url(resp.url))

    @staticmethod
    def _rewind(dest: BinaryIO, start: int | None, source: str, what: str) -> None:
        if start is None:
            raise RegistryError(source, f"{what}: the download must restart but the destination is not seekable")
        dest.seek(start)
        dest.truncate()

    def _copy_body(self, resp: requests.Response, dest: BinaryIO, done: _Download, size: int | None,
                   progress: Callable[[int], None] | None, what: str) -> None:
        """Append the body to ``dest``, hashing it. Raises _BodyCut if the connection breaks
        or a read takes longer than :data:`~.readdeadline.SLOW_READ` allows (what came
        before is kept)."""
        with closing(body_pieces(resp, self._slow_read, decode_content=False)) as pieces:
            while True:
                try:
                    chunk = next(pieces, b"")
                except _BODY_ERRORS as err:
                    if size is not None and done.received == size:
                        return  # the whole blob is in: a cut at its very end changes nothing
                    if isinstance(err, TooSlow):
                        raise _BodyCut(err.strerror) from None
                    raise _BodyCut() from err
                if not chunk:
                    if size is not None and done.received < size:
                        raise _BodyCut()
                    return
                if size is not None and done.received + len(chunk) > size:
                    raise SizeMismatch(what, size, done.received + len(chunk))
                dest.write(chunk)
                done.hasher.update(chunk)
                done.received += len(chunk)
                if progress:
                    progress(len(chunk))

    def _status_error(self, resp: requests.Response, source: str, what: str) -> Docker2ACIError:
        """The error for a non-success answer (reads a little of the body for ``errors[]``)."""
        status = resp.status_code
        try:
            body = _Body(resp, self._slow_read).read(MAX_ERROR_BODY_BYTES)
        except _BODY_ERRORS:
            body = b""
        diagnostics = parse_error_body(body)
        url = redact_url(resp.url)
        if status == 404:
            detail = f" ({'; '.join(diagnostics)})" if diagnostics else ""
            return ImageNotFound(source, f"{what}: not found{detail}")
        if status in (401, 403):
            return AuthError(source, f"{what}: access denied (HTTP {status})", status=status, url=url,
                             diagnostics=diagnostics)
        return RegistryError(source, f"{what}: {url} answered HTTP {status}", status=status, url=url,
                             diagnostics=diagnostics, temporary=is_temporary_status(status))

    def _do_ping(self) -> str:
        if self._plain_http is not None and self._plain_http.remembers(self._host):
            try:
                return self._ping_over("http")
            except RegistryError as err:
                log.info("%s: plain http failed (%s); trying https first again", self._host, err)
                self._plain_http.forget(self._host)
        try:
            return self._ping_over("https")
        except RegistryError as https_error:
            if https_error.status is not None or not self._allow_http:
                raise
            cause = _connection_cause(https_error.__cause__) if https_error.__cause__ else str(https_error)
            log.info("%s: https failed (%s); trying http (--insecure-allow-http)", self._host, cause)
            try:
                base = self._ping_over("http")
            except RegistryError as err:
                if err.status is not None:  # http answered, but not as a v2 registry
                    raise
                what = f"{self._host}: checking the registry API: "  # said once, not in each part
                raise RegistryError(self._host, f"checking the registry API: https failed "
                                                f"({str(https_error).removeprefix(what)}); http failed too "
                                                f"({str(err).removeprefix(what)})", temporary=err.temporary) from err
            if self._plain_http is not None and _plain_http_port(self._host, https_error):
                self._plain_http.remember(self._host)
            return base

    def _ping_over(self, scheme: str) -> str:
        """``GET /v2/`` over ``scheme``; learns the auth challenge of a 401.

        Returns:
            the base URL when the host speaks the v2 API there.

        Raises:
            RegistryError: the host cannot be reached (``status`` ``None``), or answers
                but not as a v2 registry.
        """
        base = f"{scheme}://{self._host}"
        url = f"{base}/v2/"
        resp = self._send("GET", url, headers={}, authorization=None, source=self._host,
                          what="checking the registry API")
        try:
            status = resp.status_code
            says_v2 = resp.headers.get(API_VERSION_HEADER, "").strip().lower().startswith("registry/2")
            if status == 401:
                self._auth.learn(resp.headers.get("WWW-Authenticate"))
            if status in (200, 401) or says_v2:
                if scheme == "http" and self._host not in _WARNED_PLAIN_HTTP:  # once per host and process
                    _WARNED_PLAIN_HTTP.add(self._host)
                    log.warning("%s: using plain http (--insecure-allow-http)", self._host)
                log.debug("%s speaks the v2 API over %s (ping %d)", self._host, scheme, status)
                return base
            if status == 404:
                raise RegistryError(self._host, f"checking the registry API: {url} answered 404: "
                                                f"this host does not speak the registry v2 API "
                                                f"(v1 registries are not supported)", status=404, url=url)
            raise self._status_error(resp, self._host, "checking the registry API")
        finally:
            _discard(resp, self._slow_read)

    def _request(self, method: str, path: str, *, repository: str | None, headers: Mapping[str, str],
                 source: str, what: str) -> requests.Response:
        """Send an authenticated request (streamed); answers one 401 challenge.

        Returns:
            The response, any status but 401 (the caller checks it and closes it).
        """
        url = self.ping() + path
        answered = False
        while True:
            authorization = self._auth.authorization(repository)
            resp = self._send(method, url, headers=headers, authorization=authorization, source=source, what=what)
            if resp.status_code != 401 or not _same_host(resp.url, url):
                return resp
            challenge = resp.headers.get("WWW-Authenticate")
            _discard(resp, self._slow_read)
            if answered:
                raise self._auth.denied(challenge, repository)
            self._auth.unauthorized(challenge, repository, authorization)
            answered = True

    def _send(self, method: str, url: str, *, headers: Mapping[str, str], authorization: str | None,
              source: str, what: str, params: Sequence[tuple[str, str]] | None = None,
              data: Sequence[tuple[str, str]] | None = None) -> requests.Response:
        """One request with retries on connection failures, 408, 429 and 5xx (streamed).
        With ``data`` (a form, which may hold a secret), no redirect is followed: a 307
        would send the form on to wherever it points.

        Raises:
            RegistryError: TLS failure (not retried), or the host could not be reached
                within the policy's attempts (``status`` is ``None`` then).
        """
        shown = redact_url(url)
        retry = 0
        while True:
            try:
                # verify=False per request: the session setting alone loses to REQUESTS_CA_BUNDLE.
                resp = self._session.request(method, url, params=params, data=data, headers=dict(headers),
                                             auth=_SetAuthorization(authorization), stream=True,
                                             timeout=self._timeout, allow_redirects=data is None,
                                             verify=None if self._verify else False)
            except requests.exceptions.SSLError as err:
                target = _failed_target(err, url, shown)
                if _plain_http_answer(err):  # (with the flag, the ping goes on to http and says so)
                    hint = "" if self._allow_http or target != shown else (
                        "; it answered in plain http: for a registry without TLS, use --insecure-allow-http")
                elif not self._verify:
                    hint = ""
                elif target != shown:
                    # a redirect to another host (an object store): --cert-dir is not for it
                    hint = ("; that host is checked against the system's CAs only (--cert-dir is for the registry "
                            "and its token service): add its CA to a bundle named by REQUESTS_CA_BUNDLE, or use "
                            "--insecure-skip-verify")
                elif self._cert_dir is not None:
                    cas = len(list(Path(self._cert_dir).glob("*.crt")))
                    hint = (f"; the {cas} CA certificate(s) (*.crt) in --cert-dir {self._cert_dir} do not verify it, "
                            "nor do the system's; add the registry's CA there or use --insecure-skip-verify")
                else:
                    hint = ("; give the registry's CA with --cert-dir DIR (a *.crt file in it) or use "
                            "--insecure-skip-verify")
                raise RegistryError(source, f"{what}: TLS failure talking to {target}: "
                                                f"{_connection_cause(err)}{hint}", url=shown) from err
            except (requests.ConnectionError, requests.Timeout) as err:
                retry += 1
                # A proxy's certificate that fails is refused as the registry's is: no retry.
                lasting = _name_unknown(err) or _certificate_failed(err)
                via = _via_proxy(err)
                target = _failed_target(err, url, shown)
                if retry >= self._retry.attempts or lasting:
                    raise RegistryError(source, f"{what}: cannot reach {target}{via}: {_connection_cause(err)}",
                                        url=shown, temporary=not lasting) from err
                log.info("%s: %s: cannot reach %s%s (%s); retry %d/%d", source, what, target, via,
                         _connection_cause(err), retry, self._retry.attempts - 1)
                self._retry.wait(retry)
                continue
            except requests.RequestException as err:
                raise RegistryError(source, f"{what}: {shown}: {type(err).__name__}", url=shown) from err
            except ValueError as err:  # a redirect to "http://[bad/x", a header value http.client refuses
                # (its message may quote the header: a token or credentials, never shown)
                raise RegistryError(source, f"{what}: {shown}: the exchange held a malformed URL or header value "
                                            f"({type(err).__name__})", url=shown) from None
            log.debug("%s %s -> %d", method, redact_url(resp.url), resp.status_code)
            if self._retry.retries_status(resp.status_code) and retry + 1 < self._retry.attempts:
                retry += 1
                retry_after = resp.headers.get("Retry-After")
                _discard(resp, self._slow_read)
                delay = self._retry.delay(retry, retry_after)
                log.info("%s: %s: %s answered %d; retry %d/%d in %.2f s", source, what, shown, resp.status_code, retry,
                         self._retry.attempts - 1, delay)
                self._retry.sleep(delay)
                continue
            return resp

    def _mount_registry_tls(self, netloc: str) -> None:
        """Use the ``cert_dir`` context (its CAs, its client certificate) for ``https://netloc/``.

        The registry's own host, and the token service it names (realm) on another host:
        Docker and skopeo talk to the token service with the registry's TLS settings.
        """
        context = self._tls_context
        prefix = f"https://{netloc.lower()}/"
        if context is not None and prefix not in self._session.adapters:
            self._session.mount(prefix, ContextAdapter(lambda: context, verify_proxy=self._verify))

    def _send_token_request(self, url: str, params: Sequence[tuple[str, str]], headers: Mapping[str, str],
                            form: Sequence[tuple[str, str]] | None = None) -> tuple[int, bytes]:
        """The :data:`~docker2aci.registry.auth.TokenSender` of this client (no registry auth).
        An https token service is verified as the registry is (``cert_dir``).

        Raises:
            AuthError: credentials (a password, an identity token in ``form``) would go to a
                plain-http token service (the realm an https registry named can be
                ``http://``) without ``--insecure-allow-http``.
        """
        authorization = headers.get("Authorization")
        parts = urlsplit(url)
        if (authorization is not None or form is not None) and parts.scheme != "https" and not self._allow_http:
            raise AuthError(self._host, f"getting a token: the token service {redact_url(url)} is plain http, and "
                                        "credentials are not sent in clear text; use --insecure-allow-http to allow it")
        if parts.scheme == "https":  # (called under the Authenticator's lock: one mount at a time)
            self._mount_registry_tls(parts.netloc)
        others = {k: v for k, v in headers.items() if k != "Authorization"}
        resp = self._send("GET" if form is None else "POST", url, headers=others, authorization=authorization,
                          params=params, data=form, source=self._host, what="getting a token")
        with closing(resp):
            try:
                if resp.status_code == 200:
                    body = read_at_most(_Body(resp, self._slow_read), MAX_TOKEN_RESPONSE_BYTES,  # type: ignore[arg-type]
                                        f"token answer from {redact_url(url)}")
                else:
                    body = _Body(resp, self._slow_read).read(MAX_ERROR_BODY_BYTES)
            except _BODY_ERRORS as err:
                raise RegistryError(self._host, f"getting a token from {redact_url(url)}: the connection broke "
                                                f"({_connection_cause(err)})", temporary=True) from err
            return resp.status_code, body
