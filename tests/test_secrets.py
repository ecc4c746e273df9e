"""Secrets never appear in logs, errors, reports or ``--json`` output.

Two halves:

* the watch itself (``SecretWatch`` in ``secretwatch.py``, hooked in by ``conftest.py``, which
  fails the session when any test secret appears in any output): a secret planted in each
  kind of place is found, the files that hold secrets on purpose are not findings, findings
  never print the value, and a whole pytest session that leaks exits non-zero;
* the error paths most likely to leak, run as real ``docker2aci`` processes against real
  registries: a wrong password on an htpasswd registry, a token the registry refuses, a wrong
  signing passphrase, ``--creds`` with a URL-ish password, ``--debug`` with credentials. Each
  asserts that no secret is in stdout, stderr, the ``--report`` file or the registry's log.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from services import (
    HTPASSWD_BIN,
    OPENSSL_BIN,
    REGISTRY_BIN,
    SHARED_IMAGES,
    SKOPEO_BIN,
    RunningRegistry,
    TokenAuth,
    make_test_ca,
    push,
    require_tools,
    run_registry,
    write_htpasswd,
)
from tokenserver import ISSUER, SERVICE, TEST_PASSWORD, TEST_USER, TokenServer

from docker2aci import signing

REPO_ROOT = Path(__file__).resolve().parents[1]
URLISH_USER = "secret-tests"
URLISH_PASSWORD = "p@ss/w:rd?x=1&y=%41#frag"
"""A password that breaks naive URL building (``user:pass@host``) and must not be percent-leaked."""
WRONG_PASSWORD = "wr0ng/p@ss:word?#%2F"
PASSPHRASE = "passphrase of the secrets tests"
WRONG_PASSPHRASE = "not the passphrase of the secrets tests"
LAYOUT = f"oci:{SHARED_IMAGES / 'oci-layout'}:latest"
OCI_ARCHIVE = SHARED_IMAGES / "oci-archive.tar"


# --------------------------------------------------------------------------- the watch itself


def _planted(watch: Any) -> str:
    """A fresh secret, registered in ``watch`` only (never in the session's)."""
    value = "planted/@:" + base64.b32encode(os.urandom(10)).decode().lower()
    watch.add("planted secret", value, user="planter")
    return value


def _kinds(findings: list[Any]) -> set[str]:
    return {f.kind for f in findings}


@pytest.mark.parametrize("form", [
    pytest.param(lambda v: v, id="raw"),
    pytest.param(lambda v: urllib.parse.quote(v, safe=""), id="percent-encoded"),
    pytest.param(lambda v: base64.b64encode(f"planter:{v}".encode()).decode(), id="basic-auth"),
    pytest.param(lambda v: json.dumps({"error": f"bad {v}"}), id="json"),
])
def test_each_form_of_a_secret_is_found(fresh_secret_watch: Any, form: Any) -> None:
    secret = _planted(fresh_secret_watch)
    assert _kinds(fresh_secret_watch.search(f"x {form(secret)} y".encode(), "here")) == {"planted secret"}
    assert fresh_secret_watch.search(b"nothing to see", "here") == []


def test_report_sections_and_failure_reports_are_searched(fresh_secret_watch: Any) -> None:
    secret = _planted(fresh_secret_watch)
    for when, sections, longrepr in (("call", [("Captured stdout call", f"out {secret}")], None),
                                     ("setup", [("Captured log setup", f"DEBUG auth {secret}")], None),
                                     ("call", [], f"E   AuthError: {secret}")):
        report = pytest.TestReport(f"t.py::{when}", ("t.py", 1, when), {}, "failed" if longrepr else "passed",
                                   longrepr, when, sections)
        fresh_secret_watch.record_report(report)
    wheres = [f.where for f in fresh_secret_watch.check()]
    assert wheres == ["Captured stdout call of t.py::call", "Captured log setup of t.py::setup",
                      "failed report (call) of t.py::call"]


def test_subprocess_and_capsys_outputs_are_searched(fresh_secret_watch: Any,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    secret = _planted(fresh_secret_watch)
    with fresh_secret_watch.capturing():
        subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write(sys.argv[1])", secret],
                       capture_output=True, check=True)
        print(f"logged {secret}")
        capsys.readouterr()
    wheres = [f.where for f in fresh_secret_watch.check()]
    assert len(wheres) == 2
    assert wheres[0].startswith("output of subprocess `python") and "test_secrets.py::" in wheres[0]
    assert wheres[1].startswith("capsys/capfd output read by ") and "test_secrets.py::" in wheres[1]


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory outside the session's (planted files must not fail the real session)."""
    with tempfile.TemporaryDirectory(prefix="secrets-") as name:
        yield Path(name)


def test_files_are_searched_but_not_files_that_hold_secrets_on_purpose(fresh_secret_watch: Any,
                                                                       scratch: Path) -> None:
    secret = _planted(fresh_secret_watch)
    (scratch / "report.json").write_text(json.dumps([{"error": f"pulling: {secret}"}]))
    (scratch / "logs").mkdir()
    (scratch / "logs" / "registry.log").write_text(f"level=info msg={secret}\n")
    (scratch / "passphrase").write_text(secret + "\n")  # a secret file: nothing but the secret
    (scratch / "config.json").write_text(json.dumps({"auths": {"h": {"password": secret}}}))
    (scratch / "docker-credential-test").write_text(f"echo {secret}\n")
    (scratch / "layer.tar").write_text(secret)  # image data
    (scratch / "blobs").mkdir()
    (scratch / "blobs" / "sha256").write_text(secret)
    findings, scanned, _ = fresh_secret_watch.scan_tree(scratch)
    assert sorted(f.where.split(" (under")[0] for f in findings) == ["file logs/registry.log",
                                                                     "file report.json"]
    assert scanned == 2


def test_private_keys_are_found_armored_rewrapped_and_hex(fresh_secret_watch: Any, scratch: Path) -> None:
    key = signing.generate_key("Watch <watch@example.invalid>", signing.KeyAlgorithm.ED25519,
                               passphrase="a passphrase for the watch")
    (scratch / "keys").mkdir()
    public, secret = signing.write_key_pair(str(scratch / "keys" / "watch"), key)
    (scratch / "export.pub.asc").write_text(Path(public).read_text())  # public: no finding
    body = "".join(line for line in key.secret.splitlines()[1:-1] if line and not line.startswith("="))
    (scratch / "rewrapped.log").write_text("key dump:\n" + "\n".join(textwrap.wrap(body, 76)) + "\n")
    (scratch / "block.json").write_text(json.dumps({"key": key.secret}))
    findings, _, _ = fresh_secret_watch.scan_tree(scratch)  # takes the material of keys/watch.sec.asc
    assert {(f.where.split(" (under")[0], f.kind) for f in findings} == {
        ("file rewrapped.log", "private key material (base64)"),
        ("file block.json", "private key material (base64)"),
        ("file block.json", "armored private key block")}
    raw = base64.b64decode(body)
    assert _kinds(fresh_secret_watch.search(f"bytes {raw.hex()}".encode(), "x")) == \
        {"private key material (hex)"}
    assert Path(secret).is_file()


def test_a_token_is_found_even_cut_at_the_front(fresh_secret_watch: Any) -> None:
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0." + base64.urlsafe_b64encode(os.urandom(64)).decode().rstrip("=")
    fresh_secret_watch.add_token(token)
    assert fresh_secret_watch.search(f"Authorization: Bearer {token}".encode(), "x")
    assert fresh_secret_watch.search(f"...{token.rpartition('.')[2]}".encode(), "x")


def test_findings_never_quote_the_secret(fresh_secret_watch: Any) -> None:
    secret = _planted(fresh_secret_watch)
    fresh_secret_watch.record(f"test_x[{secret}]", f"leaked {secret}")
    [finding] = fresh_secret_watch.check()
    assert secret not in str(finding) and str(finding) == "planted secret in test_x[<secret>]"
    assert secret not in fresh_secret_watch.stats


def test_watch_refuses_values_too_short_to_search(fresh_secret_watch: Any) -> None:
    with pytest.raises(ValueError, match="shorter than 8"):
        fresh_secret_watch.add("password", "pw")


def test_known_secrets_follow_the_helper_modules(fresh_secret_watch: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO_ROOT / "tests" / "signing"))
    helpers = importlib.import_module("signing_helpers")
    fresh_secret_watch.add_live_secrets()
    for value in (TEST_PASSWORD, helpers.PASSPHRASE, base64.b64encode(f"{TEST_USER}:{TEST_PASSWORD}".encode()).decode()):
        assert fresh_secret_watch.search(value.encode(), "x"), "a test secret is not watched"


