"""Challenge parsing (RFC 7235), the Bearer token exchange and the token cache.

The token exchange runs against the real token server of ``tokenserver.py`` over HTTP;
the cache tests use an injected clock.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence

import pytest
import requests
from tokenserver import SERVICE, TEST_PASSWORD, TEST_USER, AnswerField, TokenServer

from docker2aci.errors import AuthError, RegistryError
from docker2aci.registry import Challenge, Credentials, parse_challenges
from docker2aci.registry.auth import (
    DEFAULT_TOKEN_LIFETIME,
    EXPIRY_MARGIN,
    MAX_TOKEN_LIFETIME,
    Authenticator,
    Token,
    TokenCache,
    TokenSender,
    basic_authorization,
    request_token,
)

# -- parsing -------------------------------------------------------------------------------

PARSE_CASES = [
    pytest.param(
        'Bearer realm="https://quay.io/v2/auth",service="quay.io"',
        [Challenge("bearer", {"realm": "https://quay.io/v2/auth", "service": "quay.io"})],
        id="case20-no-scope"),
    pytest.param(
        'Bearer realm="https://r.example/token",service="Docker registry",'
        'scope="repository:team/app:pull,push",error="insufficient_scope"',
        [Challenge("bearer", {"realm": "https://r.example/token", "service": "Docker registry",
                              "scope": "repository:team/app:pull,push", "error": "insufficient_scope"})],
        id="case21-spaces-and-commas-in-quotes"),
    pytest.param(
        'bearer realm="https://r.example/token",service="svc"',
        [Challenge("bearer", {"realm": "https://r.example/token", "service": "svc"})],
        id="lowercase-scheme"),
    pytest.param(
        "BEARER Realm=https://r.example/token, Service=registry.example, Scope=repository:a/b:pull",
        [Challenge("bearer", {"realm": "https://r.example/token", "service": "registry.example",
                              "scope": "repository:a/b:pull"})],
        id="unquoted-values-and-any-case"),
    pytest.param(
        'Bearer scope="repository:a:pull" , service="s",   realm="https://r/t"',
        [Challenge("bearer", {"realm": "https://r/t", "service": "s", "scope": "repository:a:pull"})],
        id="any-order-and-whitespace"),
    pytest.param(
        r'Basic realm="say \"hi\", \\ ok"',
        [Challenge("basic", {"realm": 'say "hi", \\ ok'})],
        id="backslash-escapes"),
    pytest.param(
        'Bearer realm="https://a/token",service="a", Basic realm="fallback, with comma"',
        [Challenge("bearer", {"realm": "https://a/token", "service": "a"}),
         Challenge("basic", {"realm": "fallback, with comma"})],
        id="two-challenges-one-header"),
    pytest.param(
        'Basic realm="test-realm"',
        [Challenge("basic", {"realm": "test-realm"})],
        id="docker-registry-htpasswd"),
    pytest.param(
        "Negotiate YWxhZGRpbjpvcGVuc2VzYW1l==, Basic",
        [Challenge("negotiate", {}, "YWxhZGRpbjpvcGVuc2VzYW1l=="), Challenge("basic", {})],
        id="token68-and-bare-scheme"),
    pytest.param('Bearer realm="unterminated', [Challenge("bearer", {"realm": "unterminated"})],
                 id="unterminated-quote-kept"),
    pytest.param("", [], id="empty"),
    pytest.param(' , ,', [], id="only-separators"),
]


@pytest.mark.parametrize(("header", "expected"), PARSE_CASES)
def test_parse_challenges(header: str, expected: list[Challenge]) -> None:
    assert parse_challenges(header) == expected


def test_challenge_accessors() -> None:
    [c] = parse_challenges('Bearer realm="https://r/t",service="Docker registry",'
                           'scope="repository:a:pull repository:b:pull",error="insufficient_scope"')
    assert (c.realm, c.service, c.error) == ("https://r/t", "Docker registry", "insufficient_scope")
    assert c.scopes == ("repository:a:pull", "repository:b:pull")
    assert c.param("REALM") == "https://r/t"


def test_first_parameter_wins_when_repeated() -> None:
    [c] = parse_challenges('Bearer realm="first",realm="second"')
    assert c.realm == "first"


# -- token exchange against the real token server ---------------------------------------------


def _sender(session: requests.Session) -> TokenSender:
    def send(url: str, params: Sequence[tuple[str, str]], headers: Mapping[str, str]) -> tuple[int, bytes]:
        resp = session.get(url, params=list(params), headers=dict(headers), timeout=10)
        return resp.status_code, resp.content
    return send


@pytest.fixture
def send() -> Iterator[TokenSender]:
    with requests.Session() as session:
        session.trust_env = False
        yield _sender(session)


def _challenge(server: TokenServer, scope: str | None = None) -> Challenge:
    params = {"realm": server.realm, "service": SERVICE}
    if scope is not None:
        params["scope"] = scope
    return Challenge("Bearer", params)


@pytest.mark.parametrize("fields", ["both", "token", "access_token"])
def test_token_from_token_or_access_token(token_server: TokenServer, send: TokenSender, fields: AnswerField) -> None:
    with token_server.answering(fields=fields):
        token = request_token(send, _challenge(token_server), ["repository:a/b:pull"], None,
                              source="reg", clock=lambda: 1000.0)
    assert token.value == token_server.issued[-1]


def test_every_scope_and_basic_credentials_are_sent(token_server: TokenServer, send: TokenSender) -> None:
    creds = Credentials(TEST_USER, TEST_PASSWORD)
    with token_server.answering():
        request_token(send, _challenge(token_server), ["repository:a:pull", "repository:b:pull,push"], creds,
                      source="reg")
        [seen] = token_server.requests
    assert seen.scopes == ("repository:a:pull", "repository:b:pull,push")
    assert seen.service == SERVICE
    assert seen.sent_authorization and seen.user == TEST_USER and seen.account == TEST_USER


def test_anonymous_token_request_has_no_authorization(token_server: TokenServer, send: TokenSender) -> None:
    with token_server.answering():
        request_token(send, _challenge(token_server), ["repository:a:pull"], None, source="reg")
        [seen] = token_server.requests
    assert not seen.sent_authorization and seen.account is None


@pytest.mark.parametrize(("expires_in", "lifetime"), [
    pytest.param(300, 300 - 5, id="expires_in-honoured-minus-margin"),
    pytest.param(2, 2 - 1, id="short-lifetime-half-margin"),
    pytest.param(None, DEFAULT_TOKEN_LIFETIME - 5, id="default-60s"),
    pytest.param(10**400, MAX_TOKEN_LIFETIME - 5, id="integer-no-float-holds-is-capped"),
    pytest.param(10**9, MAX_TOKEN_LIFETIME - 5, id="over-a-day-is-capped"),
    pytest.param(float("inf"), MAX_TOKEN_LIFETIME - 5, id="infinity-is-capped"),
    pytest.param(float("nan"), DEFAULT_TOKEN_LIFETIME - 5, id="nan-is-the-default"),
])
def test_expires_in(token_server: TokenServer, send: TokenSender, expires_in: float | None, lifetime: float) -> None:
    with token_server.answering(expires_in=expires_in):
        token = request_token(send, _challenge(token_server), ["repository:a:pull"], None,
                              source="reg", clock=lambda: 1000.0)
    assert token.expires_at == pytest.approx(1000.0 + lifetime)


def test_wrong_password_is_auth_error_without_the_password(token_server: TokenServer, send: TokenSender) -> None:
    with token_server.answering(), pytest.raises(AuthError) as info:
        request_token(send, _challenge(token_server), ["repository:a:pull"],
                      Credentials(TEST_USER, "wrong-secret-pw"), source="reg")
    assert info.value.status == 401
    assert "wrong-secret-pw" not in str(info.value) and TEST_USER in str(info.value)


def test_challenge_without_realm_is_auth_error(send: TokenSender) -> None:
    with pytest.raises(AuthError, match="realm"):
        request_token(send, Challenge("bearer", {"service": "x"}), [], None, source="reg")


@pytest.mark.parametrize("token", ["TOKEN-SECRET\r\nX-Injected: 1", "TOKEN-SECRET t\u00f6k", "TOKEN SECRET"],
                         ids=["crlf", "not-ascii", "space"])
def test_a_token_that_is_no_header_value_is_refused_unshown(token: str) -> None:
    """A token answer no real token server gives (the fault is injected by a sender that
    answers it): it went into the Authorization header, where http.client raised a
    traceback quoting it, or CR/LF would inject headers (registry review)."""
    def answer(url: str, params: Sequence[tuple[str, str]], headers: Mapping[str, str]) -> tuple[int, bytes]:
        return 200, json.dumps({"token": token}).encode()

    challenge = Challenge("Bearer", {"realm": "https://auth.example/token", "service": "s"})
    with pytest.raises(RegistryError, match="the answer's token is not a valid header value") as info:
        request_token(answer, challenge, ["repository:a:pull"], None, source="reg")
    assert "SECRET" not in str(info.value)


@pytest.mark.parametrize("body, expected", [
    pytest.param(b"<html>Sign in</html>", "the answer is not JSON (Expecting value: line 1 column 1 (char 0))", id="login-page"),
    pytest.param(b'{"token": "abc', "the answer is not JSON (Unterminated string starting at: line 1 column 11 (char 10))", id="cut-json"),
    pytest.param(b'{"expires_in": 60}', "the answer has no token", id="json-without-token"),
])
def test_a_token_answer_that_is_not_json_is_said_so(body: bytes, expected: str) -> None:
    """A token service (or a proxy before it) answering 200 with a login page said "the
    answer has no token", as if it were JSON (auth review)."""
    def answer(url: str, params: Sequence[tuple[str, str]], headers: Mapping[str, str]) -> tuple[int, bytes]:
        return 200, body

    challenge = Challenge("Bearer", {"realm": "https://auth.example/token", "service": "s"})
    with pytest.raises(RegistryError) as info:
        request_token(answer, challenge, ["repository:a:pull"], None, source="reg")
    assert str(info.value) == f"reg: getting a token from https://auth.example/token: {expected}"
    assert info.value.url == "https://auth.example/token"


