"""Registry authentication: challenges, the Bearer token exchange, and the token cache.

* :func:`parse_challenges` reads ``WWW-Authenticate`` (RFC 7235 section 4.1: one or more
  challenges, each ``auth-scheme [ token68 / #auth-param ]``; scheme names are
  case-insensitive; parameter values are tokens or quoted-strings with ``\\`` escapes).
* :func:`request_token` is the Docker token exchange (distribution "Token Authentication
  Specification"; the token is used as an RFC 6750 Bearer token): ``GET <realm>?service=
  …&scope=…&scope=…`` with HTTP Basic credentials (RFC 7617) when we have them; the
  answer's ``token`` (else ``access_token``) and ``expires_in`` (seconds, default 60).
  With an identity token (an OAuth 2 refresh token from ``docker login``), the
  distribution "OAuth2 Token Authentication" form instead: ``POST <realm>`` of
  ``grant_type=refresh_token&refresh_token=…&service=…&scope=<scopes, space-separated>
  &client_id=…`` (RFC 6749 section 6), as Docker and containers/image send it.
* :class:`Authenticator` keeps one registry's state: which scheme it asked for, which
  scopes each repository needs (a challenge without ``scope`` means
  ``repository:<name>:pull``, public-cases.md #20) and the tokens, cached per
  (host, scopes) until they expire.

Tokens and passwords never appear in ``repr()``, messages or logs.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from .. import untrustedjson
from ..errors import AuthError, RegistryError
from ..redact import redact_url
from .credentials import Credentials
from .diagnostics import is_temporary_status, parse_error_body

log = logging.getLogger(__name__)

DEFAULT_TOKEN_LIFETIME = 60.0
"""A token's lifetime when the answer has no ``expires_in`` (seconds; token spec)."""
EXPIRY_MARGIN = 5.0
"""Refresh a token this long before it expires (seconds; at most half its lifetime)."""
MAX_TOKEN_RESPONSE_BYTES = 1024 * 1024
"""The largest token-server answer read (bytes)."""
MAX_TOKEN_LIFETIME = 24 * 3600.0
"""The longest an ``expires_in`` is honoured (seconds): a larger one (``1e999``, an integer
of hundreds of digits, which no float holds) counts as this, so the token is asked for
again a day later at the latest."""

CATALOG_SCOPE = "registry:catalog:*"
"""The token scope of the repository list (distribution ``GET /v2/_catalog``)."""

_LOG_IN = "pass --creds USER:PASSWORD or run docker login"
"""How to give credentials (the end of a message that asks for them)."""
CLIENT_ID = "docker2aci"
"""The ``client_id`` of an OAuth 2 token request (Docker sends ``docker``, skopeo
``containers/image``)."""
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TOKEN68_RE = re.compile(r"([A-Za-z0-9\-._~+/]+=*)[ \t]*(?=,|$)")
_UNQUOTED_VALUE_RE = re.compile(r"[^,\s]*")


@dataclass(frozen=True)
class Challenge:
    """One RFC 7235 challenge.

    Attributes:
        scheme: the auth scheme, lower-case (``bearer``, ``basic``, ...).
        params: the auth-params, names lower-case, values unquoted and unescaped.
        token68: the token68 form (``Negotiate abc==``), or ``None``.
    """

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)
    token68: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "scheme", self.scheme.lower())
        object.__setattr__(self, "params", MappingProxyType({k.lower(): v for k, v in self.params.items()}))

    def param(self, name: str) -> str | None:
        """The value of parameter ``name`` (case-insensitive), or ``None``."""
        return self.params.get(name.lower())

    @property
    def realm(self) -> str | None:
        """``realm``: for Bearer, the token endpoint URL."""
        return self.param("realm")

    @property
    def service(self) -> str | None:
        """``service``: the registry's name at the token server."""
        return self.param("service")

    @property
    def scopes(self) -> tuple[str, ...]:
        """``scope`` split on spaces (RFC 6750 section 3), empty when absent."""
        return tuple((self.param("scope") or "").split())

    @property
    def error(self) -> str | None:
        """``error`` (RFC 6750 section 3.1: ``invalid_token``, ``insufficient_scope``, ...)."""
        return self.param("error")


def _skip(text: str, i: int, chars: str) -> int:
    while i < len(text) and text[i] in chars:
        i += 1
    return i


def _read_token(text: str, i: int) -> int:
    while i < len(text) and text[i] in _TCHAR:
        i += 1
    return i


