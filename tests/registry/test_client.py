"""RegistryClient against real docker-registry processes, and through the fault proxy.

Every manifest format is pushed by skopeo (registry_setup.PUSHES); the registry's own
``Docker-Content-Digest`` (read with a plain HTTP request) is the oracle for digests.
The fault proxy injects what a real registry will not do: cut connections, 500, 429 with
Retry-After, corrupted bytes, wrong manifests, wrong Content-Range, cross-host redirects.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import shutil
import socket
import threading
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import pytest
import requests
from faultproxy import REDIRECT_SIGNATURE, Fault, FaultProxy, finishes_within
from registry_setup import CREDS, FAST_RETRY, LAYOUT, PUSHES, Pushed
from services import (
    OPENSSL_BIN,
    REGISTRY_BIN,
    SKOPEO_BIN,
    RunningRegistry,
    TokenAuth,
    free_port,
    make_test_ca,
    push,
    require_tools,
    run_registry,
)
from tokenserver import ISSUER, SERVICE, TEST_PASSWORD, TEST_USER, AnswerField, TokenServer

from docker2aci import mediatypes
from docker2aci.digest import Digest
from docker2aci.errors import (
    AuthError,
    DigestMismatch,
    ImageNotFound,
    InvalidManifest,
    InvalidReference,
    RegistryError,
    SizeMismatch,
    UsageError,
)
from docker2aci.registry import (
    MANIFEST_MEDIA_TYPES,
    Credentials,
    RegistryClient,
    RetryPolicy,
)
from docker2aci.registry.client import API_VERSION_HEADER
from docker2aci.registry import readdeadline
from docker2aci.registry.readdeadline import DeadlineConnection
from docker2aci.registry.schemes import PlainHttpHosts
from docker2aci.manifest import manifest_digests, schema1_payload

pytestmark = pytest.mark.tools

REPO = "test/busybox"
OCI_DIGEST = "sha256:96aaf5f26367ae4d0c6dea89455a494f840129b745f93c49d98ddad14495a7ae"
CREDENTIALS = Credentials(*CREDS)


def client(host: str, **kwargs: Any) -> RegistryClient:
    """A client for a local (plain http) registry with fast retries."""
    kwargs.setdefault("allow_http", True)
    kwargs.setdefault("retry", FAST_RETRY)
    return RegistryClient(host, **kwargs)


def registry_digest(registry: RunningRegistry, repository: str, reference: str, media_type: str) -> Digest:
    """The registry's own Docker-Content-Digest for a manifest (an independent oracle)."""
    resp = requests.head(f"{registry.url}/v2/{repository}/manifests/{reference}",
                         headers={"Accept": media_type}, timeout=10)
    assert resp.status_code == 200, resp.status_code
    return Digest.parse(resp.headers["Docker-Content-Digest"])


@pytest.fixture(scope="module")
def v2s2_manifest(plain_registry: RunningRegistry) -> dict[str, Any]:
    """The docker v2 manifest of test/busybox:v2s2 (config + 4 gzip layers)."""
    with client(plain_registry.host) as c:
        body, _ = c.get_manifest(REPO, "v2s2")
    manifest: dict[str, Any] = json.loads(body)
    return manifest


@pytest.fixture(scope="module")
def big_layer(v2s2_manifest: dict[str, Any]) -> tuple[Digest, int]:
    """The largest layer (busybox itself, about 1 MB): digest and size."""
    layer = max(v2s2_manifest["layers"], key=lambda d: d["size"])
    return Digest.parse(layer["digest"]), int(layer["size"])


def sha256_file(path: Path, offset: int = 0) -> str:
    data = path.read_bytes()[offset:]
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def blob_requests(proxy: FaultProxy) -> list[Any]:
    return [r for r in proxy.requests if "/blobs/" in r.path]


def manifest_requests(proxy: FaultProxy) -> list[Any]:
    return [r for r in proxy.requests if "/manifests/" in r.path]


def digest_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and "Docker-Content-Digest" not in r.getMessage()
            and "says its digest" in r.getMessage()]


# -- manifests: every format -----------------------------------------------------------------


@pytest.mark.parametrize("image", PUSHES, ids=lambda p: f"{p.repository}:{p.tag}")
def test_manifest_of_every_format(plain_registry: RunningRegistry, image: Pushed,
                                  caplog: pytest.LogCaptureFixture) -> None:
    """Case 25: the right media type comes back, and bytes whose digest is the registry's."""
    caplog.set_level(logging.DEBUG)
    oracle = registry_digest(plain_registry, image.repository, image.tag, image.media_type)
    with client(plain_registry.host) as c:
        body, media_type = c.get_manifest(image.repository, image.tag)
        assert media_type == image.media_type
        assert oracle in manifest_digests(body)
        if image.digest is not None:
            assert str(oracle) == image.digest
        by_digest, by_digest_type = c.get_manifest(image.repository, str(oracle))  # verified inside
    assert by_digest_type == media_type
    assert oracle in manifest_digests(by_digest)
    assert not digest_warnings(caplog)


def test_schema1_is_known_by_its_canonical_digest(plain_registry: RunningRegistry) -> None:
    """A signed schema 1 manifest: the registry names it by its JWS payload, not its raw bytes."""
    with client(plain_registry.host) as c:
        body, media_type = c.get_manifest(REPO, "v2s1")
    assert media_type == mediatypes.DOCKER_SCHEMA1_SIGNED
    payload = schema1_payload(body)
    assert payload is not None and b"signatures" not in payload
    raw, canonical = manifest_digests(body)
    assert raw != canonical == registry_digest(plain_registry, REPO, "v2s1", media_type)
    assert json.loads(payload)["fsLayers"] == json.loads(body)["fsLayers"]


def test_zstd_layers_arrive_as_zstd(plain_registry: RunningRegistry) -> None:
    with client(plain_registry.host) as c:
        body, _ = c.get_manifest("test/zstd", "latest")
    types = {layer["mediaType"] for layer in json.loads(body)["layers"]}
    assert types == {mediatypes.OCI_LAYER_ZSTD}


@pytest.mark.parametrize("tag", ["oci", "v2s2"])
def test_index_children_by_digest(plain_registry: RunningRegistry, tag: str) -> None:
    with client(plain_registry.host) as c:
        body, _ = c.get_manifest("test/multi", tag)
        children = json.loads(body)["manifests"]
        assert {(m["platform"]["os"], m["platform"]["architecture"]) for m in children} == {
            ("linux", "amd64"), ("linux", "arm64")}
        for child in children:
            child_body, child_type = c.get_manifest("test/multi", child["digest"])
            assert child_type == child["mediaType"]
            assert Digest.of_bytes(child_body) == Digest.parse(child["digest"])


def test_accept_lists_every_manifest_type(fault_proxy: FaultProxy) -> None:
    with client(fault_proxy.host) as c:
        c.get_manifest(REPO, "oci")
    [seen] = manifest_requests(fault_proxy)
    assert [t.strip() for t in seen.headers["accept"].split(",")] == list(MANIFEST_MEDIA_TYPES)
    assert MANIFEST_MEDIA_TYPES == (mediatypes.OCI_INDEX, mediatypes.OCI_MANIFEST, mediatypes.DOCKER_LIST,
                                    mediatypes.DOCKER_MANIFEST, mediatypes.DOCKER_SCHEMA1_SIGNED,
                                    mediatypes.DOCKER_SCHEMA1)


LOGIN_PAGE = b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>Sign in to go on</body></html>\n"
"""What a misconfigured proxy or a single sign-on gateway answers with status 200."""
NOT_JSON = "is not JSON (Expecting value: line 1 column 1 (char 0))"


def not_a_manifest(where: str, url: str, served: str, problem: str) -> str:
    """The message of an answer that is no manifest."""
    return (f"{where}: fetching the manifest: {url} answered with {served}, not a manifest type "
            f"({', '.join(MANIFEST_MEDIA_TYPES)}), and its body {problem}: not a manifest "
            "(a proxy or a login page in the way?)")


