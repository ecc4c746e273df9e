"""Error bodies into diagnostics, URL redaction, and the schema 1 canonical digest."""

from __future__ import annotations

import base64
import json

import pytest

from docker2aci.digest import Digest
from docker2aci.redact import redact_text, redact_url
from docker2aci.registry.diagnostics import parse_error_body
from docker2aci.manifest import manifest_digests, schema1_payload


@pytest.mark.parametrize(("url", "expected"), [
    pytest.param("https://user:pass@r.example/v2/", "https://***@r.example/v2/", id="userinfo"),
    pytest.param("https://token@r.example:5000/v2/x", "https://***@r.example:5000/v2/x", id="user-only"),
    pytest.param("https://bucket.s3.example/blob?X-Amz-Signature=abc&X-Amz-Credential=k&part=1",
                 "https://bucket.s3.example/blob?X-Amz-Signature=***&X-Amz-Credential=***&part=1",
                 id="presigned-query"),
    pytest.param("https://r.example/token?service=reg&scope=repository:a/b:pull",
                 "https://r.example/token?service=reg&scope=repository:a/b:pull", id="token-url-kept"),
    pytest.param("http://127.0.0.1:5000/v2/", "http://127.0.0.1:5000/v2/", id="plain"),
])
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("ProxyError: http://user:p@ss@proxy.example:3128 refused", "ProxyError: http://***@proxy.example:3128 refused",
                 id="password-with-an-at: cut at the last @ before the host"),
    pytest.param("Max retries exceeded with url: /b?X-Amz-Signature=abc (Caused by x)",
                 "Max retries exceeded with url: /b?X-Amz-Signature=*** (Caused by x)", id="bare-path-and-query"),
    pytest.param("docker://r.example/app@sha256:abc and https://r.example/x",
                 "docker://r.example/app@sha256:abc and https://r.example/x", id="digest-reference-kept"),
])
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize(("body", "expected"), [
    pytest.param(b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}',
                 ("MANIFEST_UNKNOWN: manifest unknown",), id="distribution-errors"),
    pytest.param(b'{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."},'
                 b'{"code":"DENIED"}]}',
                 ("TOOMANYREQUESTS: You have reached your pull rate limit.", "DENIED"), id="several"),
    pytest.param(b'{"error":"invalid_grant","error_description":"bad password"}',
                 ("invalid_grant: bad password",), id="oauth2"),
    pytest.param(b'{"details":"incorrect username or password"}', ("incorrect username or password",),
                 id="docker-hub-token-server"),
    pytest.param(b"<html>502 Bad Gateway</html>", (), id="html"),
    pytest.param(b'["not", "an", "object"]', (), id="not-an-object"),
    pytest.param(b"", (), id="empty"),
])
def test_parse_error_body(body: bytes, expected: tuple[str, ...]) -> None:
    assert parse_error_body(body) == expected


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signed_schema1(payload: dict[str, object]) -> tuple[bytes, bytes]:
    """A signed schema 1 body the way libtrust lays it out, and its canonical payload."""
    pretty = json.dumps(payload, indent=3).encode()
    cut = pretty.rstrip().rfind(b"\n}")
    head, tail = pretty[:cut], pretty[cut:]
    protected = _b64url(json.dumps({"formatLength": len(head), "formatTail": _b64url(tail)}).encode())
    sig = {"header": {"alg": "ES256"}, "signature": "c2ln", "protected": protected}
    body = head + b',\n   "signatures": ' + json.dumps([sig]).encode() + tail
    return body, pretty


def test_schema1_payload_and_digests() -> None:
    body, canonical = _signed_schema1({"schemaVersion": 1, "name": "a/b", "tag": "t", "fsLayers": []})
    assert schema1_payload(body) == canonical
    assert manifest_digests(body) == (Digest.of_bytes(body), Digest.of_bytes(canonical))


@pytest.mark.parametrize("body", [
    pytest.param(b'{"schemaVersion":2,"signatures":[]}', id="schema2"),
    pytest.param(b'{"schemaVersion":1,"signatures":[{"protected":"!!!"}]}', id="bad-protected"),
    pytest.param(b'{"schemaVersion":1,"signatures":[{"protected":"' +
                 _b64url(b'{"formatLength":99999,"formatTail":""}').encode() + b'"}]}', id="length-too-long"),
    pytest.param(b"not json", id="not-json"),
])
def test_not_a_usable_signed_schema1(body: bytes) -> None:
    assert schema1_payload(body) is None
    assert manifest_digests(body) == (Digest.of_bytes(body),)
