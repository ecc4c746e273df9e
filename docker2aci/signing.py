"""OpenPGP signing and verification of ACIs, behind small mechanism protocols.

What is signed (appc ``spec/aci.md``, "Image Archives"; public-cases.md #51): the ACI
file exactly as written, compressed bytes included, in an ASCII-armored detached
signature saved next to it as ``<file>.aci.asc`` (appc ``spec/discovery.md``: signature
URLs end in ``aci.asc``). ``gpg --verify foo.aci.asc foo.aci`` accepts it; it is what
rkt's verifier (Go's ``x/crypto/openpgp``) reads: a v4 signature, SHA-512, by an RSA
key's signing subkey (only non-critical subpackets besides creation time; the key's
critical embedded back-signature needs an ``x/crypto`` that parses embedded signatures;
not run here, as no Go module could be fetched). The image ID (sha512 of the *uncompressed* tar) is a
different thing: re-exporting an image uncompressed keeps its image ID and invalidates
its signature. Conversions are deterministic, so two conversions give the same ACI bytes;
their signatures differ (each carries its creation time and a random salt), and each
verifies both files.

Mechanisms (style.md rule 13, after containers/image ``signature/mechanism.go``):

* :class:`Signer`: :class:`SequoiaSigner` (a key file, through pysequoia; the file is
  streamed by ``pysequoia.sign_file``, never read whole) and :class:`GpgSigner` (the
  user's gpg keyring: ``gpg --batch --local-user ID --armor --detach-sign``; ``GNUPGHOME``
  honoured, or ``home``). Constructing a signer loads and unlocks the key: that is the
  "supports signing" check, made before any conversion work starts.
* :class:`Verifier`: :class:`SequoiaVerifier` (pysequoia, with the trusted keys given as
  an argument; never a user's keyring).

Keys: generated with pysequoia as OpenPGP v4 (RFC 4880) keys, which gpg 2.2 and rkt read
(v6 keys are not readable by gpg 2.2). RSA 3072 by default (rkt's verifier accepts RSA);
Ed25519 on request. A passphrase protects the secret key with the standard iterated and
salted S2K (SHA-256, AES-256, SHA-1 check; RFC 4880 5.5.3 and 3.7.1.3), which pysequoia
0.1.35 can unlock but not write; gpg reads it too.

Verification policy:

* The signature must be cryptographically valid over the file's bytes, made by a key
  (primary or signing subkey) of a certificate trusted for the image (:mod:`.trust`).
  It is checked before anything is decompressed; the image's name (which selects the
  keys) is read from the manifest only after that (before it, only within
  :data:`UNVERIFIED_NAME_BUDGET`, to name the image in a refusal).
* Key validity is checked both at the signature's creation time (pysequoia/Sequoia's
  standard policy: the key must have been alive, not revoked and signing-capable when it
  signed; SHA-1 signatures are refused) and at verification time: a signature by a key
  (primary or the signing subkey) that has expired *now* is refused as "expired key",
  even when it was made while the key was valid. That is stricter than rkt, whose
  ``x/crypto/openpgp`` ``CheckDetachedSignature`` looks at no expiry at all, and than
  gpg (``Good signature`` + ``Note: This key has expired!``, exit 0). Rationale: a
  signature's creation time is chosen by whoever holds the key, so "valid when signed"
  cannot be told apart from a backdated signature made with an old, expired key
  (rkt/rkt#3993, rpm#1911, public-cases.md #55). Re-sign with a current key, or extend
  the key's expiry and ``trust add`` it again.
* Only a binary signature (type 0x00) of the file's bytes, with a hash other than MD5,
  SHA-1 or RIPEMD-160, is checked at all. A text-mode signature (``gpg --textmode``, type
  0x01) is refused although gpg (and rkt's ``x/crypto/openpgp``) accept it: it signs the
  file with its line endings canonicalized, so it does not pin the bytes, and gpg, Go and
  Sequoia canonicalize binary data differently (:func:`_check_signature_kind`). A weak
  hash is refused whatever date the signature claims. When Sequoia refuses a signature,
  the message says what its policy found at the signature's creation time, read from the
  signature and the key's self-signatures (dated in the future, made before the key
  existed or after it had expired, a key without the signing flag); "the file does not
  match its signature" is left for when nothing else explains it.
* A revoked key (the certificate or the signing subkey, for any reason) is refused as
  "revoked key", whenever the revocation was made; ``x/crypto/openpgp`` also skips keys
  with any revocation.
* Every refusal is a :class:`~docker2aci.errors.VerificationError` whose ``reason`` is one
  of ``unsigned``, ``bad-signature``, ``untrusted-key``, ``prefix-mismatch``,
  ``expired-key``, ``revoked-key``, each with its own message naming the image, the
  signing key ID and the prefix looked up.

No passphrase or secret key material is ever logged, printed or put in an exception.
"""

from __future__ import annotations

import contextlib
import datetime
import enum
import glob
import hashlib
import logging
import os
import re
import shutil
import struct
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import pysequoia
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pysequoia.packet import HashAlgorithm, PacketPile, SignatureType, Tag

from . import untrustedjson
from .acifile import READ_ERRORS, is_manifest_name, open_tar, open_uncompressed
from .atomic import atomic_file, write_small_file
from .errors import Docker2ACIError, InvalidACI, SigningError, UsageError, VerificationError
from .limits import MAX_MANIFEST_BYTES, read_at_most
from .signaturefile import signature_path
from .terminal import printable
from .trust import (TrustedKey, TrustStore, cert_problem, default_trust_dir, is_ac_identifier, prefix_matches,
                    read_certs, read_key_file)

log = logging.getLogger(__name__)

MAX_SIGNATURE_BYTES = 1024 * 1024
"""A detached signature is read whole; larger files are refused."""
MAX_PASSPHRASE_BYTES = 64 * 1024
_ARMOR_SIGNATURE = b"-----BEGIN PGP SIGNATURE-----"
_S2K_COUNT = 0xF0
"""Iterated S2K coded count: 32 MiB hashed per unlock (about 0.1 s)."""
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_CLOCK_SKEW_TOLERANCE = datetime.timedelta(minutes=30)
"""How far ahead of the clock Sequoia accepts a signature's creation time (measured with
gpg ``--faked-system-time``: 29 minutes ahead verifies, 31 does not)."""


class SignatureRejected(SigningError):
    """Raised by a :class:`Verifier`: why a signature was refused, before the image and
    prefix are known (:func:`verify_aci` and :func:`verify_file` turn it into a
    :class:`~docker2aci.errors.VerificationError`)."""

    reference = "signature-rejected"

    def __init__(self, reason: str, key_id: str | None, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.key_id = key_id
        self.detail = detail


def _first_line(err: BaseException) -> str:
    """pysequoia's message without the Rust backtrace it appends under RUST_BACKTRACE."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _key_id(fingerprint: str) -> str:
    """The 16-hex-digit key ID of a v4 fingerprint, upper case as gpg and rkt print it."""
    return fingerprint[-16:].upper()


def format_fingerprint(fingerprint: str) -> str:
    """``8B86 DE38 890D DB72 9186  7B02 5210 BD88 8818 2190`` (gpg's and rkt's grouping)."""
    groups = [fingerprint[i:i + 4].upper() for i in range(0, len(fingerprint), 4)]
    half = len(groups) // 2
    return " ".join(groups[:half]) + "  " + " ".join(groups[half:])


# --------------------------------------------------------------------------- passphrases


def read_passphrase_file(path: str) -> str:
    """The passphrase in ``path``: its first line, without the line ending (as gpg's
    ``--passphrase-file``).

    Raises:
        SigningError: the file cannot be read, or the passphrase is empty.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PASSPHRASE_BYTES)
    except OSError as err:
        raise SigningError(f"reading the passphrase file {path}: {err.strerror or err}") from err
    line = data.split(b"\n", 1)[0].removesuffix(b"\r")
    if not line:
        raise SigningError(f"the passphrase file {path} is empty")
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SigningError(f"the passphrase file {path} is not UTF-8") from err


