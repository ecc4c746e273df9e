"""``docker2aci keys``: generation (RSA 3072 by default, Ed25519 on request, secret key
mode 0600, written atomically, never replaced), passphrases, and the keyring directory."""

from __future__ import annotations

import stat
from pathlib import Path

import pysequoia
import pytest
from pysequoia.packet import PacketPile, Tag
from signing_helpers import PASSPHRASE, Gpg, KeyPair

from docker2aci import signing
from docker2aci.errors import SigningError


def _primary_bits(path: Path) -> int:
    packet = next(p for p in PacketPile.from_file(str(path)) if p.tag in (Tag.PublicKey, Tag.SecretKey))
    assert packet.body[5] == 1  # RSA (encrypt or sign)
    return int.from_bytes(packet.body[6:8], "big")


def test_generated_key_files(rsa_key: KeyPair) -> None:
    assert stat.S_IMODE(rsa_key.secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(rsa_key.public.stat().st_mode) == 0o644
    assert rsa_key.secret.read_text().startswith("-----BEGIN PGP PRIVATE KEY BLOCK-----")
    assert rsa_key.public.read_text().startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert "PRIVATE" not in rsa_key.public.read_text()
    assert _primary_bits(rsa_key.public) == 3072
    assert [p.name for p in rsa_key.secret.parent.iterdir() if p.name.startswith(".")] == []
    info = signing.key_info(rsa_key.secret.read_bytes(), "secret")
    assert (info.fingerprint, info.algorithm, info.secret, info.protected, info.expires) == \
        (rsa_key.fingerprint, "RSA", True, False, None)


def test_generate_cli_ed25519_with_passphrase_and_expiry(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "pass").write_text("s3cret\n")
    result = run_cli("keys", "generate", "--name", "Ed User <ed@example.invalid>", "--algorithm", "ed25519",
                     "--passphrase-file", tmp_path / "pass", "--expires", "30", "--output", tmp_path / "ed")
    assert result.status == 0, result.err
    assert f"Secret key: {tmp_path}/ed.sec.asc" in result.out
    assert "s3cret" not in result.out + result.err
    secret = tmp_path / "ed.sec.asc"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    info = signing.key_info(secret.read_bytes(), "ed")
    assert (info.algorithm, info.protected, info.user_ids) == ("EdDSA", True, ("Ed User <ed@example.invalid>",))
    assert info.expires is not None
    again = run_cli("keys", "generate", "--name", "X <x@example.invalid>", "--algorithm", "ed25519",
                    "--output", tmp_path / "ed")
    assert again.status == 1 and again.err == (f"Error: {tmp_path / 'ed'}.pub.asc exists already: not replacing a key "
                                               "(give another --output prefix, or move it away first)\n")


def test_passphrase_protected_key(aci: Path, protected_key: tuple[KeyPair, Path], tmp_path: Path,
                                  run_cli) -> None:  # type: ignore[no-untyped-def]
    key, passphrase_file = protected_key
    without = run_cli("sign", aci, "--key", key.secret)
    assert without.status == 1
    assert "is protected by a passphrase: give it with --sign-passphrase-file" in without.err
    (tmp_path / "wrong").write_text("not it\n")
    wrong = run_cli("sign", aci, "--key", key.secret, "--passphrase-file", tmp_path / "wrong")
    assert wrong.status == 1 and "wrong passphrase" in wrong.err
    assert "not it" not in wrong.err and PASSPHRASE not in without.err
    assert not Path(f"{aci}.asc").exists()

    signed = run_cli("sign", aci, "--key", key.secret, "--passphrase-file", passphrase_file)
    assert signed.status == 0, signed.err
    certs = signing.read_certs(str(key.public))
    assert signing.verify_file(str(aci), f"{aci}.asc", certs).fingerprint == key.fingerprint


def test_convert_with_a_protected_key_fails_before_converting(protected_key: tuple[KeyPair, Path],
                                                              tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    key, _ = protected_key
    result = run_cli("--sign", key.secret, "--output-dir", tmp_path / "out", "oci-archive:/nonexistent.tar")
    assert result.status == 1
    assert "protected by a passphrase" in result.err
    assert not (tmp_path / "out").exists()


def test_our_protected_key_is_readable_by_gpg(protected_key: tuple[KeyPair, Path], gpg: Gpg,
                                              tmp_path: Path) -> None:
    """The S2K protection we write is standard: gpg imports the key and signs with it."""
    key, passphrase_file = protected_key
    gpg.run("--import", str(key.secret))
    payload = tmp_path / "payload"
    payload.write_bytes(b"payload")
    gpg.run("--pinentry-mode", "loopback", "--passphrase-file", str(passphrase_file), "--yes",
            "--local-user", key.fingerprint, "--armor", "--detach-sign", "--output", f"{payload}.asc", str(payload))
    assert signing.verify_file(str(payload), f"{payload}.asc",
                               signing.read_certs(str(key.public))).fingerprint == key.fingerprint


def test_a_public_key_cannot_sign(other_key: KeyPair) -> None:
    with pytest.raises(SigningError, match="holds no secret key"):
        signing.SequoiaSigner(str(other_key.public))


def test_keyring_import_list_export(tmp_path: Path, other_key: KeyPair, rsa_key: KeyPair,
                                    run_cli) -> None:  # type: ignore[no-untyped-def]
    ring = tmp_path / "ring"
    imported = run_cli("keys", "import", other_key.secret, "--keys-dir", ring)
    assert imported.status == 0, imported.err
    assert run_cli("keys", "import", rsa_key.public, "--keys-dir", ring).status == 0
    secret = ring / f"{other_key.fingerprint}.sec.asc"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(ring.stat().st_mode) == 0o700
    assert (ring / f"{rsa_key.fingerprint}.pub.asc").is_file()

    listing = run_cli("keys", "list", "--keys-dir", ring).out.splitlines()
    assert len(listing) == 2
    assert any(line.startswith(other_key.fingerprint) and "[secret]" in line for line in listing)
    assert any(line.startswith(rsa_key.fingerprint) and "[public]" in line for line in listing)

    exported = run_cli("keys", "export", other_key.key_id, "--keys-dir", ring)  # by key ID
    assert exported.status == 0
    assert exported.out.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----") and "PRIVATE" not in exported.out
    assert pysequoia.Cert.from_bytes(exported.out.encode()).fingerprint == other_key.fingerprint
    refused = run_cli("keys", "export", other_key.fingerprint, "--secret", "--keys-dir", ring)
    assert refused.status == 2 and "PRIVATE" not in refused.out  # never printed
    out = tmp_path / "exported.sec.asc"
    assert run_cli("keys", "export", other_key.fingerprint, "--secret", "--output", out,
                   "--keys-dir", ring).status == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_sign_with_a_keyring_key_by_fingerprint(aci: Path, tmp_path: Path, other_key: KeyPair,
                                                monkeypatch: pytest.MonkeyPatch, run_cli) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert run_cli("keys", "import", other_key.secret).status == 0
    assert (tmp_path / "config" / "docker2aci" / "keys" / f"{other_key.fingerprint}.sec.asc").is_file()
    result = run_cli("sign", aci, "--key", other_key.fingerprint.upper())
    assert result.status == 0, result.err
    certs = signing.read_certs(str(other_key.public))
    assert signing.verify_file(str(aci), f"{aci}.asc", certs).fingerprint == other_key.fingerprint
    missing = run_cli("sign", aci, "--key", "0123456789abcdef")
    assert missing.status == 1 and "no secret key 0123456789abcdef" in missing.err
    (tmp_path / "dir.aci").mkdir()  # "no such file" said of a directory (new-user trial)
    directory = run_cli("sign", tmp_path / "dir.aci", "--key", other_key.fingerprint)
    assert (directory.status, directory.err) == (1, f"Error: {tmp_path / 'dir.aci'}: a directory\n")
    (tmp_path / "notes.txt").write_text("not an image\n")  # signed, status 0 (new-user trial)
    text = run_cli("sign", aci, tmp_path / "notes.txt", "--key", other_key.fingerprint)
    assert text.status == 1 and text.err.startswith(f"Error: {tmp_path / 'notes.txt'}: not an ACI (")
    assert text.err.endswith("): sign signs ACIs\n") and text.out == ""
    assert not (tmp_path / "notes.txt.asc").exists()


def test_sign_with_a_keyring_key_by_the_key_id_verify_names(aci: Path, tmp_path: Path, other_key: KeyPair,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             run_cli) -> None:  # type: ignore[no-untyped-def]
    """``verify`` names the signing subkey's key ID (as gpg's "using ... key"); ``--sign``
    and ``sign --key`` took only the primary key's, so the ID verify printed was "no
    secret key" (new-user review). The subkey's ID, or fingerprint, now finds its key."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert run_cli("keys", "import", other_key.secret).status == 0
    assert run_cli("sign", aci, "--key", other_key.fingerprint).status == 0
    certs = signing.read_certs(str(other_key.public))
    signer = signing.verify_file(str(aci), f"{aci}.asc", certs).signing_key
    assert signer != other_key.fingerprint  # the signing subkey, not the primary key
    for spec in (signer[-16:].upper(), signer):
        Path(f"{aci}.asc").unlink()
        result = run_cli("sign", aci, "--key", spec)
        assert result.status == 0, result.err
        assert signing.verify_file(str(aci), f"{aci}.asc", certs).fingerprint == other_key.fingerprint


def test_generate_into_the_keyring(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    ring = tmp_path / "ring"
    result = run_cli("keys", "generate", "--name", "Ring <ring@example.invalid>", "--algorithm", "ed25519",
                     "--keys-dir", ring)
    assert result.status == 0, result.err
    [secret] = ring.glob("*.sec.asc")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert len(run_cli("keys", "list", "--keys-dir", ring).out.splitlines()) == 1


def test_keys_help_says_what_the_commands_act_on(run_cli, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit):
        run_cli("keys", "--help")
    text = capsys.readouterr().out
    assert "keyring" in text and "~/.config/docker2aci/keys" in text and "docker2aci trust" in text


@pytest.mark.parametrize("passphrase", [pytest.param(None, id="unprotected"), pytest.param(PASSPHRASE, id="protected")])
def test_sign_with_a_subkeys_only_export(aci: Path, tmp_path: Path, gpg: Gpg, passphrase: str | None,
                                         run_cli) -> None:  # type: ignore[no-untyped-def]
    """``gpg --export-secret-subkeys`` (the primary key kept offline): the primary key is a
    gnu-dummy stub without secret material, which is neither a passphrase to ask for nor
    the key to sign with; the signing subkey signs."""
    uid = "Offline <offline@example.invalid>"
    unlock = ["--pinentry-mode", "loopback", "--passphrase", passphrase or ""]
    gpg.run(*unlock, "--quick-gen-key", uid, "ed25519", "sign", "never")
    fingerprint = gpg.fingerprint(uid)
    gpg.run(*unlock, "--quick-add-key", fingerprint, "ed25519", "sign", "never")
    subkey = [line.split(":")[9] for line in gpg.run("--with-colons", "--with-subkey-fingerprints", "--list-keys",
                                                     fingerprint).stdout.splitlines() if line.startswith("fpr:")][1]
    secret = tmp_path / "offline.sec.asc"
    gpg.run(*unlock, "--armor", "--output", str(secret), "--export-secret-subkeys", fingerprint)
    assert "gnu-dummy" in gpg.run("--list-packets", str(secret)).stdout
    flags = []
    if passphrase:
        (tmp_path / "passphrase").write_text(passphrase + "\n")
        flags = ["--passphrase-file", tmp_path / "passphrase"]

    signed = run_cli("sign", aci, "--key", secret, *flags)
    assert signed.status == 0, signed.err
    assert gpg.run("--verify", f"{aci}.asc", str(aci), check=False).returncode == 0
    public = gpg.export(uid, tmp_path / "offline.pub")
    verified = signing.verify_file(str(aci), f"{aci}.asc", signing.read_certs(str(public)))
    assert (verified.fingerprint, verified.signing_key) == (fingerprint.lower(), subkey.lower())


def test_sign_names_its_own_flags(aci: Path, other_key: KeyPair, run_cli) -> None:  # type: ignore[no-untyped-def]
    """``sign --key K --gpg-key ID`` is refused in the words of sign's own flags (it said
    "--sign and --gpg-key", conversion's flag, which sign does not have)."""
    both = run_cli("sign", aci, "--key", other_key.secret, "--gpg-key", "someone")
    assert (both.status, both.out) == (2, "")
    assert both.err == "Error: --key and --gpg-key exclude each other\n"
    assert not Path(f"{aci}.asc").exists()


@pytest.mark.parametrize(("days", "message"), [
    ("0", "--expires must be a positive number of days"),
    ("49711", "--expires 49711: at most 49710 days (an OpenPGP key's lifetime is a 32-bit number of seconds)"),
    ("99999999999999999", "--expires 99999999999999999: at most 49710 days (an OpenPGP key's lifetime is a "
                          "32-bit number of seconds)"),
])
def test_an_expiry_no_key_can_hold_is_a_usage_error(tmp_path: Path, days: str, message: str,  # type: ignore[no-untyped-def]
                                                    run_cli) -> None:
    """A lifetime past OpenPGP's 32-bit seconds failed inside pysequoia ("int too big to
    convert", exit 1) after the user's input was taken (a CLI review's find)."""
    result = run_cli("keys", "generate", "--name", "X <x@example.invalid>", "--algorithm", "ed25519",
                     "--expires", days, "--output", tmp_path / "k")
    assert (result.status, result.out, result.err) == (2, "", f"Error: {message}\n")
    assert list(tmp_path.iterdir()) == []


def test_a_key_pair_interrupted_between_its_files_leaves_neither(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C (or a full disk) after the secret key file was written, before the public
    one: the secret one is removed, so the same ``keys generate --output PREFIX`` works
    again. It used to stay, alone, and the rerun failed: 'exists already: not replacing
    a key'."""
    key = signing.generate_key("Int <int@example.invalid>", signing.KeyAlgorithm.ED25519)
    prefix = tmp_path / "int"
    publish = signing._publish

    def interrupted_at_the_public_key(path: str, data: str, mode: int, *, replace: bool) -> None:
        if path.endswith(".pub.asc"):
            raise KeyboardInterrupt
        publish(path, data, mode, replace=replace)

    monkeypatch.setattr(signing, "_publish", interrupted_at_the_public_key)
    with pytest.raises(KeyboardInterrupt):
        signing.write_key_pair(str(prefix), key)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    monkeypatch.setattr(signing, "_publish", publish)
    assert signing.write_key_pair(str(prefix), key) == (f"{prefix}.pub.asc", f"{prefix}.sec.asc")
    assert signing.key_info((tmp_path / "int.sec.asc").read_bytes(), "int").fingerprint == key.fingerprint


def test_keys_list_of_a_keyring_that_is_a_file_is_an_error(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """It listed no key with status 0, as for an empty keyring (CLI review); a keyring not
    made yet is still empty, status 0."""
    (tmp_path / "file").write_text("not a keyring\n")
    listed = run_cli("keys", "list", "--keys-dir", tmp_path / "file")
    assert (listed.status, listed.out, listed.err) == (1, "", f"Error: the keyring {tmp_path / 'file'} is not a "
                                                                "directory\n")
    empty = run_cli("keys", "list", "--keys-dir", tmp_path / "none")
    # it printed nothing at all (review): stdout stays empty for scripts, stderr says where it looked
    assert (empty.status, empty.out, empty.err) == (0, "", f"No keys in {tmp_path / 'none'} (docker2aci keys generate "
                                                           "--name NAME, or keys import KEYFILE, adds one)\n")