def _read_value(text: str, i: int) -> tuple[str, int]:
    """A quoted-string (with ``\\`` escapes) or an unquoted value starting at ``i``."""
    if i < len(text) and text[i] == '"':
        out: list[str] = []
        i += 1
        while i < len(text):
            ch = text[i]
            if ch == "\\" and i + 1 < len(text):
                out.append(text[i + 1])
                i += 2
                continue
            if ch == '"':
                return "".join(out), i + 1
            out.append(ch)
            i += 1
        return "".join(out), i  # unterminated: keep what there is
    m = _UNQUOTED_VALUE_RE.match(text, i)
    assert m is not None
    return m.group(0), m.end()


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a ``WWW-Authenticate`` value into its challenges (RFC 7235 section 4.1).

    Several challenges may share one header (``Bearer realm="a", Basic realm="b"``), and
    several headers joined with ``, `` parse the same way. Parameters may come in any
    order; values may be quoted-strings holding commas, spaces and ``\\`` escapes, or
    unquoted. Malformed parts are skipped rather than fatal.

    Args:
        header: the header value.

    Returns:
        The challenges in order; empty when there are none.
    """
    out: list[Challenge] = []
    scheme: str | None = None
    params: dict[str, str] = {}
    token68: str | None = None
    i, n = 0, len(header)
    while True:
        i = _skip(header, i, " \t,")
        if i >= n:
            break
        start = i
        i = _read_token(header, i)
        if i == start:  # a character that cannot start anything: skip it
            i += 1
            continue
        name = header[start:i]
        j = _skip(header, i, " \t")
        if j < n and header[j] == "=":
            value, i = _read_value(header, _skip(header, j + 1, " \t"))
            if scheme is not None:
                params.setdefault(name.lower(), value)
            continue
        if scheme is not None:
            out.append(Challenge(scheme, params, token68))
        scheme, params, token68 = name, {}, None
        if j > i:  # "Scheme <space> ...": maybe a token68
            m = _TOKEN68_RE.match(header, j)
            if m:
                token68 = m.group(1)
                i = m.end(1)
                continue
        i = j
    if scheme is not None:
        out.append(Challenge(scheme, params, token68))
    return out


@dataclass(frozen=True)
class Token:
    """A Bearer token and when to stop using it.

    Attributes:
        value: the token (a secret: never shown by ``repr()``).
        expires_at: the ``time.monotonic()`` second after which it is refreshed.
    """

    value: str
    expires_at: float

    def __repr__(self) -> str:
        return f"Token(value=<hidden>, expires_at={self.expires_at:.1f})"


class TokenCache:
    """Bearer tokens per (registry host, scopes), dropped once expired. Thread-safe.

    Args:
        clock: the monotonic clock, in seconds.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tokens: dict[tuple[str, tuple[str, ...]], Token] = {}
        self._lock = threading.Lock()

    def get(self, host: str, scopes: Sequence[str]) -> Token | None:
        """The live token for ``(host, scopes)``, or ``None``."""
        key = (host, tuple(scopes))
        with self._lock:
            token = self._tokens.get(key)
            if token is not None and token.expires_at <= self._clock():
                del self._tokens[key]
                return None
            return token

    def put(self, host: str, scopes: Sequence[str], token: Token) -> None:
        """Remember ``token`` for ``(host, scopes)``."""
        with self._lock:
            self._tokens[(host, tuple(scopes))] = token

    def discard(self, host: str, scopes: Sequence[str]) -> None:
        """Forget the token for ``(host, scopes)`` (the registry refused it)."""
        with self._lock:
            self._tokens.pop((host, tuple(scopes)), None)

    def __repr__(self) -> str:
        return f"TokenCache({len(self._tokens)} tokens)"


TokenSender = Callable[..., tuple[int, bytes]]
"""``send(url, params, headers, form=None)``: sends ``GET url?params`` with ``headers``, or,
given ``form`` (name, value pairs), ``POST url?params`` with ``form`` as an
``application/x-www-form-urlencoded`` body (following no redirect: the body holds a
secret); returns ``(status, body)`` (body capped at :data:`MAX_TOKEN_RESPONSE_BYTES`);
retries temporary failures and raises :class:`~docker2aci.errors.RegistryError` when the
server cannot be reached."""


def basic_authorization(credentials: Credentials) -> str:
    """The RFC 7617 ``Authorization`` value for ``credentials``."""
    raw = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def inferred_scopes(repository: str | None) -> tuple[str, ...]:
    """The scope to ask for when a challenge has none: pull access to the repository."""
    return (f"repository:{repository}:pull",) if repository else ()


_TOKEN = re.compile(r"[\x21-\x7e]+")
"""What a Bearer token may hold (visible ASCII: RFC 6750's b64token, and the opaque tokens
registries give, which stay within it)."""


