"""The trust store: rkt's layout on disk, ``trust add|list|remove``, and case 54 (a key
file not named by its fingerprint is rejected)."""

from __future__ import annotations

import io
import shutil
import stat
from pathlib import Path

import pytest
from signing_helpers import IMAGE, Gpg, KeyPair

from docker2aci import signing
from docker2aci.errors import SigningError, TrustStoreError, UsageError, VerificationError
from docker2aci.trust import TrustStore, check_prefix, default_trust_dir, prefix_matches


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_layout_is_rkts(tmp_path: Path, rsa_key: KeyPair, other_key: KeyPair, run_cli) -> None:  # type: ignore[no-untyped-def]
    trust = tmp_path / "trust"

    added = run_cli("trust", "add", "--prefix", "example.com/app", "--trust-dir", trust, rsa_key.public)
    root = run_cli("trust", "add", "--root", "--trust-dir", trust, other_key.public)

    assert (added.status, root.status) == (0, 0), added.err + root.err
    assert _files(trust) == sorted([
        f"trustedkeys/prefix.d/example.com/app/{rsa_key.fingerprint}",
        f"trustedkeys/root.d/{other_key.fingerprint}",
    ])
    stored = trust / "trustedkeys" / "prefix.d" / "example.com" / "app" / rsa_key.fingerprint
    assert stored.read_text().startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert "PRIVATE" not in stored.read_text()
    assert stat.S_IMODE(stored.stat().st_mode) == 0o644
    assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o755
    assert f"Key fingerprint: {signing.format_fingerprint(rsa_key.fingerprint)}" in added.out
    assert "Signer <signer@example.invalid>" in added.out
    assert f'Added key for prefix "example.com/app" at "{stored}"' in added.out
    assert f'Added key as a root key at "{trust}/trustedkeys/root.d/{other_key.fingerprint}"' in root.out


def test_a_secret_key_file_is_stored_as_its_public_key(tmp_path: Path, other_key: KeyPair,
                                                      run_cli) -> None:  # type: ignore[no-untyped-def]
    assert run_cli("trust", "add", "--root", "--trust-dir", tmp_path, other_key.secret).status == 0
    stored = tmp_path / "trustedkeys" / "root.d" / other_key.fingerprint
    assert "PRIVATE KEY" not in stored.read_text()


def test_list_and_remove(tmp_path: Path, rsa_key: KeyPair, other_key: KeyPair, run_cli) -> None:  # type: ignore[no-untyped-def]
    store = TrustStore(str(tmp_path))
    [cert] = signing.read_certs(str(rsa_key.public))
    store.add(cert, "example.com/app/sub")
    store.add(cert, None)
    store.add(signing.read_certs(str(other_key.public))[0], "example.com")

    listing = run_cli("trust", "list", "--trust-dir", tmp_path)
    assert listing.status == 0
    lines = listing.out.splitlines()
    assert lines[0].startswith(f"root: {rsa_key.fingerprint}  RSA")
    assert lines[1].startswith(f'prefix "example.com": {other_key.fingerprint}  EdDSA')
    assert lines[2].startswith(f'prefix "example.com/app/sub": {rsa_key.fingerprint}')

    spaced = signing.format_fingerprint(rsa_key.fingerprint)  # as gpg prints it: accepted
    removed = run_cli("trust", "remove", spaced, "--prefix", "example.com/app/sub", "--trust-dir", tmp_path)
    assert removed.status == 0, removed.err
    assert not (tmp_path / "trustedkeys" / "prefix.d" / "example.com" / "app").exists()  # pruned
    assert (tmp_path / "trustedkeys" / "prefix.d" / "example.com").is_dir()
    # pasted unquoted, in groups as keys generate and trust add print it: one argument per group
    # ("unrecognized arguments", new-user trial)
    assert run_cli("trust", "remove", *spaced.split(), "--trust-dir", tmp_path).status == 0
    assert _files(tmp_path) == [f"trustedkeys/prefix.d/example.com/{other_key.fingerprint}"]
    again = run_cli("trust", "remove", rsa_key.fingerprint, "--trust-dir", tmp_path)
    assert again.status == 1 and "is not in the trust store" in again.err


