"""docker:// end to end against the real registries of conftest.py: every manifest format
converts to the rootfs of the same image's OCI layout, entry for entry, with the expected
manifest; the caches, authentication and faults work through convert() and the CLI."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from faultproxy import REDIRECT_SIGNATURE, Fault, FaultProxy
from registry_setup import CREDS
from services import SHARED_IMAGES, RunningRegistry, free_port

import docker2aci
from docker2aci.errors import AuthError, DigestMismatch, RegistryError, SizeMismatch
from docker2aci.manifest import manifest_digests
from docker2aci.registry import RegistryClient

pytestmark = pytest.mark.tools

EXAMPLE = SHARED_IMAGES.parent / "reference" / "example-manifest-oci-archive.json"
OCI_MANIFEST = "sha256:96aaf5f26367ae4d0c6dea89455a494f840129b745f93c49d98ddad14495a7ae"
CONFIG = "sha256:3655964a1898a9b4363b5f6dff5c245cc4f86efb66baa0134a138492459cdb92"
INDEX = "sha256:ce2f96142f66db0e8004278324612ef8a29d6b966526f9a7bc7a821818a54217"
EMPTY_LAYER = "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"
"""The 32-byte gzip of an empty tar that schema 1 uses for metadata-only steps."""


def _host(registry: RunningRegistry | FaultProxy) -> str:
    return registry.url.split("://", 1)[1] if isinstance(registry, RunningRegistry) else registry.host


def convert(ref: str, out: Path, **options: Any) -> docker2aci.ConvertedACI:
    options.setdefault("insecure_allow_http", True)
    [aci] = docker2aci.convert(ref, docker2aci.ConvertOptions(output_dir=str(out / "out"),
                                                              cache_dir=str(out / "cache"), **options))
    return aci


@pytest.fixture(scope="module")
def layout_rootfs(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Any, ...]]:
    """The rootfs entries converted from the image's OCI layout (the same files)."""
    from test_shared_images import read_aci

    [aci] = docker2aci.convert(f"oci:{SHARED_IMAGES / 'oci-layout'}:latest",
                               docker2aci.ConvertOptions(output_dir=str(tmp_path_factory.mktemp("layout"))))
    return read_aci(aci.path)[1]


def registry_digest(host: str, repository: str, tag: str) -> str:
    """The digest the registry names a manifest by (the canonical one for schema 1)."""
    with RegistryClient(host, allow_http=True) as client:
        body, _ = client.get_manifest(repository, tag)
    return str(manifest_digests(body)[-1])


def expected_manifest(host: str, ref: str, repository: str, tag: str, manifest_hash: str,
                      list_hash: str | None = None) -> dict[str, Any]:
    """The worked example of decisions.md, named as a registry image."""
    manifest = json.loads(EXAMPLE.read_text())
    manifest["name"] = f"{host.replace(':', '_')}/{repository}"
    manifest["labels"] = [{"name": "arch", "value": "amd64"}, {"name": "os", "value": "linux"},
                          {"name": "version", "value": tag}]
    annotations = []
    for a in manifest["annotations"]:
        name = a["name"].removeprefix("appc.io/docker/")
        if name == "originalname":
            annotations += [a | {"value": ref}, {"name": "appc.io/docker/registryurl", "value": host}]
            continue
        a = a | {"value": {"repository": repository, "manifesthash": manifest_hash, "tag": tag}.get(name, a["value"])}
        annotations.append(a)
        if name == "manifesthash" and list_hash:
            annotations.append({"name": "appc.io/docker/manifestlisthash", "value": list_hash})
    manifest["annotations"] = annotations
    return manifest


@pytest.mark.parametrize(("repository", "tag", "is_list"), [
    pytest.param("test/busybox", "v2s2", False, id="docker-schema2"),
    pytest.param("test/busybox", "oci", False, id="oci-manifest"),
    pytest.param("test/zstd", "latest", False, id="oci-zstd-layers"),
    pytest.param("test/multi", "oci", True, id="oci-index"),
    pytest.param("test/multi", "v2s2", True, id="docker-manifest-list"),
])
def test_every_format_converts_like_the_layout(plain_registry: RunningRegistry, tmp_path: Path,
                                               layout_rootfs: list[tuple[Any, ...]], repository: str, tag: str,
                                               is_list: bool) -> None:
    from test_shared_images import read_aci

    host = _host(plain_registry)
    ref = f"{host}/{repository}:{tag}"
    aci = convert(f"docker://{ref}", tmp_path, platform="linux/amd64")
    assert Path(aci.path).name == f"{repository.replace('/', '-')}-{tag}.aci"
    top = registry_digest(host, repository, tag)
    if is_list:
        manifest_hash = OCI_MANIFEST if tag == "oci" else aci.manifest_digest
        expected = expected_manifest(host, ref, repository, tag, manifest_hash, top)
    else:
        expected = expected_manifest(host, ref, repository, tag, top)
    assert aci.manifest == expected
    assert read_aci(aci.path)[1] == layout_rootfs


