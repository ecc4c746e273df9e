"""Registries for the registry-client tests: real ``docker-registry`` processes, once per session.

* ``plain_registry``: http, schema 1 pushes on, with every manifest format pushed by skopeo
  (:data:`registry_setup.PUSHES`).
* ``tls_registry``: htpasswd Basic auth over https with a test CA.
* ``token_server`` / ``token_registry``: Bearer tokens from :class:`tokenserver.TokenServer`.
* ``fault_proxy`` / ``tls_fault_proxy``: a fresh :class:`faultproxy.FaultProxy` per test.

Each is skipped with the reason when ``docker-registry``/``skopeo``/``htpasswd``/``openssl``
are missing (CI installs them).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from faultproxy import FaultProxy
from registry_setup import CREDS, LAYOUT, PUSHES
from services import (
    HTPASSWD_BIN,
    OPENSSL_BIN,
    REGISTRY_BIN,
    SKOPEO_BIN,
    RunningRegistry,
    TokenAuth,
    make_test_ca,
    push,
    require_tools,
    run_registry,
    write_htpasswd,
)
from tokenserver import ISSUER, SERVICE, TokenServer


@pytest.fixture(autouse=True)
def _no_proxy_for_local_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The servers are on 127.0.0.1/localhost: keep any proxy of the environment out of the way."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")


@pytest.fixture(scope="session")
def plain_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """A plain-http registry holding every image of :data:`PUSHES`."""
    require_tools(REGISTRY_BIN, SKOPEO_BIN)
    with run_registry(tmp_path_factory.mktemp("plain-registry")) as registry:
        for image in PUSHES:
            push(image.source, registry, f"{image.repository}:{image.tag}", *image.args)
        yield registry


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """An https registry (test CA) with htpasswd Basic auth, holding ``test/busybox:v2s2``."""
    require_tools(REGISTRY_BIN, SKOPEO_BIN, HTPASSWD_BIN, OPENSSL_BIN)
    root = tmp_path_factory.mktemp("tls-registry")
    tls = make_test_ca(root / "tls")
    htpasswd = write_htpasswd(root / "htpasswd", *CREDS)
    with run_registry(root / "registry", tls=tls, htpasswd=htpasswd, creds=CREDS) as registry:
        push(LAYOUT, registry, "test/busybox:v2s2", "--format", "v2s2")
        yield registry


@pytest.fixture(scope="session")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    """The token server (thread on 127.0.0.1)."""
    with TokenServer(tmp_path_factory.mktemp("token-server")) as server:
        yield server


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory, token_server: TokenServer) -> Iterator[RunningRegistry]:
    """An http registry with token auth, holding ``test/busybox:v2s2``."""
    require_tools(REGISTRY_BIN, SKOPEO_BIN)
    auth = TokenAuth(token_server.realm, SERVICE, ISSUER, token_server.cert_path)
    with run_registry(tmp_path_factory.mktemp("token-registry"), token=auth, creds=CREDS) as registry:
        push(LAYOUT, registry, "test/busybox:v2s2", "--format", "v2s2")
        yield registry


@pytest.fixture
def fault_proxy(plain_registry: RunningRegistry) -> Iterator[FaultProxy]:
    """A fresh fault proxy in front of the plain registry."""
    with FaultProxy(plain_registry.url, lifetime=60) as proxy:
        yield proxy


@pytest.fixture
def tls_fault_proxy(tls_registry: RunningRegistry) -> Iterator[FaultProxy]:
    """A fresh fault proxy (plain http) in front of the htpasswd+TLS registry."""
    assert tls_registry.cert_dir is not None
    with FaultProxy(tls_registry.url, ca_file=Path(tls_registry.cert_dir) / "ca.crt", upstream_creds=CREDS,
                    lifetime=60) as proxy:
        yield proxy
