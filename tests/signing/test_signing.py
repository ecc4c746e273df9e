"""Signatures of ACIs: made by us and by gpg, checked by us and by gpg, and every way a
signature is refused (each with its own reason and message, exit status 1)."""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pysequoia
import pytest
from pysequoia.packet import PacketPile, Tag
from signing_helpers import IMAGE, CliResult, Gpg, KeyPair

from docker2aci import cli, signing
from docker2aci.errors import SigningError, VerificationError
from docker2aci.trust import TrustStore

FAKED_2020 = "20200101T000000!"  # frozen: no second ticks by


def _trust(store_dir: Path, key: Path | str, prefix: str | None = IMAGE) -> None:
    store = TrustStore(str(store_dir))
    for cert in signing.read_certs(str(key)):
        store.add(cert, prefix)


def _sign(aci: Path, key: KeyPair, passphrase: str | None = None) -> Path:
    return Path(signing.sign_file(str(aci), signing.SequoiaSigner(str(key.secret), passphrase)))


def test_our_signature_is_a_detached_armored_signature_gpg_accepts(aci: Path, rsa_key: KeyPair,
                                                                    gpg: Gpg) -> None:
    signature = _sign(aci, rsa_key)

    assert signature == Path(f"{aci}.asc")
    assert signature.read_text().startswith("-----BEGIN PGP SIGNATURE-----")
    assert oct(signature.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in signature.parent.iterdir() if p.name.startswith(".")] == []  # no temporary left
    gpg.run("--import", str(rsa_key.public))
    result = gpg.run("--verify", str(signature), str(aci), check=False)
    assert result.returncode == 0, result.stderr
    assert "Good signature" in result.stderr
    assert "RSA key" in result.stderr  # the default key type is what rkt's verifier reads


def test_gpg_made_signature_is_accepted_by_verify(aci: Path, gpg: Gpg, tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    fingerprint = gpg.generate("Gpg User <gpg@example.invalid>")
    gpg.sign(aci, "gpg@example.invalid")
    run_cli("trust", "add", "--prefix", IMAGE, "--trust-dir", tmp_path / "trust",
            gpg.export("gpg@example.invalid", tmp_path / "gpg.pub"))

    result: CliResult = run_cli("verify", aci, "--trust-dir", tmp_path / "trust")

    assert result.status == 0, result.err
    assert f'Signature verified: "{IMAGE}"' in result.out
    assert signing.format_fingerprint(fingerprint.lower()) in result.out
    assert 'trusted for prefix "test/busybox"' in result.out


def test_sign_with_the_gpg_keyring(aci: Path, gpg: Gpg, tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    gpg.generate("Keyring User <ring@example.invalid>")
    _trust(tmp_path / "trust", gpg.export("ring@example.invalid", tmp_path / "ring.pub"))

    signed = run_cli("sign", aci, "--gpg-key", "ring@example.invalid")  # GNUPGHOME is the fixture's

    assert signed.status == 0, signed.err
    assert signed.out.strip() == f"{aci}.asc"
    assert gpg.run("--verify", f"{aci}.asc", str(aci), check=False).returncode == 0
    assert run_cli("verify", aci, "--trust-dir", tmp_path / "trust").status == 0


def test_sign_with_the_gpg_keyring_ignores_textmode_in_gpg_conf(aci: Path, gpg: Gpg, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                 run_cli) -> None:
    """``textmode`` in gpg.conf would make a text-mode signature, which verify refuses:
    the ACI is signed as binary data whatever gpg.conf says."""
    gpg.generate("Keyring User <ring@example.invalid>", "ed25519")
    _trust(tmp_path / "trust", gpg.export("ring@example.invalid", tmp_path / "ring.pub"))
    (gpg.home / "gpg.conf").write_text("textmode\n")

    signed = run_cli("sign", aci, "--gpg-key", "ring@example.invalid")

    assert signed.status == 0, signed.err
    assert "sigclass 0x00" in gpg.run("--list-packets", f"{aci}.asc").stdout
    verified = run_cli("verify", aci, "--trust-dir", tmp_path / "trust")
    assert verified.status == 0, verified.err


def test_sign_with_the_gpg_keyring_ignores_weak_digest_preferences_in_gpg_conf(  # type: ignore[no-untyped-def]
        aci: Path, gpg: Gpg, tmp_path: Path, run_cli) -> None:
    """gpg.conf's digest preferences would make gpg sign with SHA-1, which verify refuses:
    the ACI is signed with SHA-512 whatever gpg.conf prefers."""
    gpg.generate("Keyring User <ring@example.invalid>", "rsa2048")
    _trust(tmp_path / "trust", gpg.export("ring@example.invalid", tmp_path / "ring.pub"))
    (gpg.home / "gpg.conf").write_text("personal-digest-preferences SHA1\ndigest-algo SHA1\n")

    signed = run_cli("sign", aci, "--gpg-key", "ring@example.invalid")

    assert signed.status == 0, signed.err
    assert "digest algo 10," in gpg.run("--list-packets", f"{aci}.asc").stdout  # SHA-512
    verified = run_cli("verify", aci, "--trust-dir", tmp_path / "trust")
    assert verified.status == 0, verified.err


def test_gpg_key_without_a_secret_key_fails_before_work(gpg: Gpg, run_cli) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SigningError, match="gpg has no secret key 'nobody@example.invalid'"):
        signing.GpgSigner("nobody@example.invalid")
    result = run_cli("--gpg-key", "nobody@example.invalid", "--output-dir", "/nonexistent/never",
                     "oci-archive:/nonexistent.tar")
    assert result.status == 1
    assert "gpg has no secret key" in result.err  # checked before the source is opened


def _refusal(aci: Path, trust_dir: Path, **kwargs: object) -> VerificationError:
    """The refusal of ``verify_aci``, after checking that ``docker2aci verify`` exits 1."""
    flags = [f"--signature={kwargs['signature']}"] if "signature" in kwargs else []
    assert cli.main(["verify", str(aci), "--trust-dir", str(trust_dir), *flags]) == 1
    with pytest.raises(VerificationError) as caught:
        signing.verify_aci(str(aci), str(trust_dir), **kwargs)  # type: ignore[arg-type]
    err = caught.value
    assert err.image == f'"{IMAGE}" ({aci})'
    assert err.prefix == IMAGE
    assert f'prefix looked up: "{IMAGE}"' in str(err)
    assert f'image "{IMAGE}" ({aci})' in str(err)
    return err


def test_unsigned(aci: Path, tmp_path: Path, rsa_key: KeyPair) -> None:
    _trust(tmp_path / "trust", rsa_key.public)
    err = _refusal(aci, tmp_path / "trust")
    assert (err.reason, err.key_id) == ("unsigned", None)
    # it said "signing key ID none", as if a key were named "none"
    assert str(err) == (f'image "{IMAGE}" ({aci}): not signed: there is no signature {aci}.asc; no signing key ID; '
                        f'prefix looked up: "{IMAGE}"')


def test_tampered_aci(aci: Path, tmp_path: Path, rsa_key: KeyPair) -> None:
    _trust(tmp_path / "trust", rsa_key.public)
    _sign(aci, rsa_key)
    with aci.open("r+b") as f:  # one byte of the gzip trailer: the manifest still reads
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 1]))
    err = _refusal(aci, tmp_path / "trust")
    assert err.reason == "bad-signature"
    assert "BAD signature: the file does not match its signature" in str(err)
    assert err.key_id is not None and err.key_id in str(err)


