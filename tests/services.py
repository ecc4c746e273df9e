"""Real servers for tests, on 127.0.0.1 only, always stopped by PID.

* :func:`run_registry` starts Debian's ``docker-registry serve CONFIG`` on a free port in a
  temporary directory: plain http (schema 1 pushes enabled), htpasswd Basic auth over TLS
  (a test CA made with ``openssl``; clients get a ``cert_dir`` holding ``ca.crt``), or
  token auth pointed at :class:`tokenserver.TokenServer`. It waits for ``/v2/`` to answer
  and stops the process (terminate, then kill) when the block ends, whatever happens.
* :func:`push` copies an image into a registry with ``skopeo copy``.
* :func:`require_tools` skips a test (with the reason) when a tool is missing; CI installs
  ``docker-registry``, ``apache2-utils``, ``skopeo`` and ``openssl``.

Timing: a registry is ready in about 15 ms; a skopeo push of the busybox image takes
0.05-0.2 s.
"""

from __future__ import annotations

import ctypes
import json
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

REGISTRY_BIN = "docker-registry"
SKOPEO_BIN = "skopeo"
HTPASSWD_BIN = "htpasswd"
OPENSSL_BIN = "openssl"
READY_TIMEOUT = 10.0
"""How long a registry may take to answer ``/v2/`` (seconds)."""
STOP_TIMEOUT = 5.0
"""How long a registry may take to exit after SIGTERM (seconds)."""
TOOL_TIMEOUT = 120.0
"""How long one ``skopeo``/``openssl``/``htpasswd`` run may take (seconds)."""
SHARED_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "images"
"""The project's shared, read-only test images (``oci-layout``, ``oci-multi``, ``oci-zstd``)."""


def missing_tools(*names: str) -> list[str]:
    """The names among ``names`` that are not on PATH."""
    return [n for n in names if shutil.which(n) is None]


def require_tools(*names: str) -> None:
    """Skip the calling test when a tool is missing (CI installs them all)."""
    missing = missing_tools(*names)
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install docker-registry skopeo apache2-utils openssl)")


class QuietHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer (daemon threads) that prints no traceback when a client hangs up.

    Used by the in-process test servers (``tokenserver``, ``faultproxy``); bind it to
    ``("127.0.0.1", 0)``.
    """

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(argv: Sequence[str], *, what: str, stdin: bytes | None = None) -> bytes:
    done = subprocess.run(list(argv), input=stdin, capture_output=True, timeout=TOOL_TIMEOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr.decode(errors='replace')[-2000:]}")
    return done.stdout


# -- TLS and htpasswd ----------------------------------------------------------------------


@dataclass(frozen=True)
class TLSFiles:
    """A test CA and a server certificate for ``127.0.0.1`` and ``localhost``.

    Attributes:
        ca_cert: the CA certificate (PEM).
        server_cert: the registry's certificate, signed by the CA (PEM).
        server_key: its key (PEM).
        cert_dir: a Docker ``certs.d``-style directory holding ``ca.crt``, for clients
            (``RegistryClient(cert_dir=...)``, ``skopeo --dest-cert-dir``).
    """

    ca_cert: Path
    server_cert: Path
    server_key: Path
    cert_dir: Path


def make_test_ca(directory: Path) -> TLSFiles:
    """Make a CA and a server certificate with ``openssl`` (EC P-256 keys: fast)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "registry.key", directory / "registry.csr", directory / "registry.crt"
    ext = directory / "server.ext"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _run([OPENSSL_BIN, "req", "-x509", *ec, "-days", "30", "-keyout", str(ca_key), "-out", str(ca_cert),
          "-subj", "/CN=docker2aci test CA", "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "keyUsage=critical,keyCertSign,cRLSign"], what="openssl (test CA)")
    _run([OPENSSL_BIN, "req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1"],
         what="openssl (server key)")
    ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
                   "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    _run([OPENSSL_BIN, "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
          "-CAcreateserial", "-days", "30", "-extfile", str(ext), "-out", str(cert)],
         what="openssl (server certificate)")
    cert_dir = directory / "certdir"
    cert_dir.mkdir(exist_ok=True)
    shutil.copyfile(ca_cert, cert_dir / "ca.crt")
    return TLSFiles(ca_cert, cert, key, cert_dir)


