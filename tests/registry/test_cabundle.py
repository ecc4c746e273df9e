"""The shared default CA bundle (docker2aci.cabundle): the trust requests gives, loaded once.

The registry is the real https docker-registry of ``tls_registry`` (a test CA that only
``REQUESTS_CA_BUNDLE`` or ``--cert-dir`` makes trusted).
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import certifi
import pytest
from connectproxy import ConnectProxy
from registry_setup import CREDS, FAST_RETRY
from services import RunningRegistry

from docker2aci import cabundle
from docker2aci.digest import Digest
from docker2aci.errors import RegistryError, UsageError
from docker2aci.registry import Credentials, RegistryClient
from docker2aci.registry.schemes import PlainHttpHosts
from docker2aci.sources import RemoteOptions, preload_tls

REPO = "test/busybox"


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A fresh cabundle (nothing loaded), and the list of bundle paths it loads."""
    monkeypatch.setattr(cabundle, "_loaded", None)
    monkeypatch.setattr(cabundle, "_loading", {})
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    seen: list[str] = []
    build = cabundle._build

    def counting(key: tuple[str, str, int, int, int, int]) -> ssl.SSLContext:
        seen.append(key[1])
        return build(key)

    monkeypatch.setattr(cabundle, "_build", counting)
    yield seen