def test_an_aci_damaged_near_its_start_is_a_bad_signature(aci: Path, tmp_path: Path, rsa_key: KeyPair) -> None:
    """The refusal read the name for its message, and the damage ended it there with
    "Error -3 ... invalid distance" instead of "BAD signature" (a new user's find)."""
    _trust(tmp_path / "trust", rsa_key.public)
    _sign(aci, rsa_key)
    data = bytearray(aci.read_bytes())
    for offset in range(40, 200, 7):  # the deflate stream of the manifest and first entries
        data[offset] ^= 0xFF
    aci.write_bytes(bytes(data))
    assert cli.main(["verify", str(aci), "--trust-dir", str(tmp_path / "trust")]) == 1
    with pytest.raises(VerificationError) as caught:
        signing.verify_aci(str(aci), str(tmp_path / "trust"))
    err = caught.value
    assert (err.reason, err.prefix) == ("bad-signature", None)
    assert str(err).startswith(f"image (name not read) ({aci}): BAD signature: the file does not match its signature")


def test_signature_of_another_image(aci: Path, tmp_path: Path, rsa_key: KeyPair) -> None:
    _trust(tmp_path / "trust", rsa_key.public)
    other = tmp_path / "other.aci"
    other.write_bytes(aci.read_bytes() + b"\0")
    err = _refusal(aci, tmp_path / "trust", signature=str(_sign(other, rsa_key)))
    assert err.reason == "bad-signature"


def test_untrusted_key(aci: Path, tmp_path: Path, rsa_key: KeyPair, other_key: KeyPair) -> None:
    _trust(tmp_path / "trust", rsa_key.public)
    _sign(aci, other_key)
    err = _refusal(aci, tmp_path / "trust")
    assert err.reason == "untrusted-key"
    assert "signed by a key that is not trusted" in str(err)
    assert f"signing key ID {err.key_id}" in str(err)
    parts = signing.key_parts(signing.read_certs(str(other_key.public))[0])
    assert err.key_id in {p.key_id for p in parts}


@pytest.mark.parametrize(
    ("trusted_for", "accepted"),
    [
        pytest.param(None, True, id="root-key-signs-everything"),
        pytest.param("test", True, id="parent-prefix"),
        pytest.param("test/busybox", True, id="exact-name"),
        pytest.param("test/busy", False, id="string-prefix-is-not-a-component-prefix"),
        pytest.param("test/busybox/sub", False, id="child-prefix"),
        pytest.param("example.com/app", False, id="other-prefix"),
    ],
)
def test_prefix_matching(aci: Path, tmp_path: Path, rsa_key: KeyPair, trusted_for: str | None,
                         accepted: bool) -> None:
    _trust(tmp_path / "trust", rsa_key.public, trusted_for)
    _sign(aci, rsa_key)
    if accepted:
        result = signing.verify_aci(str(aci), str(tmp_path / "trust"))
        assert (result.name, result.signer.fingerprint, result.trusted_as.prefix) == \
            (IMAGE, rsa_key.fingerprint, trusted_for)
        return
    err = _refusal(aci, tmp_path / "trust")
    assert err.reason == "prefix-mismatch"
    assert f'signed by a key trusted only for prefix "{trusted_for}", not for this image' in str(err)


