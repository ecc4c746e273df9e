"""A small Docker token server (distribution "Token Authentication Specification") for tests.

It runs in a thread on 127.0.0.1 and issues RS256 JWTs signed with a fresh RSA key whose
self-signed certificate is the registry's ``auth.token.rootcertbundle``. The JWT header's
``kid`` is the libtrust key ID of that certificate's public key (base32 of the first 30
bytes of sha256 over the SPKI DER, in groups of 4 joined by ``:``), which is how
docker-registry 2.8 finds the key.

Users: ``testuser``/``testpass`` get what they ask for (pull, push); anonymous requests get
pull only; a wrong password gets 401. The OAuth 2 form of the exchange (distribution's
"OAuth2 Token Authentication": ``POST /token`` of ``grant_type=refresh_token``, what Docker
sends with the identity token of ``docker login``) is answered too: the refresh token
:data:`TEST_REFRESH_TOKEN` is ``testuser``'s, any other gets 401. How it answers (``token`` and ``access_token``, only
one of them, which ``expires_in``) is set per test with :meth:`TokenServer.answering`.
Every request is recorded (:attr:`TokenServer.requests`) so tests can assert on what the
client sent.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import ssl
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import TracebackType
from typing import Literal, Self
from urllib.parse import parse_qsl, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from services import QuietHTTPServer, TLSFiles

TEST_USER = "testuser"
TEST_PASSWORD = "testpass"
TEST_REFRESH_TOKEN = "test-identity-token-of-testuser"
"""The OAuth 2 refresh token (a ``docker login`` identity token) that stands for ``testuser``."""
ISSUER = "test-issuer"
SERVICE = "test-registry"
AnswerField = Literal["both", "token", "access_token"]
ISSUED_TOKENS: list[str] = []
"""Every token any :class:`TokenServer` of the session signed (the secrets watch of
``tests/conftest.py`` fails the session if one appears in an output)."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def libtrust_key_id(public_key: rsa.RSAPublicKey) -> str:
    """The libtrust key ID docker-registry computes for a public key (``kid``)."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode("ascii").rstrip("=")
    return ":".join(encoded[i:i + 4] for i in range(0, len(encoded), 4))


@dataclass(frozen=True)
class TokenRequest:
    """One request the token server received.

    Attributes:
        service: the ``service`` parameter.
        scopes: every ``scope`` parameter, in order.
        account: the ``account`` parameter, or ``None``.
        user: the Basic-auth user that authenticated, or ``None`` (anonymous or refused).
        sent_authorization: whether an ``Authorization`` header came with it.
        granted: whether a token was issued.
        grant_type: the OAuth 2 ``grant_type`` of a POST, or ``None`` for a GET.
        client_id: the OAuth 2 ``client_id`` of a POST, or ``None``.
    """

    service: str | None
    scopes: tuple[str, ...]
    account: str | None
    user: str | None
    sent_authorization: bool
    granted: bool
    grant_type: str | None = None
    client_id: str | None = None


@dataclass(frozen=True)
class _Answer:
    fields: AnswerField = "both"
    expires_in: int | None = 300


class TokenServer:
    """The token server; use as a context manager (starts and stops the thread).

    Args:
        workdir: where the signing certificate (``token.crt``) is written.
        users: user name → password.
        tls: serve https with these files (``services.make_test_ca``), else plain http.
    """

    def __init__(self, workdir: Path, *, users: Mapping[str, str] | None = None,
                 tls: TLSFiles | None = None) -> None:
        self._workdir = Path(workdir)
        self._tls = tls
        self._users = dict(users or {TEST_USER: TEST_PASSWORD})
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.key_id = libtrust_key_id(self._key.public_key())
        self.cert_path = self._workdir / "token.crt"
        self._answer = _Answer()
        self._lock = threading.Lock()
        self.requests: list[TokenRequest] = []
        self.issued: list[str] = []
        self._server: QuietHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        """Write the certificate and start serving on a free 127.0.0.1 port."""
        self._workdir.mkdir(parents=True, exist_ok=True)
        self.cert_path.write_bytes(self._certificate().public_bytes(serialization.Encoding.PEM))
        server = QuietHTTPServer(("127.0.0.1", 0), self._handler_class())
        if self._tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(self._tls.server_cert), str(self._tls.server_key))
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="tokenserver", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    @property
    def realm(self) -> str:
        """The token endpoint URL (the registry's ``auth.token.realm``)."""
        assert self._server is not None, "the token server is not running"
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}/token"

    @contextmanager
    def answering(self, fields: AnswerField = "both", expires_in: int | None = 300) -> Iterator[TokenServer]:
        """Answer with ``fields`` (``both``, only ``token``, only ``access_token``) and
        ``expires_in`` (``None`` leaves it out) inside the block; records are cleared."""
        with self._lock:
            self._answer = _Answer(fields, expires_in)
            self.requests.clear()
        try:
            yield self
        finally:
            with self._lock:
                self._answer = _Answer()

    # -- tokens --------------------------------------------------------------------------

    def _certificate(self) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "docker2aci test token signer")])
        now = datetime.datetime.now(datetime.UTC)
        return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=30))
                .sign(self._key, hashes.SHA256()))

    def make_jwt(self, subject: str, access: list[dict[str, object]], lifetime: int) -> str:
        """A signed RS256 JWT with the claims docker-registry checks."""
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "kid": self.key_id}
        claims = {"iss": ISSUER, "sub": subject, "aud": SERVICE, "exp": now + lifetime, "nbf": now - 10,
                  "iat": now, "jti": uuid.uuid4().hex, "access": access}
        signing_input = (_b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
                         + _b64url(json.dumps(claims, separators=(",", ":")).encode()))
        signature = self._key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        token = f"{signing_input}.{_b64url(signature)}"
        ISSUED_TOKENS.append(token)
        return token

    def _authenticate(self, authorization: str | None) -> tuple[bool, str | None]:
        """(acceptable, user): no header is anonymous; a wrong password is not acceptable."""
        if not authorization:
            return True, None
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False, None
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False, None
        return (self._users.get(user) == password, user if self._users.get(user) == password else None)

    def _serve_token(self, query: list[tuple[str, str]], authorization: str | None,
                     form: list[tuple[str, str]] | None = None) -> tuple[int, dict[str, object]]:
        params = dict(query if form is None else form)
        if form is None:
            scopes = tuple(v for k, v in query if k == "scope")
            ok, user = self._authenticate(authorization)
        else:  # OAuth 2: one space-separated scope parameter, the refresh token for the password
            scopes = tuple(params.get("scope", "").split())
            ok = params.get("grant_type") == "refresh_token" and params.get("refresh_token") == TEST_REFRESH_TOKEN
            user = TEST_USER if ok else None
        with self._lock:
            answer = self._answer
        access: list[dict[str, object]] = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = [a for a in actions.split(",") if a]
            allowed = {"pull", "push", "delete"} if user else {"pull"}
            access.append({"type": kind, "name": name, "actions": [a for a in wanted if a in allowed]})
        record = TokenRequest(params.get("service"), scopes, params.get("account"), user,
                              authorization is not None, ok, params.get("grant_type") if form is not None else None,
                              params.get("client_id"))
        with self._lock:
            self.requests.append(record)
        if not ok:
            return 401, {"details": "invalid user name or password"}
        lifetime = answer.expires_in if answer.expires_in is not None else 60
        token = self.make_jwt(user or "", access, max(lifetime, 1) + 60)
        with self._lock:
            self.issued.append(token)
        body: dict[str, object] = {"issued_at": datetime.datetime.now(datetime.UTC).isoformat()}
        if answer.fields in ("both", "token"):
            body["token"] = token
        if answer.fields in ("both", "access_token"):
            body["access_token"] = token
        if answer.expires_in is not None:
            body["expires_in"] = answer.expires_in
        return 200, body

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._answer(None)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = self.rfile.read(length).decode()
                if self.headers.get("Content-Type", "").split(";")[0] != "application/x-www-form-urlencoded":
                    form = ""
                self._answer(parse_qsl(form, keep_blank_values=True))

            def _answer(self, form: list[tuple[str, str]] | None) -> None:
                url = urlsplit(self.path)
                body: dict[str, object]
                if url.path != "/token":
                    status, body = 404, {"details": "not found"}
                else:
                    status, body = server._serve_token(parse_qsl(url.query, keep_blank_values=True),
                                                       self.headers.get("Authorization"), form)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="test-token-server"')
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: tests assert on records, not on stderr

        return Handler