@pytest.mark.parametrize(("reference", "content_type", "body", "served", "problem"), [
    pytest.param("oci", "text/html; charset=utf-8", LOGIN_PAGE, "Content-Type 'text/html'", NOT_JSON,
                 id="html-page-by-tag"),
    pytest.param(OCI_DIGEST, "application/octet-stream", LOGIN_PAGE, "Content-Type 'application/octet-stream'",
                 NOT_JSON, id="octet-stream-by-digest"),
    pytest.param("oci", None, b'["not", "a", "manifest"]', "no Content-Type", "is JSON but not an object",
                 id="no-content-type-json-array"),
    pytest.param("oci", "text/html\x1b[2J\x07", LOGIN_PAGE, "Content-Type 'text/html\\x1b[2j\\x07'", NOT_JSON,
                 id="control-characters"),  # (lower-cased as a media type)
    # a header as long as the HTTP client reads (64 KiB) was shown whole
    pytest.param("oci", "text/" + "x" * 60000, LOGIN_PAGE, f"Content-Type {'text/' + 'x' * 195 + '…'!r}", NOT_JSON,
                 id="huge-content-type"),
])
def test_an_answer_that_is_no_manifest_says_what_came(fault_proxy: FaultProxy, reference: str,
                                                       content_type: str | None, body: bytes, served: str,
                                                       problem: str) -> None:
    """A 200 answer with another Content-Type and a body that is no manifest (a proxy's
    HTML page) gave "not valid JSON: Expecting value" (by tag) or a digest mismatch (by
    digest), naming neither what came nor where from (sources review)."""
    headers = [("Content-Type", content_type)] if content_type else []
    fault_proxy.add(Fault.respond(200, target="manifest", headers=headers, body=body))
    with client(fault_proxy.host) as c, pytest.raises(InvalidManifest) as info:
        c.get_manifest(REPO, reference)
    where = f"{fault_proxy.host}/{REPO}{'@' if reference == OCI_DIGEST else ':'}{reference}"
    url = f"http://{fault_proxy.host}/v2/{REPO}/manifests/{reference}"
    assert str(info.value) == not_a_manifest(where, url, served, problem)


def test_a_login_page_redirected_to_is_named_redacted(fault_proxy: FaultProxy) -> None:
    """A manifest request sent on to a sign-in page: the error names the page's URL, with
    its session value hidden."""
    login = f"http://{fault_proxy.host}/sso/login?session=secret-session-value&next=manifest"
    with client(fault_proxy.host) as c:
        c.ping()  # before the faults: the catch-all one below would answer it
        fault_proxy.add(Fault.respond(302, target="manifest", headers=[("Location", login)], body=b""),
                        Fault.respond(200, target="any", headers=[("Content-Type", "text/html")], body=LOGIN_PAGE))
        with pytest.raises(InvalidManifest) as info:
            c.get_manifest(REPO, "oci")
    url = f"http://{fault_proxy.host}/sso/login?session=***&next=manifest"
    assert str(info.value) == not_a_manifest(f"{fault_proxy.host}/{REPO}:oci", url, "Content-Type 'text/html'",
                                             NOT_JSON)
    assert "secret-session-value" not in str(info.value)


def test_a_long_url_redirected_to_is_shown_cut(fault_proxy: FaultProxy) -> None:
    """A redirect to a URL of 20 000 characters: the message shows its first 200 (it showed
    all of them)."""
    page = f"http://{fault_proxy.host}/sso/{'x' * 20000}"
    with client(fault_proxy.host) as c:
        c.ping()
        fault_proxy.add(Fault.respond(302, target="manifest", headers=[("Location", page)], body=b""),
                        Fault.respond(200, target="any", headers=[("Content-Type", "text/html")], body=LOGIN_PAGE))
        with pytest.raises(InvalidManifest) as info:
            c.get_manifest(REPO, "oci")
    assert str(info.value) == not_a_manifest(f"{fault_proxy.host}/{REPO}:oci", page[:200] + "…",
                                             "Content-Type 'text/html'", NOT_JSON)


def test_a_manifest_served_as_plain_text_is_read(fault_proxy: FaultProxy) -> None:
    """A manifest whose Content-Type is wrong but whose body is one is read, as skopeo reads
    it; the conversion tells its kind from the body."""
    fault_proxy.add(Fault.set_header("Content-Type", "text/plain; charset=utf-8"))
    with client(fault_proxy.host) as c:
        body, media_type = c.get_manifest(REPO, OCI_DIGEST)
    assert (Digest.of_bytes(body), media_type) == (Digest.parse(OCI_DIGEST), "text/plain")


def test_wrong_manifest_for_a_digest_is_digest_mismatch(plain_registry: RunningRegistry,
                                                        fault_proxy: FaultProxy) -> None:
    """Case 28: the server answers a digest request with another manifest."""
    other = registry_digest(plain_registry, REPO, "v2s2", mediatypes.DOCKER_MANIFEST)
    fault_proxy.add(Fault.rewrite(OCI_DIGEST, str(other)))
    with client(fault_proxy.host) as c, pytest.raises(DigestMismatch) as info:
        c.get_manifest(REPO, OCI_DIGEST)
    assert (info.value.expected, info.value.actual) == (OCI_DIGEST, str(other))


def test_corrupted_manifest_by_digest_is_digest_mismatch(fault_proxy: FaultProxy) -> None:
    fault_proxy.add(Fault.corrupt(target="manifest"))
    with client(fault_proxy.host) as c, pytest.raises(DigestMismatch):
        c.get_manifest(REPO, OCI_DIGEST)