def test_requests_ca_bundle_is_trusted_and_loaded_once(tls_registry: RunningRegistry, loads: list[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --cert-dir the client trusts what requests would (here REQUESTS_CA_BUNDLE),
    and every connection, in every client and thread, shares one load of it."""
    ca = str(Path(str(tls_registry.cert_dir)) / "ca.crt")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca)
    bodies: list[bytes] = []

    def pull() -> None:
        with RegistryClient(tls_registry.host, credentials=Credentials(*CREDS)) as c:
            body, _ = c.get_manifest(REPO, "v2s2")
            bodies.append(body)

    threads = [threading.Thread(target=pull) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(bodies) == 4 and json.loads(bodies[0])["schemaVersion"] == 2
    assert loads == [ca]


def test_certifi_does_not_trust_the_test_ca(tls_registry: RunningRegistry, loads: list[str]) -> None:
    with RegistryClient(tls_registry.host, credentials=Credentials(*CREDS)) as c, \
            pytest.raises(RegistryError, match="certificate verify failed"):
        c.get_manifest(REPO, "v2s2")
    assert loads == [certifi.where()]


def test_preload_is_the_context_used_and_a_changed_bundle_is_loaded_again(
        tls_registry: RunningRegistry, loads: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes((Path(str(tls_registry.cert_dir)) / "ca.crt").read_bytes())
    monkeypatch.setenv("CURL_CA_BUNDLE", str(bundle))
    cabundle.preload()
    cabundle.preload()  # loading already: not twice
    context = cabundle.default_context()
    assert cabundle.default_context() is context
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert len(context.get_ca_certs()) == 1
    assert loads == [str(bundle)]
    bundle.write_bytes(bundle.read_bytes() + Path(certifi.where()).read_bytes())
    again = cabundle.default_context()
    assert again is not context and len(again.get_ca_certs()) > 100
    assert loads == [str(bundle), str(bundle)]


@pytest.mark.parametrize("content", [None, b"not a certificate\n"])
def test_unusable_bundle_is_a_usage_error_naming_the_variable(loads: list[str], monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path, content: bytes | None) -> None:
    bundle = tmp_path / "ca.pem"
    if content is not None:
        bundle.write_bytes(content)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    cabundle.preload()  # leaves the error to the request
    with RegistryClient("127.0.0.1:1") as c, pytest.raises(UsageError) as info:
        c.ping()
    assert str(info.value).startswith(f"REQUESTS_CA_BUNDLE={bundle}: ")
    assert ("cannot read" if content is None else "not a usable CA bundle") in str(info.value)


def test_cert_dir_does_not_need_the_default_bundle(tls_registry: RunningRegistry, loads: list[str],
                                                   monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The registry's own context (--cert-dir) serves it; a missing REQUESTS_CA_BUNDLE, which
    requests would have checked on every request, is not in the way (it was a traceback)."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "missing.pem"))
    with RegistryClient(tls_registry.host, credentials=Credentials(*CREDS), cert_dir=str(tls_registry.cert_dir)) as c:
        _, media_type = c.get_manifest(REPO, "v2s2")
    assert media_type == "application/vnd.docker.distribution.manifest.v2+json"
    assert loads == []


def test_cli_exits_2_on_a_missing_bundle(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "REQUESTS_CA_BUNDLE": str(tmp_path / "missing.pem"), "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "docker2aci", "--output-dir", str(tmp_path / "out"),
                             "docker://127.0.0.1:1/x"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"REQUESTS_CA_BUNDLE={tmp_path / 'missing.pem'}: cannot read the CA bundle" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.fixture
def https_proxy(tls_registry: RunningRegistry, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConnectProxy]:
    """An https CONNECT proxy (a certificate of the test CA) set as HTTPS_PROXY."""
    tls = Path(str(tls_registry.cert_dir)).parent
    with ConnectProxy(tls / "registry.crt", tls / "registry.key") as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        for name in ("NO_PROXY", "no_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        yield proxy


@pytest.mark.parametrize("cert_dir", [False, True])
def test_an_https_proxy_is_verified_with_the_default_bundle(tls_registry: RunningRegistry, loads: list[str],
                                                           https_proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch,
                                                           cert_dir: bool) -> None:
    """The TLS hop to the proxy trusts what requests trusts (REQUESTS_CA_BUNDLE here), with or
    without --cert-dir for the registry (urllib3 alone would fall back to the system store)."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(Path(str(tls_registry.cert_dir)) / "ca.crt"))
    kwargs = {"cert_dir": str(tls_registry.cert_dir)} if cert_dir else {}
    with RegistryClient(tls_registry.host, credentials=Credentials(*CREDS), **kwargs) as c:  # type: ignore[arg-type]
        body, _ = c.get_manifest(REPO, "v2s2")
    assert json.loads(body)["schemaVersion"] == 2
    assert https_proxy.connects and set(https_proxy.connects) == {tls_registry.host}


def test_a_drip_through_an_https_proxy_is_cut(plain_registry: RunningRegistry, tls_registry: RunningRegistry,
                                              loads: list[str], https_proxy: ConnectProxy,
                                              monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """TLS in TLS (an https registry through an https proxy): the connection's socket is
    urllib3's SSLTransport, and the deadline cuts the proxy's socket beneath it."""
    from faultproxy import Fault, FaultProxy, finishes_within

    tls = Path(str(tls_registry.cert_dir)).parent
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls / "certdir" / "ca.crt"))
    with FaultProxy(plain_registry.url, serve_tls=(tls / "registry.crt", tls / "registry.key")) as registry:
        with RegistryClient(registry.host, retry=FAST_RETRY, slow_read=(1000, 0.5)) as c:
            body, _ = c.get_manifest(REPO, "oci")
            layer = max(json.loads(body)["layers"], key=lambda d: d["size"])
            registry.add(Fault.drip(3000, 0.1))
            path = tmp_path / "blob"

            def fetch() -> None:
                with path.open("wb") as f:
                    c.fetch_blob(REPO, Digest.parse(layer["digest"]), layer["size"], f)

            finishes_within(30, fetch)
        blobs = [r for r in registry.requests if "/blobs/" in r.path]
        host = registry.host
    assert len(blobs) == 2 and blobs[1].headers["range"].startswith("bytes=3")
    assert Digest.of_file(path) == Digest.parse(layer["digest"])
    assert https_proxy.connects and set(https_proxy.connects) == {host}


def test_an_https_proxy_the_system_store_trusts_is_not_enough(tls_registry: RunningRegistry, loads: list[str],
                                                             https_proxy: ConnectProxy,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(Path(str(tls_registry.cert_dir)) / "ca.crt"))  # the system store
    with RegistryClient(tls_registry.host, credentials=Credentials(*CREDS),
                        cert_dir=str(tls_registry.cert_dir)) as c, \
            pytest.raises(RegistryError, match="through the proxy: certificate verify failed") as info:
        c.get_manifest(REPO, "v2s2")
    assert https_proxy.connects == []
    assert not info.value.temporary  # refused at once, as a registry's bad certificate is


def test_discovery_refuses_a_failing_proxy_certificate_at_once(tls_registry: RunningRegistry,
                                                                https_proxy: ConnectProxy) -> None:
    """As the registry client does: no retries, and no fall back to plain http (which
    --insecure-options=http allows when a server cannot be reached over https)."""
    from docker2aci.discovery import DiscoveryError, _Fetch

    fetch = _Fetch(insecure_http=True, retry=FAST_RETRY, timeout=(10, 60))
    with pytest.raises(DiscoveryError, match="through the proxy: certificate verify failed"):
        fetch.get(f"https://{tls_registry.host}/v2/", "the test page")
    assert https_proxy.connects == [] and fetch.plain_hosts == set()


@pytest.mark.parametrize(("options", "remembered", "preloaded"), [
    (RemoteOptions(), False, True),
    (RemoteOptions(allow_http=True), False, True),
    (RemoteOptions(allow_http=True), True, False),  # asked over http first: no CA needed
    (RemoteOptions(insecure_skip_verify=True), False, False),
    (RemoteOptions(cert_dir="/nonexistent"), False, False),  # the registry's own context
])
def test_preload_only_when_the_first_request_is_verified_https(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, options: RemoteOptions, remembered: bool,
        preloaded: bool) -> None:
    options = RemoteOptions(**{**options.__dict__, "cache_dir": str(tmp_path)})
    if remembered:
        PlainHttpHosts(str(tmp_path / "plain-http")).remember("127.0.0.1:5000")
    calls: list[None] = []
    monkeypatch.setattr(cabundle, "preload", lambda: calls.append(None))
    preload_tls("127.0.0.1:5000", options)
    assert calls == ([None] if preloaded else [])
