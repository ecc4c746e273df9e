"""The trust store: which OpenPGP keys may sign which images, laid out exactly like rkt's.

Layout under the trust directory (``--trust-dir``; default ``/etc/docker2aci/trust``
for root, else ``$XDG_CONFIG_HOME/docker2aci/trust`` or ``~/.config/docker2aci/trust``)::

    trustedkeys/root.d/<fingerprint>                    trusted for every image
    trustedkeys/prefix.d/<prefix>/<fingerprint>         trusted for <prefix> and below

``<fingerprint>`` is the key's lower-case hex fingerprint (40 digits for v4 keys) and the
file holds the ASCII-armored public key. ``<prefix>`` is an AC identifier used as a
relative path, exactly as rkt does (``prefix.d/coreos.com/etcd/8b86de38...``): rkt's
``pkg/keystore/keystore.go`` joins ``types.NewACIdentifier(prefix).String()`` onto
``prefix.d`` without escaping, and the AC identifier grammar (lower-case ``[a-z0-9]``
runs separated by one of ``-._~/``) admits no ``..``, no empty component and no
absolute path, so the prefix is safe as a path. A directory written by ``rkt trust`` can
be used as ``--trust-dir`` and the reverse (rkt's ``/etc/rkt`` holds ``trustedkeys/``).

Reading follows rkt: the keys for an image named ``a/b/c`` are those of ``root.d`` and
of ``prefix.d/a``, ``prefix.d/a/b`` and ``prefix.d/a/b/c``; a key file whose name is not
the fingerprint of the key inside is an error ("fingerprint mismatch", public-cases.md
#54); an empty file masks a key of that fingerprint read from an earlier directory
(rkt's masking of system keys). One difference: rkt matches prefix directories by
string prefix, so a key for ``example.com/ap`` would also sign ``example.com/app``; here
a prefix matches whole name components only (``example.com/app`` signs
``example.com/app`` and ``example.com/app/sub``, never ``example.com/apple``).

Files are written atomically (a temporary file renamed into place), mode 0644 in
directories 0755, like rkt.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import pysequoia

from converters.names import is_ac_identifier

from .atomic import atomic_file
from .errors import SigningError, TrustStoreError, UsageError

TRUSTED_KEYS = "trustedkeys"
ROOT_DIR = "root.d"
PREFIX_DIR = "prefix.d"
MAX_KEY_FILE_BYTES = 4 * 1024 * 1024
"""A trusted key file is read whole; larger ones are refused."""
_FINGERPRINT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def default_trust_dir() -> str:
    """``/etc/docker2aci/trust`` for root, else ``$XDG_CONFIG_HOME/docker2aci/trust``
    (``~/.config/docker2aci/trust`` when unset)."""
    if os.geteuid() == 0:
        return "/etc/docker2aci/trust"
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "docker2aci", "trust")


def check_prefix(prefix: str) -> str:
    """``prefix`` if it is an AC identifier (what rkt accepts for ``--prefix``).

    Raises:
        UsageError: it is not (upper case, ``..``, a leading ``/``, an empty component ...).
    """
    if not is_ac_identifier(prefix):
        raise UsageError(f"prefix {prefix!r} is not an AC identifier (lower-case letters and digits "
                         "separated by one of - . _ ~ /)")
    return prefix


def normalise_fingerprint(value: str) -> str:
    """A fingerprint as typed (upper or lower case, spaces, ``0x``) → lower-case hex.

    Raises:
        UsageError: it is not 40 (v4) or 64 (v6) hex digits.
    """
    fpr = value.replace(" ", "").lower().removeprefix("0x")
    if not _FINGERPRINT.fullmatch(fpr):
        raise UsageError(f"{value!r} is not a key fingerprint (40 hex digits)")
    return fpr


def prefix_matches(prefix: str, name: str) -> bool:
    """Whether a key trusted for ``prefix`` may sign the image ``name`` (whole components)."""
    return name == prefix or name.startswith(prefix + "/")


def read_key_file(path: str) -> bytes:
    """A key file's bytes, at most :data:`MAX_KEY_FILE_BYTES`.

    Raises:
        SigningError: the file cannot be read or is larger than the limit.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as err:
        raise SigningError(f"reading the key file {path}: {err.strerror or err}") from err
    if len(data) > MAX_KEY_FILE_BYTES:
        raise SigningError(f"reading the key file {path}: larger than {MAX_KEY_FILE_BYTES} bytes")
    return data