HTPASSWD_CREDS: list[tuple[str, str]] = []
"""Every ``(user, password)`` :func:`write_htpasswd` was given (watched by ``tests/conftest.py``)."""


def write_htpasswd(path: Path, user: str, password: str) -> Path:
    """Write a bcrypt htpasswd file with one user (``htpasswd -Bbn``)."""
    HTPASSWD_CREDS.append((user, password))
    path.write_bytes(_run([HTPASSWD_BIN, "-Bbn", user, password], what="htpasswd"))
    return path


# -- the registry process ------------------------------------------------------------------


@dataclass(frozen=True)
class TokenAuth:
    """Token-auth settings for the registry config.

    Attributes:
        realm: the token endpoint URL.
        service: must equal the JWTs' ``aud``.
        issuer: must equal the JWTs' ``iss``.
        rootcertbundle: the PEM certificate whose key signs the JWTs.
    """

    realm: str
    service: str
    issuer: str
    rootcertbundle: Path


@dataclass(frozen=True)
class RunningRegistry:
    """A running docker-registry.

    Attributes:
        host: ``127.0.0.1:<port>``.
        scheme: ``http`` or ``https``.
        pid: the process ID.
        root: its temporary directory (config, data, log).
        cert_dir: the clients' CA directory when it serves TLS, else ``None``.
        creds: ``(user, password)`` when it requires htpasswd or token credentials.
    """

    host: str
    scheme: str
    pid: int
    root: Path
    cert_dir: Path | None = None
    creds: tuple[str, str] | None = None

    @property
    def url(self) -> str:
        """``http(s)://127.0.0.1:<port>``."""
        return f"{self.scheme}://{self.host}"

    @property
    def log_path(self) -> Path:
        """The registry's log file."""
        return self.root / "registry.log"


def _registry_config(root: Path, port: int, *, tls: TLSFiles | None, htpasswd: Path | None,
                     token: TokenAuth | None, schema1: bool, allow_urls: tuple[str, ...] = (),
                     access_log: bool = False) -> dict[str, object]:
    http: dict[str, object] = {"addr": f"127.0.0.1:{port}", "secret": "docker2aci-tests",
                               "headers": {"X-Content-Type-Options": ["nosniff"]}}
    if tls is not None:
        http["tls"] = {"certificate": str(tls.server_cert), "key": str(tls.server_key)}
    config: dict[str, object] = {
        "version": "0.1",
        "log": {"level": "warn", "accesslog": {"disabled": not access_log}},
        "storage": {"filesystem": {"rootdirectory": str(root / "data")}, "delete": {"enabled": True},
                    "cache": {"blobdescriptor": "inmemory"}},
        "http": http,
    }
    if schema1:
        config["compatibility"] = {"schema1": {"enabled": True}}
    if allow_urls:  # foreign layers may name these URLs (distribution's validation.manifests.urls)
        config["validation"] = {"manifests": {"urls": {"allow": list(allow_urls)}}}
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": "test-realm", "path": str(htpasswd)}}
    elif token is not None:
        config["auth"] = {"token": {"realm": token.realm, "service": token.service, "issuer": token.issuer,
                                    "rootcertbundle": str(token.rootcertbundle)}}
    return config


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    # No proxies from the environment: the registry is on 127.0.0.1.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=context))
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited with {proc.returncode}: "
                               f"{log_path.read_text(errors='replace')[-2000:]}")
        try:
            with opener.open(f"{url}/v2/", timeout=1):
                return
        except urllib.error.HTTPError as err:
            if err.code == 401:
                return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.01)
    raise RuntimeError(f"docker-registry did not answer {url}/v2/ within {READY_TIMEOUT} s")