def test_fingerprint_mismatch_is_rejected(aci: Path, tmp_path: Path, rsa_key: KeyPair, other_key: KeyPair,
                                          run_cli) -> None:  # type: ignore[no-untyped-def]
    """Case 54: a key file must be named by its key's lower-case fingerprint."""
    prefix_dir = tmp_path / "trustedkeys" / "prefix.d" / "test" / "busybox"
    prefix_dir.mkdir(parents=True)
    misnamed = prefix_dir / other_key.fingerprint
    shutil.copyfile(rsa_key.public, misnamed)  # rsa_key's key under other_key's name
    signing.sign_file(str(aci), signing.SequoiaSigner(str(rsa_key.secret)))

    with pytest.raises(TrustStoreError, match="fingerprint mismatch") as caught:
        signing.verify_aci(str(aci), str(tmp_path))
    assert caught.value.path == str(misnamed)
    assert rsa_key.fingerprint in str(caught.value)

    verified = run_cli("verify", aci, "--trust-dir", tmp_path)
    assert verified.status == 1
    assert f"trust store: {misnamed}: fingerprint mismatch: the file is named '{other_key.fingerprint}' " \
           f"but holds the key {rsa_key.fingerprint}" in verified.err
    listing = run_cli("trust", "list", "--trust-dir", tmp_path)
    assert f'{other_key.fingerprint}  prefix "test/busybox"  UNUSABLE: fingerprint mismatch' in listing.out
    # renamed to its fingerprint, the same file is accepted
    misnamed.rename(prefix_dir / rsa_key.fingerprint)
    assert run_cli("verify", aci, "--trust-dir", tmp_path).status == 0


def test_upper_case_fingerprint_name_is_a_mismatch(tmp_path: Path, rsa_key: KeyPair) -> None:
    root_d = tmp_path / "trustedkeys" / "root.d"
    root_d.mkdir(parents=True)
    shutil.copyfile(rsa_key.public, root_d / rsa_key.fingerprint.upper())
    with pytest.raises(TrustStoreError, match="fingerprint mismatch"):
        TrustStore(str(tmp_path)).keys_for(IMAGE)


def test_an_empty_file_masks_a_key_trusted_above(tmp_path: Path, rsa_key: KeyPair) -> None:
    """rkt's masking: an empty file named by a fingerprint removes that key's trust."""
    store = TrustStore(str(tmp_path))
    store.add(signing.read_certs(str(rsa_key.public))[0], None)
    assert [k.fingerprint for k in store.keys_for(IMAGE)] == [rsa_key.fingerprint]
    mask = tmp_path / "trustedkeys" / "prefix.d" / "test" / rsa_key.fingerprint
    mask.parent.mkdir(parents=True)
    mask.write_bytes(b"")
    assert store.keys_for(IMAGE) == []
    assert [k.fingerprint for k in store.keys_for("other/image")] == [rsa_key.fingerprint]


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param("Example.com/app", id="upper-case"),
        pytest.param("../etc", id="dot-dot"),
        pytest.param("/abs", id="absolute"),
        pytest.param("a//b", id="empty-component"),
        pytest.param("a/", id="trailing-slash"),
        pytest.param("", id="empty"),
    ],
)
def test_prefix_must_be_an_ac_identifier(prefix: str, tmp_path: Path, rsa_key: KeyPair,
                                         run_cli) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError):
        check_prefix(prefix)
    result = run_cli("trust", "add", "--prefix", prefix, "--trust-dir", tmp_path, rsa_key.public)
    assert result.status == 2
    assert list(tmp_path.iterdir()) == []