def test_a_token_service_that_forbids_is_an_auth_error() -> None:
    """A token service answering 403 (the user may not pull): an ``AuthError`` (exit
    status of an authentication failure) with the service's own words, as a 401 is, not a
    registry failure. The 403 is injected by a sender; the test token server refuses with 401."""
    def answer(url: str, params: Sequence[tuple[str, str]], headers: Mapping[str, str]) -> tuple[int, bytes]:
        return 403, b'{"errors": [{"code": "DENIED", "message": "requested access to the resource is denied"}]}'

    challenge = Challenge("Bearer", {"realm": "https://auth.example/token", "service": "s"})
    with pytest.raises(AuthError) as info:
        request_token(answer, challenge, ["repository:a:pull"], Credentials("u", "pw-not-shown"), source="reg")
    assert str(info.value).startswith("reg: getting a token from https://auth.example/token: refused for user u "
                                      "(HTTP 403)")
    assert info.value.status == 403


def test_a_token_service_refusing_anonymous_access_says_how_to_log_in() -> None:
    """A token service that refuses anonymous access (401: a private repository on a
    registry whose token service gives no anonymous token) named the refusal but not the
    way out, which the registry's own 401 does (``pass --creds ...``)."""
    def answer(url: str, params: Sequence[tuple[str, str]], headers: Mapping[str, str]) -> tuple[int, bytes]:
        assert "Authorization" not in headers
        return 401, b'{"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}'

    challenge = Challenge("Bearer", {"realm": "https://auth.example/token", "service": "s"})
    with pytest.raises(AuthError) as info:
        request_token(answer, challenge, ["repository:a:pull"], None, source="reg")
    assert str(info.value) == ("reg: getting a token from https://auth.example/token: refused for anonymous access "
                               "(HTTP 401) (UNAUTHORIZED: authentication required); pass --creds USER:PASSWORD or "
                               "run docker login")  # the service's words before the hint, not as its own
    assert info.value.status == 401