def test_disagreeing_digest_header_is_a_warning_by_tag(fault_proxy: FaultProxy,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    bogus = "sha256:" + "0" * 64
    fault_proxy.add(Fault.set_header("Docker-Content-Digest", bogus))
    with client(fault_proxy.host) as c:
        body, _ = c.get_manifest(REPO, "oci")
        assert Digest.of_bytes(body) == Digest.parse(OCI_DIGEST)
        [warning] = digest_warnings(caplog)
        assert bogus in warning and OCI_DIGEST in warning
        caplog.clear()
        c.get_manifest(REPO, OCI_DIGEST)  # by digest the body is checked; the header does not matter
        assert not digest_warnings(caplog)


@pytest.mark.parametrize(("repository", "reference", "code"), [
    pytest.param(REPO, "no-such-tag", "MANIFEST_UNKNOWN", id="unknown-tag"),
    pytest.param("test/nothing-here", "latest", "MANIFEST_UNKNOWN", id="unknown-repository"),
    pytest.param(REPO, "sha256:" + "1" * 64, "MANIFEST_UNKNOWN", id="unknown-digest"),
])
def test_missing_manifest_is_image_not_found(plain_registry: RunningRegistry, repository: str, reference: str,
                                             code: str) -> None:
    with client(plain_registry.host) as c, pytest.raises(ImageNotFound, match=code) as info:
        c.get_manifest(repository, reference)
    assert reference in str(info.value)


@pytest.mark.parametrize(("repository", "reference"), [
    pytest.param("Test/Busybox", "latest", id="uppercase-repository"),
    pytest.param("test/../etc", "latest", id="dot-dot"),
    pytest.param(REPO, "../../etc/passwd", id="tag-with-slashes"),
    pytest.param(REPO, "sha256:abc", id="short-digest"),
    pytest.param(REPO, "", id="empty-tag"),
])
def test_malformed_names_are_refused_before_any_request(repository: str, reference: str) -> None:
    with RegistryClient("127.0.0.1:1") as c, pytest.raises(InvalidReference):
        c.get_manifest(repository, reference)


@pytest.mark.parametrize("host", ["http://127.0.0.1:5000", "127.0.0.1:5000/path", "user@host", ""])
def test_malformed_host_is_refused(host: str) -> None:
    with pytest.raises(InvalidReference):
        RegistryClient(host)


def test_constructor_does_no_network_io() -> None:
    port = free_port()  # nothing listens there
    c = RegistryClient(f"127.0.0.1:{port}")
    assert c.base_url is None
    c.close()


def test_docker_hub_aliases_go_to_registry_1() -> None:
    for host in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        assert RegistryClient(host).host == "registry-1.docker.io"


# -- blobs ---------------------------------------------------------------------------------


def test_blobs_are_fetched_and_verified(plain_registry: RunningRegistry, v2s2_manifest: dict[str, Any],
                                        tmp_path: Path) -> None:
    with client(plain_registry.host) as c:
        for desc in [v2s2_manifest["config"], *v2s2_manifest["layers"]]:
            path = tmp_path / desc["digest"].replace(":", "-")
            seen: list[int] = []
            with path.open("wb") as f:
                c.fetch_blob(REPO, Digest.parse(desc["digest"]), desc["size"], f, progress=seen.append)
            assert sha256_file(path) == desc["digest"]
            assert sum(seen) == desc["size"] == path.stat().st_size and all(n > 0 for n in seen)


def test_blob_size_unknown_is_fine(plain_registry: RunningRegistry, v2s2_manifest: dict[str, Any]) -> None:
    config = v2s2_manifest["config"]
    dest = io.BytesIO()
    with client(plain_registry.host) as c:
        c.fetch_blob(REPO, Digest.parse(config["digest"]), None, dest)
    assert len(dest.getvalue()) == config["size"]


@pytest.mark.parametrize("delta", [1, -1])
def test_blob_wrong_size_is_size_mismatch(plain_registry: RunningRegistry, big_layer: tuple[Digest, int],
                                          delta: int) -> None:
    digest, size = big_layer
    dest = io.BytesIO()
    with client(plain_registry.host) as c, pytest.raises(SizeMismatch) as info:
        c.fetch_blob(REPO, digest, size + delta, dest)
    assert info.value.expected == size + delta
    assert len(dest.getvalue()) <= size + delta  # never writes past the expected size


def test_missing_blob_is_image_not_found(plain_registry: RunningRegistry) -> None:
    with client(plain_registry.host) as c, pytest.raises(ImageNotFound, match="BLOB_UNKNOWN"):
        c.fetch_blob(REPO, Digest.parse("sha256:" + "2" * 64), None, io.BytesIO())


def test_corrupted_blob_is_digest_mismatch(fault_proxy: FaultProxy, big_layer: tuple[Digest, int]) -> None:
    digest, size = big_layer
    fault_proxy.add(Fault.corrupt())
    with client(fault_proxy.host) as c, pytest.raises(DigestMismatch) as info:
        c.fetch_blob(REPO, digest, size, io.BytesIO())
    assert info.value.expected == str(digest)


def test_blob_requests_ask_for_identity_encoding(fault_proxy: FaultProxy, big_layer: tuple[Digest, int]) -> None:
    digest, size = big_layer
    with client(fault_proxy.host) as c:
        c.fetch_blob(REPO, digest, size, io.BytesIO())
    [seen] = blob_requests(fault_proxy)
    assert seen.method == "GET" and seen.headers["accept-encoding"] == "identity"


# -- resume (case 32) -------------------------------------------------------------------------


def test_cut_mid_blob_resumes_with_range(fault_proxy: FaultProxy, big_layer: tuple[Digest, int],
                                         tmp_path: Path) -> None:
    digest, size = big_layer
    half = size // 2
    fault_proxy.add(Fault.cut(half))
    path = tmp_path / "blob"
    seen: list[int] = []
    with client(fault_proxy.host) as c, path.open("w+b") as f:
        c.fetch_blob(REPO, digest, size, f, progress=seen.append)
    first, second = blob_requests(fault_proxy)
    assert "range" not in first.headers
    assert second.headers["range"] == f"bytes={half}-"
    assert second.headers["if-range"].strip('"') == str(digest)  # the registry's strong ETag
    assert sha256_file(path) == str(digest) and path.stat().st_size == size
    assert sum(seen) == size and all(n > 0 for n in seen)


def test_a_weak_etag_is_not_sent_as_if_range(fault_proxy: FaultProxy, big_layer: tuple[Digest, int],
                                             tmp_path: Path) -> None:
    """RFC 9110 section 13.1.5: If-Range takes a strong validator only (a server ignores
    the Range of a weak one and sends the whole blob again); without one, the resumed
    request asks for the Range alone."""
    digest, size = big_layer
    half = size // 2
    fault_proxy.add(Fault.set_header("ETag", f'W/"{digest}"', target="blob", times=1), Fault.cut(half))
    path = tmp_path / "blob"
    with client(fault_proxy.host) as c, path.open("w+b") as f:
        c.fetch_blob(REPO, digest, size, f)
    first, second = blob_requests(fault_proxy)
    assert second.headers["range"] == f"bytes={half}-"
    assert "if-range" not in second.headers
    assert sha256_file(path) == str(digest) and path.stat().st_size == size


def test_a_tag_list_page_that_links_to_itself_is_refused_at_once(fault_proxy: FaultProxy) -> None:
    """A registry whose ``Link: rel="next"`` names the page just read: refused before it
    is asked for again (here the link goes away after three pages, so that a client that
    follows it ends instead of looping)."""
    fault_proxy.add(Fault.set_header("Link", f'</v2/{REPO}/tags/list>; rel="next"', target="list", times=3))
    with client(fault_proxy.host) as c, pytest.raises(RegistryError) as info:
        c.list_tags(REPO)
    assert str(info.value) == (f"{fault_proxy.host}/{REPO}: listing the tags: more than 10000 pages, "
                               "or a page links back")
    assert [r.path for r in fault_proxy.requests if "/tags/list" in r.path] == [f"/v2/{REPO}/tags/list"]


def test_a_tag_list_page_on_another_host_is_refused(fault_proxy: FaultProxy) -> None:
    """A ``Link`` to another host is refused, not asked of this registry by its path."""
    link = f'<http://{fault_proxy.store_host}/v2/{REPO}/tags/list?last=zz>; rel="next"'
    fault_proxy.add(Fault.set_header("Link", link, target="list", times=1))
    with client(fault_proxy.host) as c, pytest.raises(RegistryError) as info:
        c.list_tags(REPO)
    assert str(info.value) == (f"{fault_proxy.host}/{REPO}: listing the tags: the next page is on another host "
                               f"({fault_proxy.store_host})")
    assert len([r for r in fault_proxy.requests if "/tags/list" in r.path]) == 1


def test_a_catalog_naming_an_invalid_repository_is_refused(fault_proxy: FaultProxy) -> None:
    """The names go into URLs and file names (``mirror --all-repos``): one outside the
    grammar is refused, naming it."""
    fault_proxy.add(Fault.respond(200, target="list", headers=(("Content-Type", "application/json"),),
                                  body=b'{"repositories": ["test/busybox", "../etc"]}'))
    with client(fault_proxy.host) as c, pytest.raises(InvalidManifest) as info:
        c.catalog()
    assert str(info.value) == f"{fault_proxy.host}: _catalog names an invalid repository '../etc'"


def test_a_digest_header_on_a_failed_head_is_no_digest(fault_proxy: FaultProxy) -> None:
    """``manifest_digest`` takes ``Docker-Content-Digest`` from a 200 only: a 404 (a proxy's
    cached answer, say) that carries one says nothing about the tag."""
    with client(fault_proxy.host) as c:
        assert c.manifest_digest(REPO, "oci") == OCI_DIGEST
        fault_proxy.add(Fault.respond(404, target="manifest", headers=(("Docker-Content-Digest", OCI_DIGEST),)))
        assert c.manifest_digest(REPO, "oci") is None


def test_a_ping_answer_that_says_registry_2_is_a_v2_registry(fault_proxy: FaultProxy) -> None:
    """``GET /v2/`` answered with another status than 200 or 401 but with
    ``Docker-Distribution-API-Version: registry/2.0`` is a v2 registry (distribution spec
    "API Version Check"): what follows works."""
    fault_proxy.add(Fault.respond(403, target="ping", headers=((API_VERSION_HEADER, "registry/2.0"),)))
    with client(fault_proxy.host) as c:
        body, media_type = c.get_manifest(REPO, "oci")
    assert Digest.of_bytes(body) == Digest.parse(OCI_DIGEST) and media_type == mediatypes.OCI_MANIFEST


def test_credentials_never_go_to_a_plain_http_token_service_without_allow_http(token_server: TokenServer) -> None:
    """The realm an https registry names may be ``http://``: the Basic credentials are not
    sent there in clear text unless --insecure-allow-http (the client's token sender,
    called as its Authenticator calls it)."""
    basic = "Basic " + base64.b64encode(f"{TEST_USER}:{TEST_PASSWORD}".encode()).decode()
    with token_server.answering(), RegistryClient("registry.example", credentials=CREDENTIALS) as c, \
            pytest.raises(AuthError) as info:
        c._send_token_request(token_server.realm, [("scope", "repository:a:pull")], {"Authorization": basic})
    assert str(info.value) == (f"registry.example: getting a token: the token service {token_server.realm} is plain "
                               "http, and credentials are not sent in clear text; use --insecure-allow-http to "
                               "allow it")
    assert token_server.requests == []


def test_cut_then_range_ignored_restarts_from_zero(fault_proxy: FaultProxy, big_layer: tuple[Digest, int],
                                                   tmp_path: Path) -> None:
    """The server answers the ranged retry with 200: dest is truncated back to where it started."""
    digest, size = big_layer
    fault_proxy.add(Fault.cut(size // 2), Fault.strip_range())
    path = tmp_path / "blob"
    seen: list[int] = []
    with client(fault_proxy.host) as c, path.open("w+b") as f:
        f.write(b"PREFIX")  # the blob goes after what the caller already wrote
        c.fetch_blob(REPO, digest, size, f, progress=seen.append)
    assert path.read_bytes()[:6] == b"PREFIX"
    assert sha256_file(path, offset=6) == str(digest) and path.stat().st_size == size + 6
    assert sum(seen) == size and -(size // 2) in seen  # the restart took back what was written
    assert blob_requests(fault_proxy)[1].headers["range"] == f"bytes={size // 2}-"


def test_wrong_content_range_is_an_error(fault_proxy: FaultProxy, big_layer: tuple[Digest, int]) -> None:
    digest, size = big_layer
    fault_proxy.add(Fault.cut(1000), Fault.bad_content_range())
    with client(fault_proxy.host) as c, pytest.raises(RegistryError, match="Content-Range"):
        c.fetch_blob(REPO, digest, size, io.BytesIO())


def test_cut_every_time_gives_up_after_the_policy_attempts(fault_proxy: FaultProxy,
                                                           big_layer: tuple[Digest, int]) -> None:
    digest, size = big_layer
    fault_proxy.add(Fault.cut(1000, times=None))
    with client(fault_proxy.host) as c, pytest.raises(RegistryError, match="connection broke") as info:
        c.fetch_blob(REPO, digest, size, io.BytesIO())
    assert info.value.temporary
    assert len(blob_requests(fault_proxy)) == FAST_RETRY.attempts


@pytest.mark.parametrize("close", [False, True], ids=["keep-alive", "connection-close"])
def test_a_drip_is_cut_and_resumed(fault_proxy: FaultProxy, big_layer: tuple[Digest, int], tmp_path: Path,
                                   close: bool) -> None:
    """A server that sends a byte every 0.1 s never lets a socket read time out; a read
    that takes longer than the limit cuts the body, resumed from where it stopped. With
    ``Connection: close`` urllib3's connection has let go of the socket already (only
    http.client's reader holds it)."""
    digest, size = big_layer
    fault_proxy.add(Fault.drip(5000, 0.1, close=close))
    path = tmp_path / "blob"

    def fetch() -> None:
        with client(fault_proxy.host, slow_read=(1000, 0.5)) as c, path.open("w+b") as f:
            c.fetch_blob(REPO, digest, size, f)

    finishes_within(30, fetch)
    first, second = blob_requests(fault_proxy)
    assert "range" not in first.headers
    resumed_at = int(second.headers["range"].removeprefix("bytes=").removesuffix("-"))
    assert 5000 <= resumed_at < 5020  # what came before the cut was kept (and the few bytes of the cut read)
    assert sha256_file(path) == str(digest) and path.stat().st_size == size


def test_a_drip_every_time_gives_up_naming_the_speed(fault_proxy: FaultProxy,
                                                      big_layer: tuple[Digest, int]) -> None:
    digest, size = big_layer
    fault_proxy.add(Fault.drip(100, 0.05, times=None))  # each attempt brings ~106 bytes, under a quarter piece
    with client(fault_proxy.host, slow_read=(1000, 0.3)) as c, pytest.raises(RegistryError) as info:
        c.fetch_blob(REPO, digest, size, io.BytesIO())
    assert "too slow: a read of the body took over 0.3 s" in str(info.value)
    assert info.value.temporary
    assert len(blob_requests(fault_proxy)) == FAST_RETRY.attempts


def test_a_slow_steady_link_gets_there_past_the_attempts(fault_proxy: FaultProxy,
                                                        v2s2_manifest: dict[str, Any]) -> None:
    """Every request brings a quarter of a piece or more before it is cut: the cuts do not
    use up the retry attempts, and the blob arrives, in more requests than attempts."""
    config = v2s2_manifest["config"]
    fault_proxy.add(Fault.drip(300, 0.05, times=None))
    with client(fault_proxy.host, slow_read=(1000, 0.3)) as c:
        dest = io.BytesIO()
        c.fetch_blob(REPO, Digest.parse(config["digest"]), config["size"], dest)
    assert Digest.of_bytes(dest.getvalue()) == Digest.parse(config["digest"])
    assert len(blob_requests(fault_proxy)) > FAST_RETRY.attempts


def test_a_dripping_manifest_is_asked_for_again_then_given_up(fault_proxy: FaultProxy) -> None:
    fault_proxy.add(Fault.drip(10, 0.05, target="manifest", times=None))
    with client(fault_proxy.host, slow_read=(1000, 0.3)) as c, pytest.raises(RegistryError) as info:
        c.get_manifest(REPO, "oci")
    assert "too slow: a read of the body took over 0.3 s" in str(info.value)
    assert info.value.temporary
    assert len(manifest_requests(fault_proxy)) == FAST_RETRY.attempts


def test_a_dripping_manifest_once_is_asked_for_again(fault_proxy: FaultProxy) -> None:
    fault_proxy.add(Fault.drip(10, 0.05, target="manifest"))
    with client(fault_proxy.host, slow_read=(1000, 0.3)) as c:
        body, _ = c.get_manifest(REPO, "oci")
    assert Digest.of_bytes(body) == Digest.parse(OCI_DIGEST)
    assert len(manifest_requests(fault_proxy)) == 2


def test_dripping_headers_are_cut_and_asked_for_again_then_given_up(fault_proxy: FaultProxy,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that sends its status line and headers one byte at a time never lets a
    socket read time out; the head's deadline cuts it, and the request is retried."""
    monkeypatch.setattr(DeadlineConnection, "head_seconds", 0.5)
    fault_proxy.add(Fault.drip_head(0.05, times=None))
    with client(fault_proxy.host) as c, pytest.raises(RegistryError) as info:
        finishes_within(30, lambda: c.get_manifest(REPO, "oci"))
    assert "too slow: reading the status line and headers took over 0.5 s" in str(info.value)
    assert info.value.temporary
    assert len(manifest_requests(fault_proxy)) == FAST_RETRY.attempts


def test_dripping_headers_once_are_asked_for_again(fault_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DeadlineConnection, "head_seconds", 0.5)
    fault_proxy.add(Fault.drip_head(0.05))
    with client(fault_proxy.host) as c:
        body, _ = finishes_within(30, lambda: c.get_manifest(REPO, "oci"))
    assert Digest.of_bytes(body) == Digest.parse(OCI_DIGEST)
    assert len(manifest_requests(fault_proxy)) == 2


def test_headers_cut_halfway_are_not_taken_for_a_whole_answer(fault_proxy: FaultProxy,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The cut falls inside the headers (the status line is in): http.client takes the end
    of the stream for the end of the headers, but the answer is not used (it had no body
    and no media type); the manifest is asked for again."""
    monkeypatch.setattr(DeadlineConnection, "head_seconds", 0.5)
    fault_proxy.add(Fault.drip_head(0.01))
    with client(fault_proxy.host) as c:
        body, media_type = finishes_within(30, lambda: c.get_manifest(REPO, "oci"))
    assert Digest.of_bytes(body) == Digest.parse(OCI_DIGEST) and media_type
    assert len(manifest_requests(fault_proxy)) == 2


def test_a_slow_but_whole_head_is_read(fault_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    """The deadline is for the whole head, not per byte: one dripped within it passes."""
    monkeypatch.setattr(DeadlineConnection, "head_seconds", 20)
    fault_proxy.add(Fault.drip_head(0.002))
    with client(fault_proxy.host) as c:
        body, _ = c.get_manifest(REPO, "oci")
    assert Digest.of_bytes(body) == Digest.parse(OCI_DIGEST)
    assert len(manifest_requests(fault_proxy)) == 1


def test_a_slow_name_lookup_does_not_use_up_the_set_up_deadline(fault_proxy: FaultProxy,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The set-up's clock starts again once the socket exists, before the watchdog can see
    the socket (a review: between the two, a slow lookup's expired deadline cut a healthy
    connection; the pause in ``restart`` stands in for a thread switch there)."""
    from docker2aci.registry import readdeadline

    monkeypatch.setattr(DeadlineConnection, "head_seconds", 0.5)
    lookup, restart = socket.getaddrinfo, readdeadline.ReadDeadline.restart
    clients: set[int] = set()  # the fault proxy, in this process, looks its upstream up too

    def slow_lookup(*args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() in clients:
            time.sleep(0.7)
        return lookup(*args, **kwargs)

    def fetch() -> tuple[bytes, str]:
        clients.add(threading.get_ident())
        with client(fault_proxy.host) as c:
            return c.get_manifest(REPO, "oci")

    def paused_restart(self: Any) -> None:
        time.sleep(0.3)
        restart(self)

    monkeypatch.setattr(socket, "getaddrinfo", slow_lookup)
    monkeypatch.setattr(readdeadline.ReadDeadline, "restart", paused_restart)
    body, _ = finishes_within(30, fetch)
    assert Digest.of_bytes(body) == Digest.parse(OCI_DIGEST)
    assert len(manifest_requests(fault_proxy)) == 1


def test_a_dripping_tls_handshake_is_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that answers the TLS ClientHello one byte at a time (here, the start of a
    handshake record that never ends) holds no request past the deadline."""
    monkeypatch.setattr(DeadlineConnection, "head_seconds", 0.5)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(4096)  # the ClientHello
                try:
                    for byte in b"\x16\x03\x03\x40\x00" + bytes(200):
                        if stop.is_set():
                            break
                        conn.sendall(bytes([byte]))
                        time.sleep(0.05)
                except OSError:
                    pass

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        with client(f"127.0.0.1:{port}") as c, pytest.raises(RegistryError) as info:
            finishes_within(30, c.ping)
        assert "too slow: setting up the connection took over 0.5 s" in str(info.value)
    finally:
        stop.set()
        listener.close()
        server.join(10)


def test_a_cut_read_keeps_what_it_brought(fault_proxy: FaultProxy, big_layer: tuple[Digest, int]) -> None:
    """A steady link just under the limit still makes progress: the bytes of the read that
    was cut are kept, and the next request resumes after them."""
    digest, size = big_layer
    after = (size - 3000) // 1000 * 1000 + 500  # the read that meets the drip has 500 bytes at once
    fault_proxy.add(Fault.drip(after, 0.02))
    with client(fault_proxy.host, slow_read=(1000, 0.5)) as c:
        c.fetch_blob(REPO, digest, size, io.BytesIO())
    _, second = blob_requests(fault_proxy)
    resumed_at = int(second.headers["range"].removeprefix("bytes=").removesuffix("-"))
    assert after <= resumed_at < size  # not after - 500, where the last whole read ended


def test_bytes_that_arrive_after_a_cut_do_not_reset_the_connection() -> None:
    """The watchdog's cut leaves a read its bytes whatever arrives meanwhile. A read cut
    while it waits returns what it had, unless the process wakes it only after the
    dripping server's next byte: after a cut of both ways (this side's FIN sent), Linux
    answers that byte with a reset, and the read raises ECONNRESET, its bytes lost (the
    cut-read test above failed so, once, on a loaded machine). The order is made here:
    cut, then a byte arrives, then the read."""
    listener = socket.create_server(("127.0.0.1", 0))
    with listener, socket.create_connection(listener.getsockname()) as ours:
        theirs, _ = listener.accept()
        with theirs:
            theirs.sendall(b"x" * 500)
            time.sleep(0.1)
            readdeadline._shutdown(ours)
            theirs.sendall(b"y")  # the drip goes on after the cut
            time.sleep(0.1)
            received = b""
            while chunk := ours.recv(1000):  # raised ConnectionResetError after a cut of both ways
                received += chunk
            assert received == b"x" * 500 + b"y"


def test_a_cut_wakes_a_blocked_read_with_the_end() -> None:
    """Cut by socket object (a body) or by descriptor (a connection being set up)."""
    for by_descriptor in (False, True):
        ours, theirs = socket.socketpair()
        with ours, theirs:
            ends: list[bytes] = []
            reader = threading.Thread(target=lambda: ends.append(ours.recv(10)))
            reader.start()
            time.sleep(0.1)
            readdeadline._shutdown(ours.fileno() if by_descriptor else ours)
            reader.join(10)
            assert not reader.is_alive() and ends == [b""]


def test_a_cut_chunked_read_keeps_what_it_brought(fault_proxy: FaultProxy, big_layer: tuple[Digest, int]) -> None:
    """http.client drops the bytes of a chunked read that the cut ends (it raises
    IncompleteRead); they are taken from that exception and kept."""
    digest, size = big_layer
    fault_proxy.add(Fault.drip(5500, 0.1, chunked=True))
    with client(fault_proxy.host, slow_read=(1000, 0.5)) as c:
        c.fetch_blob(REPO, digest, size, io.BytesIO())
    _, second = blob_requests(fault_proxy)
    resumed_at = int(second.headers["range"].removeprefix("bytes=").removesuffix("-"))
    assert 5500 <= resumed_at < 5520  # 5000 in whole pieces, then the cut piece's 500 and its drip


def test_a_cut_as_the_last_bytes_arrive_ends_the_blob(plain_registry: RunningRegistry, big_layer: tuple[Digest, int],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The deadline can pass after the blob's last bytes came but before http.client let go
    of the connection: the blob is complete and taken as it is (asking for the bytes after
    its end would be answered 416)."""
    import http.client

    digest, size = big_layer
    close = http.client.HTTPResponse._close_conn  # type: ignore[attr-defined]

    def slow_close(self: http.client.HTTPResponse) -> None:
        time.sleep(0.8)  # past the 0.3 s deadline, inside the read that brought the last bytes
        close(self)

    with client(plain_registry.host, slow_read=(1 << 30, 0.3)) as c:
        c.ping()
        monkeypatch.setattr(http.client.HTTPResponse, "_close_conn", slow_close)
        dest = io.BytesIO()
        c.fetch_blob(REPO, digest, size, dest)
    assert Digest.of_bytes(dest.getvalue()) == digest


def test_a_dripping_error_body_is_not_waited_for(fault_proxy: FaultProxy) -> None:
    """A 503 is retried; its body, dripped, is dropped after the limit instead of drained."""
    fault_proxy.add(Fault.respond(503, target="manifest", body=b"x" * 2000, drip_interval=0.2))

    def fetch() -> bytes:
        with client(fault_proxy.host, slow_read=(1000, 0.3)) as c:
            return c.get_manifest(REPO, "oci")[0]

    body = finishes_within(30, fetch)  # draining would take 400 s
    assert Digest.of_bytes(body) == Digest.parse(OCI_DIGEST)
    assert len(manifest_requests(fault_proxy)) == 2


def test_a_slow_but_steady_body_is_not_cut(fault_proxy: FaultProxy, big_layer: tuple[Digest, int]) -> None:
    """The limit is the time of one read: a body that fills each in time, however slowly,
    goes through in one request."""
    digest, size = big_layer
    fault_proxy.add(Fault.drip(size - 40, 0.02))  # the last 40 bytes at 50 bytes/s
    with client(fault_proxy.host, slow_read=(10, 0.3)) as c:
        c.fetch_blob(REPO, digest, size, io.BytesIO())
    assert len(blob_requests(fault_proxy)) == 1


# -- retries (case 31) -------------------------------------------------------------------------


def test_500_once_then_success(fault_proxy: FaultProxy) -> None:
    fault_proxy.add(Fault.respond(500, target="manifest"))
    with client(fault_proxy.host) as c:
        body, _ = c.get_manifest(REPO, "oci")
    assert Digest.of_bytes(body) == Digest.parse(OCI_DIGEST)
    assert len(manifest_requests(fault_proxy)) == 2


def test_500_always_gives_up_with_diagnostics(fault_proxy: FaultProxy) -> None:
    fault_proxy.add(Fault.respond(503, target="manifest", times=None))
    with client(fault_proxy.host) as c, pytest.raises(RegistryError) as info:
        c.get_manifest(REPO, "oci")
    err = info.value
    assert (err.status, err.temporary, err.diagnostics) == (503, True, ("UNKNOWN: injected failure",))
    assert len(manifest_requests(fault_proxy)) == FAST_RETRY.attempts


def test_429_retry_after_is_honoured(fault_proxy: FaultProxy, big_layer: tuple[Digest, int]) -> None:
    digest, size = big_layer
    fault_proxy.add(Fault.too_many_requests("1", target="blob"))
    with client(fault_proxy.host) as c:
        c.ping()
        started = time.monotonic()
        c.fetch_blob(REPO, digest, size, io.BytesIO())
        elapsed = time.monotonic() - started
    assert elapsed >= 1.0
    assert len(blob_requests(fault_proxy)) == 2


def test_429_persisting_is_a_temporary_registry_error(fault_proxy: FaultProxy) -> None:
    fault_proxy.add(Fault.too_many_requests("0", target="manifest", times=None))
    with client(fault_proxy.host) as c, pytest.raises(RegistryError) as info:
        c.get_manifest(REPO, "oci")
    assert (info.value.status, info.value.temporary) == (429, True)
    assert info.value.diagnostics == ("TOOMANYREQUESTS: slow down",)


def test_retry_after_is_capped_by_max_delay(fault_proxy: FaultProxy) -> None:
    fault_proxy.add(Fault.too_many_requests("3600", target="manifest"))
    policy = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.2)
    with client(fault_proxy.host, retry=policy) as c:
        c.ping()
        started = time.monotonic()
        c.get_manifest(REPO, "oci")
    assert 0.2 <= time.monotonic() - started < 5


# -- the /v2/ ping and the scheme (case 23) ------------------------------------------------------


def test_ping_404_without_v2_header_means_no_v2_api(fault_proxy: FaultProxy) -> None:
    fault_proxy.add(Fault.respond(404, target="ping", body=b"404 page not found"))
    with client(fault_proxy.host) as c, pytest.raises(RegistryError, match="does not speak the registry v2 API"):
        c.get_manifest(REPO, "oci")


def test_ping_200_then_401_on_the_manifest_is_answered(token_registry: RunningRegistry,
                                                       token_server: TokenServer) -> None:
    """moby #50896: /v2/ says 200, the repository challenges later; handle it then."""
    with FaultProxy(token_registry.url, lifetime=60) as proxy, token_server.answering():
        proxy.add(Fault.respond(200, target="ping", headers=((API_VERSION_HEADER, "registry/2.0"),), body=b"{}"))
        with client(proxy.host) as c:
            c.get_manifest(REPO, "v2s2")
        first, second = manifest_requests(proxy)
        assert "authorization" not in first.headers
        assert second.headers["authorization"] == f"Bearer {token_server.issued[-1]}"


def test_plain_http_needs_allow_http(plain_registry: RunningRegistry) -> None:
    with RegistryClient(plain_registry.host, retry=FAST_RETRY) as c, pytest.raises(RegistryError, match="TLS") as info:
        c.get_manifest(REPO, "oci")
    assert info.value.status is None and not info.value.temporary
    with client(plain_registry.host) as c:
        c.get_manifest(REPO, "oci")
        assert c.base_url == f"http://{plain_registry.host}"


def test_a_host_that_fell_back_to_http_is_asked_over_http_first(plain_registry: RunningRegistry, tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """With --insecure-allow-http, a host that answered only over http is remembered, and
    later clients skip the https attempt; without the flag the memo is not used."""
    memo = PlainHttpHosts(str(tmp_path / "plain-http"))
    caplog.set_level(logging.INFO, logger="docker2aci.registry.client")
    with client(plain_registry.host, plain_http=memo) as c:
        c.get_manifest(REPO, "oci")
    assert "https failed" in caplog.text
    assert [p.name for p in (tmp_path / "plain-http").iterdir()] == [plain_registry.host.replace(":", "%3A")]
    caplog.clear()
    with client(plain_registry.host, plain_http=memo) as c:
        c.get_manifest(REPO, "oci")
        assert c.base_url == f"http://{plain_registry.host}"
    assert "https failed" not in caplog.text
    with RegistryClient(plain_registry.host, retry=FAST_RETRY, plain_http=memo) as c, \
            pytest.raises(RegistryError, match="TLS"):
        c.get_manifest(REPO, "oci")
    caplog.clear()
    with client(plain_registry.host, plain_http=PlainHttpHosts(memo.directory, ttl=0)) as c:  # expired
        c.get_manifest(REPO, "oci")
    assert "https failed" in caplog.text


@pytest.mark.parametrize("verify", [True, False])
def test_a_plain_http_registry_asked_over_https_hints_at_allow_http(plain_registry: RunningRegistry,
                                                                    verify: bool) -> None:
    """Without --insecure-allow-http, a registry that answers the TLS hello in plain text
    is reported with the flag that helps (not --cert-dir or --insecure-skip-verify, which
    do not: the newcomer trial followed that hint and got the same error)."""
    with RegistryClient(plain_registry.host, retry=FAST_RETRY, insecure_skip_verify=not verify) as c, \
            pytest.raises(RegistryError) as info:
        c.ping()
    message = str(info.value)
    assert "TLS failure" in message
    assert message.endswith("; it answered in plain http: for a registry without TLS, use --insecure-allow-http")
    assert "--cert-dir" not in message


def test_only_a_plain_text_answer_on_a_named_port_is_remembered(plain_registry: RunningRegistry) -> None:
    """The memo is written only when the https attempt reached the very port http then
    used and got plain text back; a refused connection (which an attacker could cause
    once) or a host without a port is never remembered."""
    from docker2aci.registry.client import _plain_http_port

    def https_failure(host: str) -> RegistryError:
        with RegistryClient(host, retry=FAST_RETRY) as c, pytest.raises(RegistryError) as info:
            c.ping()
        return info.value

    plain_text = https_failure(plain_registry.host)
    refused = https_failure(f"127.0.0.1:{free_port()}")
    assert _plain_http_port(plain_registry.host, plain_text)
    assert not _plain_http_port("registry.example", plain_text)  # https went to 443, http to 80
    assert not _plain_http_port(f"127.0.0.1:{free_port()}", refused)


def test_a_remembered_http_host_that_now_speaks_only_https_is_asked_over_https(
        tls_registry: RunningRegistry, tmp_path: Path) -> None:
    memo = PlainHttpHosts(str(tmp_path / "plain-http"))
    memo.remember(tls_registry.host)
    with client(tls_registry.host, credentials=CREDENTIALS, cert_dir=str(tls_registry.cert_dir),
                plain_http=memo) as c:
        c.get_manifest(REPO, "v2s2")
        assert c.base_url == f"https://{tls_registry.host}"
    assert not memo.remembers(tls_registry.host)


def test_a_remembered_http_host_that_is_gone_is_forgotten() -> None:
    host = f"127.0.0.1:{free_port()}"
    with TemporaryDirectory() as directory:
        memo = PlainHttpHosts(directory)
        memo.remember(host)
        with client(host, plain_http=memo) as c, pytest.raises(RegistryError, match="cannot reach") as info:
            c.get_manifest(REPO, "oci")
        assert info.value.temporary
        assert not memo.remembers(host)


def test_nothing_listening_is_a_temporary_error() -> None:
    with client(f"127.0.0.1:{free_port()}") as c, pytest.raises(RegistryError, match="cannot reach") as info:
        c.get_manifest(REPO, "oci")
    assert info.value.temporary and info.value.status is None


def test_neither_https_nor_http_answering_says_the_host_once() -> None:
    """The message named the host and the step three times (an ops user's trial)."""
    host = f"127.0.0.1:{free_port()}"
    with client(host) as c, pytest.raises(RegistryError) as info:
        c.get_manifest(REPO, "oci")
    assert str(info.value) == (f"{host}: checking the registry API: https failed (cannot reach https://{host}/v2/: "
                               f"Connection refused); http failed too (cannot reach http://{host}/v2/: "
                               f"Connection refused)")


def test_a_host_name_that_does_not_exist_is_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    """A name the resolver says does not exist (EAI_NONAME) fails at once, not after the
    retries a refused connection gets (the newcomer trial waited 8 s for it), and is not
    a temporary error; a resolver that does not answer (EAI_AGAIN) is still retried."""
    host = "no-such-host.invalid"  # RFC 2606: never resolves
    try:
        socket.getaddrinfo(host, 443)
    except socket.gaierror as err:
        if err.errno not in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
            pytest.skip(f"this machine's resolver answers {err} for {host}")
    else:
        pytest.skip(f"this machine's resolver resolves {host}")
    caplog.set_level(logging.INFO, logger="docker2aci.registry.client")
    with client(host, retry=RetryPolicy(attempts=4, base_delay=5.0)) as c, \
            pytest.raises(RegistryError, match="the host name does not resolve") as info:
        c.ping()
    assert not info.value.temporary
    assert "retry" not in caplog.text


def test_proxy_from_the_environment_is_used(plain_registry: RunningRegistry, fault_proxy: FaultProxy,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Case 34: HTTP_PROXY is honoured (the fault proxy also works as a forward proxy)."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("HTTP_PROXY", f"http://{fault_proxy.host}")
    with client(plain_registry.host) as c:
        c.get_manifest(REPO, "oci")
    assert any(r.path == f"http://{plain_registry.host}/v2/{REPO}/manifests/oci" for r in fault_proxy.requests)


# -- htpasswd + TLS ---------------------------------------------------------------------------


def test_tls_with_cert_dir(tls_registry: RunningRegistry, tmp_path: Path) -> None:
    with client(tls_registry.host, credentials=CREDENTIALS, cert_dir=str(tls_registry.cert_dir),
                allow_http=False) as c:
        body, media_type = c.get_manifest(REPO, "v2s2")
        config = json.loads(body)["config"]
        dest = io.BytesIO()
        c.fetch_blob(REPO, Digest.parse(config["digest"]), config["size"], dest)
        assert c.base_url == f"https://{tls_registry.host}"
    assert media_type == mediatypes.DOCKER_MANIFEST


def test_tls_with_a_certs_d_root(tls_registry: RunningRegistry, tmp_path: Path) -> None:
    """Docker's ``/etc/docker/certs.d`` holds one directory per ``HOST:PORT``; given the
    root, the registry's own directory is used (a new user passed the root, which failed)."""
    root = tmp_path / "certs.d"
    (root / "other.example:5000").mkdir(parents=True)
    shutil.copytree(tls_registry.cert_dir, root / tls_registry.host)
    with client(tls_registry.host, credentials=CREDENTIALS, cert_dir=str(root), allow_http=False) as c:
        _, media_type = c.get_manifest(REPO, "v2s2")
    assert media_type == mediatypes.DOCKER_MANIFEST


def test_tls_with_a_cert_dir_that_does_not_verify_says_so(tls_registry: RunningRegistry, tmp_path: Path) -> None:
    """An empty --cert-dir was answered "give the registry's CA with --cert-dir DIR" (a new
    user's find): the hint now names the directory given and what it holds."""
    empty = tmp_path / "empty"
    empty.mkdir()
    with client(tls_registry.host, credentials=CREDENTIALS, cert_dir=str(empty), allow_http=False) as c, \
            pytest.raises(RegistryError) as info:
        c.get_manifest(REPO, "v2s2")
    message = str(info.value)
    assert "certificate verify failed" in message
    assert message.endswith(f"; the 0 CA certificate(s) (*.crt) in --cert-dir {empty} do not verify it, nor do "
                            "the system's; add the registry's CA there or use --insecure-skip-verify")


def test_tls_without_cert_dir_is_a_clear_tls_error(tls_registry: RunningRegistry) -> None:
    with client(tls_registry.host, credentials=CREDENTIALS, allow_http=False) as c, \
            pytest.raises(RegistryError) as info:
        c.get_manifest(REPO, "v2s2")
    message = str(info.value)
    assert "certificate verify failed" in message and "--cert-dir" in message
    assert not info.value.temporary


def test_tls_insecure_skip_verify(tls_registry: RunningRegistry, recwarn: pytest.WarningsRecorder,
                                  caplog: pytest.LogCaptureFixture) -> None:
    """It works, and says so once: urllib3's InsecureRequestWarning, printed for every
    connection, was noise beside our own warning (a new user's find)."""
    with client(tls_registry.host, credentials=CREDENTIALS, insecure_skip_verify=True) as c:
        _, media_type = c.get_manifest(REPO, "v2s2")
        c.get_manifest(REPO, "v2s2")
    assert media_type == mediatypes.DOCKER_MANIFEST
    assert [str(w.message) for w in recwarn] == []
    assert caplog.text.count("are not verified (--insecure-skip-verify)") == 1


def test_tls_wrong_password_is_auth_error_without_retry_loop(tls_fault_proxy: FaultProxy) -> None:
    with client(tls_fault_proxy.host, credentials=Credentials(TEST_USER, "wrong-password-xyz")) as c, \
            pytest.raises(AuthError, match="refused the credentials of user testuser") as info:
        c.get_manifest(REPO, "v2s2")
    assert "wrong-password-xyz" not in str(info.value)
    assert len(manifest_requests(tls_fault_proxy)) == 1


def test_basic_auth_without_credentials_asks_for_them(tls_registry: RunningRegistry) -> None:
    with client(tls_registry.host, cert_dir=str(tls_registry.cert_dir)) as c, \
            pytest.raises(AuthError, match="--creds"):
        c.get_manifest(REPO, "v2s2")


def test_cert_dir_that_does_not_exist_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        RegistryClient("127.0.0.1:1", cert_dir=str(tmp_path / "nope"))


# -- token auth -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fields", ["both", "token", "access_token"])
def test_token_anonymous_pull(token_registry: RunningRegistry, token_server: TokenServer,
                              v2s2_manifest: dict[str, Any], fields: AnswerField) -> None:
    config = v2s2_manifest["config"]
    with token_server.answering(fields=fields), client(token_registry.host) as c:
        c.get_manifest(REPO, "v2s2")
        c.fetch_blob(REPO, Digest.parse(config["digest"]), config["size"], io.BytesIO())
        [seen] = token_server.requests  # one token, cached for the blob
    assert seen.scopes == (f"repository:{REPO}:pull",) and seen.service == "test-registry"
    assert not seen.sent_authorization


def test_token_with_credentials(token_registry: RunningRegistry, token_server: TokenServer) -> None:
    with token_server.answering(), client(token_registry.host, credentials=CREDENTIALS) as c:
        c.get_manifest(REPO, "v2s2")
        [seen] = token_server.requests
    assert seen.sent_authorization and seen.user == TEST_USER


def test_cert_dir_also_verifies_the_token_service_on_another_host(tmp_path: Path) -> None:
    """An https registry with a private CA whose token service (same CA) is on another
    host:port: Docker and skopeo talk to the token service with the registry's TLS
    settings; we used --cert-dir for the registry only and failed with "certificate verify
    failed ... the CA certificate(s) in --cert-dir do not verify it" (auth review)."""
    require_tools(REGISTRY_BIN, SKOPEO_BIN, OPENSSL_BIN)
    tls = make_test_ca(tmp_path / "tls")
    with TokenServer(tmp_path / "token", tls=tls) as server:
        assert server.realm.startswith("https://")
        auth = TokenAuth(server.realm, SERVICE, ISSUER, server.cert_path)
        with run_registry(tmp_path / "registry", tls=tls, token=auth, creds=CREDS) as registry:
            push(LAYOUT, registry, f"{REPO}:v2s2", "--format", "v2s2")
            with server.answering(), RegistryClient(registry.host, credentials=CREDENTIALS,
                                                    cert_dir=str(tls.cert_dir), retry=FAST_RETRY) as c:
                body, media_type = c.get_manifest(REPO, "v2s2")
    assert media_type == mediatypes.DOCKER_MANIFEST and json.loads(body)["schemaVersion"] == 2
    [seen] = server.requests
    assert seen.user == TEST_USER and seen.scopes == (f"repository:{REPO}:pull",)


def test_a_catalog_the_token_does_not_grant_is_named(token_registry: RunningRegistry,
                                                     token_server: TokenServer) -> None:
    """The token server grants no ``registry:catalog:*``: the refusal names the catalog and
    its scope, not "pull access to the registry" (mirror review: ``mirror --all-repos``)."""
    with token_server.answering(), client(token_registry.host, credentials=CREDENTIALS) as c, \
            pytest.raises(AuthError) as info:
        c.catalog()
    assert str(info.value) == (f"{token_registry.host}: authenticating: the token does not grant user {TEST_USER} "
                               "access to the registry's catalog (registry:catalog:*) (insufficient_scope)")


def test_token_is_refreshed_after_expires_in(token_registry: RunningRegistry, token_server: TokenServer) -> None:
    with token_server.answering(expires_in=2), client(token_registry.host) as c:  # valid 1 s with the margin
        c.get_manifest(REPO, "v2s2")
        c.get_manifest(REPO, "v2s2")
        assert len(token_server.requests) == 1
        time.sleep(1.05)
        c.get_manifest(REPO, "v2s2")
        assert len(token_server.requests) == 2


def test_token_wrong_password_is_auth_error(token_registry: RunningRegistry, token_server: TokenServer) -> None:
    with token_server.answering(), client(token_registry.host, credentials=Credentials(TEST_USER, "nope-pw")) as c, \
            pytest.raises(AuthError, match="refused for user testuser") as info:
        c.get_manifest(REPO, "v2s2")
    assert "nope-pw" not in str(info.value)


# -- redirects (case 24) ------------------------------------------------------------------------


def test_cross_host_redirect_drops_authorization(tls_fault_proxy: FaultProxy, tls_registry: RunningRegistry,
                                                 tmp_path: Path) -> None:
    tls_fault_proxy.add(Fault.redirect())
    with client(tls_fault_proxy.host, credentials=CREDENTIALS) as c:
        body, _ = c.get_manifest(REPO, "v2s2")
        layer = max(json.loads(body)["layers"], key=lambda d: d["size"])
        path = tmp_path / "blob"
        with path.open("wb") as f:
            c.fetch_blob(REPO, Digest.parse(layer["digest"]), layer["size"], f)
    assert sha256_file(path) == layer["digest"]
    [to_registry] = blob_requests(tls_fault_proxy)
    assert to_registry.headers["authorization"].startswith("Basic ")  # the registry did get credentials
    [to_store] = tls_fault_proxy.store_requests
    assert to_store.method == "GET" and REDIRECT_SIGNATURE in to_store.path
    assert "authorization" not in to_store.headers
    assert to_store.headers["host"].startswith("localhost:")


def test_cut_after_redirect_resumes_at_the_store(tls_fault_proxy: FaultProxy, tmp_path: Path) -> None:
    """The ranged retry goes through the redirect too, still without Authorization at the store."""
    with client(tls_fault_proxy.host, credentials=CREDENTIALS) as c:
        body, _ = c.get_manifest(REPO, "v2s2")
        layer = max(json.loads(body)["layers"], key=lambda d: d["size"])
        tls_fault_proxy.add(Fault.redirect(times=1), Fault.cut(layer["size"] // 3))
        path = tmp_path / "blob"
        with path.open("wb") as f:
            c.fetch_blob(REPO, Digest.parse(layer["digest"]), layer["size"], f)
    assert sha256_file(path) == layer["digest"]
    assert all("authorization" not in r.headers for r in tls_fault_proxy.store_requests)


# -- secrets (never in logs, errors or repr) ----------------------------------------------------


def test_secrets_never_appear(tls_registry: RunningRegistry, token_registry: RunningRegistry,
                              token_server: TokenServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    wrong = Credentials(TEST_USER, "wrong-password-xyz")
    with token_server.answering():
        for host, kwargs in ((tls_registry.host, {"cert_dir": str(tls_registry.cert_dir)}),
                             (token_registry.host, {})):
            with client(host, credentials=CREDENTIALS, **kwargs) as c:
                c.get_manifest(REPO, "v2s2")
                texts.append(repr(c))
            with client(host, credentials=wrong, **kwargs) as c, pytest.raises(AuthError) as info:
                c.get_manifest(REPO, "v2s2")
            texts += [str(info.value), repr(info.value), repr(c), str(info.value.__cause__)]
        tokens = list(token_server.issued)
    texts += [r.getMessage() for r in caplog.records] + [caplog.text]
    everything = "\n".join(texts)
    assert tokens
    secrets = [TEST_PASSWORD, "wrong-password-xyz", *tokens,
               base64.b64encode(f"{TEST_USER}:{TEST_PASSWORD}".encode()).decode()]
    for secret in secrets:
        assert secret not in everything


@pytest.mark.parametrize("length", ["\u00b2", "1" * 5000, "", "-5"])
def test_an_odd_content_length_is_no_size_check(length: str) -> None:
    # headers are Latin-1 text: "\u00b2".isdigit() is true but int() refuses it
    answer = requests.Response()
    answer.headers["Content-Length"] = length
    RegistryClient._check_content_length(answer, 5, "blob x")  # no crash, nothing to compare


@pytest.mark.parametrize("value", ["bytes 0-4/" + "1" * 5000, "bytes \u0660-4/5", "bytes " + "1" * 5000 + "-4/5"])
def test_an_odd_content_range_is_a_registry_error(value: str) -> None:
    answer = requests.Response()
    answer.headers["Content-Range"] = value
    answer.url = "http://127.0.0.1:1/v2/x/blobs/sha256:00"
    with pytest.raises(RegistryError, match="Content-Range"):
        RegistryClient._check_content_range(answer, 0, 5, "x", "blob x")