def test_signed_schema1_pairs_layers_by_position(plain_registry: RunningRegistry, tmp_path: Path,
                                                 layout_rootfs: list[tuple[Any, ...]]) -> None:
    """Public case 35: fsLayers run top first and pair with history by index (the
    metadata-only history entries give repeated empty-layer blobSums); the config is
    history[0]'s."""
    from test_shared_images import read_aci

    host = _host(plain_registry)
    with RegistryClient(host, allow_http=True) as client:
        body, media_type = client.get_manifest("test/busybox", "v2s1")
    assert media_type == "application/vnd.docker.distribution.manifest.v1+prettyjws"
    blob_sums = [layer["blobSum"] for layer in json.loads(body)["fsLayers"]]
    aci = convert(f"docker://{host}/test/busybox:v2s1", tmp_path)
    assert read_aci(aci.path)[1] == layout_rootfs
    # umoci's config step is a metadata-only history entry: the empty layer, on top
    assert len(blob_sums) == 5 and blob_sums[0] == EMPTY_LAYER
    app = aci.manifest["app"]
    example = json.loads(EXAMPLE.read_text())["app"]
    assert app == example
    assert aci.manifest_digest == str(manifest_digests(body)[-1])


def test_digest_reference_has_no_tag(plain_registry: RunningRegistry, tmp_path: Path) -> None:
    host = _host(plain_registry)
    aci = convert(f"docker://{host}/test/busybox@{OCI_MANIFEST}", tmp_path)
    assert Path(aci.path).name == "test-busybox.aci"
    assert "version" not in aci.labels
    names = [a["name"] for a in aci.manifest["annotations"]]
    assert "appc.io/docker/tag" not in names
    assert aci.manifest_digest == OCI_MANIFEST


def test_platform_from_an_index(plain_registry: RunningRegistry, tmp_path: Path) -> None:
    aci = convert(f"docker://{_host(plain_registry)}/test/multi:oci", tmp_path, platform="linux/arm64/v8")
    assert aci.labels["arch"] == "aarch64"
    assert Path(aci.path).name == "test-multi-oci-linux-aarch64.aci"
    annotations = {a["name"]: a["value"] for a in aci.manifest["annotations"]}
    assert annotations["appc.io/docker/manifestlisthash"] == INDEX


def test_unchanged_image_costs_one_manifest_request(fault_proxy: FaultProxy, tmp_path: Path) -> None:
    ref = f"docker://{fault_proxy.host}/test/busybox:oci"
    first = convert(ref, tmp_path)
    fetched = [r.path for r in fault_proxy.requests if "/blobs/" in r.path]
    assert len(fetched) == 5  # config + 4 layers, each once
    first_bytes = Path(first.path).read_bytes()
    Path(first.path).unlink()
    for blob in _files(tmp_path / "cache" / "blobs"):  # keep manifests and the config, drop the layers:
        if blob.stat().st_size > 2000:              # only the conversion cache can serve it now
            blob.unlink()
    fault_proxy.requests.clear()
    again = convert(ref, tmp_path)
    assert Path(again.path).read_bytes() == first_bytes
    assert again.image_id == first.image_id and again.manifest == first.manifest
    manifest_gets = [r for r in fault_proxy.requests if "/manifests/" in r.path]
    assert len(manifest_gets) == 1
    assert not [r for r in fault_proxy.requests if "/blobs/" in r.path]
    fault_proxy.requests.clear()
    forced = convert(ref, tmp_path, use_cache=False)
    assert Path(forced.path).read_bytes() == first_bytes
    assert len([r for r in fault_proxy.requests if "/blobs/" in r.path]) >= 1  # the layers, again