# --------------------------------------------------------------------------- key packets


def _packets(data: bytes, what: str) -> list[pysequoia.packet.Packet]:
    try:
        return list(PacketPile.from_bytes(data))
    except Exception as err:  # pysequoia raises plain RuntimeError/ValueError
        raise SigningError(f"reading {what}: not OpenPGP data: {_first_line(err)}") from err


def _mpis_end(body: bytes, off: int, count: int) -> int:
    for _ in range(count):
        bits = int.from_bytes(body[off:off + 2], "big")
        off += 2 + (bits + 7) // 8
    return off


def _public_end(body: bytes) -> int:
    """Offset of the S2K usage octet in a v4 secret key packet body (RFC 4880 5.5.2/5.5.3,
    RFC 6637 for the elliptic curves)."""
    if not body or body[0] != 4:
        raise SigningError(f"only version 4 keys are supported here (found version {body[0] if body else '?'})")
    algorithm, off = body[5], 6
    if algorithm in (1, 2, 3):  # RSA: n, e
        return _mpis_end(body, off, 2)
    if algorithm == 17:  # DSA: p, q, g, y
        return _mpis_end(body, off, 4)
    if algorithm in (16, 20):  # ElGamal: p, g, y
        return _mpis_end(body, off, 3)
    if algorithm in (19, 22):  # ECDSA, EdDSA: curve OID, point
        return _mpis_end(body, off + 1 + body[off], 1)
    if algorithm == 18:  # ECDH: curve OID, point, KDF parameters
        off = _mpis_end(body, off + 1 + body[off], 1)
        return off + 1 + body[off]
    raise SigningError(f"unsupported public key algorithm {algorithm}")


def _secret_packets(packets: list[pysequoia.packet.Packet]) -> list[pysequoia.packet.Packet]:
    return [p for p in packets if p.tag in (Tag.SecretKey, Tag.SecretSubkey)]


def _is_protected(packet: pysequoia.packet.Packet) -> bool:
    body = packet.body
    return body[_public_end(body)] != 0


def _is_stub(packet: pysequoia.packet.Packet) -> bool:
    """A secret key packet without secret material: GnuPG's S2K extension 101 (``gnu-dummy``,
    what ``gpg --export-secret-subkeys`` writes for the offline primary key, or
    ``divert-to-card``)."""
    body = packet.body
    end = _public_end(body)
    return body[end] in (254, 255) and body[end + 2:end + 3] == b"\x65" and body[end + 4:end + 7] == b"GNU"


def _without_stubs(packets: list[pysequoia.packet.Packet]) -> bytes:
    """The key with its stub secret packets written as public key packets, so that
    pysequoia picks a key whose secret is present (it would pick a signing-capable stub
    primary key and fail to unlock it)."""
    out = []
    for packet in packets:
        if packet.tag in (Tag.SecretKey, Tag.SecretSubkey) and _is_stub(packet):
            public = packet.body[:_public_end(packet.body)]
            out.append(_packet_header(6 if packet.tag == Tag.SecretKey else 14, len(public)) + public)
        else:
            out.append(bytes(packet))
    return b"".join(out)


def _packet_header(tag: int, length: int) -> bytes:
    """An OpenPGP new-format packet header (RFC 4880 4.2.2)."""
    if length < 192:
        encoded = bytes([length])
    elif length < 8384:
        rest = length - 192
        encoded = bytes([(rest >> 8) + 192, rest & 0xFF])
    else:
        encoded = b"\xff" + struct.pack(">I", length)
    return bytes([0xC0 | tag]) + encoded


