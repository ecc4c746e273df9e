"""Helpers of the signing and trust tests (shared by conftest.py and the test modules)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from docker2aci import signing
from docker2aci.pipeline import ConvertOptions, convert

OCI_ARCHIVE = ROOT.parent / "shared" / "images" / "oci-archive.tar"
IMAGE = "test/busybox"
PASSPHRASE = "correct horse battery staple"


@dataclass(frozen=True)
class KeyPair:
    """A key made for the tests: its files and fingerprint."""

    public: Path
    secret: Path
    fingerprint: str

    @property
    def key_id(self) -> str:
        return self.fingerprint[-16:].upper()


def make_key(directory: Path, name: str, algorithm: signing.KeyAlgorithm,
             passphrase: str | None = None) -> KeyPair:
    key = signing.generate_key(f"{name} <{name.lower()}@example.invalid>", algorithm, passphrase=passphrase)
    public, secret = signing.write_key_pair(str(directory / name.lower()), key)
    return KeyPair(Path(public), Path(secret), key.fingerprint)


@dataclass(frozen=True)
class CliResult:
    status: int
    out: str
    err: str


class Gpg:
    """Real gpg in its own home directory (``GNUPGHOME`` is set to it for the test)."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def run(self, *args: str, faked_time: str | None = None, check: bool = True,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        argv = ["gpg", "--batch", "--homedir", str(self.home)]
        if faked_time:
            argv += ["--faked-system-time", faked_time]
        result = subprocess.run(argv + list(args), capture_output=True, text=True, input=stdin, timeout=60,
                                check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"gpg {' '.join(args)} failed:\n{result.stderr}")
        return result

    def generate(self, uid: str, algorithm: str = "rsa2048", usage: str = "sign", expire: str = "never",
                 faked_time: str | None = None) -> str:
        """``--quick-gen-key`` without passphrase; returns the fingerprint."""
        self.run("--passphrase", "", "--quick-gen-key", uid, algorithm, usage, expire, faked_time=faked_time)
        return self.fingerprint(uid)

    def fingerprint(self, uid: str) -> str:
        listing = self.run("--with-colons", "--list-keys", uid).stdout
        return next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))

    def add_subkey(self, fingerprint: str, algorithm: str, usage: str, expire: str,
                   faked_time: str | None = None) -> None:
        self.run("--passphrase", "", "--quick-add-key", fingerprint, algorithm, usage, expire,
                 faked_time=faked_time)

    def sign(self, path: Path, uid: str, faked_time: str | None = None, options: tuple[str, ...] = ()) -> Path:
        """A detached armored signature ``<path>.asc`` (``options``: more gpg options)."""
        out = Path(f"{path}.asc")
        self.run("--yes", "--local-user", uid, "--armor", *options, "--detach-sign", "--output", str(out),
                 str(path), faked_time=faked_time)
        return out

    def export(self, uid: str, path: Path) -> Path:
        path.write_text(self.run("--armor", "--export", uid).stdout)
        return path


def convert_to(out: Path, **options: object) -> Path:
    """Convert the shared oci-archive into ``out`` and return the ACI's path."""
    options.setdefault("cache_dir", str(out / ".cache"))
    [aci] = convert(f"oci-archive:{OCI_ARCHIVE}", ConvertOptions(output_dir=str(out), **options))  # type: ignore[arg-type]
    return Path(aci.path)