def test_pull_policy_new_runs_what_a_tag_named_when_the_registry_is_out_of_reach(
        plain_registry: RunningRegistry, tmp_path: Path) -> None:
    """A conversion asked the registry what the tag names every time: a run of an image
    converted before failed once the registry was out of reach, after 16 retries and
    24 s (new-user trial). ``--pull-policy new`` (rkt's) resolves a tag asked about
    before as it was then, from the cache, and asks nothing of the registry; ``never``
    never asks, and what the cache lacks is an error naming the policy."""
    import docker2aci.registry
    from docker2aci.errors import ImageNotFound, UsageError

    with FaultProxy(plain_registry.url, lifetime=60) as proxy:
        refs = [f"docker://{proxy.host}/test/busybox:{tag}" for tag in ("oci", "v2s1")]
        # update, the default: asks, and records what the tag named (a signed schema 1
        # manifest by its bytes' digest, under which the cache holds it: review)
        first = [convert(ref, tmp_path) for ref in refs]
        with pytest.raises(ImageNotFound, match=r"manifest v2s2 is not in the cache, and --pull-policy never asks "
                                                r"no registry \(fetch it once with another policy\)"):
            convert(f"docker://{proxy.host}/test/busybox:v2s2", tmp_path, pull_policy="never")
        proxy.requests.clear()
        again = convert(refs[0], tmp_path, pull_policy="new")
        assert proxy.requests == []  # nothing asked, not even /v2/
    # the registry is gone: its port closed; no credentials are looked up either (a Docker
    # credential helper may go to the network: review)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(docker2aci.registry, "lookup_credentials", lambda host: pytest.fail("credentials looked up"))
        for policy in ("new", "never"):
            Path(again.path).unlink()
            for ref, before in zip(refs, first):
                offline = convert(ref, tmp_path, pull_policy=policy)
                assert (offline.image_id, offline.manifest, offline.manifest_digest) == (
                    before.image_id, before.manifest, before.manifest_digest)
                assert Path(offline.path).read_bytes() == Path(before.path).read_bytes()
        # what a tag named over plain http is not trusted by a run that does not allow it
        # (whoever was on the way could have named any manifest: review)
        with pytest.raises(ImageNotFound, match=r"oci was last fetched over plain http or without checking TLS "
                                                r"certificates, which this run does not allow \(--insecure-allow-http"):
            convert(refs[0], tmp_path, pull_policy="never", insecure_allow_http=False)
    with pytest.raises(UsageError, match="ConvertOptions.pull_policy: expected 'new' or 'update' or "
                                                    "'never', got 'always'"):
        docker2aci.ConvertOptions(pull_policy="always")