def _s2k_key(passphrase: bytes, salt: bytes, coded_count: int) -> bytes:
    """Iterated and salted S2K with SHA-256 (RFC 4880 3.7.1.3): a 32-byte AES-256 key."""
    count = (16 + (coded_count & 15)) << ((coded_count >> 4) + 6)
    unit = salt + passphrase
    count = max(count, len(unit))
    digest = hashlib.sha256()
    chunk = unit * max(1, (1 << 20) // len(unit))
    while count >= len(chunk):
        digest.update(chunk)
        count -= len(chunk)
    whole, rest = divmod(count, len(unit))
    digest.update(unit * whole + unit[:rest])
    return digest.digest()


def _cfb_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES CFB-128 (RFC 4880 13.9 without the OpenPGP resync, as v4 secret keys use)."""
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    out = bytearray()
    previous = iv
    for i in range(0, len(data), 16):
        stream = ecb.update(previous)
        block = bytes(a ^ b for a, b in zip(data[i:i + 16], stream))
        out += block
        previous = block
    return bytes(out)


def protect_secret_key(secret: bytes, passphrase: str) -> bytes:
    """Encrypt every secret key packet of a transferable secret key with ``passphrase``.

    S2K usage 254 (SHA-1 check), AES-256, iterated and salted S2K with SHA-256 and a
    32 MiB count (RFC 4880 5.5.3); what gpg writes too.

    Args:
        secret: a binary transferable secret key whose secrets are not encrypted.
        passphrase: a non-empty passphrase.

    Returns:
        the binary transferable secret key with its secrets encrypted.

    Raises:
        SigningError: the key is not a v4 key of a known algorithm, or already protected.
    """
    out = []
    for packet in _packets(secret, "the secret key"):
        if packet.tag not in (Tag.SecretKey, Tag.SecretSubkey):
            out.append(bytes(packet))
            continue
        body = packet.body
        end = _public_end(body)
        if body[end] != 0:
            raise SigningError("the secret key is already protected by a passphrase")
        plain = body[end + 1:-2]  # the MPIs, without their 2-octet checksum
        salt, iv = os.urandom(8), os.urandom(16)
        key = _s2k_key(passphrase.encode("utf-8"), salt, _S2K_COUNT)
        encrypted = _cfb_encrypt(key, iv, plain + hashlib.sha1(plain).digest())
        new_body = body[:end] + bytes([254, 9, 3, 8]) + salt + bytes([_S2K_COUNT]) + iv + encrypted
        tag = 5 if packet.tag == Tag.SecretKey else 7
        out.append(_packet_header(tag, len(new_body)) + new_body)
    return b"".join(out)


# --------------------------------------------------------------------------- key info


@dataclass(frozen=True)
class KeyBinding:
    """What one self-signature of a key says about it (a subkey's binding signature; for
    the primary key, a self-certification of a user ID or a direct-key signature).

    Attributes:
        created: when the self-signature was made.
        expires: when the key expires by it (``None``: never).
        can_sign: whether its key flags allow signing data.
    """

    created: datetime.datetime | None
    expires: datetime.datetime | None
    can_sign: bool


@dataclass(frozen=True)
class KeyPart:
    """One key of a certificate (the primary key or a subkey), as verification needs it.

    Attributes:
        fingerprint: lower-case hex.
        primary: whether it is the certificate's primary key.
        created: its creation time.
        expires: when it expires (``None``: never), from its newest binding signature
            (subkeys) or from the certificate (primary).
        revoked: whether a revocation signature covers it.
        bindings: its self-signatures, oldest first (not checked cryptographically here:
            only to explain a refusal, see :meth:`binding_at`).
    """

    fingerprint: str
    primary: bool
    created: datetime.datetime | None
    expires: datetime.datetime | None
    revoked: bool
    bindings: tuple[KeyBinding, ...] = ()

    @property
    def key_id(self) -> str:
        """16 upper-case hex digits."""
        return _key_id(self.fingerprint)

    def binding_at(self, when: datetime.datetime) -> KeyBinding | None:
        """The self-signature in force at ``when`` (the newest made by then), as Sequoia's
        policy picks it to judge a signature made at ``when``; ``None`` before the first."""
        in_force = [b for b in self.bindings if b.created is not None and b.created <= when]
        return in_force[-1] if in_force else None


_SELF_CERTIFICATIONS = (SignatureType.GenericCertification, SignatureType.PersonaCertification,
                        SignatureType.CasualCertification, SignatureType.PositiveCertification,
                        SignatureType.DirectKey)


def _binding(packet: pysequoia.packet.Packet, key_created: datetime.datetime | None) -> KeyBinding:
    period = packet.key_validity_period
    flags = packet.key_flags
    return KeyBinding(created=packet.signature_created,
                      expires=key_created + period if period and key_created is not None else None,
                      can_sign=flags is not None and flags.signing)


def key_parts(cert: pysequoia.Cert) -> list[KeyPart]:
    """The primary key and subkeys of ``cert`` with their expiry and revocation state.

    Raises:
        SigningError: the key has no valid self-signature (:func:`~.trust.cert_problem`).
    """
    problem = cert_problem(cert)
    if problem is not None:
        raise SigningError(problem)
    parts: list[KeyPart] = []
    current: dict[str, object] | None = None
    newest: datetime.datetime | None = None
    primary_fpr = ""
    bindings: list[KeyBinding] = []

    def close() -> None:
        if current is not None:
            current["bindings"] = tuple(sorted(bindings, key=lambda b: b.created or _EPOCH))
            parts.append(KeyPart(**current))  # type: ignore[arg-type]

    for packet in PacketPile.from_bytes(bytes(cert)):
        if packet.tag in (Tag.PublicKey, Tag.SecretKey):
            primary_fpr = packet.fingerprint
            current = {"fingerprint": packet.fingerprint, "primary": True, "created": packet.key_created,
                       "expires": cert.expiration, "revoked": cert.is_revoked}
        elif packet.tag in (Tag.PublicSubkey, Tag.SecretSubkey):
            close()
            current = {"fingerprint": packet.fingerprint, "primary": False, "created": packet.key_created,
                       "expires": None, "revoked": False}
            newest = None
            bindings = []
        elif packet.tag == Tag.Signature and current is not None and current["primary"]:
            issuer = (packet.issuer_fingerprint or "").lower()
            by_itself = issuer == primary_fpr if issuer else primary_fpr.endswith(
                (packet.issuer_key_id or "?").lower())
            if by_itself and any(packet.signature_type == t for t in _SELF_CERTIFICATIONS):
                bindings.append(_binding(packet, current["created"]))  # type: ignore[arg-type]
        elif packet.tag == Tag.Signature and current is not None:
            kind = packet.signature_type
            if kind == SignatureType.SubkeyRevocation:
                current["revoked"] = True
            elif kind == SignatureType.SubkeyBinding:
                bindings.append(_binding(packet, current["created"]))  # type: ignore[arg-type]
                made = packet.signature_created
                if newest is None or (made is not None and made >= newest):
                    newest = made
                    period = packet.key_validity_period
                    created = current["created"]
                    current["expires"] = (created + period
                                          if period and created is not None else None)
    close()
    return parts


@dataclass(frozen=True)
class KeyInfo:
    """What ``keys list`` and ``trust add`` show about a key.

    Attributes:
        fingerprint: the primary key's, lower-case hex.
        user_ids: its user IDs (``Name <email>``).
        algorithm: the primary key's algorithm (``RSA``, ``EdDSA`` ...).
        secret: whether secret key material is present.
        protected: whether that secret material is encrypted with a passphrase.
        expires: when the certificate expires (``None``: never).
        revoked: whether it is revoked.
    """

    fingerprint: str
    user_ids: tuple[str, ...]
    algorithm: str
    secret: bool
    protected: bool
    expires: datetime.datetime | None
    revoked: bool

    def describe(self, now: datetime.datetime | None = None) -> str:
        """``<fingerprint> <algorithm> [secret[, protected]] [expired|expires …] [revoked] <uid>``."""
        now = now or datetime.datetime.now(datetime.UTC)
        flags = []
        if self.secret:
            flags.append("secret, passphrase" if self.protected else "secret")
        if self.expires is not None:
            flags.append(("expired " if self.expires <= now else "expires ") + self.expires.strftime("%Y-%m-%d"))
        if self.revoked:
            flags.append("revoked")
        return (f"{self.fingerprint}  {self.algorithm:<6}  [{', '.join(flags) or 'public'}]  "
                f"{', '.join(printable(u) for u in self.user_ids)}")


_ALGORITHM_NAMES = {"RSAEncryptSign": "RSA", "RSASign": "RSA", "EdDSA": "EdDSA", "Ed25519": "Ed25519",
                    "ECDSA": "ECDSA", "DSA": "DSA"}


def key_info(data: bytes, what: str) -> KeyInfo:
    """Describe the first key in ``data`` (public or secret, armored or binary).

    Raises:
        SigningError: ``data`` holds no OpenPGP key.
    """
    packets = _packets(data, what)
    certs = pysequoia.Cert.split_bytes(data) if packets else []
    if not certs:
        raise SigningError(f"reading {what}: no OpenPGP key in it")
    cert = certs[0]
    primary = next((p for p in packets if p.tag in (Tag.PublicKey, Tag.SecretKey)), None)
    algorithm = "?"
    if primary is not None and primary.key_algorithm is not None:
        name = repr(primary.key_algorithm).rsplit(".", 1)[-1]
        algorithm = _ALGORITHM_NAMES.get(name, name)
    secrets = [p for p in _secret_packets(packets) if p.fingerprint is not None]
    mine = {k.fingerprint for k in key_parts(cert)}
    secrets = [p for p in secrets if p.fingerprint in mine]
    return KeyInfo(fingerprint=cert.fingerprint, user_ids=tuple(str(u) for u in cert.user_ids),
                   algorithm=algorithm, secret=bool(secrets), protected=any(_is_protected(p) for p in secrets),
                   expires=cert.expiration, revoked=cert.is_revoked)


# --------------------------------------------------------------------------- generation


class KeyAlgorithm(enum.Enum):
    """Key types ``keys generate`` makes (OpenPGP v4; each with a signing subkey)."""

    RSA3072 = "rsa3072"
    RSA2048 = "rsa2048"
    RSA4096 = "rsa4096"
    ED25519 = "ed25519"


DEFAULT_ALGORITHM = KeyAlgorithm.RSA3072
_SUITES = {
    KeyAlgorithm.RSA3072: pysequoia.CipherSuite.RSA3k,
    KeyAlgorithm.RSA2048: pysequoia.CipherSuite.RSA2k,
    KeyAlgorithm.RSA4096: pysequoia.CipherSuite.RSA4k,
    KeyAlgorithm.ED25519: pysequoia.CipherSuite.Cv25519,
}


@dataclass(frozen=True)
class GeneratedKey:
    """A new key pair.

    Attributes:
        fingerprint: lower-case hex of the primary key.
        public: the ASCII-armored public key (certificate).
        secret: the ASCII-armored secret key (never shown in ``repr``).
    """

    fingerprint: str
    public: str
    secret: str = field(repr=False)


MAX_VALIDITY_DAYS = (2**32 - 1) // 86400
"""The longest key lifetime ``--expires`` takes (days): RFC 4880's key expiration time is a
32-bit number of seconds (about 136 years)."""


def generate_key(user_id: str, algorithm: KeyAlgorithm = DEFAULT_ALGORITHM, *,
                 passphrase: str | None = None, validity_days: int | None = None) -> GeneratedKey:
    """Generate an OpenPGP v4 key: a certification primary key, a signing subkey and an
    encryption subkey (pysequoia's layout).

    Args:
        user_id: ``Name <email>``.
        algorithm: RSA 3072 by default (what rkt's verifier reads); Ed25519 on request.
        passphrase: protects the secret key when given.
        validity_days: the key expires after that many days; never by default.

    Raises:
        UsageError: an empty user ID, or a validity that is not positive or is over
            :data:`MAX_VALIDITY_DAYS`.
        SigningError: pysequoia failed.
    """
    if not user_id.strip():
        raise UsageError("the key needs a user ID: --name 'Name <email>'")
    if validity_days is not None and validity_days <= 0:
        raise UsageError("--expires must be a positive number of days")
    if validity_days is not None and validity_days > MAX_VALIDITY_DAYS:
        raise UsageError(f"--expires {validity_days}: at most {MAX_VALIDITY_DAYS} days (an OpenPGP key's "
                         "lifetime is a 32-bit number of seconds)")
    try:
        tsk = pysequoia.Tsk.generate(user_id, profile=pysequoia.Profile.RFC4880,
                                     cipher_suite=_SUITES[algorithm],
                                     validity_seconds=validity_days * 86400 if validity_days else None)
    except Exception as err:
        raise SigningError(f"generating a {algorithm.value} key: {_first_line(err)}") from err
    secret = bytes(tsk)
    if passphrase is not None:
        secret = protect_secret_key(secret, passphrase)
    return GeneratedKey(fingerprint=tsk.extract_certificate().fingerprint,
                        public=str(tsk.extract_certificate()),
                        secret=pysequoia.armor(secret, pysequoia.ArmorKind.SecretKey))


def _publish(path: str, data: str, mode: int, *, replace: bool) -> None:
    """Write ``data`` to ``path`` atomically with ``mode`` (the temporary file has that
    mode from the start); without ``replace``, an existing file is an error; with it, a
    device or a FIFO (``--output /dev/stdout``) is written to, not replaced."""
    if replace:
        write_small_file(path, data.encode("ascii"), mode)
        return
    with atomic_file(path, mode, replace=False) as (_, f):
        f.write(data.encode("ascii"))


def publish_text(path: str, data: str, mode: int) -> None:
    """Write ASCII ``data`` to ``path`` atomically with ``mode`` from the start (an
    existing file is replaced).

    Raises:
        SigningError: the file cannot be written.
    """
    try:
        _publish(path, data, mode, replace=True)
    except OSError as err:
        raise SigningError(f"writing {path}: {err.strerror or err}") from err


_KEY_EXISTS = "exists already: not replacing a key (give another --output prefix, or move it away first)"


def write_key_pair(prefix: str, key: GeneratedKey) -> tuple[str, str]:
    """Write ``PREFIX.pub.asc`` (mode 0644) and ``PREFIX.sec.asc`` (mode 0600), each
    atomically, both or neither (interrupted between the two, the secret one is removed);
    existing files are never replaced.

    Returns:
        the public and secret key paths.

    Raises:
        SigningError: a file exists already or cannot be written.
    """
    public, secret = prefix + ".pub.asc", prefix + ".sec.asc"
    for path in (public, secret):
        if os.path.lexists(path):
            raise SigningError(f"{path} {_KEY_EXISTS}")
    try:
        _publish(secret, key.secret, 0o600, replace=False)
        try:
            _publish(public, key.public, 0o644, replace=False)
        except BaseException:  # Ctrl-C, a full disk: never a secret key alone, which a rerun would refuse to replace
            with contextlib.suppress(OSError):
                os.unlink(secret)
            raise
    except FileExistsError as err:
        raise SigningError(f"{err.filename} {_KEY_EXISTS}") from err
    except OSError as err:
        raise SigningError(f"writing the key {prefix}.*.asc: {err.strerror or err}") from err
    return public, secret


# --------------------------------------------------------------------------- keyring dir


def default_keys_dir() -> str:
    """Our own keyring of signing keys: ``$XDG_CONFIG_HOME/docker2aci/keys``, else
    ``~/.config/docker2aci/keys``."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "docker2aci", "keys")


def import_key(path: str, keys_dir: str) -> list[tuple[KeyInfo, str]]:
    """Copy the key(s) of a file into the keyring directory: a secret key as
    ``<fingerprint>.sec.asc`` (mode 0600, directory 0700), public keys as
    ``<fingerprint>.pub.asc``; an earlier copy is replaced.

    Returns:
        (what was imported, where) for each key.

    Raises:
        SigningError: the file holds no key, or the keyring cannot be written.
    """
    data = read_key_file(path)
    info = key_info(data, path)
    try:
        os.makedirs(keys_dir, mode=0o700, exist_ok=True)
        if info.secret:
            armored = data.decode("ascii") if data.lstrip().startswith(b"-----BEGIN PGP") else \
                pysequoia.armor(data, pysequoia.ArmorKind.SecretKey)
            target = os.path.join(keys_dir, f"{info.fingerprint}.sec.asc")
            _publish(target, armored, 0o600, replace=True)
            return [(info, target)]
        done = []
        for cert in pysequoia.Cert.split_bytes(data):
            target = os.path.join(keys_dir, f"{cert.fingerprint}.pub.asc")
            _publish(target, str(cert), 0o644, replace=True)
            done.append((key_info(bytes(cert), path), target))
        return done
    except (OSError, UnicodeDecodeError) as err:
        raise SigningError(f"importing {path} into {keys_dir}: {err}") from err


def list_keys(keys_dir: str) -> list[tuple[KeyInfo, str]]:
    """The keys of the keyring directory, by file name (a key with both files once, as
    its secret key); unreadable files are skipped with a warning. A keyring not made yet
    has none.

    Raises:
        SigningError: ``keys_dir`` is there but is not a directory (a file: it listed no
            key, with status 0).
    """
    if os.path.lexists(keys_dir) and not os.path.isdir(keys_dir):
        raise SigningError(f"the keyring {keys_dir} is not a directory")
    found = []
    for path in sorted(glob.glob(os.path.join(glob.escape(keys_dir), "*.asc"))):
        if path.endswith(".pub.asc") and os.path.exists(path[:-len(".pub.asc")] + ".sec.asc"):
            continue  # the secret key's entry covers it
        try:
            found.append((key_info(read_key_file(path), path), path))
        except SigningError as err:
            log.warning("%s", err)
    return found


_KEY_ID_SPEC = re.compile(r"[0-9a-f]{16}|[0-9a-f]{40}|[0-9a-f]{64}")


def key_id_spec(spec: str) -> str | None:
    """``spec`` read as a fingerprint or key ID (its last 16 hex digits): lower-case hex
    without spaces or ``0x``; ``None`` when it is neither."""
    wanted = spec.replace(" ", "").lower().removeprefix("0x")
    return wanted if _KEY_ID_SPEC.fullmatch(wanted) else None


def find_key(spec: str, keys_dir: str, *, secret: bool) -> str:
    """The key file ``spec`` names: an existing path, else a fingerprint (or its last 16
    hex digits, a key ID) of a key in the keyring directory.

    Args:
        secret: only secret keys qualify.

    Raises:
        SigningError: no such file or key, or the key ID is ambiguous.
    """
    if os.path.isfile(spec):
        return spec
    wanted = key_id_spec(spec)
    if wanted is None and os.path.lexists(spec):
        raise SigningError(f"{spec}: {'a directory' if os.path.isdir(spec) else 'not a regular file'}, "
                           "not a key file")
    if wanted is None:
        raise SigningError(f"{spec}: no such key file (nor a fingerprint or key ID of {keys_dir})")
    suffixes = (".sec.asc",) if secret else (".sec.asc", ".pub.asc")
    matches = sorted({p for s in suffixes
                      for p in glob.glob(os.path.join(glob.escape(keys_dir), f"*{wanted}{s}"))})
    if not matches:  # a subkey's ID or fingerprint: what verify and gpg --list-keys name as the signer
        matches = _files_with_subkey(keys_dir, wanted, suffixes)
    if not matches:
        kind = "secret key" if secret else "key"
        raise SigningError(f"no {kind} {spec} in {keys_dir} (docker2aci keys list shows them)")
    fingerprints = {os.path.basename(m).split(".", 1)[0] for m in matches}
    if len(fingerprints) > 1:
        raise SigningError(f"key ID {spec} is ambiguous in {keys_dir}: give the whole fingerprint")
    return matches[0]


def _files_with_subkey(keys_dir: str, wanted: str, suffixes: tuple[str, ...]) -> list[str]:
    """The key files of the keyring ``keys_dir`` (names ending in ``suffixes``) holding a
    subkey whose fingerprint ends with ``wanted`` (lower-case hex: a fingerprint or key
    ID); files that cannot be read as keys are passed over."""
    found = []
    for path in sorted(p for s in suffixes for p in glob.glob(os.path.join(glob.escape(keys_dir), f"*{s}"))):
        try:
            certs = pysequoia.Cert.split_bytes(read_key_file(path))
            parts = [part for cert in certs for part in key_parts(cert)]
        except Exception:  # noqa: BLE001 (pysequoia raises plain Exceptions): not a key of ours to name
            continue
        if any(not part.primary and part.fingerprint.endswith(wanted) for part in parts):
            found.append(path)
    return found


def export_key(spec: str, keys_dir: str, *, secret: bool = False) -> str:
    """The ASCII-armored public key (or, with ``secret``, the secret key file as stored)
    of a key file or keyring key.

    Raises:
        SigningError: no such key, or ``secret`` for a key without secret material.
    """
    path = find_key(spec, keys_dir, secret=secret)
    data = read_key_file(path)
    if secret:
        if not key_info(data, path).secret:
            raise SigningError(f"{path} holds no secret key")
        return data.decode("ascii") if data.lstrip().startswith(b"-----BEGIN PGP") else \
            pysequoia.armor(data, pysequoia.ArmorKind.SecretKey)
    certs = pysequoia.Cert.split_bytes(data)
    if not certs:
        raise SigningError(f"reading {path}: no OpenPGP key in it")
    return "".join(str(c) for c in certs)


# --------------------------------------------------------------------------- signers


class Signer(Protocol):
    """Makes ASCII-armored detached OpenPGP signatures of files.

    Implementations load and unlock their key when they are built (the "supports
    signing" check) and stream the file when signing.
    """

    description: str
    """Names the key (file or gpg key ID), never a secret."""

    def sign_file(self, path: str, output: str) -> None:
        """Write the armored detached signature of ``path`` to ``output`` (created or
        truncated).

        Raises:
            SigningError: the signature cannot be made.
        """

    def public_key(self) -> str:
        """The signing key's certificate (public keys only), ASCII-armored: what a
        discovery tree publishes as ``pubkeys.gpg``.

        Raises:
            SigningError: it cannot be exported.
        """


class SequoiaSigner:
    """Signs with a secret key file through pysequoia (``sign_file`` streams the input).

    Args:
        key_file: an armored or binary OpenPGP secret key (``keys generate``'s
            ``PREFIX.sec.asc``, ``gpg --export-secret-keys``).
        passphrase: unlocks a protected key.

    Raises:
        SigningError: the file holds no secret key; the key is protected and no
            passphrase is given, or the passphrase is wrong; the key cannot sign (expired,
            revoked, no signing-capable key).
    """

    def __init__(self, key_file: str, passphrase: str | None = None) -> None:
        self.description = f"key file {key_file}"
        data = read_key_file(key_file)
        packets = _packets(data, f"the key file {key_file}")
        secrets = _secret_packets(packets)
        if any(_is_stub(p) for p in secrets):  # gpg --export-secret-subkeys: the primary key is offline
            secrets = [p for p in secrets if not _is_stub(p)]
            data = _without_stubs(packets)
        if not secrets:
            raise SigningError(f"{key_file} holds no secret key: a public key cannot sign "
                               "(give the .sec.asc file)")
        protected = any(_is_protected(p) for p in secrets)
        if protected and passphrase is None:
            raise SigningError(f"the key in {key_file} is protected by a passphrase: give it with "
                               "--sign-passphrase-file FILE (or --passphrase-file for 'sign')")
        try:
            tsk = pysequoia.Tsk.from_bytes(data)
        except Exception as err:
            raise SigningError(f"reading the key file {key_file}: {_first_line(err)}") from err
        self._certificate = tsk.extract_certificate()
        self.fingerprint = self._certificate.fingerprint
        try:
            self._signer = tsk.signer(passphrase if protected else None)
        except Exception as err:
            cause = _first_line(err)
            if protected:
                raise SigningError(f"unlocking the key in {key_file}: wrong passphrase") from None
            raise SigningError(f"the key in {key_file} cannot sign: {cause} "
                               "(expired or revoked, or it has no signing key)") from err

    def sign_file(self, path: str, output: str) -> None:
        try:
            pysequoia.sign_file(self._signer, path, output, mode=pysequoia.SignatureMode.DETACHED, armor=True)
        except Exception as err:
            raise SigningError(f"signing {path} with the {self.description}: {_first_line(err)}") from err

    def public_key(self) -> str:
        return str(self._certificate)


class GpgSigner:
    """Signs with the user's gpg keyring: ``gpg --batch --local-user ID --armor
    --detach-sign`` (gpg streams the file).

    Args:
        key_id: anything gpg's ``--local-user`` accepts (fingerprint, key ID, email).
        home: the gpg home directory; default ``$GNUPGHOME``, else gpg's (``~/.gnupg``).
        passphrase_file: when given, passed to gpg with ``--pinentry-mode loopback``;
            else gpg-agent asks, as gpg does.

    Raises:
        SigningError: gpg is not installed, or has no usable secret signing key ``key_id``.
    """

    def __init__(self, key_id: str, home: str | None = None, passphrase_file: str | None = None) -> None:
        self.key_id = key_id
        self.home = home
        self.passphrase_file = passphrase_file
        self.description = f"gpg key {key_id}" + (f" (home {home})" if home else "")
        gpg = shutil.which("gpg")
        if gpg is None:
            raise SigningError("signing with --gpg-key needs gpg, which is not installed")
        self.gpg = gpg
        result = self._run(["--with-colons", "--list-secret-keys", "--", key_id])
        if result.returncode != 0:
            raise SigningError(f"gpg has no secret key {key_id!r}"
                               f"{' in ' + home if home else ''}: {_gpg_error(result.stderr)}")
        capabilities = [line.split(":")[11] for line in result.stdout.splitlines()
                        if line.startswith("sec:") and len(line.split(":")) > 11]
        if not any("S" in c for c in capabilities):
            raise SigningError(f"gpg key {key_id!r} cannot sign (expired, revoked, or no signing subkey)")

    def _run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        argv = [self.gpg, "--batch", "--no-tty"]
        if self.home:
            argv += ["--homedir", self.home]
        try:
            return subprocess.run(argv + args, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                  check=False)
        except OSError as err:
            raise SigningError(f"running gpg: {err}") from err

    def sign_file(self, path: str, output: str) -> None:
        """Sign ``path`` into ``output``, as binary data with SHA-512 whatever gpg.conf says
        (``--no-textmode``, ``--digest-algo``: its ``textmode`` or digest preferences would
        make a signature verify refuses).

        Raises:
            SigningError: gpg failed, or made a signature :class:`SequoiaVerifier` refuses
                whatever the file (a weak hash chosen by gpg.conf's ``digest-algo`` or
                ``personal-digest-preferences``).
        """
        args = ["--yes", "--local-user", self.key_id, "--armor", "--no-textmode", "--digest-algo", "SHA512",
                "--detach-sign", "--output", output]
        if self.passphrase_file:
            args = ["--pinentry-mode", "loopback", "--passphrase-file", self.passphrase_file] + args
        result = self._run(args + ["--", path])
        if result.returncode != 0:
            raise SigningError(f"signing {path} with the {self.description}: {_gpg_error(result.stderr)}")
        try:
            with open(output, "rb") as f:
                _check_signature_kind(_check_one_signature(f.read(MAX_SIGNATURE_BYTES)), self.key_id)
        except SignatureRejected as err:
            raise SigningError(f"signing {path} with the {self.description}: gpg made a signature that verify "
                               f"refuses ({err.detail.removeprefix('BAD signature: ')}); check gpg.conf "
                               "(digest-algo, personal-digest-preferences)") from None

    def public_key(self) -> str:
        result = self._run(["--armor", "--export", "--", self.key_id])
        if result.returncode != 0 or "BEGIN PGP PUBLIC KEY BLOCK" not in result.stdout:
            raise SigningError(f"exporting the public key of the {self.description}: {_gpg_error(result.stderr)}")
        return result.stdout


def _gpg_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return "; ".join(lines[-3:]) or "gpg failed"


def open_signer(*, key: str | None = None, passphrase_file: str | None = None, gpg_key: str | None = None,
                keys_dir: str | None = None, gpg_home: str | None = None) -> Signer | None:
    """The signer the options ask for (``None`` for none), loaded and unlocked.

    Args:
        key: a secret key file, or the fingerprint or key ID of a secret key in the
            keyring directory (``keys_dir``, default :func:`default_keys_dir`).
        passphrase_file: the key's passphrase, first line of the file.
        gpg_key: sign with this key of the gpg keyring instead.
        gpg_home: gpg's home directory (default ``$GNUPGHOME`` or gpg's).

    Raises:
        UsageError: both ``key`` and ``gpg_key``, or a passphrase file without a key.
        SigningError: the key cannot be used (see :class:`SequoiaSigner`, :class:`GpgSigner`).
    """
    if key and gpg_key:
        raise UsageError("--sign and --gpg-key exclude each other")
    if passphrase_file and not (key or gpg_key):
        raise UsageError("a passphrase file needs a key to sign with (--sign or --gpg-key)")
    if gpg_key:
        if passphrase_file:
            read_passphrase_file(passphrase_file)  # fail early on a missing or empty file
        return GpgSigner(gpg_key, gpg_home, passphrase_file)
    if key:
        path = find_key(key, keys_dir or default_keys_dir(), secret=True)
        passphrase = read_passphrase_file(passphrase_file) if passphrase_file else None
        return SequoiaSigner(path, passphrase)
    return None


def sign_file(path: str, signer: Signer) -> str:
    """Sign ``path`` as it is on disk and save the armored detached signature as
    ``<path>.asc`` atomically (mode 0644); an older signature is replaced.

    Returns:
        the signature's path.

    Raises:
        SigningError: the signature cannot be made or written.
    """
    target = signature_path(path)
    try:
        with atomic_file(target, 0o644) as (tmp, _):
            signer.sign_file(os.fspath(path), tmp)
            with open(tmp, "rb") as f:  # the signer wrote through the path
                if not f.read(len(_ARMOR_SIGNATURE) + 64).lstrip().startswith(_ARMOR_SIGNATURE):
                    raise SigningError(f"signing {path}: the {signer.description} wrote no armored signature")
                os.fsync(f.fileno())
    except OSError as err:
        raise SigningError(f"writing the signature {target}: {err.strerror or err}") from err
    log.debug("signed %s with the %s", path, signer.description)
    return target


# --------------------------------------------------------------------------- verifiers


@dataclass(frozen=True)
class Verified:
    """A signature that was accepted.

    Attributes:
        fingerprint: the signer's certificate (primary key) fingerprint.
        signing_key: the fingerprint of the key (primary or subkey) that signed.
        created: when the signature says it was made.
    """

    fingerprint: str
    signing_key: str
    created: datetime.datetime | None

    @property
    def key_id(self) -> str:
        """The signing key ID, 16 upper-case hex digits."""
        return _key_id(self.signing_key)


class Verifier(Protocol):
    """Checks a detached signature of a file against given certificates."""

    def verify(self, path: str, untrusted_signature: bytes, certs: Sequence[pysequoia.Cert], *,
               now: datetime.datetime | None = None) -> Verified:
        """Return who signed ``path``.

        Raises:
            SignatureRejected: with one of the documented reasons.
        """


class SequoiaVerifier:
    """pysequoia's detached verification (Sequoia's standard policy at the signature's
    creation time), plus this module's policy at verification time: expired or revoked
    keys are refused with their own reasons, before the cryptographic check.

    ``pysequoia.verify(file=...)`` maps the file (it appears as file-backed resident
    memory, not heap); it is not read into Python.
    """

    def verify(self, path: str, untrusted_signature: bytes, certs: Sequence[pysequoia.Cert], *,
               now: datetime.datetime | None = None) -> Verified:
        now = now or datetime.datetime.now(datetime.UTC)
        untrusted_packet = _check_one_signature(untrusted_signature)
        _check_signature_version(untrusted_packet)
        try:
            untrusted_sig = pysequoia.Sig.from_bytes(untrusted_signature)
        except Exception as err:
            raise SignatureRejected("bad-signature", None,
                                    f"BAD signature: not an OpenPGP signature ({_first_line(err)})") from err
        issuer_fpr = (untrusted_sig.issuer_fingerprint or "").lower() or None
        issuer_id = (untrusted_sig.issuer_key_id or "").lower() or None
        key_id = _key_id(issuer_fpr) if issuer_fpr else (issuer_id.upper() if issuer_id else None)
        if key_id is None:
            raise SignatureRejected("bad-signature", None, "BAD signature: it names no issuer key")
        match = _find_signing_key(certs, issuer_fpr, issuer_id)
        if match is None:
            raise SignatureRejected("untrusted-key", key_id, "signed by a key that is not trusted")
        cert, part = match
        if part.revoked or cert.is_revoked:
            which = "certificate" if cert.is_revoked else "signing subkey"
            raise SignatureRejected("revoked-key", key_id,
                                    f"signed by a revoked key: the {which} of {cert.fingerprint} is revoked")
        expiries = [(e, w) for e, w in ((cert.expiration, "certificate"), (part.expires, "signing subkey"))
                    if e is not None and e <= now]
        if expiries:
            when, which = min(expiries, key=lambda x: x[0])
            made = f", signature made {_iso(untrusted_sig.created)}" if untrusted_sig.created else ""
            raise SignatureRejected("expired-key", key_id,
                                    f"signed by an expired key: the {which} of {cert.fingerprint} expired "
                                    f"{_iso(when)}{made} (policy: keys expired at verification time "
                                    "are refused)")
        _check_signature_kind(untrusted_packet, key_id)
        try:
            result = pysequoia.verify(file=path, store=lambda _ids: [cert], signature=untrusted_sig)
        except Exception as err:  # noqa: BLE001 (pysequoia raises plain RuntimeError; any failure refuses)
            log.debug("pysequoia refused the signature of %s: %s", path, _first_line(err))
            raise SignatureRejected("bad-signature", key_id,
                                    _why_refused(untrusted_packet, cert, part)) from None
        valid = result.valid_sigs
        if not valid:
            raise SignatureRejected("bad-signature", key_id, _why_refused(untrusted_packet, cert, part))
        signer = valid[0].signing_key.lower()
        # The policy above looked at the key the issuer field names; the key that really
        # signed must be that key (a signature may list other issuers first).
        if issuer_fpr is not None and signer != issuer_fpr or issuer_fpr is None and not signer.endswith(
                issuer_id or ""):
            raise SignatureRejected("bad-signature", _key_id(signer),
                                    f"BAD signature: it names key {key_id} but was made by {_key_id(signer)}")
        return Verified(fingerprint=valid[0].certificate.lower(), signing_key=signer,
                        created=untrusted_sig.created)


def _check_one_signature(untrusted: bytes) -> pysequoia.packet.Packet:
    """Refuse a signature file that is not exactly one signature packet (in one armored
    block, or binary). ``pysequoia.Sig.from_bytes`` reads the first signature and ignores
    whatever follows, where ``gpg --verify`` checks every signature of the file (a bad
    second one makes it say "BAD signature") and refuses trailing binary junk.

    Returns:
        the signature packet (untrusted: its fields only explain a refusal).

    Raises:
        SignatureRejected: ``bad-signature``.
    """
    if untrusted.count(b"-----BEGIN PGP") > 1:
        raise SignatureRejected("bad-signature", None,
                                "BAD signature: the file holds more than one armored block "
                                "(one detached signature expected)")
    try:
        packets = list(PacketPile.from_bytes(untrusted))
    except Exception as err:  # noqa: BLE001 (pysequoia raises plain RuntimeError/ValueError)
        raise SignatureRejected("bad-signature", None,
                                f"BAD signature: not an OpenPGP signature ({_first_line(err)})") from None
    if len(packets) != 1 or packets[0].tag != Tag.Signature:
        kinds = ", ".join(repr(p.tag).rsplit(".", 1)[-1].split(":")[0] for p in packets) or "nothing"
        raise SignatureRejected("bad-signature", None,
                                f"BAD signature: the file holds {len(packets)} OpenPGP packets ({kinds}); "
                                "one detached signature expected")
    return packets[0]


def _check_signature_version(untrusted_packet: pysequoia.packet.Packet) -> None:
    """Refuse a signature packet that is not version 4, by its version: Sequoia reads a
    version 3 signature (RFC 4880 5.2.2; gpg 2.2 still verifies them) as an unknown
    packet or refuses it without saying why.

    Raises:
        SignatureRejected: ``bad-signature``.
    """
    body = untrusted_packet.body
    if not body:
        raise SignatureRejected("bad-signature", None, "BAD signature: an empty signature packet")
    version = body[0]
    if version == 4:
        return
    key_id = body[7:15].hex().upper() if version in (2, 3) and len(body) >= 15 else None
    raise SignatureRejected("bad-signature", key_id,
                            f"BAD signature: a version {version} signature; version {version} signatures are not "
                            "supported, only version 4 (re-sign the ACI with gpg 2 or 'docker2aci sign')")


_WEAK_HASHES = (("MD5", HashAlgorithm.MD5), ("SHA-1", HashAlgorithm.SHA1), ("RIPEMD-160", HashAlgorithm.RipeMD))
"""Hash algorithms whose signatures are refused whenever they claim to be made (Sequoia's
standard policy refuses them for data signatures made since 2013; a creation time is
chosen by the signer, so the date cannot excuse them)."""


def _check_signature_kind(untrusted_packet: pysequoia.packet.Packet, key_id: str) -> None:
    """Refuse, before any hashing, a signature that could not be accepted whatever the
    file: not a signature of a file's bytes (type 0x00), or made with a weak hash.

    A text-mode signature (type 0x01, ``gpg --textmode``) signs the file with its line
    endings canonicalized, not its bytes: the same signature then covers files that differ
    in their carriage returns. And the implementations canonicalize binary data (an ACI)
    differently: gpg hashes CR CR LF as CR LF, Go's ``x/crypto/openpgp`` (rkt's
    ``CheckDetachedSignature``, ``NewCanonicalTextHash``) as CR CR CR LF, and Sequoia
    refuses gpg's text signatures of data holding CR CR LF or a lone CR (tested), so gpg
    accepts them and we could not check them as gpg does.

    Raises:
        SignatureRejected: ``bad-signature``.
    """
    kind = untrusted_packet.signature_type
    if kind == SignatureType.Text:
        raise SignatureRejected("bad-signature", key_id,
                                "BAD signature: a text-mode signature (type 0x01); sign the ACI as binary "
                                "(gpg --detach-sign without --textmode)")
    if kind != SignatureType.Binary:
        name = repr(kind).rsplit(".", 1)[-1]
        raise SignatureRejected("bad-signature", key_id,
                                f"BAD signature: a {name} signature, not a signature of a file "
                                "(binary, type 0x00)")
    algorithm = untrusted_packet.hash_algorithm
    for name, weak in _WEAK_HASHES:
        if algorithm == weak:
            raise SignatureRejected("bad-signature", key_id,
                                    f"BAD signature: made with {name}, which is refused "
                                    "(MD5, SHA-1 and RIPEMD-160 are too weak)")


def _why_refused(untrusted_packet: pysequoia.packet.Packet, cert: pysequoia.Cert, part: KeyPart) -> str:
    """Why Sequoia refused a signature of the right kind by a known, unexpired, unrevoked
    key (pysequoia only says "no valid signatures found"): what its policy checks at the
    signature's creation time, read from the signature packet and the key's
    self-signatures; else the file does not match its signature. Only explains a refusal:
    nothing here accepts anything."""
    made = untrusted_packet.signature_created
    if made is None:
        return "BAD signature: it has no creation time"
    if made > datetime.datetime.now(datetime.UTC) + _CLOCK_SKEW_TOLERANCE:  # pysequoia's clock, not ``now``
        return f"BAD signature: dated {_iso(made)}, in the future (more than 30 minutes ahead of this clock)"
    primary = next((p for p in key_parts(cert) if p.primary), part)
    for key in (part, primary) if not part.primary else (part,):
        which = f"the signing key {key.key_id}" if key is part else f"its primary key {key.key_id}"
        if key.created is not None and made < key.created:
            return f"BAD signature: made {_iso(made)}, before {which} was created {_iso(key.created)}"
        binding = key.binding_at(made)
        if binding is None:
            first = key.bindings[0].created if key.bindings else None
            return (f"BAD signature: made {_iso(made)}, before the oldest self-signature of {which} "
                    f"({_iso(first)}), so the key was not valid then (gpg replaces a key's self-signature "
                    "when its expiry or usage changes: re-sign the ACI)")
        if binding.expires is not None and binding.expires <= made:
            return f"BAD signature: made {_iso(made)} after {which} expired {_iso(binding.expires)}"
    binding = part.binding_at(made)
    if binding is not None and not binding.can_sign:
        return f"BAD signature: key {part.key_id} may not sign (no signing flag)"
    return "BAD signature: the file does not match its signature"


def _iso(when: datetime.datetime | None) -> str:
    return when.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if when else "?"


def _find_signing_key(certs: Sequence[pysequoia.Cert], fpr: str | None,
                      key_id: str | None) -> tuple[pysequoia.Cert, KeyPart] | None:
    for cert in certs:
        try:
            parts = key_parts(cert)
        except SigningError:  # unusable (no valid self-signature): it cannot vouch for anything
            continue
        for part in parts:
            if (fpr and part.fingerprint == fpr) or (not fpr and key_id and part.fingerprint.endswith(key_id)):
                return cert, part
    return None


def _read_signature(path: str) -> bytes | None:
    """The untrusted signature bytes, or ``None`` when there is no signature file."""
    try:
        with open(path, "rb") as f:
            return read_at_most(f, MAX_SIGNATURE_BYTES, f"the signature {path}")
    except FileNotFoundError:
        return None
    except OSError as err:
        raise SigningError(f"reading the signature {path}: {err.strerror or err}") from err


def verify_file(path: str, signature: str, certs: Sequence[pysequoia.Cert], *,
                now: datetime.datetime | None = None, verifier: Verifier | None = None) -> Verified:
    """Check the detached signature ``signature`` of the file ``path`` against ``certs``
    (no trust store: every given certificate is trusted).

    Returns:
        who signed.

    Raises:
        VerificationError: refused (``reason`` says why; ``image`` is ``path``).
        SigningError: the signature file cannot be read.
    """
    untrusted = _read_signature(signature)
    if untrusted is None:
        raise VerificationError(path, None, None, "unsigned", f"not signed: there is no {signature}")
    try:
        return (verifier or SequoiaVerifier()).verify(path, untrusted, certs, now=now)
    except SignatureRejected as err:
        raise VerificationError(path, err.key_id, None, err.reason, err.detail) from None


@dataclass(frozen=True)
class VerifiedImage:
    """An ACI whose signature was accepted.

    Attributes:
        name: the image's AC name (from its manifest).
        signer: who signed.
        trusted_as: the trusted key file that allowed it (root or a prefix).
    """

    name: str
    signer: Verified
    trusted_as: TrustedKey


UNVERIFIED_NAME_BUDGET = 1024 * 1024
"""Before its signature is checked, an ACI is decompressed at most this far (bytes of tar)
to find the name its messages show; the name is never used for trust until then."""


def read_aci_name(path: str, budget: int | None = None) -> str | None:
    """The ``name`` of an ACI's manifest (a gzip, bzip2, xz or plain tar whose ``manifest``
    entry is JSON; appc ``spec/aci.md``). The archive is streamed up to that entry
    (:func:`docker2aci.acifile.open_uncompressed`).

    Args:
        budget: stop (and return ``None``) rather than decompress past this many bytes of
            tar; for files whose signature has not been checked yet.

    Raises:
        SigningError: the file is not an ACI (or is zstd), or its manifest has no valid name.
    """
    found: str | None = None
    try:
        with open_uncompressed(path) as uncompressed, open_tar(uncompressed) as archive:
            for member in archive:
                if budget is not None and member.offset_data + member.size > budget:
                    return None
                if not is_manifest_name(member.name):
                    continue
                if found is not None or not member.isreg():  # the runner must not read another one
                    raise SigningError(f"reading {path}: more than one manifest entry, or not a file")
                stream = archive.extractfile(member)
                assert stream is not None
                doc = untrustedjson.loads(read_at_most(stream, MAX_MANIFEST_BYTES,  # type: ignore[arg-type]
                                                       f"the manifest of {path}"))
                name = doc.get("name") if isinstance(doc, dict) else None
                if not isinstance(name, str) or not is_ac_identifier(name):
                    raise SigningError(f"reading {path}: its manifest has no valid AC name ({name!r})")
                found = name
                if budget is not None:
                    return found  # an unverified file: only for messages
        if found is not None:
            return found
    except READ_ERRORS + (ValueError, RecursionError, InvalidACI) as err:
        raise SigningError(f"reading the manifest of {path}: {err}") from err
    except Docker2ACIError as err:
        raise SigningError(str(err)) from err
    raise SigningError(f"reading {path}: no manifest entry: not an ACI")


def verify_aci(path: str, trust_dir: str, *, signature: str | None = None, display: str | None = None,
               now: datetime.datetime | None = None, verifier: Verifier | None = None) -> VerifiedImage:
    """Check an ACI's signature against the keys trusted for its name, as rkt does.

    The signature is checked over the file's bytes before anything is decompressed
    (appc/spec#201, public-cases.md #51), against every sound key of the store; only then
    is the name read from the manifest and the signer required to be trusted for it: a
    root key, or a key of the name or of a parent prefix (:meth:`TrustStore.keys_for`).
    See the module docstring for the policy on expired and revoked keys.

    Args:
        path: the ACI file.
        trust_dir: the trust store (:mod:`.trust`).
        signature: the detached signature; default ``<path>.asc``.
        display: how to name the file in messages (default ``path``).
        now: the verification time (default: now).

    Raises:
        VerificationError: refused: ``unsigned``, ``bad-signature``, ``untrusted-key``
            (no trusted key of that ID), ``prefix-mismatch`` (trusted, but only for other
            prefixes), ``expired-key``, ``revoked-key``. The message names the image,
            the signing key ID and the prefix looked up.
        TrustStoreError: a key file the image's name looks up is not named by its
            fingerprint (public-cases.md #54).
        SigningError: the ACI or the signature cannot be read.
    """
    shown = display or path
    if not os.path.isfile(path):  # a mistyped name: not "not signed: there is no signature NAME.asc"
        raise SigningError(f"{shown}: {'not a regular file' if os.path.lexists(path) else 'no such file'}")
    signature = signature or signature_path(path)
    store = TrustStore(trust_dir)

    def refuse(reason: str, key_id: str | None, detail: str) -> VerificationError:
        try:
            untrusted_name = read_aci_name(path, UNVERIFIED_NAME_BUDGET)  # for the message only
        except SigningError:  # a damaged file: the refusal is the news, not why its name is unreadable
            untrusted_name = None
        if untrusted_name is None:
            return VerificationError(f"(name not read) ({shown})", key_id, None, reason, detail)
        store.keys_for(untrusted_name)  # a store problem on this name's path is the real error
        return VerificationError(f'"{untrusted_name}" ({shown})', key_id, untrusted_name, reason, detail)

    untrusted = _read_signature(signature)
    if untrusted is None:
        raise refuse("unsigned", None, f"not signed: there is no signature {signature}")
    everywhere = [k for k in store.entries() if k.cert is not None]
    # One certificate per key, merged from every copy of the store: a revocation (or a
    # newer self-signature) in any copy counts, whatever the directories' order.
    merged: dict[str, pysequoia.Cert] = {}
    for k in everywhere:
        assert k.cert is not None
        merged[k.fingerprint] = merged[k.fingerprint].merge(k.cert) if k.fingerprint in merged else k.cert
    certs = list(merged.values())
    try:
        verified = (verifier or SequoiaVerifier()).verify(path, untrusted, certs, now=now)
    except SignatureRejected as err:
        detail = err.detail
        if err.reason == "untrusted-key":
            detail = (f"signed by a key that is not trusted in {trust_dir} (neither for its name or a "
                      "parent of it, nor as a root key): 'docker2aci trust add --prefix NAME KEYFILE' "
                      "trusts it")
        raise refuse(err.reason, err.key_id, detail) from None
    name = read_aci_name(path)  # the bytes are now signed by a key of the store
    assert name is not None
    for key in store.keys_for(name):
        if key.fingerprint == verified.fingerprint:
            assert key.prefix is None or prefix_matches(key.prefix, name)
            return VerifiedImage(name=name, signer=verified, trusted_as=key)
    places = sorted({k.scope for k in everywhere if k.fingerprint == verified.fingerprint})
    raise VerificationError(f'"{name}" ({shown})', verified.key_id, name, "prefix-mismatch",
                            f"signed by a key trusted only for {', '.join(places)}, not for this image "
                            f"(neither for its name or a parent of it, nor as a root key, in {trust_dir})")


__all__ = [
    "DEFAULT_ALGORITHM",
    "GeneratedKey",
    "GpgSigner",
    "KeyAlgorithm",
    "KeyInfo",
    "SequoiaSigner",
    "SequoiaVerifier",
    "SignatureRejected",
    "Signer",
    "Verified",
    "VerifiedImage",
    "Verifier",
    "default_keys_dir",
    "default_trust_dir",
    "export_key",
    "find_key",
    "format_fingerprint",
    "generate_key",
    "import_key",
    "key_info",
    "list_keys",
    "open_signer",
    "protect_secret_key",
    "publish_text",
    "read_aci_name",
    "read_certs",
    "read_passphrase_file",
    "sign_file",
    "signature_path",
    "verify_aci",
    "verify_file",
    "write_key_pair",
]