def test_an_identity_token_is_sent_as_an_oauth2_refresh_token_form() -> None:
    """With ``docker login``'s identity token the token service is asked as Docker asks it
    (distribution "OAuth2 Token Authentication"): a POST form with the refresh token, the
    scopes space-separated in one parameter; no Basic header, no password, no account."""
    sent: list[tuple[str, object, object, object]] = []

    def answer(url: str, params: Sequence[tuple[str, str]], headers: Mapping[str, str],
               form: Sequence[tuple[str, str]] | None = None) -> tuple[int, bytes]:
        sent.append((url, list(params), dict(headers), form))
        return 200, b'{"access_token": "abc", "refresh_token": "next", "expires_in": 300}'

    challenge = Challenge("Bearer", {"realm": "https://auth.example/oauth2/token", "service": "reg.example"})
    credentials = Credentials("<token>", "", "the-refresh-token")
    token = request_token(answer, challenge, ["repository:a:pull", "repository:b:pull"], credentials, source="reg",
                          clock=lambda: 1000.0)
    assert (token.value, token.expires_at) == ("abc", 1000.0 + 300 - EXPIRY_MARGIN)
    assert sent == [("https://auth.example/oauth2/token", [], {},
                     [("grant_type", "refresh_token"), ("refresh_token", "the-refresh-token"),
                      ("service", "reg.example"), ("scope", "repository:a:pull repository:b:pull"),
                      ("client_id", "docker2aci")])]