_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child of a fork only calls it


def die_with_pytest() -> None:
    """``preexec_fn`` for a server a test starts: the kernel sends it SIGTERM when the
    thread that started it ends (Linux ``PR_SET_PDEATHSIG``), so a test run killed
    before its fixtures' teardown (SIGTERM, SIGKILL) leaves no server behind."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate the process by its PID, then kill it if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)


@contextmanager
def run_registry(root: Path, *, tls: TLSFiles | None = None, htpasswd: Path | None = None,
                 token: TokenAuth | None = None, creds: tuple[str, str] | None = None,
                 schema1: bool = True, allow_urls: tuple[str, ...] = (),
                 access_log: bool = False) -> Iterator[RunningRegistry]:
    """Run ``docker-registry serve`` in ``root`` until the block ends.

    Args:
        root: an empty directory for the config, data and log.
        tls: serve https with these files.
        htpasswd: require Basic auth from this htpasswd file.
        token: require Bearer tokens from this token server.
        creds: the credentials tests should use (recorded on the result).
        schema1: accept schema 1 manifest pushes (``compatibility.schema1.enabled``).
        allow_urls: regular expressions of foreign-layer URLs the registry accepts.
        access_log: write an access log line per request (combined log format) to
            :attr:`RunningRegistry.log_path`.

    Yields:
        The running registry.
    """
    require_tools(REGISTRY_BIN)
    root.mkdir(parents=True, exist_ok=True)
    last_error: Exception | None = None
    for _ in range(3):  # another process may grab the port between free_port() and bind
        port = free_port()
        config_path = root / "config.yml"  # JSON is YAML
        config_path.write_text(json.dumps(_registry_config(root, port, tls=tls, htpasswd=htpasswd,
                                                           token=token, schema1=schema1, allow_urls=allow_urls,
                                                           access_log=access_log),
                                               indent=1))
        log_path = root / "registry.log"
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen([REGISTRY_BIN, "serve", str(config_path)], stdout=log_file,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=root,
                                    preexec_fn=die_with_pytest)
        try:
            scheme = "https" if tls else "http"
            try:
                _wait_ready(proc, f"{scheme}://127.0.0.1:{port}", log_path)
            except RuntimeError as err:
                last_error = err
                continue
            yield RunningRegistry(f"127.0.0.1:{port}", scheme, proc.pid, root,
                                  tls.cert_dir if tls else None, creds)
            return
        finally:
            _stop(proc)
    raise RuntimeError(f"could not start docker-registry: {last_error}")


# -- pushing -------------------------------------------------------------------------------


def push(src: str, registry: RunningRegistry | str, repo_tag: str, *args: str,
         creds: tuple[str, str] | None = None, cert_dir: Path | None = None) -> None:
    """``skopeo copy --insecure-policy --dest-tls-verify=false [args] SRC docker://HOST/REPO_TAG``.

    Args:
        src: a skopeo source (``oci:/path:tag``).
        registry: the registry, or its ``host:port``.
        repo_tag: ``repo:tag`` in the registry.
        args: more skopeo flags (``--format v2s2``, ``--all``).
        creds: ``--dest-creds`` (default: the registry's own test credentials).
        cert_dir: ``--dest-cert-dir`` (default: the registry's CA directory).
    """
    require_tools(SKOPEO_BIN)
    if isinstance(registry, RunningRegistry):
        host = registry.host
        creds = creds or registry.creds
        cert_dir = cert_dir or registry.cert_dir
    else:
        host = registry
    argv = [SKOPEO_BIN, "copy", "--insecure-policy", "--dest-tls-verify=false", *args]
    if creds:
        argv.append(f"--dest-creds={creds[0]}:{creds[1]}")
    if cert_dir:
        argv.append(f"--dest-cert-dir={cert_dir}")
    argv += [src, f"docker://{host}/{repo_tag}"]
    _run(argv, what=f"skopeo copy {src} to {host}/{repo_tag}")
