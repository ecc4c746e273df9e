"""The secrets watch: "passwords, tokens and private keys never appear in logs, errors,
reports or --json output". Every output of the test session is searched for every test
secret; the hooks in ``conftest.py`` fail the session at its end when one is seen (see
:class:`SecretWatch` for what is scanned and what is not)."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]



SECRET_MIN_LENGTH = 8
"""Shorter values (``"p"``, ``"pw"``, ``"s3cret"``) cannot be told from ordinary text: not watched."""
SCAN_MAX_FILE_BYTES = 1 << 20
"""Files under the session directory larger than this are image data, not outputs: not scanned."""
SCAN_SKIP_SUFFIXES = (".aci", ".tar", ".gz", ".tgz", ".zst", ".xz", ".bz2", ".squashfs")
SCAN_SKIP_DIRS = frozenset({"blobs", "rootfs", "private-keys-v1.d"})
"""Content-addressed image blobs, unpacked image trees, gpg's own secret-key store."""
PRODUCT_DIRS = tuple(str(REPO_ROOT / name) + os.sep for name in ("docker2aci", "converters", "runner"))

KNOWN_TEST_SECRETS: tuple[tuple[str, str], ...] = (
    # tokenserver.TEST_PASSWORD: registry_setup.CREDS, the htpasswd and token registries.
    ("registry password", "testpass"),
    # signing_helpers.PASSPHRASE: the protected_key fixture's key and its passphrase file.
    ("signing key passphrase", "correct horse battery staple"),
    # Inline in tests/registry: wrong passwords, docker config and credential-helper secrets.
    ("wrong registry password", "wrong-password-xyz"),
    ("docker config password", "p:with:colons"),
    ("credential-helper secret", "helpersecret"),
    ("credential-helper secret", "refresh-token"),
    ("docker config identity token", "oauth-refresh"),
    ("registry password", "hunter2-secret"),
    ("registry password", "pw-not-shown"),
)
"""Secrets written literally in test modules (values of constants are also read live, see
:meth:`SecretWatch.add_live_secrets`)."""

_PRIVATE_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY( BLOCK)?-----")
_ANY_KEY_BLOCK = re.compile(rb"-----BEGIN ((?:[A-Z0-9]+ )*(?:PRIVATE|PUBLIC) KEY(?: BLOCK)?)-----.*?-----END \1-----",
                            re.DOTALL)
_PGP_PRIVATE_BLOCK = re.compile(r"-----BEGIN PGP PRIVATE KEY BLOCK-----(.*?)-----END PGP PRIVATE KEY BLOCK-----",
                                re.DOTALL)
_WHITESPACE = re.compile(rb"\s+")
_SECRET_KEY_TAGS = (5, 7)
"""OpenPGP secret-key and secret-subkey packets (RFC 9580 5.5.1)."""
_KEY_TAIL = 26
"""The last bytes of a secret-key packet body: always secret material (for Ed25519, 24 bytes of the
scalar and the checksum; for RSA, of ``u``; when protected, of the encrypted blob)."""


@dataclass(frozen=True)
class Secret:
    """One form of a test secret, searched for byte for byte.

    Attributes:
        kind: what it is (``registry password``); printed in findings, the value never is.
        needle: the bytes searched for.
        squeezed: searched in the text with all whitespace removed (key material cut into
            armor lines).
    """

    kind: str
    needle: bytes
    squeezed: bool = False


@dataclass(frozen=True)
class SecretFinding:
    """A secret seen somewhere: its kind and where, never its value."""

    kind: str
    where: str

    def __str__(self) -> str:
        return f"{self.kind} in {self.where}"


RECORDERS: list[SecretWatch] = []
"""Where subprocess and capsys outputs go: the session's watch, or one a test pushed (``capturing``)."""


