"""Where credentials come from: config.json, credential helpers, DOCKER_CONFIG, .dockercfg.

Helpers are real executables (a ``docker-credential-test`` shell script in a temporary PATH
directory) speaking the docker-credential-helpers protocol.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest

from docker2aci.errors import AuthError, UsageError
from docker2aci.registry import Credentials, lookup_credentials

HOST = "registry.example:5000"
HUB_KEY = "https://index.docker.io/v1/"

HELPER = r"""#!/bin/sh
[ "$1" = get ] || exit 2
read -r server || true
printf '%s\n' "$server" >> "${0%/*}/asked.log"
case "$server" in
  "registry.example:5000") echo '{"ServerURL":"registry.example:5000","Username":"helperuser","Secret":"helpersecret"}' ;;
  "https://index.docker.io/v1/") echo '{"ServerURL":"https://index.docker.io/v1/","Username":"hubuser","Secret":"hubsecret"}' ;;
  "identity.example") echo '{"ServerURL":"identity.example","Username":"<token>","Secret":"refresh-token"}' ;;
  "broken.example") echo 'something went wrong' >&2; exit 3 ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
"""


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


@pytest.fixture
def helper_bin(tmp_path: Path) -> Path:
    """A PATH directory holding ``docker-credential-test``; it logs the servers asked in asked.log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "docker-credential-test"
    script.write_text(HELPER)
    script.chmod(0o755)
    return bin_dir


def _write_config(home: Path, config: object) -> Path:
    path = home / ".docker" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config))
    return path


def _lookup(host: str, home: Path, **env: str) -> Credentials | None:
    return lookup_credentials(host, home=home, env={"PATH": "/usr/bin:/bin", **env})


@pytest.mark.parametrize("key", [
    pytest.param(HOST, id="host"),
    pytest.param(f"https://{HOST}", id="https-scheme"),
    pytest.param(f"http://{HOST}", id="http-scheme"),
    pytest.param(f"https://{HOST}/v1/", id="with-v1-path"),
    pytest.param(f"{HOST}/", id="trailing-slash"),
])
def test_auths_key_forms_match_like_docker(home: Path, key: str) -> None:
    _write_config(home, {"auths": {key: {"auth": _auth("u", "p:with:colons")}}})
    assert _lookup(HOST, home) == Credentials("u", "p:with:colons")


@pytest.mark.parametrize("other", ["registry.example:5001", "registry.example", "other.example:5000"])
def test_auths_other_registries_do_not_match(home: Path, other: str) -> None:
    _write_config(home, {"auths": {HOST: {"auth": _auth("u", "p")}}})
    assert _lookup(other, home) is None


def test_username_and_password_fields(home: Path) -> None:
    _write_config(home, {"auths": {HOST: {"username": "u2", "password": "p2"}}})
    assert _lookup(HOST, home) == Credentials("u2", "p2")


@pytest.mark.parametrize("host", ["docker.io", "index.docker.io", "registry-1.docker.io"])
def test_docker_hub_uses_the_index_key(home: Path, host: str) -> None:
    """Case 30: the only key is https://index.docker.io/v1/."""
    _write_config(home, {"auths": {HUB_KEY: {"auth": _auth("hub", "hubpw")}}})
    assert _lookup(host, home) == Credentials("hub", "hubpw")


def test_empty_auth_entry_is_skipped_not_fatal(home: Path) -> None:
    _write_config(home, {"auths": {HOST: {"auth": ""}, f"https://{HOST}": {}, f"http://{HOST}": {"auth": _auth("u", "p")}}})
    assert _lookup(HOST, home) == Credentials("u", "p")
    _write_config(home, {"auths": {HOST: {"auth": ""}}})
    assert _lookup(HOST, home) is None


@pytest.mark.parametrize("entry, expected", [
    pytest.param({"auth": _auth("u", "p"), "identitytoken": "oauth-refresh"}, Credentials("u", "p", "oauth-refresh"),
                 id="beside-a-password"),
    # docker login that got an identity token writes ``auth`` as ``user:`` (the password cleared)
    pytest.param({"auth": _auth("u", ""), "identitytoken": "oauth-refresh"}, Credentials("u", "", "oauth-refresh"),
                 id="as-docker-login-writes-it"),
    pytest.param({"identitytoken": "oauth-refresh"}, Credentials("<token>", "", "oauth-refresh"), id="alone"),
    pytest.param({"auth": _auth("u", "p"), "identitytoken": ""}, Credentials("u", "p"), id="empty-is-none"),
])
def test_identitytoken_is_taken(home: Path, caplog: pytest.LogCaptureFixture, entry: dict[str, str],
                                expected: Credentials) -> None:
    """An ``identitytoken`` (an OAuth 2 refresh token) was ignored: as docker login writes
    it, with a password-less user, the pull was anonymous, and a private image could not be
    pulled. It is now taken, to be exchanged at the token service, and never shown."""
    _write_config(home, {"auths": {HOST: entry}})
    with caplog.at_level(logging.DEBUG):
        found = _lookup(HOST, home)
    assert (found, found.identity_token if found else None) == (expected, expected.identity_token)
    assert "oauth-refresh" not in caplog.text + repr(found) + str(found)


def test_cred_helpers_run_the_helper(home: Path, helper_bin: Path) -> None:
    _write_config(home, {"credHelpers": {HOST: "test"}, "auths": {HOST: {}}})
    assert _lookup(HOST, home, PATH=str(helper_bin)) == Credentials("helperuser", "helpersecret")
    assert (helper_bin / "asked.log").read_text().split() == [HOST]