def test_prefix_matches_whole_components() -> None:
    assert prefix_matches("example.com/app", "example.com/app")
    assert prefix_matches("example.com/app", "example.com/app/sub")
    assert not prefix_matches("example.com/app", "example.com/apple")
    assert not prefix_matches("example.com/app/sub", "example.com/app")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("answer", "status"), [("no\n", 1), ("yes\n", 0), ("", 1)])  # "": Ctrl-D (a traceback)
def test_add_asks_only_on_a_terminal(answer: str, status: int, tmp_path: Path, rsa_key: KeyPair,
                                     monkeypatch: pytest.MonkeyPatch, run_cli) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("sys.stdin", _Terminal(answer))
    result = run_cli("trust", "add", "--prefix", IMAGE, "--trust-dir", tmp_path, rsa_key.public)
    assert result.status == status
    assert "Are you sure you want to trust this key" in result.out
    assert signing.format_fingerprint(rsa_key.fingerprint) in result.out
    assert (tmp_path / "trustedkeys").exists() == (status == 0)


def test_add_does_not_ask_with_yes_or_without_a_terminal(tmp_path: Path, rsa_key: KeyPair,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         run_cli) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert "Are you sure" not in run_cli("trust", "add", "--root", "--trust-dir", tmp_path, rsa_key.public).out
    monkeypatch.setattr("sys.stdin", _Terminal(""))
    result = run_cli("trust", "add", "--root", "--yes", "--trust-dir", tmp_path, rsa_key.public)
    assert result.status == 0 and "Are you sure" not in result.out


def test_default_trust_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert default_trust_dir() == "/etc/docker2aci/trust"
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_CONFIG_HOME", "/home/u/.cfg")
    assert default_trust_dir() == "/home/u/.cfg/docker2aci/trust"


def test_a_key_without_a_valid_self_signature_is_unusable(aci: Path, tmp_path: Path, gpg: Gpg,
                                                           run_cli) -> None:  # type: ignore[no-untyped-def]
    """A key whose only self-signature is SHA-1 (gpg's --cert-digest-algo SHA1, as old keys
    have): Sequoia's policy finds no binding signature. A clear error naming the key (or the
    store's file), never pysequoia's RuntimeError."""
    gpg.run("--passphrase", "", "--cert-digest-algo", "SHA1", "--quick-gen-key",
            "Old Style <oldstyle@example.invalid>", "rsa2048", "sign", "never")
    fingerprint = gpg.fingerprint("oldstyle@example.invalid").lower()
    public = gpg.export("oldstyle@example.invalid", tmp_path / "old.pub")
    gpg.run("--yes", "--local-user", "oldstyle@example.invalid", "--digest-algo", "SHA512", "--armor",
            "--detach-sign", "--output", f"{aci}.asc", str(aci))
    assert gpg.run("--verify", f"{aci}.asc", str(aci), check=False).returncode == 0
    problem = f"the key {fingerprint} has no valid self-signature under the standard policy (missing, bad, " \
              "or made with SHA-1): No binding signature at time "

    added = run_cli("trust", "add", "--root", "--trust-dir", tmp_path, public)
    assert added.status == 1
    assert added.err.startswith(f"Error: {problem}")
    assert not (tmp_path / "trustedkeys").exists()
    with pytest.raises(SigningError, match=f"^not trusting {fingerprint}: the key {fingerprint} has no valid"):
        TrustStore(str(tmp_path)).add(signing.read_certs(str(public))[0], None)

    root_d = tmp_path / "trustedkeys" / "root.d"  # written by another tool (rkt trust)
    root_d.mkdir(parents=True)
    shutil.copyfile(public, root_d / fingerprint)
    listing = run_cli("trust", "list", "--trust-dir", tmp_path)
    assert listing.status == 0
    assert listing.out.startswith(f"{fingerprint}  root  UNUSABLE: {problem}")
    verified = run_cli("verify", aci, "--trust-dir", tmp_path)
    assert verified.status == 1
    assert verified.err.startswith(f"Error: trust store: {root_d / fingerprint}: {problem}")
    with pytest.raises(VerificationError) as caught:
        signing.verify_file(str(aci), f"{aci}.asc", signing.read_certs(str(public)))
    assert caught.value.reason == "untrusted-key"