def test_pull_policy_new_makes_one_registry_client_for_layers_fetched_in_threads(tmp_path: Path) -> None:
    """Under ``new`` the client is made on first use; layers missing from the cache are
    fetched in threads, and each made a client of its own (one closed; each looked up
    credentials and pinged again: review)."""
    import gzip
    import io
    import tarfile
    import time

    from docker2aci.digest import Digest
    from docker2aci.manifest import Platform
    from docker2aci.reference import ImageRef
    from docker2aci.sources.registry import RegistrySource
    from docker2aci.store import BlobCache

    def layer(n: int) -> bytes:
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tar:
            info = tarfile.TarInfo(f"f{n}")
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
        return gzip.compress(raw.getvalue())

    layers = {Digest.of_bytes(data): data for data in map(layer, range(4))}
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                         "config": {}}).encode()
    media_type = "application/vnd.oci.image.manifest.v1+json"
    manifest = json.dumps({"schemaVersion": 2, "mediaType": media_type, "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json", "digest": str(Digest.of_bytes(config)),
        "size": len(config)}, "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                          "digest": str(d), "size": len(b)} for d, b in layers.items()]}).encode()
    cache = BlobCache(str(tmp_path))
    cache.put(Digest.of_bytes(manifest), manifest)
    cache.put(Digest.of_bytes(config), config)
    cache.remember_tag("registry.example/app:v1", Digest.of_bytes(manifest), media_type)
    made, closed = [], []

    class Client:
        def fetch_blob(self, repository: str, digest: Digest, size: int, dest: Any, hook: Any = None) -> None:
            dest.write(layers[digest])

        def close(self) -> None:
            closed.append(self)

    def connect() -> Client:
        time.sleep(0.05)  # a credential helper, the HTTP stack's imports
        made.append(Client())
        return made[-1]

    source = RegistrySource(ImageRef.parse("registry.example/app:v1"), connect, cache,  # type: ignore[arg-type]
                            pull_policy="new")
    streams = [blob.open() for blob in source.resolve(None, Platform.parse("linux/amd64")).layers]
    assert [stream.read() for stream in streams] == list(layers.values())
    for stream in streams:
        stream.close()
    source.close()
    assert (len(made), closed) == (1, made)


def test_pull_policy_new_asks_again_for_a_manifest_the_cache_lost(fault_proxy: FaultProxy, tmp_path: Path) -> None:
    """The tag record names a manifest by digest: once gc (or anything) removed that
    manifest from the cache, ``new`` asks the registry again, as for a tag never fetched."""
    ref = f"docker://{fault_proxy.host}/test/busybox:oci"
    convert(ref, tmp_path)
    shutil.rmtree(tmp_path / "cache" / "blobs")
    fault_proxy.requests.clear()
    convert(ref, tmp_path, pull_policy="new")
    assert [r.path for r in fault_proxy.requests if "/manifests/" in r.path] == ["/v2/test/busybox/manifests/oci"]


def test_cached_blobs_are_not_fetched_again_for_another_tag(fault_proxy: FaultProxy, tmp_path: Path) -> None:
    convert(f"docker://{fault_proxy.host}/test/busybox:oci", tmp_path)
    fault_proxy.requests.clear()
    convert(f"docker://{fault_proxy.host}/test/busybox:v2s2", tmp_path)
    # a v2s2 copy of the same layers: only its manifest and its (rewritten) config are new
    blobs = {r.path.rsplit("/", 1)[1] for r in fault_proxy.requests if "/blobs/" in r.path}
    assert len(blobs) <= 1


def test_cut_connection_is_resumed_during_conversion(fault_proxy: FaultProxy, tmp_path: Path,
                                                     layout_rootfs: list[tuple[Any, ...]]) -> None:
    from test_shared_images import read_aci

    fault_proxy.add(Fault.respond(500, times=1), Fault.cut(500, times=3))  # the config and most layers are over 500 bytes
    aci = convert(f"docker://{fault_proxy.host}/test/busybox:oci", tmp_path)
    assert read_aci(aci.path)[1] == layout_rootfs
    assert [r for r in fault_proxy.requests if "range" in r.headers]


def test_corrupt_blob_is_refused_and_not_cached(fault_proxy: FaultProxy, tmp_path: Path) -> None:
    fault_proxy.add(Fault.corrupt())
    with pytest.raises(DigestMismatch):
        convert(f"docker://{fault_proxy.host}/test/busybox:oci", tmp_path)
    assert _files(tmp_path / "out") == []
    cached = _files(tmp_path / "cache" / "blobs")
    assert cached, "the manifest and the blobs that were not corrupted are cached"
    for blob in cached:
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    assert _files(tmp_path / "cache" / "tmp") == []


@pytest.mark.parametrize(("fault", "error", "message"), [
    (Fault.respond(307, headers=[("Location", "http://[bad/x")], body=b""), RegistryError,
     "the exchange held a malformed URL or header value"),
    (Fault.respond(401, target="ping", times=None, headers=[("WWW-Authenticate", 'Bearer realm="https://[bad/token"')]),
     AuthError, "the registry's Bearer challenge has no usable realm URL"),
], ids=["redirect-to-a-malformed-url", "realm-not-a-url"])
def test_a_malformed_url_from_the_registry_is_an_error_naming_it(fault_proxy: FaultProxy, tmp_path: Path, fault: Fault,
                                                                 error: type[Exception], message: str) -> None:
    """Each raised a bare ValueError ("Invalid IPv6 URL") with a traceback (registry review)."""
    fault_proxy.add(fault)
    with pytest.raises(error, match=re.escape(message)):
        convert(f"docker://{fault_proxy.host}/test/busybox:oci", tmp_path, use_cache=False)
    assert _files(tmp_path / "out") == []


def test_basic_auth_over_tls_with_a_private_ca(tls_registry: RunningRegistry, tmp_path: Path,
                                               layout_rootfs: list[tuple[Any, ...]]) -> None:
    from test_shared_images import read_aci

    host = _host(tls_registry)
    ref = f"docker://{host}/test/busybox:v2s2"
    aci = convert(ref, tmp_path, creds=":".join(CREDS), cert_dir=str(tls_registry.cert_dir),
                  insecure_allow_http=False)
    assert read_aci(aci.path)[1] == layout_rootfs
    with pytest.raises(AuthError):
        convert(ref, tmp_path / "anon", cert_dir=str(tls_registry.cert_dir), insecure_allow_http=False)
    with pytest.raises(RegistryError, match="(?i)certificate|ssl|tls"):
        convert(ref, tmp_path / "noca", creds=":".join(CREDS), insecure_allow_http=False)


def test_token_auth_anonymous_pull(token_registry: RunningRegistry, tmp_path: Path,
                                   layout_rootfs: list[tuple[Any, ...]]) -> None:
    from test_shared_images import read_aci

    aci = convert(f"docker://{_host(token_registry)}/test/busybox:v2s2", tmp_path)
    assert read_aci(aci.path)[1] == layout_rootfs


@pytest.mark.parametrize("identity_token", ["good", "wrong"])
def test_an_identity_token_from_docker_login_gets_the_tokens(token_registry: RunningRegistry, token_server: Any,
                                                             tmp_path: Path, identity_token: str) -> None:
    """``docker login`` to a registry whose token service gives OAuth 2 refresh tokens
    (Azure's) keeps an ``identitytoken`` and a password-less user in config.json: it was
    ignored, and the pull went anonymous. It is now exchanged at the token service (a
    POST of the refresh token, as Docker sends it) for the user's tokens; one the service
    refuses says to log in again. The token is never shown."""
    from tokenserver import TEST_REFRESH_TOKEN, TEST_USER

    token = TEST_REFRESH_TOKEN if identity_token == "good" else "wrong-identity-token"
    config = tmp_path / "docker-config"
    config.mkdir()
    blank_user = base64.b64encode(b"00000000-0000-0000-0000-000000000000:").decode()
    (config / "config.json").write_text(json.dumps({"auths": {_host(token_registry): {
        "auth": blank_user, "identitytoken": token}}}))
    before = len(token_server.requests)
    proc = subprocess.run(
        [sys.executable, "-m", "docker2aci", "--insecure-allow-http", "--cache-dir", str(tmp_path / "cache"),
         "--output-dir", str(tmp_path / "out"), f"docker://{_host(token_registry)}/test/busybox:v2s2"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "DOCKER_CONFIG": str(config)})
    asked = token_server.requests[before:]
    assert asked and all((r.grant_type, r.client_id, r.sent_authorization, r.account) ==
                         ("refresh_token", "docker2aci", False, None) for r in asked)
    assert asked[0].scopes == ("repository:test/busybox:pull",)
    assert token not in proc.stdout + proc.stderr
    if identity_token == "good":
        assert proc.returncode == 0, proc.stderr
        assert [r.user for r in asked] == [TEST_USER] * len(asked)
        assert [p.name for p in (tmp_path / "out").iterdir()] == ["test-busybox-v2s2.aci"]
    else:
        assert proc.returncode == 1
        assert proc.stderr.splitlines()[-1].endswith(
            "/token: refused for the identity token of docker login (HTTP 401) (invalid user name or password); "
            "run docker login again, or pass --creds"), proc.stderr
        assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_credentials_never_go_to_a_plain_http_token_service(token_server: Any, tmp_path: Path,
                                                             layout_rootfs: list[tuple[Any, ...]],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """An https registry whose Bearer realm is ``http://``: the password went to it in clear
    text, with no warning (registry review). Without --insecure-allow-http it is refused
    and the token service gets no request with credentials (a password, or an identity
    token from docker login); with it, the pull works."""
    from registry_setup import LAYOUT
    from services import TokenAuth, make_test_ca, push, run_registry
    from tokenserver import ISSUER, SERVICE

    assert token_server.realm.startswith("http://")
    root = tmp_path / "tls-token-registry"
    tls = make_test_ca(root / "tls")
    auth = TokenAuth(token_server.realm, SERVICE, ISSUER, token_server.cert_path)
    with run_registry(root / "registry", tls=tls, token=auth, creds=CREDS) as registry:
        push(LAYOUT, registry, "test/busybox:v2s2", "--format", "v2s2")
        ref = f"docker://{_host(registry)}/test/busybox:v2s2"
        before = len(token_server.requests)
        with pytest.raises(AuthError, match=r"the token service http://127\.0\.0\.1:\d+/token is plain http, "
                                            r"and credentials are not sent in clear text; use --insecure-allow-http"):
            convert(ref, tmp_path / "refused", creds=":".join(CREDS), cert_dir=str(registry.cert_dir),
                    insecure_allow_http=False)
        assert not any(r.sent_authorization for r in token_server.requests[before:])
        from tokenserver import TEST_REFRESH_TOKEN

        (tmp_path / "docker-config").mkdir()
        (tmp_path / "docker-config" / "config.json").write_text(json.dumps(
            {"auths": {_host(registry): {"identitytoken": TEST_REFRESH_TOKEN}}}))
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
        with pytest.raises(AuthError, match=r"the token service http://127\.0\.0\.1:\d+/token is plain http, "
                                            r"and credentials are not sent in clear text; use --insecure-allow-http"):
            convert(ref, tmp_path / "refused-token", cert_dir=str(registry.cert_dir), insecure_allow_http=False)
        assert not any(r.sent_authorization or r.grant_type for r in token_server.requests[before:])
        monkeypatch.delenv("DOCKER_CONFIG")
        aci = convert(ref, tmp_path / "allowed", creds=":".join(CREDS), cert_dir=str(registry.cert_dir),
                      insecure_allow_http=True)
        assert token_server.requests[-1].user == CREDS[0]
    from test_shared_images import read_aci

    assert read_aci(aci.path)[1] == layout_rootfs


def test_cli_json_and_secrets(tls_registry: RunningRegistry, tmp_path: Path) -> None:
    user, password = CREDS
    proc = subprocess.run(
        [sys.executable, "-m", "docker2aci", "--json", "--creds", f"{user}:{password}", "--cert-dir",
         str(tls_registry.cert_dir), "--cache-dir", str(tmp_path / "cache"), "--output-dir", str(tmp_path),
         f"docker://{_host(tls_registry)}/test/busybox:v2s2"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert set(record) == {"path", "image_id", "name", "labels", "manifest_digest"}
    assert password not in proc.stdout + proc.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "docker2aci", "--creds", f"{user}:wrong-{password}", "--cert-dir",
         str(tls_registry.cert_dir), "--cache-dir", str(tmp_path / "cache"), "--output-dir", str(tmp_path / "x"),
         "--no-cache", f"docker://{_host(tls_registry)}/test/busybox:v2s2"], capture_output=True, text=True)
    assert bad.returncode == 1
    assert password not in bad.stdout + bad.stderr and "Error:" in bad.stderr


def test_the_debug_traceback_hides_a_presigned_redirect(fault_proxy: FaultProxy, tmp_path: Path) -> None:
    """--debug logs the traceback of a failed conversion: a blob redirected to an object
    store that cannot be reached showed the presigned URL, signature and all, in the
    requests and urllib3 messages of that traceback (registry review)."""
    location = f"http://localhost:{free_port()}/blob?X-Amz-Credential=AKIDEXAMPLE&X-Amz-Signature={REDIRECT_SIGNATURE}"
    fault_proxy.add(Fault.respond(307, headers=[("Location", location)], body=b"", times=None))
    proc = subprocess.run(
        [sys.executable, "-m", "docker2aci", "--debug", "--insecure-allow-http", "--cache-dir", str(tmp_path / "cache"),
         "--output-dir", str(tmp_path / "out"), f"docker://{fault_proxy.host}/test/busybox:oci"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "Max retries exceeded with url: /blob?X-Amz-Credential=***&X-Amz-Signature=*** " in proc.stderr
    assert REDIRECT_SIGNATURE not in proc.stderr and "AKIDEXAMPLE" not in proc.stderr
    # and the error names the host that could not be reached, not the registry that answered
    port = location.split(":")[2].split("/")[0]
    assert proc.stderr.splitlines()[-1].endswith(
        f": fetching the blob: cannot reach http://localhost:{port}/blob?X-Amz-Credential=***&X-Amz-Signature=*** "
        f"(where http://{fault_proxy.host}/v2/test/busybox/blobs/sha256:3655964a1898a9b4363b5f6dff5c245cc4f86efb66baa0134a138492459cdb92"
        " redirected): Connection refused")


@pytest.mark.parametrize("cert_dir", [False, True], ids=["system-cas", "with-cert-dir"])
def test_a_redirect_to_a_host_whose_certificate_fails_names_that_host(fault_proxy: FaultProxy,
                                                                      tls_registry: RunningRegistry,
                                                                      tmp_path: Path, cert_dir: bool) -> None:
    """A blob redirected to an https host whose certificate our CAs do not verify: the
    error said "TLS failure talking to http://<registry>/v2/.../blobs/..." (a plain http
    URL, the one that answered fine) and "give the registry's CA with --cert-dir", as if
    the registry's certificate had failed (registry review). It now names the host that
    failed, and says how to trust it: not with ``--cert-dir``, which is for the registry
    and its token service only (its CA there did not help: the hint once said it did), but
    with ``REQUESTS_CA_BUNDLE``, which then gets the download past TLS."""
    location = f"https://{tls_registry.host}/blob?X-Amz-Signature={REDIRECT_SIGNATURE}"
    fault_proxy.add(Fault.respond(307, headers=[("Location", location)], body=b"", times=None))
    flags = ["--cert-dir", str(tls_registry.cert_dir)] if cert_dir else []
    command = [sys.executable, "-m", "docker2aci", "--insecure-allow-http", "--cache-dir", str(tmp_path / "cache"),
               "--output-dir", str(tmp_path / "out"), *flags, f"docker://{fault_proxy.host}/test/busybox:oci"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    last = proc.stderr.splitlines()[-1]
    assert f": fetching the blob: TLS failure talking to https://{tls_registry.host}/blob?X-Amz-Signature=*** " \
           f"(where http://{fault_proxy.host}/v2/test/busybox/blobs/sha256:" in last, last
    assert "certificate verify failed" in last
    assert last.endswith("; that host is checked against the system's CAs only (--cert-dir is for the registry "
                         "and its token service): add its CA to a bundle named by REQUESTS_CA_BUNDLE, or use "
                         "--insecure-skip-verify"), last
    assert REDIRECT_SIGNATURE not in proc.stderr
    assert not list((tmp_path / "out").glob("*.aci"))
    bundle = tmp_path / "bundle.pem"  # the advice taken: the redirect's host is now trusted (it has no such blob)
    bundle.write_bytes(b"".join(ca.read_bytes() for ca in sorted(Path(tls_registry.cert_dir).glob("*.crt"))))
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "REQUESTS_CA_BUNDLE": str(bundle)})
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1].endswith(": fetching the blob: not found"), proc.stderr


def test_missing_tag_is_not_found(plain_registry: RunningRegistry, tmp_path: Path) -> None:
    with pytest.raises(docker2aci.errors.ImageNotFound):
        convert(f"docker://{_host(plain_registry)}/test/busybox:no-such-tag", tmp_path)


def test_image_flag_is_for_files(plain_registry: RunningRegistry, tmp_path: Path) -> None:
    with pytest.raises(docker2aci.errors.UsageError, match="--image works only with files"):
        convert(f"docker://{_host(plain_registry)}/test/busybox:oci", tmp_path, image="x")


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file()) if directory.exists() else []


def test_foreign_layer_is_refused_clearly(tmp_path: Path) -> None:
    """Public case 33: a non-distributable layer with ``urls`` is refused before anything is
    asked of the registry or the URLs."""
    import layerbuild as lb
    from services import push, run_registry

    base = lb.Layer(lb.tar_bytes([lb.file("windows-base.txt", b"x")]))
    top = lb.Layer(lb.tar_bytes([lb.file("app.txt", b"y")]))
    layout = lb.write_oci_layout(tmp_path / "layout", [base, top])
    manifest_path = layout.blob(layout.manifest_digest)
    manifest = json.loads(manifest_path.read_text())
    foreign = manifest["layers"][0]
    foreign["mediaType"] = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    foreign["urls"] = ["https://example.invalid/base.tar.gz"]
    data = json.dumps(manifest).encode()
    digest = hashlib.sha256(data).hexdigest()
    (manifest_path.parent / digest).write_bytes(data)
    index = json.loads((layout.path / "index.json").read_text())
    index["manifests"][0].update(digest=f"sha256:{digest}", size=len(data))
    (layout.path / "index.json").write_text(json.dumps(index))
    (tmp_path / "registry").mkdir()
    with run_registry(tmp_path / "registry", allow_urls=(r"^https://example\.invalid/",)) as registry:
        push(f"oci:{layout.path}:latest", registry, "test/foreign:latest")
        with FaultProxy(registry.url, lifetime=60) as proxy:
            with pytest.raises(docker2aci.errors.UnsupportedMediaType, match=r"foreign.*example\.invalid"):
                convert(f"docker://{proxy.host}/test/foreign:latest", tmp_path)
            assert not [r for r in proxy.requests if "/blobs/" in r.path]
    assert _files(tmp_path / "out") == []


def test_schema1_with_repeated_empty_layers(plain_registry: RunningRegistry, tmp_path: Path,
                                            layout_rootfs: list[tuple[Any, ...]]) -> None:
    """Public case 35 with the shape that broke the reference tool: several metadata-only
    steps (``umoci config`` twice more) give repeated ``a3ed95…`` blobSums on top, and the
    last step's settings are only in history[0]."""
    from services import push
    from test_shared_images import read_aci

    layout = tmp_path / "layout"
    shutil.copytree(SHARED_IMAGES / "oci-layout", layout)
    for args in (["--config.env", "STEP=1"], ["--config.exposedports", "9999/udp"]):
        subprocess.run(["umoci", "config", "--image", f"{layout}:latest", *args], check=True, capture_output=True)
    push(f"oci:{layout}:latest", plain_registry, "test/steps:v2s1", "--format", "v2s1")
    host = _host(plain_registry)
    with RegistryClient(host, allow_http=True) as client:
        body, _ = client.get_manifest("test/steps", "v2s1")
    blob_sums = [layer["blobSum"] for layer in json.loads(body)["fsLayers"]]
    assert len(blob_sums) - len(set(blob_sums)) >= 2  # the empty layer, three times
    aci = convert(f"docker://{host}/test/steps:v2s1", tmp_path)
    assert read_aci(aci.path)[1] == layout_rootfs
    env = {e["name"]: e["value"] for e in aci.manifest["app"]["environment"]}
    assert env == {"GREETING": "aci", "PATH": "/bin:/usr/bin", "STEP": "1"}
    assert [p["name"] for p in aci.manifest["app"]["ports"]] == ["53-udp", "8080-tcp", "9999-udp"]


def test_a_damaged_cached_layer_is_fetched_again(fault_proxy: FaultProxy, tmp_path: Path,
                                                 layout_rootfs: list[tuple[Any, ...]]) -> None:
    from test_shared_images import read_aci

    ref = f"docker://{fault_proxy.host}/test/busybox:oci"
    convert(ref, tmp_path)
    biggest = max(_files(tmp_path / "cache" / "blobs"), key=lambda p: p.stat().st_size)
    data = bytearray(biggest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    biggest.write_bytes(bytes(data))
    fault_proxy.requests.clear()
    aci = convert(ref, tmp_path, use_cache=False)
    assert read_aci(aci.path)[1] == layout_rootfs
    assert [r.path for r in fault_proxy.requests if "/blobs/" in r.path] == [f"/v2/test/busybox/blobs/sha256:{biggest.name}"]
    assert hashlib.sha256(biggest.read_bytes()).hexdigest() == biggest.name


def test_a_warm_conversion_links_the_cached_aci_and_notices_a_changed_output(fault_proxy: FaultProxy,
                                                                             tmp_path: Path) -> None:
    """The cached ACI is published as a hard link (no copy); writing into the output in
    place changes the cached file too, which the next conversion finds and replaces."""
    ref = f"docker://{fault_proxy.host}/test/busybox:oci"
    first = convert(ref, tmp_path)
    good = Path(first.path).read_bytes()
    again = convert(ref, tmp_path)
    info = Path(again.path).stat()
    assert (info.st_nlink, info.st_mode & 0o777) == (2, 0o644)
    convert(ref, tmp_path)  # onto the same file: nothing left beside it
    assert os.listdir(tmp_path / "out") == [Path(again.path).name]
    assert Path(again.path).stat().st_nlink == 2
    with open(again.path, "r+b") as f:  # a user edits the output in place
        f.seek(100)
        f.write(b"\xff")
    third = convert(ref, tmp_path)
    assert Path(third.path).read_bytes() == good
    assert third.image_id == first.image_id


def _settle(path: Path) -> None:
    """Set a file's mtime 10 s back, as if it had been written before this run
    (:data:`docker2aci.filestamp.SETTLE_SECONDS`)."""
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns - 10 * 10**9))