class SecretWatch:
    """Test secrets, the outputs of the session, and the search of one in the other.

    What is scanned:

    * every test report: the captured stdout, stderr and log sections of each phase, and the
      failure or skip report (``longrepr``), through ``pytest_runtest_logreport``;
    * the output of every subprocess that test code ends with ``communicate()`` (also through
      ``subprocess.run``, ``check_output``): ``Popen.communicate`` is wrapped for the session;
    * every ``capsys``/``capfd`` ``readouterr()`` result (in-process CLI runs read their
      output there, so it never reaches the report sections);
    * at the end, the files under the session's base temporary directory: ``--report`` and
      ``--json`` files, registry and server logs, configs, anything a test or the program wrote.

    What is not scanned, and why:

    * subprocesses started by product code (``docker2aci/``, ``converters/``, ``runner/``): a
      credential helper's or gpg's answer is an internal pipe that holds secrets by design;
      what the program makes of it reaches an output that is scanned;
    * outputs read another way (``proc.stdout.read()``) or only kept in memory, and files
      outside the session directory (``tempfile`` dirs, gpg homes in ``/tmp``) or removed
      before the session ends;
    * files that hold secrets on purpose: key files (nothing but armored/PEM key blocks),
      files whose whole content is one secret (passphrase and password files), Docker config
      files (``config.json``/``.dockercfg`` with ``auths``/``credsStore``/``credHelpers``),
      ``docker-credential-*`` helper scripts; ``htpasswd`` files are scanned (bcrypt only);
    * image data: files over :data:`SCAN_MAX_FILE_BYTES`, archives (:data:`SCAN_SKIP_SUFFIXES`:
      ACIs, tars), and directories :data:`SCAN_SKIP_DIRS`.

    The secrets: :data:`KNOWN_TEST_SECRETS`, the live values of ``tokenserver.TEST_PASSWORD``
    and ``signing_helpers.PASSPHRASE``, every password given to ``services.write_htpasswd``,
    every token ``tokenserver`` signed (and its signature alone), whatever tests register with
    :meth:`add`, and the secret material of every OpenPGP secret key file found under the
    session directory. Each is searched raw, percent-encoded, JSON-escaped and, with a user
    name, as Basic ``base64(user:password)``; key material as base64 (each of the 3 alignments,
    whitespace ignored) and hex. Any armored or PEM ``PRIVATE KEY`` block is a finding by itself.
    A failed test's report quotes its source, so a literal secret in a failing assertion is
    reported too (the session fails anyway).
    """

    def __init__(self) -> None:
        self._secrets: dict[bytes, Secret] = {}
        self._outputs: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.base_dirs: list[Path] = []
        self.findings: list[SecretFinding] = []
        self.stats = ""

    # -- secrets ----------------------------------------------------------------------------

    def add(self, kind: str, value: str, *, user: str | None = None) -> None:
        """Watch ``value`` (raw, percent-encoded, JSON-escaped; Basic form with ``user``).

        Raises:
            ValueError: ``value`` is shorter than :data:`SECRET_MIN_LENGTH`.
        """
        if len(value) < SECRET_MIN_LENGTH:
            raise ValueError(f"a {kind} shorter than {SECRET_MIN_LENGTH} characters cannot be watched")
        forms = {value, urllib.parse.quote(value, safe=""), json.dumps(value)[1:-1]}
        if user is not None:
            forms.add(base64.b64encode(f"{user}:{value}".encode()).decode("ascii"))
        for form in forms:
            self._secrets.setdefault(form.encode(), Secret(kind, form.encode()))

    def add_token(self, token: str) -> None:
        """Watch a bearer token, and its JWT signature alone (a token cut at the front)."""
        self.add("bearer token", token)
        signature = token.rpartition(".")[2]
        if len(signature) >= 40:
            self.add("bearer token", signature)

    def add_key_material(self, armored: str) -> int:
        """Watch the secret material of every OpenPGP secret key in ``armored``; returns how many."""
        count = 0
        for body in _pgp_secret_key_bodies(armored):
            tail = body[-_KEY_TAIL:]
            if len(tail) < _KEY_TAIL:
                continue
            for shift in range(3):
                needle = base64.b64encode(tail[shift:shift + 24])
                self._secrets.setdefault(needle, Secret("private key material (base64)", needle, squeezed=True))
            for needle in (tail[-16:].hex().encode(), tail[-16:].hex().upper().encode()):
                self._secrets.setdefault(needle, Secret("private key material (hex)", needle))
            count += 1
        return count

    def add_live_secrets(self) -> None:
        """Add :data:`KNOWN_TEST_SECRETS` and the values the test helper modules hold now."""
        for kind, value in KNOWN_TEST_SECRETS:
            self.add(kind, value)
        tokens = sys.modules.get("tokenserver")
        if tokens is not None:
            self.add("registry password", tokens.TEST_PASSWORD, user=tokens.TEST_USER)
            self.add("registry identity token", tokens.TEST_REFRESH_TOKEN)
            for token in list(getattr(tokens, "ISSUED_TOKENS", ())):
                self.add_token(token)
        services = sys.modules.get("services")
        for user, password in list(getattr(services, "HTPASSWD_CREDS", ())):
            self.add("htpasswd password", password, user=user)
        helpers = sys.modules.get("signing_helpers")
        if helpers is not None:
            self.add("signing key passphrase", helpers.PASSPHRASE)

    def _is_secret(self, data: bytes) -> bool:
        return data.strip() in self._secrets

    # -- outputs ----------------------------------------------------------------------------

    def record(self, where: str, data: str | bytes | None) -> None:
        """Keep one output (``where`` names it in findings; it must hold no secret)."""
        if data:
            with self._lock:
                self._outputs.append((where, data.encode("utf-8", "replace") if isinstance(data, str) else data))

    def record_report(self, report: pytest.TestReport) -> None:
        """Keep a test report's captured sections (of its own phase) and the error messages of
        its failure/skip report. The traceback's code and frame arguments are left out: they
        show the test's own inputs (``creds=...`` passed to a helper), not what docker2aci said."""
        for title, content in report.sections:
            if title.endswith((" setup", " call", " teardown")) and not title.endswith(f" {report.when}"):
                continue  # later phases repeat the sections of earlier ones
            self.record(f"{title} of {report.nodeid}", content)
        if report.longrepr is not None:
            self.record(f"{report.outcome} report ({report.when}) of {report.nodeid}", _error_messages(report))

    @contextmanager
    def capturing(self) -> Iterator[SecretWatch]:
        """Send subprocess and capsys outputs to this watch (not the session's) inside the block."""
        RECORDERS.append(self)
        try:
            yield self
        finally:
            RECORDERS.remove(self)

    def search(self, data: bytes, where: str) -> list[SecretFinding]:
        """The secrets in ``data`` (one finding per kind)."""
        found: dict[str, SecretFinding] = {}
        squeezed: bytes | None = None
        for secret in self._secrets.values():
            if secret.kind in found:
                continue
            if secret.squeezed:
                squeezed = _WHITESPACE.sub(b"", data) if squeezed is None else squeezed
                hit = secret.needle in squeezed
            else:
                hit = secret.needle in data
            if hit:
                found[secret.kind] = SecretFinding(secret.kind, where)
        if _PRIVATE_BLOCK.search(data):
            found["armored private key block"] = SecretFinding("armored private key block", where)
        return list(found.values())

    def scan_tree(self, base: Path) -> tuple[list[SecretFinding], int, int]:
        """Search the files under ``base`` (after taking the key material of its key files).

        Returns:
            The findings, the number of files scanned and their total size.
        """
        files: list[tuple[Path, bytes]] = []
        for path in _candidate_files(base):
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if _is_key_file(data):
                self.add_key_material(data.decode("utf-8", "replace"))
            else:
                files.append((path, data))
        findings: list[SecretFinding] = []
        scanned = size = 0
        for path, data in files:
            if self._is_secret(data) or _is_docker_config(path, data):
                continue
            scanned, size = scanned + 1, size + len(data)
            findings += self.search(data, f"file {path.relative_to(base)} (under {base})")
        return findings, scanned, size

    def check(self) -> list[SecretFinding]:
        """Search every recorded output and file under :attr:`base_dirs`; also sets :attr:`stats`."""
        started = time.monotonic()
        findings: list[SecretFinding] = []
        scanned = size = 0
        for base in self.base_dirs:
            found, count, total = self.scan_tree(base)
            findings += found
            scanned, size = scanned + count, size + total
        with self._lock:
            outputs = list(self._outputs)
        for where, data in outputs:
            findings += self.search(data, where)
        unique = list(dict.fromkeys(SecretFinding(f.kind, self._mask(f.where)) for f in findings))
        self.stats = (f"{len(self._secrets)} secret forms searched in {len(outputs)} outputs and {scanned} files "
                      f"({(sum(len(d) for _, d in outputs) + size) / 1e6:.1f} MB) in "
                      f"{time.monotonic() - started:.2f} s")
        self.findings = unique
        return unique

    def _mask(self, text: str) -> str:
        """``text`` with every secret form replaced (a test ID or path could quote one)."""
        raw = text.encode()
        for needle in self._secrets:
            raw = raw.replace(needle, b"<secret>")
        return raw.decode("utf-8", "replace")