INNER_TESTS = '''
import subprocess, sys
from tokenserver import TEST_PASSWORD

def test_prints_it():
    print("the password is", TEST_PASSWORD)

def test_writes_it(tmp_path):
    (tmp_path / "out.json").write_text('{"creds": "%s"}' % TEST_PASSWORD)

def test_a_subprocess_says_it():
    subprocess.run([sys.executable, "-c", "print('testuser:' + 'test' + 'pass')"], capture_output=True)
'''


def test_a_session_that_leaks_exits_non_zero_without_printing_it(fresh_secret_watch: Any, scratch: Path) -> None:
    """The real hooks: an inner pytest session loads tests/conftest.py (``-p conftest``)."""
    (scratch / "test_inner.py").write_text(INNER_TESTS)
    (scratch / "pytest.ini").write_text("[pytest]\n")
    fresh_secret_watch.add("registry password", TEST_PASSWORD)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "tests")}
    with fresh_secret_watch.capturing():  # checked below; kept away from the session's watch
        inner = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider",
                                "--basetemp", str(scratch / "tmp"), str(scratch / "test_inner.py")],
                               cwd=scratch, env=env, capture_output=True, text=True, timeout=120,
                               check=False)
    assert inner.returncode == 1, inner.stdout + inner.stderr
    assert "3 passed" in inner.stdout
    leaks = sorted(line for line in inner.stdout.splitlines() if line.startswith("SECRET LEAK:"))
    assert leaks == [
        "SECRET LEAK: registry password in Captured stdout call of test_inner.py::test_prints_it",
        f"SECRET LEAK: registry password in file test_writes_it0/out.json (under {scratch / 'tmp'})",
        "SECRET LEAK: registry password in output of subprocess `python3 -m` run by "
        "test_inner.py::test_a_subprocess_says_it".replace("python3 -m", Path(sys.executable).name)]
    assert fresh_secret_watch.check() == [], "the inner session printed a secret"