def read_certs(path: str) -> list[pysequoia.Cert]:
    """The keys in a key file (armored or binary; see :func:`parse_certs`).

    Raises:
        SigningError: the file cannot be read or holds no OpenPGP key.
    """
    return parse_certs(read_key_file(path), path)


def parse_certs(data: bytes, what: str) -> list[pysequoia.Cert]:
    """The keys in ``data`` (armored or binary OpenPGP). A :class:`pysequoia.Cert` never
    writes secret key material (``str()`` and ``bytes()`` give the public key).

    Raises:
        SigningError: ``data`` holds no OpenPGP key.
    """
    try:
        certs = pysequoia.Cert.split_bytes(data)
    except Exception as err:  # pysequoia raises plain ValueError/RuntimeError
        raise SigningError(f"reading {what}: not an OpenPGP key: {_first_line(err)}") from err
    if not certs:
        raise SigningError(f"reading {what}: no OpenPGP key in it")
    return certs


def cert_problem(cert: pysequoia.Cert) -> str | None:
    """Why ``cert`` cannot be used under Sequoia's standard policy (no valid binding
    self-signature now: none, a bad one, or only SHA-1 ones), or ``None``. pysequoia
    raises from ``expiration`` and ``is_revoked`` for such a key."""
    try:
        cert.expiration  # noqa: B018 (the property raises for an unusable key)
        cert.is_revoked  # noqa: B018
    except Exception as err:  # noqa: BLE001 (pysequoia raises plain RuntimeError)
        return (f"the key {cert.fingerprint} has no valid self-signature under the standard policy "
                f"(missing, bad, or made with SHA-1): {_first_line(err)}")
    return None