def _pgp_secret_key_bodies(armored: str) -> Iterator[bytes]:
    """The bodies of the secret-key packets of every armored PGP private key block."""
    for match in _PGP_PRIVATE_BLOCK.finditer(armored):
        lines = match.group(1).strip("\r\n").splitlines()
        if "" in (line.strip() for line in lines):  # armor headers end at the first blank line
            lines = lines[[line.strip() for line in lines].index("") + 1:]
        try:
            data = base64.b64decode("".join(line.strip() for line in lines if not line.startswith("=")))
        except ValueError:
            continue
        yield from (body for tag, body in _openpgp_packets(data) if tag in _SECRET_KEY_TAGS)


def _openpgp_packets(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(tag, body) of each packet (RFC 9580 4.2; stops at partial lengths or garbage)."""
    pos = 0
    while pos < len(data):
        ctb = data[pos]
        if not ctb & 0x80:
            return
        if ctb & 0x40:  # new format
            tag, first = ctb & 0x3F, data[pos + 1] if pos + 1 < len(data) else 0
            if first < 192:
                length, pos = first, pos + 2
            elif first < 224:
                length, pos = ((first - 192) << 8) + data[pos + 2] + 192, pos + 3
            elif first == 255:
                length, pos = int.from_bytes(data[pos + 2:pos + 6], "big"), pos + 6
            else:
                return
        else:
            tag, size = (ctb >> 2) & 0x0F, {0: 1, 1: 2, 2: 4}.get(ctb & 3)
            if size is None:
                return
            length, pos = int.from_bytes(data[pos + 1:pos + 1 + size], "big"), pos + 1 + size
        yield tag, data[pos:pos + length]
        pos += length


def _candidate_files(base: Path) -> Iterator[Path]:
    """Regular files under ``base`` that may be outputs (see :class:`SecretWatch`)."""
    for root, dirs, names in os.walk(base):
        if "pubring.kbx" in names or "trustdb.gpg" in names:  # a gpg home
            dirs[:] = []
            continue
        dirs[:] = [d for d in dirs if d not in SCAN_SKIP_DIRS]
        for name in names:
            path = Path(root, name)
            if name.endswith(SCAN_SKIP_SUFFIXES) or name.startswith("docker-credential-"):
                continue
            try:
                st = path.lstat()
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_size <= SCAN_MAX_FILE_BYTES:
                yield path


def _is_key_file(data: bytes) -> bool:
    """Nothing but armored/PEM key blocks, at least one of them private."""
    return bool(_PRIVATE_BLOCK.search(data)) and not _ANY_KEY_BLOCK.sub(b"", data).strip()


def _is_docker_config(path: Path, data: bytes) -> bool:
    return path.name in ("config.json", ".dockercfg") and any(
        key in data for key in (b'"auths"', b'"auth"', b'"credsStore"', b'"credHelpers"'))


def _where_now() -> str:
    current = os.environ.get("PYTEST_CURRENT_TEST", "")
    return current.rpartition(" ")[0] or current or "the session (no test running)"


def _program(args: object) -> str:
    argv = [os.fspath(a) for a in args] if isinstance(args, (list, tuple)) else str(args).split()[:1]
    if not argv:
        return "?"
    name = Path(str(argv[0])).name
    if len(argv) > 2 and argv[1] == "-m":
        name += f" -m {argv[2]}"
    return name


def _started_by_product() -> bool:
    """Whether the nearest caller outside ``subprocess`` and this file is product code."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename in (subprocess.__file__, __file__):
        frame = frame.f_back  # type: ignore[assignment]
    return frame is not None and frame.f_code.co_filename.startswith(PRODUCT_DIRS)


_original_communicate = subprocess.Popen.communicate
_original_readouterr = pytest.CaptureFixture.readouterr


def recording_communicate(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> tuple[Any, Any]:
    out, err = _original_communicate(self, *args, **kwargs)
    if RECORDERS and not _started_by_product():
        where = f"output of subprocess `{_program(self.args)}` run by {_where_now()}"
        RECORDERS[-1].record(where, out)
        RECORDERS[-1].record(where, err)
    return out, err


def recording_readouterr(self: pytest.CaptureFixture[Any]) -> Any:
    result = _original_readouterr(self)
    if RECORDERS:
        where = f"capsys/capfd output read by {_where_now()}"
        RECORDERS[-1].record(where, result.out)
        RECORDERS[-1].record(where, result.err)
    return result


def _error_messages(report: pytest.TestReport) -> str:
    """The exception messages of a report (every exception of a chain), or its text when it
    is not an exception's (a skip reason, a plain string)."""
    longrepr = report.longrepr
    chain = getattr(longrepr, "chain", None)
    if chain:
        return "\n".join(crash.message for _, crash, _ in chain if crash is not None)
    crash = getattr(longrepr, "reprcrash", None)
    return crash.message if crash is not None else report.longreprtext
