"""Fixtures of the batch and mirror tests: a real ``docker-registry`` with its access log on,
holding ``mirror/many`` (see :mod:`jobs_helpers`), and a signing key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from jobs_helpers import MANY, TAGS, Key, Registry, build_tags, push_tags
from services import REGISTRY_BIN, SKOPEO_BIN, require_tools, run_registry

from docker2aci import signing


@pytest.fixture(scope="session")
def tag_layout(busybox_basic_layout: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The busybox base and 20 tagged images on it (``t01``..``t20``), built with umoci."""
    return build_tags(busybox_basic_layout, tmp_path_factory.mktemp("tag-images"), TAGS)


@pytest.fixture(scope="session")
def registry(tag_layout: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A plain-http registry with its access log on, holding ``mirror/many`` (20 tags)."""
    require_tools(REGISTRY_BIN, SKOPEO_BIN)
    with run_registry(tmp_path_factory.mktemp("jobs-registry"), access_log=True) as running:
        push_tags(tag_layout, running, MANY, {tag: tag for tag in TAGS})
        yield Registry(running, tag_layout)


@pytest.fixture(autouse=True)
def _no_proxy_for_local_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> Key:
    """An Ed25519 key pair (fast to make), files ``mirror.pub.asc`` / ``mirror.sec.asc``."""
    directory = tmp_path_factory.mktemp("mirror-keys")
    key = signing.generate_key("Mirror <mirror@example.invalid>", signing.KeyAlgorithm.ED25519)
    public, secret = signing.write_key_pair(str(directory / "mirror"), key)
    return Key(Path(public), Path(secret), key.fingerprint)