def test_expired_signing_subkey(aci: Path, tmp_path: Path, gpg: Gpg) -> None:
    """Case 55: a subkey valid when it signed (2020) and expired now; the primary key never
    expires. Refused as "expired key", never as a bad signature."""
    fingerprint = gpg.generate("Old Signer <old@example.invalid>", "ed25519", "cert", "never", FAKED_2020)
    gpg.add_subkey(fingerprint, "ed25519", "sign", "1y", faked_time=FAKED_2020)
    gpg.sign(aci, "old@example.invalid", faked_time="20200201T000000!")
    _trust(tmp_path / "trust", gpg.export("old@example.invalid", tmp_path / "old.pub"))
    # gpg itself accepts it ("Good signature" + a note): the policy is ours
    assert gpg.run("--verify", f"{aci}.asc", str(aci), check=False).returncode == 0

    err = _refusal(aci, tmp_path / "trust")
    assert err.reason == "expired-key"
    assert "signed by an expired key: the signing subkey" in str(err)
    assert "expired 2020-12-31" in str(err) and "signature made 2020-02-01T00:00:00Z" in str(err)
    # valid at the time of signing, which the policy documents and the clock proves
    assert signing.verify_aci(str(aci), str(tmp_path / "trust"),
                              now=datetime.datetime(2020, 6, 1, tzinfo=datetime.UTC)).name == IMAGE


def test_expired_primary_key(aci: Path, tmp_path: Path, gpg: Gpg) -> None:
    gpg.generate("Old Primary <oldp@example.invalid>", "ed25519", "cert,sign", "1y", FAKED_2020)
    gpg.sign(aci, "oldp@example.invalid", faked_time="20200201T000000!")
    _trust(tmp_path / "trust", gpg.export("oldp@example.invalid", tmp_path / "old.pub"))
    err = _refusal(aci, tmp_path / "trust")
    assert err.reason == "expired-key"
    assert "the certificate of" in str(err)


def test_a_key_is_expired_from_the_second_its_expiry_says(aci: Path, tmp_path: Path, gpg: Gpg) -> None:
    """Expiry is "expired at or before now": one second before the key's expiry the
    signature verifies, at that second it is refused."""
    gpg.generate("Edge <edge@example.invalid>", "ed25519", "cert,sign", "1y", FAKED_2020)
    gpg.sign(aci, "edge@example.invalid", faked_time="20200201T000000!")
    public = gpg.export("edge@example.invalid", tmp_path / "edge.pub")
    _trust(tmp_path / "trust", public)
    expiry = signing.read_certs(str(public))[0].expiration
    assert expiry == datetime.datetime(2020, 12, 31, tzinfo=datetime.UTC)
    before = expiry - datetime.timedelta(seconds=1)
    assert signing.verify_aci(str(aci), str(tmp_path / "trust"), now=before).name == IMAGE
    with pytest.raises(VerificationError) as caught:
        signing.verify_aci(str(aci), str(tmp_path / "trust"), now=expiry)
    assert caught.value.reason == "expired-key"