def request_token(send: TokenSender, challenge: Challenge, scopes: Sequence[str],
                  credentials: Credentials | None, *, source: str,
                  clock: Callable[[], float] = time.monotonic) -> Token:
    """Exchange a Bearer challenge for a token.

    Args:
        send: performs the HTTP request (see :data:`TokenSender`).
        challenge: the registry's Bearer challenge (needs ``realm``).
        scopes: every scope to ask for; each is sent as its own ``scope`` parameter.
        credentials: sent as HTTP Basic to the token server when given; their identity
            token, when they have one, in an OAuth 2 refresh token grant instead.
        source: names the registry in errors (a host, never a credential).
        clock: the monotonic clock, in seconds.

    Returns:
        The token, valid until ``expires_in`` (default 60 s) minus a small margin.

    Raises:
        AuthError: no usable realm, or the token server refused (401/403).
        RegistryError: the token server failed or answered something unreadable.
    """
    realm = challenge.realm
    try:
        parts = urlsplit(realm) if realm else None
        usable = parts is not None and parts.scheme in ("http", "https") and bool(parts.netloc) and parts.port != 0
    except ValueError:  # "https://[bad/token": not a URL
        usable = False
    if not usable:
        raise AuthError(source, "authenticating: the registry's Bearer challenge has no usable realm URL")
    where = redact_url(realm)
    identity_token = credentials.identity_token if credentials is not None else None
    if identity_token is not None:
        form = [("grant_type", "refresh_token"), ("refresh_token", identity_token),
                ("service", challenge.service or ""), ("scope", " ".join(scopes)), ("client_id", CLIENT_ID)]
        status, body = send(realm, [], {}, form=form)
    else:
        params: list[tuple[str, str]] = []
        if challenge.service:
            params.append(("service", challenge.service))
        params.extend(("scope", s) for s in scopes)
        headers: dict[str, str] = {}
        if credentials is not None:
            params.append(("account", credentials.username))
            headers["Authorization"] = basic_authorization(credentials)
        status, body = send(realm, params, headers)
    if status in (401, 403) or (identity_token is not None and status == 400):  # 400: RFC 6749 5.2's invalid_grant
        if identity_token is not None:
            who, hint = "the identity token of docker login", "; run docker login again, or pass --creds"
        else:
            who = f"user {credentials.username}" if credentials else "anonymous access"
            hint = "" if credentials else f"; {_LOG_IN}"
        raise AuthError(source, f"getting a token from {where}: refused for {who} (HTTP {status})",
                        status=status, url=where, diagnostics=parse_error_body(body), hint=hint)
    if status != 200:
        raise RegistryError(source, f"getting a token from {where}: HTTP {status}", status=status,
                            url=where, diagnostics=parse_error_body(body),
                            temporary=is_temporary_status(status))
    try:
        doc: Any = untrustedjson.loads(body)
    except untrustedjson.BadJSON as err:  # (a login page, a cut answer; the message quotes none of it)
        raise RegistryError(source, f"getting a token from {where}: the answer is not JSON ({err})",
                            url=where) from None
    value = None
    if isinstance(doc, dict):
        value = doc.get("token") or doc.get("access_token")
    if not isinstance(value, str) or not value:
        raise RegistryError(source, f"getting a token from {where}: the answer has no token", url=where)
    if not _TOKEN.fullmatch(value):  # it goes into a header: CR/LF would inject others; never shown
        raise RegistryError(source, f"getting a token from {where}: the answer's token is not a valid header "
                                    "value (visible ASCII characters only)", url=where)
    lifetime = doc.get("expires_in") if isinstance(doc, dict) else None
    if not isinstance(lifetime, (int, float)) or isinstance(lifetime, bool) or not lifetime > 0:  # (NaN too)
        lifetime = DEFAULT_TOKEN_LIFETIME
    lifetime = float(min(lifetime, MAX_TOKEN_LIFETIME))  # (min first: float(10**400) overflows)
    margin = min(EXPIRY_MARGIN, lifetime / 2)
    log.debug("got a token for %s scopes %s from %s, valid %.0f s", source, " ".join(scopes) or "-",
              where, lifetime)
    return Token(value, clock() + float(lifetime) - margin)