# --------------------------------------------------------------------------- error paths, real processes


def _cli(*argv: str | os.PathLike[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker"), "XDG_CONFIG_HOME": str(home),
           "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    return subprocess.run([sys.executable, "-m", "docker2aci", *map(os.fspath, argv)], capture_output=True,
                          text=True, env=env, timeout=300, stdin=subprocess.DEVNULL, check=False)


def _assert_nothing_leaked(watch: Any, proc: subprocess.CompletedProcess[str], *trees: Path) -> None:
    """No secret of ``watch`` in the process's stdout/stderr nor in the files under ``trees``
    (reports, --json files, registry logs)."""
    findings = watch.search(proc.stdout.encode(), "stdout") + watch.search(proc.stderr.encode(), "stderr")
    for tree in trees:
        findings += watch.scan_tree(tree)[0]
    assert [str(f) for f in findings] == []


@pytest.fixture(scope="module")
def urlish_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """htpasswd + TLS registry whose only user has :data:`URLISH_PASSWORD`, holding ``test/busybox:v2s2``."""
    require_tools(REGISTRY_BIN, SKOPEO_BIN, HTPASSWD_BIN, OPENSSL_BIN)
    root = tmp_path_factory.mktemp("secrets-registry")
    htpasswd = write_htpasswd(root / "htpasswd", URLISH_USER, URLISH_PASSWORD)
    creds = (URLISH_USER, URLISH_PASSWORD)
    with run_registry(root / "registry", tls=make_test_ca(root / "tls"), htpasswd=htpasswd, creds=creds,
                      access_log=True) as registry:
        push(LAYOUT, registry, "test/busybox:v2s2", "--format", "v2s2")
        yield registry


@pytest.fixture
def watch(fresh_secret_watch: Any, secret_watch: Any) -> Any:
    """A watch of this module's secrets (they are also added to the session's)."""
    for target in (fresh_secret_watch, secret_watch):
        target.add("registry password", URLISH_PASSWORD, user=URLISH_USER)
        target.add("wrong registry password", WRONG_PASSWORD, user=URLISH_USER)
        target.add("registry password", TEST_PASSWORD, user=TEST_USER)
        target.add("signing key passphrase", PASSPHRASE)
        target.add("wrong signing key passphrase", WRONG_PASSPHRASE)
    return fresh_secret_watch


def test_wrong_password_on_htpasswd_registry_in_batch_report_json_debug(
        urlish_registry: RunningRegistry, watch: Any, tmp_path: Path) -> None:
    (tmp_path / "batch.txt").write_text(f"docker://{urlish_registry.host}/test/busybox:v2s2\n")
    proc = _cli("batch", "--debug", "--json", "--report", tmp_path / "report.json",
                "--creds", f"{URLISH_USER}:{WRONG_PASSWORD}", "--cert-dir", str(urlish_registry.cert_dir),
                "--cache-dir", tmp_path / "cache", "--output-dir", tmp_path / "out", tmp_path / "batch.txt",
                home=tmp_path)
    assert proc.returncode == 1, proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report and "auth" in json.dumps(report).lower()  # the report says why, without the secret
    _assert_nothing_leaked(watch, proc, tmp_path, urlish_registry.root)


def test_urlish_password_and_debug_logging_of_a_conversion(urlish_registry: RunningRegistry, watch: Any,
                                                           tmp_path: Path) -> None:
    proc = _cli("--debug", "--json", "--creds", f"{URLISH_USER}:{URLISH_PASSWORD}",
                "--cert-dir", str(urlish_registry.cert_dir), "--cache-dir", tmp_path / "cache",
                "--output-dir", tmp_path / "out", f"docker://{urlish_registry.host}/test/busybox:v2s2",
                home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["path"].endswith(".aci")
    assert "DEBUG" in proc.stderr or "debug" in proc.stderr.lower()
    _assert_nothing_leaked(watch, proc, tmp_path, urlish_registry.root)


def test_urlish_wrong_password_in_the_docker_url_form(urlish_registry: RunningRegistry, watch: Any,
                                                      tmp_path: Path) -> None:
    proc = _cli("--debug", "--json", "--creds", f"{URLISH_USER}:{WRONG_PASSWORD}",
                "--cert-dir", str(urlish_registry.cert_dir), "--cache-dir", tmp_path / "cache", "--no-cache",
                "--output-dir", tmp_path / "out", f"docker://{urlish_registry.host}/test/busybox:v2s2",
                home=tmp_path)
    assert proc.returncode == 1 and "Error" in proc.stderr
    _assert_nothing_leaked(watch, proc, tmp_path, urlish_registry.root)


@pytest.fixture(scope="module")
def refusing_token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningRegistry,
                                                                                         TokenServer]]:
    """A token registry whose realm is one token server while it trusts another one's key:
    every token it is shown is refused."""
    require_tools(REGISTRY_BIN)
    root = tmp_path_factory.mktemp("secrets-token")
    with TokenServer(root / "issuer") as issuer, TokenServer(root / "trusted") as trusted:
        auth = TokenAuth(issuer.realm, SERVICE, ISSUER, trusted.cert_path)
        with run_registry(root / "registry", token=auth, creds=(TEST_USER, TEST_PASSWORD)) as registry:
            yield registry, issuer