def test_a_subkey_whose_expiry_was_extended_is_valid(aci: Path, tmp_path: Path, gpg: Gpg) -> None:
    """The newest binding signature of a subkey says when it expires: a subkey made in
    2020 to expire after a year, extended to never since, signs today."""
    fingerprint = gpg.generate("Extended <ext@example.invalid>", "ed25519", "cert", "never", FAKED_2020)
    gpg.add_subkey(fingerprint, "ed25519", "sign", "1y", faked_time=FAKED_2020)
    listing = gpg.run("--with-colons", "--list-keys", fingerprint).stdout
    subkey = [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")][1]
    before = signing.read_certs(str(gpg.export("ext@example.invalid", tmp_path / "before.pub")))[0]
    gpg.run("--passphrase", "", "--quick-set-expire", fingerprint, "never", subkey)
    gpg.sign(aci, "ext@example.invalid")
    after = signing.read_certs(str(gpg.export("ext@example.invalid", tmp_path / "after.pub")))[0]
    both = before.merge(after)  # gpg exports only the newest binding: keep both, as a keyserver may
    TrustStore(str(tmp_path / "trust")).add(both, IMAGE)
    [part] = [p for p in signing.key_parts(both) if not p.primary]
    assert (part.fingerprint, part.expires, len(part.bindings)) == (subkey.lower(), None, 2)
    result = signing.verify_aci(str(aci), str(tmp_path / "trust"))
    assert (result.name, result.signer.signing_key) == (IMAGE, subkey.lower())


def test_a_subkey_whose_expiry_was_shortened_is_expired(aci: Path, tmp_path: Path, gpg: Gpg) -> None:
    """The reverse: a subkey made in 2020 to never expire, set in March 2020 to expire a
    year later, is refused now although its older binding (kept in the trusted copy) says
    "never"."""
    fingerprint = gpg.generate("Shortened <short@example.invalid>", "ed25519", "cert", "never", FAKED_2020)
    gpg.add_subkey(fingerprint, "ed25519", "sign", "never", faked_time=FAKED_2020)
    listing = gpg.run("--with-colons", "--list-keys", fingerprint).stdout
    subkey = [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")][1]
    gpg.sign(aci, "short@example.invalid", faked_time="20200201T000000!")
    before = signing.read_certs(str(gpg.export("short@example.invalid", tmp_path / "before.pub")))[0]
    gpg.run("--passphrase", "", "--quick-set-expire", fingerprint, "1y", subkey, faked_time="20200301T000000!")
    after = signing.read_certs(str(gpg.export("short@example.invalid", tmp_path / "after.pub")))[0]
    TrustStore(str(tmp_path / "trust")).add(before.merge(after), IMAGE)
    err = _refusal(aci, tmp_path / "trust")
    assert err.reason == "expired-key"
    assert "signed by an expired key: the signing subkey of" in str(err)


def test_revoked_key(aci: Path, tmp_path: Path, revoked_key: tuple[KeyPair, Path]) -> None:
    key, public = revoked_key
    _trust(tmp_path / "trust", public)
    signing.sign_file(str(aci), signing.SequoiaSigner(str(key.secret)))
    err = _refusal(aci, tmp_path / "trust")
    assert err.reason == "revoked-key"
    assert f"signed by a revoked key: the certificate of {key.fingerprint} is revoked" in str(err)


def test_revoked_signing_subkey(aci: Path, tmp_path: Path, gpg: Gpg) -> None:
    fingerprint = gpg.generate("Sub Revoked <subrev@example.invalid>", "ed25519", "cert")
    gpg.add_subkey(fingerprint, "ed25519", "sign", "never")
    gpg.sign(aci, "subrev@example.invalid")
    gpg.run("--pinentry-mode", "loopback", "--passphrase", "", "--command-fd", "0", "--edit-key", fingerprint,
            stdin="key 1\nrevkey\ny\n0\n\ny\nsave\n")
    _trust(tmp_path / "trust", gpg.export("subrev@example.invalid", tmp_path / "subrev.pub"))
    err = _refusal(aci, tmp_path / "trust")
    assert err.reason == "revoked-key"
    assert "the signing subkey of" in str(err)


def test_every_refusal_exits_1_with_its_own_message(aci: Path, tmp_path: Path, rsa_key: KeyPair,
                                                    other_key: KeyPair, run_cli) -> None:  # type: ignore[no-untyped-def]
    trust_dir = tmp_path / "trust"
    _trust(trust_dir, rsa_key.public, "example.com/app")
    _trust(trust_dir, other_key.public, IMAGE)
    messages = []
    unsigned = run_cli("verify", aci, "--trust-dir", trust_dir)
    _sign(aci, rsa_key)
    mismatch = run_cli("verify", aci, "--trust-dir", trust_dir)
    _sign(aci, other_key)
    accepted = run_cli("verify", aci, "--trust-dir", trust_dir)
    aci.write_bytes(aci.read_bytes() + b"junk")
    bad = run_cli("verify", aci, "--trust-dir", trust_dir)
    for result in (unsigned, mismatch, bad):
        assert result.status == 1
        assert result.out == ""
        assert result.err.startswith(f'Error: image "{IMAGE}" ({aci}): ')
        messages.append(result.err.split(": ", 2)[2].split(";")[0])
    assert accepted.status == 0, accepted.err
    assert len(set(messages)) == 3, messages


def test_verify_names_a_missing_aci_as_missing(aci: Path, tmp_path: Path, rsa_key: KeyPair,
                                               run_cli) -> None:  # type: ignore[no-untyped-def]
    """A mistyped ACI name (or a directory) was refused as "not signed: there is no
    signature NAME.asc", and with its signature there as a "BAD signature"."""
    _trust(tmp_path / "trust", rsa_key.public)
    missing = tmp_path / "typo.aci"
    for path, why in ((missing, "no such file"), (tmp_path, "not a regular file")):
        result = run_cli("verify", path, "--trust-dir", tmp_path / "trust")
        assert (result.status, result.out, result.err) == (1, "", f"Error: {path}: {why}\n")
    _sign(aci, rsa_key).rename(f"{missing}.asc")
    assert run_cli("verify", missing, "--trust-dir", tmp_path / "trust").err == f"Error: {missing}: no such file\n"


def test_verify_checks_every_aci_given(aci: Path, tmp_path: Path, rsa_key: KeyPair,
                                       run_cli) -> None:  # type: ignore[no-untyped-def]
    """``verify a.aci b.aci`` was "unrecognized arguments: b.aci" where sign, validate and
    inspect take several files (new-user trial): each is checked and reported, the status
    is 1 when one is refused."""
    _trust(tmp_path / "trust", rsa_key.public)
    _sign(aci, rsa_key)
    unsigned = tmp_path / "unsigned.aci"
    shutil.copyfile(aci, unsigned)
    result = run_cli("verify", aci, unsigned, aci, "--trust-dir", tmp_path / "trust")
    assert result.status == 1
    assert result.out.count(f'Signature verified: "{IMAGE}" ({aci}) signed by key ID ') == 2
    assert result.err.startswith(f'Error: image "{IMAGE}" ({unsigned}): ') and result.err.count("\n") == 1
    assert run_cli("verify", aci, aci, "--trust-dir", tmp_path / "trust").status == 0
    both = run_cli("verify", aci, aci, "--signature", f"{aci}.asc", "--trust-dir", tmp_path / "trust")
    assert (both.status, both.err) == (2, "Error: --signature is the signature of one ACI: give it with one ACI\n")


def test_verify_file_without_a_store(aci: Path, rsa_key: KeyPair, other_key: KeyPair) -> None:
    signature = _sign(aci, rsa_key)
    certs = signing.read_certs(str(rsa_key.public))
    assert signing.verify_file(str(aci), str(signature), certs).fingerprint == rsa_key.fingerprint
    with pytest.raises(VerificationError) as caught:
        signing.verify_file(str(aci), str(signature), signing.read_certs(str(other_key.public)))
    assert caught.value.reason == "untrusted-key" and caught.value.prefix is None


def test_a_non_signature_is_a_bad_signature(aci: Path, tmp_path: Path, rsa_key: KeyPair) -> None:
    _trust(tmp_path / "trust", rsa_key.public)
    Path(f"{aci}.asc").write_text("not a signature\n")
    err = _refusal(aci, tmp_path / "trust")
    assert err.reason == "bad-signature" and "not an OpenPGP signature" in str(err)


def test_signing_streams_the_file(tmp_path: Path, other_key: KeyPair) -> None:
    """sign_file never holds the ACI in memory: peak RSS of a child signing a 256 MiB file
    stays far below the file's size."""
    big = tmp_path / "big.aci"
    with big.open("wb") as f:
        f.truncate(256 * 1024 * 1024)
    code = ("import sys; from docker2aci import signing; "  # VmHWM: ru_maxrss counts the forking parent
            "signing.sign_file(sys.argv[1], signing.SequoiaSigner(sys.argv[2])); "
            "print(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')))")
    result = subprocess.run([sys.executable, "-c", code, str(big), str(other_key.secret)],
                            capture_output=True, text=True, check=True, timeout=60,
                            cwd=Path(__file__).resolve().parents[2])
    assert int(result.stdout) < 100 * 1024, f"peak RSS {int(result.stdout) // 1024} MiB"
    certs = signing.read_certs(str(other_key.public))
    assert signing.verify_file(str(big), f"{big}.asc", certs).fingerprint == other_key.fingerprint


def test_a_signer_can_sign_many_files(tmp_path: Path, other_key: KeyPair) -> None:
    signer = signing.SequoiaSigner(str(other_key.secret))
    certs = signing.read_certs(str(other_key.public))
    for i in range(3):
        path = tmp_path / f"{i}.aci"
        path.write_bytes(bytes([i]) * 100)
        signing.sign_file(str(path), signer)
        assert signing.verify_file(str(path), f"{path}.asc", certs).signing_key


def test_pysequoia_signature_details(aci: Path, rsa_key: KeyPair) -> None:
    """What rkt needs: a v4 signature, SHA-512, by the RSA signing subkey."""
    sig = pysequoia.Sig.from_bytes(_sign(aci, rsa_key).read_bytes())
    assert sig.version == 4
    assert "SHA512" in repr(sig.hash_algorithm)
    assert "RSA" in repr(sig.key_algorithm)
    assert sig.issuer_fingerprint != rsa_key.fingerprint  # the signing subkey, not the primary
    assert shutil.which("gpg")  # the gpg interop tests above are real


def test_nothing_unverified_is_decompressed_past_a_budget(tmp_path: Path, other_key: KeyPair) -> None:
    """Case 51: the signature is checked before decompression. An unsigned ACI whose
    manifest comes after 2 MiB of rootfs is refused without reading that far (its name is
    then not shown); signed and trusted, the same file is accepted."""
    aci = tmp_path / "late-manifest.aci"
    with tarfile.open(aci, "w") as tar:
        blob = tarfile.TarInfo("rootfs/blob")
        blob.size = 2 * 1024 * 1024
        tar.addfile(blob, io.BytesIO(bytes(blob.size)))
        manifest = json.dumps({"acKind": "ImageManifest", "acVersion": "0.8.11", "name": IMAGE}).encode()
        entry = tarfile.TarInfo("manifest")
        entry.size = len(manifest)
        tar.addfile(entry, io.BytesIO(manifest))
    _trust(tmp_path / "trust", other_key.public, None)

    with pytest.raises(VerificationError) as caught:
        signing.verify_aci(str(aci), str(tmp_path / "trust"))
    assert caught.value.reason == "unsigned"
    assert caught.value.image == f"(name not read) ({aci})" and caught.value.prefix is None

    _sign(aci, other_key)
    assert signing.verify_aci(str(aci), str(tmp_path / "trust")).name == IMAGE
    assert signing.read_aci_name(str(aci), signing.UNVERIFIED_NAME_BUDGET) is None


def test_a_signed_aci_with_two_manifests_is_refused(tmp_path: Path, other_key: KeyPair) -> None:
    """The name that selects the keys is read from the one manifest: an ACI whose tar
    holds two (``manifest`` then ``./manifest``, another name first) is refused, signed by
    a key trusted for the second name, rather than one of them being picked."""
    aci = tmp_path / "two-manifests.aci"
    with tarfile.open(aci, "w") as tar:
        for entry_name, name in (("manifest", "evil.example/app"), ("./manifest", IMAGE)):
            manifest = json.dumps({"acKind": "ImageManifest", "acVersion": "0.8.11", "name": name}).encode()
            entry = tarfile.TarInfo(entry_name)
            entry.size = len(manifest)
            tar.addfile(entry, io.BytesIO(manifest))
    _trust(tmp_path / "trust", other_key.public, IMAGE)
    _sign(aci, other_key)
    with pytest.raises(SigningError, match="more than one manifest entry"):
        signing.verify_aci(str(aci), str(tmp_path / "trust"))


def test_a_signature_file_holds_exactly_one_signature(aci: Path, tmp_path: Path, gpg: Gpg) -> None:
    """``gpg --verify`` checks every signature of the file; pysequoia reads the first one
    only. A good signature followed by a bad one is BAD for gpg, and for us."""
    gpg.generate("One <one@example.invalid>", "ed25519", "sign")
    _trust(tmp_path / "trust", gpg.export("one@example.invalid", tmp_path / "one.pub"))
    good = gpg.sign(aci, "one@example.invalid").read_bytes()
    other = tmp_path / "other.aci"
    other.write_bytes(b"another image")
    bad = gpg.sign(other, "one@example.invalid").read_bytes()
    signature = Path(f"{aci}.asc")
    signature.write_bytes(good + bad)
    assert gpg.run("--verify", str(signature), str(aci), check=False).returncode == 1
    err = _refusal(aci, tmp_path / "trust")
    assert err.reason == "bad-signature"
    assert "BAD signature: the file holds more than one armored block (one detached signature expected)" in str(err)

    gpg.run("--yes", "--local-user", "one@example.invalid", "--detach-sign",
            "--output", str(signature), str(aci))
    signature.write_bytes(signature.read_bytes() + b"\xcd\x03abc")  # binary, then a user ID packet
    assert gpg.run("--verify", str(signature), str(aci), check=False).returncode != 0
    err = _refusal(aci, tmp_path / "trust")
    assert err.reason == "bad-signature"
    assert "BAD signature: the file holds 2 OpenPGP packets (Signature, UserID); one detached signature " \
           "expected" in str(err)

    signature.write_bytes(good + b"text after the armored block is ignored, as gpg does\n")
    assert signing.verify_aci(str(aci), str(tmp_path / "trust")).name == IMAGE


@pytest.mark.parametrize(
    ("revoked_as", "plain_as"),
    [
        pytest.param(None, IMAGE, id="revoked-root-copy"),
        pytest.param(IMAGE, None, id="revoked-prefix-copy"),
        pytest.param("aaa", IMAGE, id="revoked-copy-listed-first"),
        pytest.param("zzz", IMAGE, id="revoked-copy-listed-last"),
    ],
)
def test_a_revocation_in_any_copy_of_a_trusted_key_counts(aci: Path, tmp_path: Path, gpg: Gpg,
                                                          revoked_as: str | None, plain_as: str | None) -> None:
    """The key trusted twice (``trust add`` again after its revocation, for another scope):
    the copy the store lists last must not hide the revocation the other one carries."""
    fingerprint = gpg.generate("Later Revoked <lrev@example.invalid>", "ed25519", "sign")
    gpg.sign(aci, "lrev@example.invalid")
    _trust(tmp_path / "trust", gpg.export("lrev@example.invalid", tmp_path / "plain.pub"), plain_as)
    revocation = (gpg.home / "openpgp-revocs.d" / f"{fingerprint}.rev").read_text()
    gpg.run("--import", stdin=revocation.replace(":-----BEGIN", "-----BEGIN"))
    _trust(tmp_path / "trust", gpg.export("lrev@example.invalid", tmp_path / "revoked.pub"), revoked_as)
    err = _refusal(aci, tmp_path / "trust")
    assert err.reason == "revoked-key"
    assert f"signed by a revoked key: the certificate of {fingerprint.lower()} is revoked" in str(err)


# Refusals by Sequoia's policy read "the file does not match its signature" for any cause
# (pysequoia only says "no valid signatures found"); each now says what is wrong. Every
# signature here is made by real gpg, and the message is the one `docker2aci verify` prints.


def _refused_with(run_cli, aci: Path, trust_dir: Path, key_id: str, detail: str) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("verify", aci, "--trust-dir", trust_dir)
    assert (result.status, result.out) == (1, "")
    assert result.err == (f'Error: image "{IMAGE}" ({aci}): {detail}; signing key ID {key_id}; '
                          f'prefix looked up: "{IMAGE}"\n')


@pytest.mark.parametrize(
    ("digest", "name", "gpg_accepts"),
    [
        pytest.param("SHA1", "SHA-1", True, id="sha1-gpg-accepts-it"),
        pytest.param("MD5", "MD5", False, id="md5-gpg-refuses-it-too"),
    ],
)
def test_a_weak_hash_is_named(aci: Path, tmp_path: Path, gpg: Gpg, run_cli, digest: str, name: str,  # type: ignore[no-untyped-def]
                              gpg_accepts: bool) -> None:
    fingerprint = gpg.generate("Weak <weak@example.invalid>", "rsa2048", "sign")
    gpg.sign(aci, "weak@example.invalid", options=("--digest-algo", digest))
    _trust(tmp_path / "trust", gpg.export("weak@example.invalid", tmp_path / "weak.pub"))
    assert (gpg.run("--verify", f"{aci}.asc", str(aci), check=False).returncode == 0) is gpg_accepts
    _refused_with(run_cli, aci, tmp_path / "trust", fingerprint[-16:],
                  f"BAD signature: made with {name}, which is refused (MD5, SHA-1 and RIPEMD-160 are too weak)")


def test_a_signature_dated_in_the_future_says_so(aci: Path, tmp_path: Path, gpg: Gpg, run_cli) -> None:  # type: ignore[no-untyped-def]
    fingerprint = gpg.generate("Ahead <ahead@example.invalid>", "ed25519", "sign")
    gpg.sign(aci, "ahead@example.invalid", faked_time="20310101T000000!")
    _trust(tmp_path / "trust", gpg.export("ahead@example.invalid", tmp_path / "ahead.pub"))
    assert gpg.run("--verify", f"{aci}.asc", str(aci), check=False).returncode == 0
    _refused_with(run_cli, aci, tmp_path / "trust", fingerprint[-16:],
                  "BAD signature: dated 2031-01-01T00:00:00Z, in the future (more than 30 minutes ahead of "
                  "this clock)")


def test_a_text_mode_signature_is_refused_as_such(aci: Path, tmp_path: Path, gpg: Gpg, run_cli) -> None:  # type: ignore[no-untyped-def]
    """gpg accepts its own text-mode signature of the ACI; pysequoia cannot check it as gpg
    does (the ACI holds lone CRs, which they canonicalize differently), and on a file where
    they agree it would still not pin the bytes: refused either way, by its type."""
    fingerprint = gpg.generate("Text <text@example.invalid>", "ed25519", "sign")
    gpg.sign(aci, "text@example.invalid", options=("--textmode",))
    _trust(tmp_path / "trust", gpg.export("text@example.invalid", tmp_path / "text.pub"))
    assert gpg.run("--verify", f"{aci}.asc", str(aci), check=False).returncode == 0
    certs = signing.read_certs(str(tmp_path / "text.pub"))
    with pytest.raises(Exception, match="no valid signatures"):  # gpg's hashing is not Sequoia's
        pysequoia.verify(file=str(aci), store=lambda _ids: certs, signature=pysequoia.Sig.from_file(f"{aci}.asc"))
    detail = ("BAD signature: a text-mode signature (type 0x01); sign the ACI as binary "
              "(gpg --detach-sign without --textmode)")
    _refused_with(run_cli, aci, tmp_path / "trust", fingerprint[-16:], detail)

    # where Sequoia and gpg agree (LF line ends only), CR LF and LF swapped keep it valid
    text = tmp_path / "lines"
    text.write_bytes(b"one\r\ntwo\n")
    signature = gpg.sign(text, "text@example.invalid", options=("--textmode",))
    text.write_bytes(b"one\ntwo\r\n")
    pysequoia.verify(file=str(text), store=lambda _ids: certs, signature=pysequoia.Sig.from_file(str(signature)))
    with pytest.raises(VerificationError) as caught:
        signing.verify_file(str(text), str(signature), certs)
    assert (caught.value.reason, caught.value.key_id) == ("bad-signature", fingerprint[-16:])
    assert f"image {text}: {detail};" in str(caught.value)


@pytest.mark.parametrize("subkey", [pytest.param(False, id="primary-key"), pytest.param(True, id="subkey")])
def test_a_key_without_the_signing_flag_is_named(aci: Path, tmp_path: Path, gpg: Gpg, run_cli,  # type: ignore[no-untyped-def]
                                                 subkey: bool) -> None:
    """Signed (2025) by a key whose self-signature in force then (2024, made after it
    signed, dated before) no longer lets it sign; gpg refuses it too ("Wrong key usage")."""
    fingerprint = gpg.generate("No Sign <nosign@example.invalid>", "ed25519", "cert" if subkey else "cert,sign",
                               "never", FAKED_2020)
    if subkey:
        gpg.add_subkey(fingerprint, "ed25519", "sign", "never", faked_time=FAKED_2020)
    gpg.sign(aci, "nosign@example.invalid", faked_time="20250101T000000!")
    toggles = "key 1\nchange-usage\nS\nA\nQ\nsave\n" if subkey else "change-usage\nS\nQ\nsave\n"
    gpg.run("--expert", "--pinentry-mode", "loopback", "--passphrase", "", "--command-fd", "0", "--edit-key",
            fingerprint, stdin=toggles, faked_time="20240101T000000!")
    _trust(tmp_path / "trust", gpg.export("nosign@example.invalid", tmp_path / "nosign.pub"))
    assert "Wrong key usage" in gpg.run("--verify", f"{aci}.asc", str(aci), check=False).stderr
    listing = gpg.run("--with-colons", "--list-keys", fingerprint).stdout
    fingerprints = [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")]
    key_id = fingerprints[1 if subkey else 0][-16:]
    _refused_with(run_cli, aci, tmp_path / "trust", key_id,
                  f"BAD signature: key {key_id} may not sign (no signing flag)")


@pytest.mark.parametrize(
    ("keep_old_self_signature", "detail"),
    [
        pytest.param(True, "BAD signature: made 2022-01-01T00:00:00Z after the signing key {key_id} expired "
                     "2021-06-01T12:00:00Z", id="expired-then"),
        pytest.param(False, "BAD signature: made 2022-01-01T00:00:00Z, before the oldest self-signature of the "
                     "signing key {key_id} (2023-01-01T00:00:00Z), so the key was not valid then (gpg replaces "
                     "a key's self-signature when its expiry or usage changes: re-sign the ACI)",
                     id="self-signature-replaced-since"),
    ],
)
def test_a_signature_made_while_the_key_was_not_valid_says_so(aci: Path, tmp_path: Path, gpg: Gpg, run_cli,  # type: ignore[no-untyped-def]
                                                              keep_old_self_signature: bool, detail: str) -> None:
    """Signed in 2022 by a key whose self-signature of 2021 made it expire in June 2021, and
    which a self-signature of 2023 made valid again (not expired now, so not "expired
    key"): Sequoia judges the key as it was when it signed; gpg, by its newest
    self-signature, says "Good signature". gpg replaces the old self-signature when it
    changes the expiry; importing the old copy again brings it back."""
    fingerprint = gpg.generate("Lapsed <lapsed@example.invalid>", "ed25519", "cert,sign", "never", FAKED_2020)
    gpg.sign(aci, "lapsed@example.invalid", faked_time="20220101T000000!")
    gpg.run("--quick-set-expire", fingerprint, "2021-06-01", faked_time="20210101T000000!")
    lapsed = gpg.run("--armor", "--export", fingerprint).stdout
    gpg.run("--quick-set-expire", fingerprint, "0", faked_time="20230101T000000!")
    if keep_old_self_signature:
        gpg.run("--import", stdin=lapsed)
    _trust(tmp_path / "trust", gpg.export("lapsed@example.invalid", tmp_path / "lapsed.pub"))
    assert gpg.run("--verify", f"{aci}.asc", str(aci), check=False).returncode == 0
    _refused_with(run_cli, aci, tmp_path / "trust", fingerprint[-16:], detail.format(key_id=fingerprint[-16:]))


def _v3_signature(secret: bytes, data: bytes, created: int) -> bytes:
    """A version 3 binary signature (RFC 4880 5.2.2) of ``data`` by the RSA primary key of
    an unprotected secret key export, SHA-512: what PGP 2 and gpg 1 (``--force-v3-sigs``)
    made; gpg 2.2 no longer makes them but still verifies them."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

    key = next(p for p in PacketPile.from_bytes(secret) if p.tag == Tag.SecretKey)
    body = key.body

    def mpis(off: int, count: int) -> list[int]:
        out = []
        for _ in range(count):
            size = (int.from_bytes(body[off:off + 2], "big") + 7) // 8
            out.append(int.from_bytes(body[off + 2:off + 2 + size], "big"))
            off += 2 + size
        return out

    n, e = mpis(6, 2)
    end = 6 + sum(2 + (x.bit_length() + 7) // 8 for x in (n, e))
    assert body[end] == 0  # not protected
    d, p, q, _ = mpis(end + 1, 4)
    private = rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), rsa.rsa_crt_iqmp(p, q),
                                    rsa.RSAPublicNumbers(e, n)).private_key()
    hashed = b"\x00" + created.to_bytes(4, "big")
    digest = hashlib.sha512(data + hashed).digest()
    value = private.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA512()))
    packet = (bytes([3, 5]) + hashed + bytes.fromhex(key.fingerprint[-16:]) + bytes([1, 10]) + digest[:2]
              + n.bit_length().to_bytes(2, "big") + value)
    return bytes([0xC2, 0xFF]) + len(packet).to_bytes(4, "big") + packet


def test_a_version_3_signature_is_refused_as_such(aci: Path, tmp_path: Path, gpg: Gpg, run_cli) -> None:  # type: ignore[no-untyped-def]
    fingerprint = gpg.generate("Three <three@example.invalid>", "rsa2048", "sign", "never", FAKED_2020)
    secret = subprocess.run(["gpg", "--batch", "--homedir", str(gpg.home), "--pinentry-mode", "loopback",
                             "--passphrase", "", "--export-secret-keys", fingerprint],
                            capture_output=True, check=True).stdout
    signature = _v3_signature(secret, aci.read_bytes(), int(datetime.datetime.now(datetime.UTC).timestamp()) - 60)
    Path(f"{aci}.asc").write_text(pysequoia.armor(signature, pysequoia.ArmorKind.Signature))
    _trust(tmp_path / "trust", gpg.export("three@example.invalid", tmp_path / "three.pub"))
    assert "Good signature" in gpg.run("--verify", f"{aci}.asc", str(aci)).stderr
    _refused_with(run_cli, aci, tmp_path / "trust", fingerprint[-16:],
                  "BAD signature: a version 3 signature; version 3 signatures are not supported, only version 4 "
                  "(re-sign the ACI with gpg 2 or 'docker2aci sign')")
