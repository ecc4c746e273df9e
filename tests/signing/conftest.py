"""Fixtures for the signing and trust tests: keys made once per session, real gpg in a
fresh short GNUPGHOME per test (its agent killed afterwards), the busybox ACI converted
once, and the CLI run in-process."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pysequoia
import pytest
from signing_helpers import OCI_ARCHIVE, PASSPHRASE, CliResult, Gpg, KeyPair, make_key

from docker2aci import cli, signing
from docker2aci.pipeline import ConvertOptions, convert


@pytest.fixture(scope="session")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="session")
def rsa_key(key_dir: Path) -> KeyPair:
    """The default key type (RSA 3072): made once, it is the slowest thing here."""
    return make_key(key_dir, "Signer", signing.DEFAULT_ALGORITHM)


@pytest.fixture(scope="session")
def other_key(key_dir: Path) -> KeyPair:
    """An Ed25519 key nobody trusts."""
    return make_key(key_dir, "Stranger", signing.KeyAlgorithm.ED25519)


@pytest.fixture(scope="session")
def protected_key(key_dir: Path) -> tuple[KeyPair, Path]:
    """An Ed25519 key protected by :data:`PASSPHRASE`, and a file holding the passphrase."""
    pair = make_key(key_dir, "Guarded", signing.KeyAlgorithm.ED25519, PASSPHRASE)
    passphrase_file = key_dir / "passphrase"
    passphrase_file.write_text(PASSPHRASE + "\n")
    return pair, passphrase_file


@pytest.fixture(scope="session")
def revoked_key(key_dir: Path) -> tuple[KeyPair, Path]:
    """An Ed25519 key whose *public* file carries its revocation (the secret key still
    signs), and the revoked certificate's path."""
    tsk = pysequoia.Tsk.generate("Revoked <revoked@example.invalid>", profile=pysequoia.Profile.RFC4880)
    cert = tsk.extract_certificate()
    revoked = pysequoia.Cert.from_bytes(bytes(cert) + bytes(cert.revoke(tsk.certifier())))
    assert revoked.is_revoked
    secret = key_dir / "revoked.sec.asc"
    secret.write_text(str(tsk))
    secret.chmod(0o600)
    public = key_dir / "revoked.pub.asc"
    public.write_text(str(revoked))
    return KeyPair(public, secret, cert.fingerprint), public


@pytest.fixture(scope="session")
def aci_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("acis")


@pytest.fixture(scope="session")
def busybox_aci(aci_dir: Path) -> Path:
    """``oci-archive:../shared/images/oci-archive.tar`` converted once (gzip); copy it
    before signing or changing it."""
    [aci] = convert(f"oci-archive:{OCI_ARCHIVE}",
                    ConvertOptions(output_dir=str(aci_dir / "gzip"), cache_dir=str(aci_dir / "cache")))
    return Path(aci.path)


@pytest.fixture
def aci(busybox_aci: Path, tmp_path: Path) -> Path:
    """A private copy of the busybox ACI."""
    copy = tmp_path / "img" / busybox_aci.name
    copy.parent.mkdir()
    shutil.copyfile(busybox_aci, copy)
    return copy


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """``run_cli(*argv) -> CliResult``: ``docker2aci argv`` in-process."""

    def run(*argv: str | os.PathLike[str]) -> CliResult:
        capsys.readouterr()
        status = cli.main([os.fspath(a) for a in argv])
        captured = capsys.readouterr()
        return CliResult(status, captured.out, captured.err)

    return run


@pytest.fixture
def gpg(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gpg]:
    """A fresh GNUPGHOME under a short /tmp path (the agent socket path must stay short);
    its gpg-agent is killed at the end."""
    if shutil.which("gpg") is None:
        pytest.skip("needs gpg (apt-get install gnupg)")
    home = Path(tempfile.mkdtemp(prefix="g", dir="/tmp"))
    home.chmod(0o700)
    monkeypatch.setenv("GNUPGHOME", str(home))
    try:
        yield Gpg(home)
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env={**os.environ, "GNUPGHOME": str(home)},
                       capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)