def test_creds_store_for_docker_hub(home: Path, helper_bin: Path) -> None:
    _write_config(home, {"credsStore": "test", "auths": {HUB_KEY: {}}})
    assert _lookup("registry-1.docker.io", home, PATH=str(helper_bin)) == Credentials("hubuser", "hubsecret")
    assert (helper_bin / "asked.log").read_text().split() == [HUB_KEY]


def test_helper_not_found_means_no_credentials_then_auths(home: Path, helper_bin: Path) -> None:
    _write_config(home, {"credsStore": "test"})
    assert _lookup("unknown.example", home, PATH=str(helper_bin)) is None
    _write_config(home, {"credsStore": "test", "auths": {"unknown.example": {"auth": _auth("file", "pw")}}})
    assert _lookup("unknown.example", home, PATH=str(helper_bin)) == Credentials("file", "pw")


def test_helper_answers_without_usable_credentials(home: Path, helper_bin: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    _write_config(home, {"credHelpers": {"broken.example": "test"}})
    with caplog.at_level(logging.INFO):
        assert _lookup("broken.example", home, PATH=str(helper_bin)) is None
    assert "exited with status 3" in caplog.text


def test_a_helper_s_identity_token_is_taken(home: Path, helper_bin: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A helper answers an identity token as the user ``<token>`` (docker-credential-helpers):
    it was ignored; it is now the credentials' identity token, never shown."""
    _write_config(home, {"credHelpers": {"identity.example": "test"}})
    with caplog.at_level(logging.DEBUG):
        found = _lookup("identity.example", home, PATH=str(helper_bin))
    assert found == Credentials("<token>", "", "refresh-token")
    assert "refresh-token" not in caplog.text + repr(found)


def test_missing_helper_is_a_warning(home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _write_config(home, {"credsStore": "nonexistent"})
    with caplog.at_level(logging.WARNING):
        assert _lookup(HOST, home, PATH=str(tmp_path)) is None
    assert "docker-credential-nonexistent is not on PATH" in caplog.text


def test_docker_config_env_wins_over_home(home: Path, tmp_path: Path) -> None:
    _write_config(home, {"auths": {HOST: {"auth": _auth("home", "pw")}}})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "config.json").write_text(json.dumps({"auths": {HOST: {"auth": _auth("env", "pw")}}}))
    assert _lookup(HOST, home, DOCKER_CONFIG=str(elsewhere)) == Credentials("env", "pw")
    assert lookup_credentials(HOST, config_dir=elsewhere, home=home, env={}) == Credentials("env", "pw")
    assert _lookup(HOST, home) == Credentials("home", "pw")


def test_legacy_dockercfg_only_when_config_json_is_absent(home: Path) -> None:
    (home / ".dockercfg").write_text(json.dumps({HOST: {"auth": _auth("legacy", "pw"), "email": "x@y"}}))
    assert _lookup(HOST, home) == Credentials("legacy", "pw")
    _write_config(home, {"auths": {}})
    assert _lookup(HOST, home) is None


def test_legacy_dockercfg_line_format_is_for_docker_hub(home: Path) -> None:
    (home / ".dockercfg").write_text(f"auth = {_auth('old', 'pw')}\nemail = old@example.com\n")
    assert _lookup("docker.io", home) == Credentials("old", "pw")
    assert _lookup(HOST, home) is None


def test_no_files_means_anonymous(home: Path) -> None:
    assert _lookup(HOST, home) is None


def test_malformed_config_json_is_auth_error_without_its_content(home: Path) -> None:
    path = home / ".docker" / "config.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"auths": {"h": {"auth": "c2VjcmV0OnNlY3JldA=="}}, oops')
    with pytest.raises(AuthError, match="not valid JSON") as info:
        _lookup(HOST, home)
    assert "c2VjcmV0" not in str(info.value)


@pytest.mark.parametrize(("tail", "why"), [
    (', "n": ' + "1" * 5000 + "}", "a number longer than 4300 digits"),
    (', "n": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    ("}\udcff", "not UTF-8 text"),
], ids=["big-number", "nested", "not-utf8"])
def test_config_json_python_cannot_hold_is_auth_error_without_its_content(home: Path, tail: str, why: str) -> None:
    path = home / ".docker" / "config.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(('{"auths": {"h": {"auth": "c2VjcmV0OnNlY3JldA=="}}' + tail).encode("utf-8", "surrogateescape"))
    with pytest.raises(AuthError, match=f"not valid JSON \\({why}") as info:
        _lookup(HOST, home)
    assert "c2VjcmV0" not in str(info.value)


def test_repr_and_str_hide_the_password() -> None:
    creds = Credentials("someone", "hunter2-secret")
    for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert "hunter2-secret" not in text and "someone" in text


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("u:p", Credentials("u", "p"), id="simple"),
    pytest.param("u:p:q", Credentials("u", "p:q"), id="colon-in-password"),
    pytest.param("u:", Credentials("u", ""), id="empty-password"),
])
def test_parse_creds_flag(text: str, expected: Credentials) -> None:
    assert Credentials.parse(text) == expected


@pytest.mark.parametrize("text", ["nocolon", ":pw", ""])
def test_parse_creds_flag_refuses(text: str) -> None:
    with pytest.raises(UsageError):
        Credentials.parse(text)