class Authenticator:
    """The authentication state of one registry host. Thread-safe.

    Args:
        host: the registry host[:port] (token cache key, messages).
        credentials: the user's credentials, or ``None`` for anonymous access.
        send: the token request sender.
        cache: the token cache (shared between clients of one host if you like).
        clock: the monotonic clock, in seconds.
    """

    def __init__(self, host: str, credentials: Credentials | None, send: TokenSender, *,
                 cache: TokenCache | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._host = host
        self._credentials = credentials
        self._send = send
        self._clock = clock
        self._cache = cache if cache is not None else TokenCache(clock)
        self._challenge: Challenge | None = None
        self._scopes: dict[str | None, tuple[str, ...]] = {}
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        scheme = self._challenge.scheme if self._challenge else None
        return f"Authenticator(host={self._host!r}, scheme={scheme!r}, credentials={self._credentials!r})"

    def learn(self, header: str | None) -> None:
        """Record the challenge of an unauthenticated ``/v2/`` ping (a 401 means "authenticate")."""
        chosen = _choose(parse_challenges(header or ""))
        if chosen is not None:
            with self._lock:
                self._challenge = chosen

    def _scopes_for(self, repository: str | None) -> tuple[str, ...]:
        if repository in self._scopes:  # None: registry-wide requests (the catalog)
            return self._scopes[repository]
        if repository is None and self._challenge is not None:
            return self._challenge.scopes
        return inferred_scopes(repository)

    def authorization(self, repository: str | None) -> str | None:
        """The ``Authorization`` value for a request about ``repository``, or ``None``.

        Fetches a Bearer token when the registry asked for one and none is cached.

        Raises:
            AuthError, RegistryError: from the token exchange.
        """
        with self._lock:
            challenge = self._challenge
            if challenge is None:
                return None
            if challenge.scheme == "basic":  # (an identity token alone is no Basic credential)
                usable = self._credentials is not None and (self._credentials.password
                                                            or self._credentials.identity_token is None)
                return basic_authorization(self._credentials) if usable else None  # type: ignore[arg-type]
            scopes = self._scopes_for(repository)
            token = self._cache.get(self._host, scopes)
            if token is None:
                token = request_token(self._send, challenge, scopes, self._credentials,
                                      source=self._host, clock=self._clock)
                self._cache.put(self._host, scopes, token)
            return f"Bearer {token.value}"

    def unauthorized(self, header: str | None, repository: str | None, sent: str | None) -> None:
        """Take in a 401's challenge so that one retry can succeed.

        Args:
            header: the 401's ``WWW-Authenticate``.
            repository: the repository the request was about.
            sent: the ``Authorization`` value that was sent, or ``None``.

        Raises:
            AuthError: a retry cannot help (no supported challenge, Basic without
                credentials, Basic credentials already refused).
        """
        challenges = parse_challenges(header or "")
        chosen = _choose(challenges)
        if chosen is None:
            offered = ", ".join(c.scheme for c in challenges) or "none"
            raise AuthError(self._host, f"authenticating: the registry answered 401 with no Bearer or "
                                        f"Basic challenge (offered: {offered})", status=401)
        with self._lock:
            if chosen.scheme == "basic":
                if self._credentials is None:
                    raise AuthError(self._host, "authenticating: the registry requires a user name and "
                                                f"password ({_LOG_IN})", status=401)
                if sent is not None and sent.startswith("Basic "):
                    raise self._refused(chosen)
            else:
                old = self._scopes_for(repository)
                self._cache.discard(self._host, old)
                if chosen.scopes:
                    self._scopes[repository] = chosen.scopes
                self._cache.discard(self._host, self._scopes_for(repository))
            self._challenge = chosen

    def denied(self, header: str | None, repository: str | None) -> AuthError:
        """The error for a 401 that came back after we authenticated as asked."""
        chosen = _choose(parse_challenges(header or ""))
        return self._refused(chosen, repository)

    def _refused(self, challenge: Challenge | None, repository: str | None = None) -> AuthError:
        who = f"user {self._credentials.username}" if self._credentials else "anonymous access"
        if challenge is not None and challenge.scheme == "basic":
            message = f"authenticating: the registry refused the credentials of {who}"
        else:
            if repository:
                what = f"pull access to repository {repository}"
            elif CATALOG_SCOPE in self._scopes_for(None):  # mirror --all-repos
                what = f"access to the registry's catalog ({CATALOG_SCOPE})"
            else:
                what = "access to the registry"
            reason = f" ({challenge.error})" if challenge is not None and challenge.error else ""
            if self._credentials is None:  # "anonymous pull access to ...", and how to log in
                message = f"authenticating: the token does not grant anonymous {what}{reason}; {_LOG_IN}"
            else:
                message = f"authenticating: the token does not grant {who} {what}{reason}"
        return AuthError(self._host, message, status=401)


def _choose(challenges: Sequence[Challenge]) -> Challenge | None:
    """The challenge we answer: Bearer first, then Basic."""
    for scheme in ("bearer", "basic"):
        for challenge in challenges:
            if challenge.scheme == scheme:
                return challenge
    return None