def _first_line(err: BaseException) -> str:
    """pysequoia's message without the Rust backtrace it appends when RUST_BACKTRACE is set."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


@dataclass(frozen=True)
class TrustedKey:
    """One key file of the store.

    Attributes:
        fingerprint: the file's name (the key's lower-case fingerprint when it is sound).
        prefix: the prefix it is trusted for, or ``None`` for a root key.
        path: the file.
        cert: the public key, or ``None`` when the file is unsound (see ``problem``).
        problem: why the file cannot be used (fingerprint mismatch, unreadable), or ``None``.
    """

    fingerprint: str
    prefix: str | None
    path: str
    cert: pysequoia.Cert | None = field(default=None, repr=False, compare=False)
    problem: str | None = None

    @property
    def scope(self) -> str:
        """``root`` or ``prefix <prefix>``, for messages."""
        return "root" if self.prefix is None else f'prefix "{self.prefix}"'


class TrustStore:
    """An rkt-style trust store rooted at a directory (see the module docstring).

    Args:
        root: the trust directory (``trustedkeys/`` lives inside; created on first add).
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self.root_dir = os.path.join(root, TRUSTED_KEYS, ROOT_DIR)
        self.prefix_dir = os.path.join(root, TRUSTED_KEYS, PREFIX_DIR)

    def path_for(self, fingerprint: str, prefix: str | None) -> str:
        """Where a key trusted for ``prefix`` (``None``: root) lives."""
        fpr = normalise_fingerprint(fingerprint)
        if prefix is None:
            return os.path.join(self.root_dir, fpr)
        return os.path.join(self.prefix_dir, *check_prefix(prefix).split("/"), fpr)

    def add(self, cert: pysequoia.Cert, prefix: str | None) -> TrustedKey:
        """Trust ``cert`` for ``prefix`` (``None``: for every image, a root key).

        The ASCII-armored public key is written to ``path_for(fingerprint, prefix)``,
        replacing an earlier copy atomically.

        Raises:
            UsageError: ``prefix`` is not an AC identifier.
            SigningError: the key is unusable (:func:`cert_problem`), or the file cannot be
                written.
        """
        path = self.path_for(cert.fingerprint, prefix)
        problem = cert_problem(cert)
        if problem is not None:
            raise SigningError(f"not trusting {cert.fingerprint}: {problem}")
        directory = os.path.dirname(path)
        try:
            os.makedirs(directory, mode=0o755, exist_ok=True)
            with atomic_file(path, 0o644) as (_, f):
                f.write(str(cert).encode("ascii"))
        except OSError as err:
            raise SigningError(f"writing the trusted key {path}: {err.strerror or err}") from err
        return TrustedKey(cert.fingerprint, prefix, path, cert)

    def remove(self, fingerprint: str, prefix: str | None = None, *, root_only: bool = False) -> list[str]:
        """Stop trusting a key: remove its files (every prefix and root, or only
        ``prefix``, or only root with ``root_only``); empty prefix directories go too.

        Returns:
            the files removed (empty when the key was not there).

        Raises:
            UsageError: a malformed fingerprint or prefix.
            SigningError: a file cannot be removed.
        """
        fpr = normalise_fingerprint(fingerprint)
        if root_only:
            candidates = [self.path_for(fpr, None)]
        elif prefix is not None:
            candidates = [self.path_for(fpr, prefix)]
        else:
            candidates = [k.path for k in self._walk() if k.fingerprint == fpr]
        removed = []
        for path in candidates:
            try:
                os.unlink(path)
            except FileNotFoundError:
                continue
            except OSError as err:
                raise SigningError(f"removing the trusted key {path}: {err.strerror or err}") from err
            removed.append(path)
            self._prune(os.path.dirname(path))
        return removed

    def entries(self) -> list[TrustedKey]:
        """Every key file of the store, root keys first, then by prefix; unsound files are
        listed with their ``problem`` instead of raising."""
        return list(self._walk())

    def keys_for(self, name: str) -> list[TrustedKey]:
        """The keys that may sign the image ``name``: root keys and the keys of every
        prefix of it (whole components), later directories masking earlier ones by an
        empty file, as rkt does.

        Raises:
            TrustStoreError: a key file in one of those directories is not named by the
                fingerprint of the key inside, or cannot be read (public-cases.md #54).
        """
        found: dict[str, TrustedKey] = {}
        parts = name.split("/")
        places: list[tuple[str, str | None]] = [(self.root_dir, None)]
        places += [(os.path.join(self.prefix_dir, *parts[:i]), "/".join(parts[:i]))
                   for i in range(1, len(parts) + 1)]
        for directory, prefix in places:
            for entry in _files(directory):
                if entry.stat().st_size == 0:
                    found.pop(entry.name, None)  # masks a key trusted above
                    continue
                key = self._load(entry.path, entry.name, prefix)
                if key.problem is not None:
                    raise TrustStoreError(entry.path, key.problem)
                found[key.fingerprint] = key
        return list(found.values())

    def _walk(self) -> Iterator[TrustedKey]:
        for entry in _files(self.root_dir):
            yield self._load(entry.path, entry.name, None)
        for directory, dirs, files in os.walk(self.prefix_dir):
            dirs.sort()
            rel = os.path.relpath(directory, self.prefix_dir)
            if rel == ".":
                continue
            prefix = rel.replace(os.sep, "/")
            for name in sorted(files):
                if not name.startswith("."):
                    yield self._load(os.path.join(directory, name), name, prefix)

    @staticmethod
    def _load(path: str, file_name: str, prefix: str | None) -> TrustedKey:
        """Read one key file; a file not named by its key's fingerprint is unsound."""
        try:
            certs = read_certs(path)
        except SigningError as err:
            return TrustedKey(file_name, prefix, path, None, f"cannot be read ({err})")
        cert = certs[0]
        unusable = cert_problem(cert)
        if unusable is not None:
            return TrustedKey(file_name, prefix, path, None, unusable)
        if cert.fingerprint != file_name:
            return TrustedKey(file_name, prefix, path, None,
                              f"fingerprint mismatch: the file is named {file_name!r} but holds the key "
                              f"{cert.fingerprint}; a trusted key file must be named by its key's "
                              "lower-case fingerprint")
        return TrustedKey(file_name, prefix, path, cert)

    def _prune(self, directory: str) -> None:
        """Remove empty prefix directories from ``directory`` up to ``prefix.d``."""
        stop = os.path.abspath(self.prefix_dir)
        current = os.path.abspath(directory)
        while current.startswith(stop + os.sep):
            try:
                os.rmdir(current)
            except OSError:
                return
            current = os.path.dirname(current)


def _files(directory: str) -> list[os.DirEntry[str]]:
    """The regular files of ``directory`` (not our temporary ``.`` files), sorted; none
    when it does not exist."""
    try:
        with os.scandir(directory) as it:
            entries = [e for e in it if e.is_file(follow_symlinks=True) and not e.name.startswith(".")]
    except FileNotFoundError:
        return []
    except OSError as err:
        raise TrustStoreError(directory, f"cannot be listed: {err.strerror or err}") from err
    return sorted(entries, key=lambda e: e.name)

