"""Signing where ACIs are written (``--sign``, ``--gpg-key``, the conversion cache), what
is signed (cases 51 and 52), and the runner's check before it renders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from signing_helpers import IMAGE, OCI_ARCHIVE, ROOT, Gpg, KeyPair, convert_to

from docker2aci import signing
from docker2aci.aci import Compression
from docker2aci.errors import VerificationError
from docker2aci.pipeline import ConvertOptions, convert
from docker2aci.store import ConversionCache
from docker2aci.trust import TrustStore


def _trust_root(trust_dir: Path, key: Path) -> None:
    TrustStore(str(trust_dir)).add(signing.read_certs(str(key))[0], None)


def test_convert_sign_writes_a_signature_that_verifies(tmp_path: Path, rsa_key: KeyPair, gpg: Gpg,
                                                       run_cli) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    result = run_cli("--sign", rsa_key.secret, "--output-dir", out, "--cache-dir", tmp_path / "cache",
                     f"oci-archive:{OCI_ARCHIVE}")
    assert result.status == 0, result.err
    aci = out / "test-busybox-latest.aci"
    lines = result.out.splitlines()
    at = lines.index("Generated ACI(s):")
    assert lines[at + 1: at + 5] == [str(aci), "", "Signature(s):", f"{aci}.asc"]
    gpg.run("--import", str(rsa_key.public))
    assert gpg.run("--verify", f"{aci}.asc", str(aci), check=False).returncode == 0
    _trust_root(tmp_path / "trust", rsa_key.public)
    assert run_cli("verify", aci, "--trust-dir", tmp_path / "trust").status == 0


def test_json_output_keeps_its_keys_when_signing(tmp_path: Path, other_key: KeyPair, run_cli) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("--json", "--sign", other_key.secret, "--output-dir", tmp_path, "--cache-dir",
                     tmp_path / "cache", f"oci-archive:{OCI_ARCHIVE}")
    assert result.status == 0, result.err
    [line] = result.out.splitlines()
    doc = json.loads(line)
    assert list(doc) == ["path", "image_id", "name", "labels", "manifest_digest"]
    assert Path(doc["path"] + ".asc").is_file()


@pytest.mark.parametrize("key", ["missing.asc", "junk.asc", "keys-dir"])
def test_a_sign_key_problem_is_a_signing_error_and_writes_nothing(tmp_path: Path, key: str,
                                                                  run_cli) -> None:  # type: ignore[no-untyped-def]
    """``--sign`` with a key file that is missing or not OpenPGP: the error said "conversion
    error", as if the image were at fault (review); it is a signing error, status 1, and
    neither the ACI nor its output directory is left."""
    (tmp_path / "junk.asc").write_text("not a key\n")
    (tmp_path / "keys-dir").mkdir()  # a directory said to be missing (new-user trial)
    out = tmp_path / "out"
    result = run_cli("--sign", tmp_path / key, "--output-dir", out, "--cache-dir", tmp_path / "cache",
                     f"oci-archive:{OCI_ARCHIVE}")
    expected = {
        "missing.asc": f"Error: signing error: {tmp_path / key}: no such key file (nor a fingerprint or key ID of ",
        "junk.asc": f"Error: signing error: reading the key file {tmp_path / key}: not OpenPGP data: ",
        "keys-dir": f"Error: signing error: {tmp_path / key}: a directory, not a key file\n",
    }[key]
    assert result.status == 1 and result.err.startswith(expected), result.err
    assert result.out == "" and not out.exists()


def test_a_signature_that_cannot_be_written_leaves_no_unsigned_aci(tmp_path: Path, other_key: KeyPair,
                                                                   caplog: pytest.LogCaptureFixture,
                                                                   run_cli) -> None:  # type: ignore[no-untyped-def]
    """The ACI was written, then its signature could not be (a directory at
    ``<ACI>.asc``): the run failed, ``--json`` listed no ACI, and the unsigned ACI stayed
    (CLI review). It is removed, with a warning."""
    out = tmp_path / "out"
    (out / "test-busybox-latest.aci.asc").mkdir(parents=True)
    result = run_cli("--json", "--sign", other_key.secret, "--output-dir", out, "--cache-dir", tmp_path / "cache",
                     f"oci-archive:{OCI_ARCHIVE}")
    aci = out / "test-busybox-latest.aci"
    assert result.status == 1
    assert result.err.splitlines()[-1] == f"Error: signing error: writing the signature {aci}.asc: Is a directory"
    assert f"removed {aci}: it could not be signed" in caplog.text
    assert json.loads(result.out)["acis"] == []
    assert [p.name for p in out.iterdir()] == ["test-busybox-latest.aci.asc"]


def test_a_nosquash_chain_that_cannot_all_be_signed_is_removed_whole(tmp_path: Path, other_key: KeyPair,
                                                                     caplog: pytest.LogCaptureFixture,
                                                                     run_cli) -> None:  # type: ignore[no-untyped-def]
    """``--nosquash``: the layers before the one whose signature could not be written
    stayed, signed, beside a failed run that listed no ACI (review): the whole chain goes."""
    out = tmp_path / "out"
    (out / "test-busybox-latest-linux-amd64-1.aci.asc").mkdir(parents=True)
    result = run_cli("--json", "--nosquash", "--sign", other_key.secret, "--output-dir", out,
                     f"oci-archive:{OCI_ARCHIVE}")
    assert result.status == 1 and json.loads(result.out)["acis"] == []
    assert [p.name for p in out.iterdir()] == ["test-busybox-latest-linux-amd64-1.aci.asc"]
    first, second = (out / f"test-busybox-latest-linux-amd64-{n}.aci" for n in (0, 1))
    assert f"removed {first}, {first}.asc, {second}, " in caplog.text  # and the layers above
    assert caplog.text.rstrip().endswith(f".aci: {second} could not be signed")


def test_convert_with_the_gpg_keyring(tmp_path: Path, gpg: Gpg, run_cli) -> None:  # type: ignore[no-untyped-def]
    gpg.generate("Builder <builder@example.invalid>")
    result = run_cli("--gpg-key", "builder@example.invalid", "--output-dir", tmp_path / "out",
                     "--cache-dir", tmp_path / "cache", f"oci-archive:{OCI_ARCHIVE}")
    assert result.status == 0, result.err
    aci = tmp_path / "out" / "test-busybox-latest.aci"
    assert gpg.run("--verify", f"{aci}.asc", str(aci), check=False).returncode == 0
    _trust_root(tmp_path / "trust", gpg.export("builder@example.invalid", tmp_path / "builder.pub"))
    assert signing.verify_aci(str(aci), str(tmp_path / "trust")).name == IMAGE


def test_signature_covers_the_compressed_file(tmp_path: Path, other_key: KeyPair) -> None:
    """Case 51: the same image re-exported uncompressed has the same image ID, and the
    signature of the gzip file does not verify it."""
    options = {"sign_key": str(other_key.secret)}
    [gz] = convert(f"oci-archive:{OCI_ARCHIVE}", ConvertOptions(output_dir=str(tmp_path / "gz"),
                                                                  cache_dir=str(tmp_path / "c"), **options))  # type: ignore[arg-type]
    [plain] = convert(f"oci-archive:{OCI_ARCHIVE}",
                      ConvertOptions(output_dir=str(tmp_path / "plain"), cache_dir=str(tmp_path / "c"),
                                     compression=Compression.NONE))
    assert gz.image_id == plain.image_id
    assert Path(gz.path).read_bytes()[:2] == b"\x1f\x8b" and Path(plain.path).read_bytes()[:2] != b"\x1f\x8b"
    trust = tmp_path / "trust"
    _trust_root(trust, other_key.public)
    assert signing.verify_aci(gz.path, str(trust)).name == IMAGE
    with pytest.raises(VerificationError) as caught:
        signing.verify_aci(plain.path, str(trust), signature=gz.path + ".asc")
    assert caught.value.reason == "bad-signature"


def test_two_conversions_give_the_same_bytes_and_each_signature_verifies_both(tmp_path: Path,
                                                                              other_key: KeyPair) -> None:
    """Case 52: conversion is deterministic; signatures are not (each carries its creation
    time and a salt), but either verifies either file."""
    first = convert_to(tmp_path / "a", sign_key=str(other_key.secret))
    second = convert_to(tmp_path / "b", sign_key=str(other_key.secret))
    assert first.read_bytes() == second.read_bytes()
    first_sig, second_sig = Path(f"{first}.asc"), Path(f"{second}.asc")
    assert first_sig.read_bytes() != second_sig.read_bytes()
    certs = signing.read_certs(str(other_key.public))
    for aci in (first, second):
        for sig in (first_sig, second_sig):
            assert signing.verify_file(str(aci), str(sig), certs).fingerprint == other_key.fingerprint


@pytest.fixture(scope="module")
def registry_ref(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``docker://HOST/test/busybox:v2s2`` in a real registry (the conversion cache is for
    registry sources)."""
    from services import REGISTRY_BIN, SKOPEO_BIN, push, require_tools, run_registry

    require_tools(REGISTRY_BIN, SKOPEO_BIN)
    with run_registry(tmp_path_factory.mktemp("registry")) as registry:
        push(f"oci:{OCI_ARCHIVE.parent / 'oci-layout'}:latest", registry, "test/busybox:v2s2", "--format", "v2s2")
        yield f"docker://{registry.host}/test/busybox:v2s2"