def test_a_warm_conversion_trusts_the_stamp_of_a_cached_aci_it_has_hashed(fault_proxy: FaultProxy, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A settled cached ACI is hashed once; later warm conversions compare its stamp
    (``conversions/<key>.stamp``) instead of reading it, and an in-place edit of the
    output (which moves the mtime) is still caught."""
    from docker2aci import store

    ref = f"docker://{fault_proxy.host}/test/busybox:oci"
    first = convert(ref, tmp_path)
    good = Path(first.path).read_bytes()
    [cached] = (tmp_path / "cache" / "conversions").glob("*.aci")
    _settle(cached)
    hashed: list[str] = []
    real_of_file = store.Digest.of_file

    def counting(path: str, *args: Any, **kwargs: Any) -> Any:
        hashed.append(path)
        return real_of_file(path, *args, **kwargs)

    monkeypatch.setattr(store.Digest, "of_file", staticmethod(counting))
    convert(ref, tmp_path)
    assert hashed == [str(cached)]
    memo = cached.with_suffix(".stamp")
    info = cached.stat()
    expected = json.loads(cached.with_suffix(".json").read_text())["aci_sha256"]
    assert memo.read_text() == f"{info.st_dev}:{info.st_ino}:{info.st_size}:{info.st_mtime_ns} sha256:{expected}"
    for _ in range(2):
        again = convert(ref, tmp_path)
    assert hashed == [str(cached)]  # no read since
    assert again.image_id == first.image_id and Path(again.path).read_bytes() == good
    with open(again.path, "r+b") as f:  # a user edits the output in place: the mtime moves
        f.seek(100)
        f.write(b"\xff")
    third = convert(ref, tmp_path)
    assert hashed == [str(cached)] * 2  # the check that finds it damaged; the new conversion hashed as it wrote
    assert Path(third.path).read_bytes() == good and third.image_id == first.image_id


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_a_conversion_records_the_sha256_of_its_aci_taken_while_writing_it(
        fault_proxy: FaultProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compression: str) -> None:
    """The conversion cache's record holds the ACI file's SHA-256, computed as the file
    was written (no second read of the file)."""
    from docker2aci import store
    from docker2aci.compression import Compression

    def no_read(path: str, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"{path} read again to hash it")

    monkeypatch.setattr(store.Digest, "of_file", staticmethod(no_read))
    aci = convert(f"docker://{fault_proxy.host}/test/busybox:oci", tmp_path, compression=Compression(compression))
    [record] = (tmp_path / "cache" / "conversions").glob("*.json")
    assert json.loads(record.read_text())["aci_sha256"] == hashlib.sha256(Path(aci.path).read_bytes()).hexdigest()


def test_a_fresh_cached_aci_gets_no_stamp(fault_proxy: FaultProxy, tmp_path: Path) -> None:
    """A file written within SETTLE_SECONDS is not stamped: a write in the same clock tick
    would leave its stamp as it was."""
    ref = f"docker://{fault_proxy.host}/test/busybox:oci"
    convert(ref, tmp_path)
    convert(ref, tmp_path)
    assert list((tmp_path / "cache" / "conversions").glob("*.stamp")) == []


def test_a_layer_that_is_not_its_descriptor_s_names_the_image_the_layer_and_the_blob(
        fault_proxy: FaultProxy, tmp_path: Path) -> None:
    """A registry layer whose bytes are not what the manifest says (here the registry
    serves layer 2's for layer 1) was ``blob HOST/REPO@DIGEST: size mismatch``: not the
    image as named, nor the layer's position."""
    manifest = json.loads((SHARED_IMAGES / "oci-layout" / "blobs" / "sha256" / OCI_MANIFEST.split(":")[1]).read_bytes())
    one, two = manifest["layers"][1], manifest["layers"][2]
    fault_proxy.add(Fault.rewrite(one["digest"], two["digest"], target="blob"))
    source = f"docker://{fault_proxy.host}/test/busybox:oci"
    with pytest.raises(SizeMismatch) as info:
        convert(source, tmp_path, platform="linux/amd64")
    assert str(info.value) == (f"{source} (linux/amd64): layer 1 ({one['digest']}): blob {fault_proxy.host}/test/busybox@"
                               f"{one['digest']}: size mismatch: expected {one['size']} bytes, got {two['size']}")
    assert _files(tmp_path / "out") == []