@pytest.mark.parametrize("password", [pytest.param(TEST_PASSWORD, id="token-refused-by-registry"),
                                      pytest.param(WRONG_PASSWORD, id="password-refused-by-token-server")])
def test_refused_token_or_password_at_the_token_server(refusing_token_registry: tuple[RunningRegistry, TokenServer],
                                                       watch: Any, tmp_path: Path, password: str) -> None:
    registry, issuer = refusing_token_registry
    before = len(issuer.issued)
    proc = _cli("--debug", "--json", "--insecure-allow-http", "--creds", f"{TEST_USER}:{password}",
                "--cache-dir", tmp_path / "cache", "--output-dir", tmp_path / "out",
                f"docker://{registry.host}/test/busybox:v2s2", home=tmp_path)
    assert proc.returncode == 1 and "Error" in proc.stderr
    tokens = issuer.issued[before:]
    assert bool(tokens) == (password == TEST_PASSWORD)  # the refused case really got (and sent) tokens
    for token in tokens:
        watch.add_token(token)
    _assert_nothing_leaked(watch, proc, tmp_path, registry.root)


@pytest.fixture(scope="module")
def protected_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(secret key file protected by :data:`PASSPHRASE`, its passphrase file, a wrong one)."""
    directory = tmp_path_factory.mktemp("secrets-keys")
    key = signing.generate_key("Secrets <secrets@example.invalid>", signing.KeyAlgorithm.ED25519,
                               passphrase=PASSPHRASE)
    _, secret = signing.write_key_pair(str(directory / "secrets"), key)
    (directory / "right").write_text(PASSPHRASE + "\n")
    (directory / "wrong").write_text(WRONG_PASSPHRASE + "\n")
    return Path(secret), directory / "right", directory / "wrong"


@pytest.mark.parametrize("right", [pytest.param(False, id="bad-passphrase"), pytest.param(True, id="good")])
def test_signing_passphrase_and_key_material_stay_out(protected_key: tuple[Path, Path, Path], watch: Any,
                                                      tmp_path: Path, right: bool) -> None:
    if not OCI_ARCHIVE.is_file():
        pytest.skip(f"shared image {OCI_ARCHIVE} not found")
    secret, right_file, wrong_file = protected_key
    watch.add_key_material(secret.read_text())
    proc = _cli("--debug", "--json", "--sign", secret, "--sign-passphrase-file", right_file if right else wrong_file,
                "--cache-dir", tmp_path / "cache", "--output-dir", tmp_path / "out", f"oci-archive:{OCI_ARCHIVE}",
                home=tmp_path)
    if right:
        assert proc.returncode == 0, proc.stderr
        assert Path(json.loads(proc.stdout)["path"] + ".asc").is_file()
    else:
        assert proc.returncode == 1 and "wrong passphrase" in proc.stderr
    _assert_nothing_leaked(watch, proc, tmp_path)


def test_an_exception_message_in_a_failure_report_is_searched(fresh_secret_watch: Any) -> None:
    """A failure report is searched for its exceptions' messages (a leak in an error), not for
    the arguments its traceback shows (the test's own inputs)."""
    secret = _planted(fresh_secret_watch)

    def failing(creds: str) -> None:
        raise RuntimeError("authenticating: refused")

    reports = []
    for message in ("refused", f"refused {secret}"):
        try:
            try:
                failing(secret)
            except RuntimeError as inner:
                raise ValueError(message) from inner
        except ValueError as err:
            longrepr = pytest.ExceptionInfo.from_exception(err).getrepr(style="long", showlocals=True)
        assert secret in str(longrepr)  # the frame arguments show it either way
        reports.append(pytest.TestReport("t.py::x", ("t.py", 1, "x"), {}, "failed", longrepr, "call", []))
    fresh_secret_watch.record_report(reports[0])
    assert fresh_secret_watch.check() == []
    fresh_secret_watch.record_report(reports[1])
    assert [f.where for f in fresh_secret_watch.check()] == ["failed report (call) of t.py::x"]