def test_add_and_list_show_a_user_id_escaped(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """A key's user ID is the key maker's text: one that erases the line, moves the cursor
    up and writes a fake fingerprint (it overwrote the real one above the confirmation
    question) or reverses the text is shown escaped, by ``trust add`` and ``trust list``."""
    uid = "Evil \x1b[2K\r\x1b[1AKey fingerprint: AAAA \u202egro.live <e@example.invalid>"
    key = signing.generate_key(uid, signing.KeyAlgorithm.ED25519)
    public, _ = signing.write_key_pair(str(tmp_path / "evil"), key)
    shown = "Evil \\x1b[2K\\r\\x1b[1AKey fingerprint: AAAA \\u202egro.live <e@example.invalid>"
    added = run_cli("trust", "add", "--prefix", IMAGE, "--trust-dir", tmp_path / "trust", public)
    assert added.status == 0
    assert added.out.splitlines()[:2] == [f"Key fingerprint: {signing.format_fingerprint(key.fingerprint)}",
                                          f"  {shown}"]
    listed = run_cli("trust", "list", "--trust-dir", tmp_path / "trust")
    assert listed.out.endswith(f"  {shown}\n")
    assert "\x1b" not in added.out + listed.out and "\u202e" not in added.out + listed.out


def test_a_user_id_cannot_drive_the_terminal(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """A key's user ID is the key maker's text: its escape sequences and line breaks are
    shown escaped, never sent to the terminal, where they could erase the fingerprint
    ``trust add`` shows before it asks and print another (a reviewer's find)."""
    uid = "Evil \x1b[2K\x1b[1AKey fingerprint: AAAA\r\n <e@example.invalid>"
    shown = "Evil \\x1b[2K\\x1b[1AKey fingerprint: AAAA\\r\\n <e@example.invalid>"
    made = run_cli("keys", "generate", "--name", uid, "--algorithm", "ed25519", "--output", tmp_path / "evil")
    assert made.status == 0, made.err
    fingerprint = signing.key_info((tmp_path / "evil.pub.asc").read_bytes(), "evil").fingerprint
    added = run_cli("trust", "add", "--prefix", "example.com/app", "--trust-dir", tmp_path / "trust",
                    tmp_path / "evil.pub.asc")
    listed = run_cli("trust", "list", "--trust-dir", tmp_path / "trust")
    imported = run_cli("keys", "import", "--keys-dir", tmp_path / "keys", tmp_path / "evil.sec.asc")
    keys = run_cli("keys", "list", "--keys-dir", tmp_path / "keys")

    assert (added.status, listed.status, imported.status, keys.status) == (0, 0, 0, 0)
    assert made.out.splitlines()[1] == f"  {shown}"
    assert added.out.splitlines()[:2] == [f"Key fingerprint: {signing.format_fingerprint(fingerprint)}", f"  {shown}"]
    assert listed.out == f'prefix "example.com/app": {fingerprint}  EdDSA   [public]  {shown}\n'
    assert imported.out.splitlines()[0] == f"Imported {fingerprint}  EdDSA   [secret]  {shown}"
    assert keys.out == f"{fingerprint}  EdDSA   [secret]  {shown}\n"
    for result in (made, added, listed, imported, keys):
        assert "\x1b" not in result.out and "\r" not in result.out


def test_an_empty_trust_store_says_where_it_looked(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """``trust list`` of an empty store printed nothing at all (review): stdout stays empty
    for scripts, stderr names the directory and how to add a key."""
    listed = run_cli("trust", "list", "--trust-dir", tmp_path / "trust")
    assert (listed.status, listed.out, listed.err) == (
        0, "", f"No trusted keys in {tmp_path / 'trust'} (docker2aci trust add --prefix PREFIX KEYFILE, or --root, "
               "adds one)\n")