@pytest.mark.parametrize("status, body, said", [
    (401, b'{"errors": [{"code": "UNAUTHORIZED", "message": "refresh token expired"}]}',
     "UNAUTHORIZED: refresh token expired"),
    # RFC 6749 section 5.2: an expired or revoked refresh token is a 400 invalid_grant
    (400, b'{"error": "invalid_grant", "error_description": "refresh token expired"}',
     "invalid_grant: refresh token expired"),
])
def test_a_refused_identity_token_says_to_log_in_again(status: int, body: bytes, said: str) -> None:
    def answer(url: str, params: Sequence[tuple[str, str]], headers: Mapping[str, str],
               form: Sequence[tuple[str, str]] | None = None) -> tuple[int, bytes]:
        return status, body

    challenge = Challenge("Bearer", {"realm": "https://auth.example/token", "service": "s"})
    with pytest.raises(AuthError) as info:
        request_token(answer, challenge, ["repository:a:pull"], Credentials("u", "", "expired"), source="reg")
    assert str(info.value) == (f"reg: getting a token from https://auth.example/token: refused for the identity token "
                               f"of docker login (HTTP {status}) ({said}); run docker login again, or pass --creds")


def test_an_identity_token_alone_sends_no_basic_credentials() -> None:
    """A registry that asks for Basic auth: an identity token is no password, and the
    placeholder user ``<token>`` with an empty one was sent (distribution's Basic handler
    sends nothing without a password)."""
    auth = Authenticator("reg", Credentials("<token>", "", "tok"), lambda *a, **k: (500, b""))
    auth.learn('Basic realm="reg"')
    assert auth.authorization("a") is None
    auth = Authenticator("reg", Credentials("u", "p", "tok"), lambda *a, **k: (500, b""))
    auth.learn('Basic realm="reg"')
    assert auth.authorization("a") == "Basic dTpw"
    assert "expired" not in repr(Credentials("u", "", "expired"))


@pytest.mark.parametrize("realm", ["ftp://auth.example/token", "file:///etc/passwd", "auth.example/token"])
def test_a_realm_that_is_no_http_url_is_refused_before_any_request(realm: str) -> None:
    def answer(url: str, params: Sequence[tuple[str, str]], headers: Mapping[str, str]) -> tuple[int, bytes]:
        raise AssertionError(f"asked {url}")

    with pytest.raises(AuthError) as info:
        request_token(answer, Challenge("Bearer", {"realm": realm}), [], Credentials("u", "pw"), source="reg")
    assert str(info.value) == "reg: authenticating: the registry's Bearer challenge has no usable realm URL"


def test_bearer_is_answered_before_basic_whatever_their_order(token_server: TokenServer, send: TokenSender) -> None:
    """A registry offering both (``Basic realm=..., Bearer realm=...``) gets a token: the
    password goes to the token service only, not with every registry request."""
    auth = Authenticator("reg.example", Credentials(TEST_USER, TEST_PASSWORD), send)
    auth.learn(f'Basic realm="reg", Bearer realm="{token_server.realm}",service="{SERVICE}"')
    with token_server.answering():
        value = auth.authorization("team/app")
        [seen] = token_server.requests
    assert value == f"Bearer {token_server.issued[-1]}"
    assert seen.scopes == ("repository:team/app:pull",)


def test_a_ping_challenge_s_scope_is_asked_for_registry_wide_requests(token_server: TokenServer,
                                                                      send: TokenSender) -> None:
    """The catalog (no repository): the scope the ``/v2/`` challenge named is asked for at
    once; a repository's request still asks for its own pull scope."""
    auth = Authenticator("reg.example", None, send)
    auth.learn(f'Bearer realm="{token_server.realm}",service="{SERVICE}",scope="registry:catalog:*"')
    with token_server.answering():
        auth.authorization(None)
        auth.authorization("team/app")
        assert [r.scopes for r in token_server.requests] == [("registry:catalog:*",), ("repository:team/app:pull",)]