def test_a_conversion_cache_hit_is_signed_again(registry_ref: str, tmp_path: Path, other_key: KeyPair,
                                                monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    options = ConvertOptions(output_dir=str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"),
                             insecure_allow_http=True, sign_key=str(other_key.secret))
    [first] = convert(registry_ref, options)
    signature = Path(first.path + ".asc")
    signature.unlink()
    caplog.set_level("DEBUG")
    [again] = convert(registry_ref, options)
    assert "reused the cached ACI" in caplog.text
    certs = signing.read_certs(str(other_key.public))
    assert signing.verify_file(again.path, str(signature), certs).fingerprint == other_key.fingerprint


def _run(aci: Path, *flags: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "docker2aci", "run", *map(os.fspath, flags), str(aci)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="the fly stage needs root")
def test_runner_refuses_unsigned_and_runs_signed_and_trusted(aci: Path, tmp_path: Path, rsa_key: KeyPair,
                                                            other_key: KeyPair) -> None:
    trust = tmp_path / "trust"
    TrustStore(str(trust)).add(signing.read_certs(str(rsa_key.public))[0], "test")

    unsigned = _run(aci, "--trust-dir", trust)
    assert unsigned.returncode != 0
    # says what would make it run (a new user's find: it said only "there is no signature")
    assert unsigned.stderr.splitlines()[-1] == (
        f'Error: image "{IMAGE}" ({aci}): not signed: there is no signature {aci}.asc: sign it with '
        f"docker2aci sign {aci} --key KEYFILE and trust that key (docker2aci trust add), or skip the check "
        f'with --insecure-options=image; no signing key ID; prefix looked up: "{IMAGE}"')
    assert "hello from" not in unsigned.stdout

    signing.sign_file(str(aci), signing.SequoiaSigner(str(other_key.secret)))
    untrusted = _run(aci, "--trust-dir", trust)
    assert untrusted.returncode != 0
    assert "not trusted" in untrusted.stderr and "signing key ID" in untrusted.stderr

    assert _run(aci, "--insecure-options=image", "--trust-dir", trust).returncode == 0

    signing.sign_file(str(aci), signing.SequoiaSigner(str(rsa_key.secret)))
    signed = _run(aci, "--trust-dir", trust)
    assert signed.returncode == 0, signed.stderr
    assert signed.stdout.startswith("hello from")


def test_an_unsigned_run_removes_the_signature_of_the_file_it_changed(tmp_path: Path, other_key: KeyPair,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """A signature left beside an ACI that a later, unsigned run rewrote made ``verify``
    say "BAD signature", which reads as tampering (a new user's find). The run now
    removes it, and says so; when the file is the same, byte for byte (a conversion
    reused from the cache), the signature still holds and stays."""
    out, cache, trust = tmp_path / "out", str(tmp_path / "cache"), tmp_path / "trust"
    _trust_root(trust, other_key.public)
    [signed] = convert(f"oci-archive:{OCI_ARCHIVE}", ConvertOptions(output_dir=str(out), cache_dir=cache,
                                                                       sign_key=str(other_key.secret)))
    sig = Path(signed.path + ".asc")
    assert sig.is_file()
    [same] = convert(f"oci-archive:{OCI_ARCHIVE}", ConvertOptions(output_dir=str(out), cache_dir=cache))
    assert same.path == signed.path and sig.is_file()
    assert signing.verify_aci(same.path, str(trust)).name == IMAGE
    assert "removed" not in caplog.text
    [changed] = convert(f"oci-archive:{OCI_ARCHIVE}", ConvertOptions(output_dir=str(out), cache_dir=cache,
                                                                        compression=Compression.NONE))
    assert changed.path == signed.path and Path(changed.path).read_bytes()[:2] != b"\x1f\x8b"
    assert not sig.exists()
    assert f"removed {sig}: it signed the ACI this run replaced (sign again with --sign)" in caplog.text
    assert sorted(p.name for p in out.iterdir()) == ["test-busybox-latest.aci"]


@pytest.mark.parametrize("where", ["signing", "caching"])
def test_an_interrupted_signing_leaves_no_signature_of_the_file_replaced(tmp_path: Path, other_key: KeyPair,
                                                                         monkeypatch: pytest.MonkeyPatch,
                                                                         where: str) -> None:
    """Ctrl-C after ``--sign`` published an ACI over a signed one, before its signature
    was written (while it signs it, or copies it into the conversion cache): the old
    signature is removed with the interrupt (the ACI reads as unsigned). It used to
    stay beside the new file, and ``verify`` said "BAD signature" (seen with a real
    Ctrl-C after a 375 MB ACI was published)."""
    out, cache, trust = tmp_path / "out", str(tmp_path / "cache"), tmp_path / "trust"
    _trust_root(trust, other_key.public)
    [signed] = convert(f"oci-archive:{OCI_ARCHIVE}", ConvertOptions(output_dir=str(out), cache_dir=cache,
                                                                       sign_key=str(other_key.secret)))
    sig = Path(signed.path + ".asc")
    assert signing.verify_aci(signed.path, str(trust)).name == IMAGE

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    if where == "signing":
        monkeypatch.setattr(signing, "sign_file", interrupted)
    else:
        monkeypatch.setattr(ConversionCache, "put", interrupted)
    with pytest.raises(KeyboardInterrupt):
        convert(f"oci-archive:{OCI_ARCHIVE}", ConvertOptions(output_dir=str(out), cache_dir=cache,
                                                               compression=Compression.NONE, cache_local=True,
                                                               sign_key=str(other_key.secret)))
    assert Path(signed.path).read_bytes()[:2] != b"\x1f\x8b"  # the new, uncompressed ACI is in place
    assert sorted(p.name for p in out.iterdir()) == ["test-busybox-latest.aci"]
    assert not sig.exists()