def test_missing_scope_is_inferred_as_pull(token_server: TokenServer, send: TokenSender) -> None:
    """Case 20: a challenge without scope → ask for repository:<name>:pull."""
    auth = Authenticator("reg.example", None, send)
    auth.learn(f'Bearer realm="{token_server.realm}",service="{SERVICE}"')
    with token_server.answering():
        value = auth.authorization("team/app")
        [seen] = token_server.requests
    assert seen.scopes == ("repository:team/app:pull",)
    assert value == f"Bearer {token_server.issued[-1]}"


def test_authenticator_caches_per_scope_and_refreshes_once_on_401(token_server: TokenServer, send: TokenSender) -> None:
    auth = Authenticator("reg.example", None, send)
    challenge = f'Bearer realm="{token_server.realm}",service="{SERVICE}"'
    auth.learn(challenge)
    with token_server.answering():
        first = auth.authorization("a")
        assert auth.authorization("a") == first  # cached
        auth.authorization("b")  # another scope, another token
        assert [r.scopes for r in token_server.requests] == [("repository:a:pull",), ("repository:b:pull",)]
        # A 401 whose challenge names a scope: that scope is used from now on.
        auth.unauthorized(challenge + ',scope="repository:a:pull,push"', "a", first)
        auth.authorization("a")
        assert token_server.requests[-1].scopes == ("repository:a:pull,push",)


def test_basic_challenge_without_credentials_is_auth_error() -> None:
    auth = Authenticator("reg.example", None, lambda *a: (500, b""))
    with pytest.raises(AuthError, match="--creds"):
        auth.unauthorized('Basic realm="r"', "a", None)


def test_basic_credentials_refused_once_means_auth_error() -> None:
    creds = Credentials("u", "pw-not-shown")
    auth = Authenticator("reg.example", creds, lambda *a: (500, b""))
    auth.unauthorized('Basic realm="r"', "a", None)  # learn: now send Basic
    sent = auth.authorization("a")
    assert sent == basic_authorization(creds)
    with pytest.raises(AuthError, match="refused the credentials of user u") as info:
        auth.unauthorized('Basic realm="r"', "a", sent)
    assert "pw-not-shown" not in str(info.value)


@pytest.mark.parametrize("credentials, expected", [
    pytest.param(None, "reg.example: authenticating: the token does not grant anonymous pull access to repository "
                       "team/app (insufficient_scope); pass --creds USER:PASSWORD or run docker login",
                 id="anonymous-is-told-to-log-in"),
    pytest.param(Credentials("u", "pw-not-shown"), "reg.example: authenticating: the token does not grant user u "
                                                   "pull access to repository team/app (insufficient_scope)",
                 id="user"),
])
def test_a_token_without_the_scope_names_who_and_what(credentials: Credentials | None, expected: str) -> None:
    """A private repository pulled anonymously (Docker Hub answers insufficient_scope): the
    message read "does not grant anonymous access pull access" and did not say to log in
    (auth review)."""
    auth = Authenticator("reg.example", credentials, lambda *a: (500, b""))
    header = 'Bearer realm="https://r/t",service="s",scope="repository:team/app:pull",error="insufficient_scope"'
    assert str(auth.denied(header, "team/app")) == expected


def test_unknown_scheme_is_auth_error() -> None:
    auth = Authenticator("reg.example", None, lambda *a: (500, b""))
    with pytest.raises(AuthError, match="offered: negotiate"):
        auth.unauthorized("Negotiate abc", "a", None)


# -- cache -------------------------------------------------------------------------------------


def test_token_cache_expiry_with_injected_clock() -> None:
    now = [100.0]
    cache = TokenCache(clock=lambda: now[0])
    cache.put("h", ("s",), Token("t", 110.0))
    assert cache.get("h", ("s",)) == Token("t", 110.0)
    assert cache.get("h", ("other",)) is None and cache.get("other", ("s",)) is None
    now[0] = 110.0
    assert cache.get("h", ("s",)) is None


def test_token_repr_hides_the_value() -> None:
    assert "sekrit" not in repr(Token("sekrit", 1.0))
    assert "sekrit" not in repr(Authenticator("h", Credentials("u", "sekrit"), lambda *a: (500, b"")))
