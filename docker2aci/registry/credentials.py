"""Registry credentials: the value type, and where Docker keeps them.

:func:`lookup` reads what ``docker login`` wrote, the way the Docker CLI reads it
(``cli/config/configfile/file.go``, ``cli/config/credentials/native_store.go``):

1. ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``:

   * ``credHelpers[<key>]`` names a helper for this registry; else ``credsStore`` names one
     for all registries. The helper ``docker-credential-<name>`` is run with ``get`` and the
     server key on stdin, and answers ``{"Username": ..., "Secret": ...}``
     (docker/docker-credential-helpers protocol). "credentials not found" means none.
   * otherwise (or when the helper has none) ``auths[<key>]``: ``auth`` (base64 of
     ``user:password``) or ``username``/``password``. An entry with an empty ``auth``
     (Docker writes one when a store holds the secret) is skipped. ``identitytoken``
     (an OAuth 2 refresh token, what ``docker login`` keeps for registries that give one,
     Azure's among them) is used as Docker uses it: it is exchanged at the token service
     for access tokens (:func:`~docker2aci.registry.auth.request_token`), and wins over a
     password beside it. A helper gives one as the user ``<token>``.

2. Only when ``config.json`` does not exist: the legacy ``~/.dockercfg`` (a map
   ``server -> {auth, email}``, or the older two-line ``auth = ...`` / ``email = ...``).

Keys match as Docker matches them: the exact key first, then any key whose host part
(scheme, ``/v1/`` path and trailing ``/`` removed) is the registry host. Docker Hub
(``docker.io``, ``index.docker.io``, ``registry-1.docker.io``) is stored under
``https://index.docker.io/v1/`` (public-cases.md #30). ``--creds`` on the command line
is the caller's business; it wins over all of this.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import untrustedjson
from ..errors import AuthError, UsageError
from ..reference import DOCKER_HUB_HOSTS

log = logging.getLogger(__name__)

DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"
"""The key Docker stores Docker Hub credentials under."""
"""Host names that mean Docker Hub."""
HELPER_TIMEOUT = 30.0
"""How long a ``docker-credential-*`` helper may run (seconds)."""
MAX_CONFIG_FILE_BYTES = 4 * 1024 * 1024
"""The largest ``config.json`` / ``.dockercfg`` read (bytes)."""
_HELPER_NOT_FOUND = "credentials not found in native keychain"
_IDENTITY_TOKEN_USER = "<token>"


@dataclass(frozen=True)
class Credentials:
    """A user name and password (or a registry token used as a password).

    ``repr()`` and ``str()`` never show the password or the identity token.

    Attributes:
        username: the user name, sent in HTTP Basic auth (RFC 7617).
        password: the secret.
        identity_token: an OAuth 2 refresh token (``docker login``'s ``identitytoken``), or
            ``None``: when given, the token service is asked with it (RFC 6749 section 6)
            instead of the user name and password.
    """

    username: str
    password: str
    identity_token: str | None = None

    @classmethod
    def parse(cls, text: str) -> Credentials:
        """Parse ``USER:PASSWORD`` as given to ``--creds`` (split at the first ``:``).

        Raises:
            UsageError: there is no ``:`` or the user name is empty.
        """
        username, sep, password = text.partition(":")
        if not sep or not username:
            raise UsageError("--creds takes USERNAME:PASSWORD")
        return cls(username, password)

    def __repr__(self) -> str:
        token = ", identity_token=<hidden>" if self.identity_token is not None else ""
        return f"Credentials(username={self.username!r}, password=<hidden>{token})"

    __str__ = __repr__


def config_key(host: str) -> str:
    """The key Docker uses for ``host`` in ``config.json`` (``https://index.docker.io/v1/`` for Hub)."""
    return DOCKER_HUB_CONFIG_KEY if host.lower() in DOCKER_HUB_HOSTS else host


def key_host(key: str) -> str:
    """The registry host a ``config.json`` key names (Docker's ``ConvertToHostname``).

    ``https://host:5000/v1/`` → ``host:5000``; Hub keys → ``index.docker.io``.
    """
    text = key.strip()
    for scheme in ("https://", "http://"):
        if text.lower().startswith(scheme):
            text = text[len(scheme):]
            break
    return text.split("/", 1)[0].lower()


def _same_registry(key: str, host: str) -> bool:
    """Whether a config key names ``host`` (Hub aliases are one registry)."""
    named = key_host(key)
    wanted = host.lower()
    if wanted in DOCKER_HUB_HOSTS:
        return named in DOCKER_HUB_HOSTS
    return named == wanted


def _matching_entries(table: Mapping[str, Any], host: str) -> Iterator[tuple[str, Any]]:
    """Entries of ``auths``/``credHelpers`` for ``host``: the exact key first, then the others."""
    exact = config_key(host)
    if exact in table:
        yield exact, table[exact]
    for key, value in table.items():
        if key != exact and isinstance(key, str) and _same_registry(key, host):
            yield key, value


def _read_json_file(path: Path) -> Any:
    """Parse a JSON credentials file.

    Raises:
        AuthError: the file cannot be read, is too large, or is not JSON.
    """
    try:
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_FILE_BYTES + 1)
    except OSError as err:
        raise AuthError(str(path), f"reading Docker credentials: {err.strerror or err}") from err
    if len(data) > MAX_CONFIG_FILE_BYTES:
        raise AuthError(str(path), f"reading Docker credentials: larger than {MAX_CONFIG_FILE_BYTES} bytes")
    try:
        return untrustedjson.loads(data)
    except untrustedjson.BadJSON as err:
        # The position only: the message of a JSON error can quote file content (secrets).
        where = f"at byte {err.pos}" if err.pos is not None else str(err)
        raise AuthError(str(path), f"reading Docker credentials: not valid JSON ({where})") from None


def _decode_auth(value: str, where: str) -> Credentials | None:
    """Decode an ``auth`` field (base64 of ``user:password``); ``None`` when empty or unusable."""
    if not value:
        return None
    try:
        text = base64.b64decode(value, validate=False).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        log.warning("%s: ignoring an \"auth\" value that is not base64 of USER:PASSWORD", where)
        return None
    username, sep, password = text.partition(":")
    if not sep or not username:
        log.warning("%s: ignoring an \"auth\" value that is not USER:PASSWORD", where)
        return None
    return Credentials(username, password.strip("\x00"))


def _from_entry(entry: Any, where: str) -> Credentials | None:
    """Credentials from one ``auths`` entry, or ``None`` when it holds none."""
    if not isinstance(entry, dict):
        return None
    found = None
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        found = _decode_auth(auth, where)
    else:
        username, password = entry.get("username"), entry.get("password")
        if isinstance(username, str) and username and isinstance(password, str):
            found = Credentials(username, password)
    identity_token = entry.get("identitytoken")
    if isinstance(identity_token, str) and identity_token:  # docker login keeps the user beside it, not the password
        log.debug("%s: using its identity token", where)
        return Credentials(found.username if found is not None else _IDENTITY_TOKEN_USER,
                           found.password if found is not None else "", identity_token)
    return found


def _from_auths(auths: Any, host: str, where: str) -> Credentials | None:
    """Search an ``auths`` map (or a legacy ``.dockercfg`` map) for ``host``."""
    if not isinstance(auths, dict):
        return None
    for key, entry in _matching_entries(auths, host):
        found = _from_entry(entry, f"{where} [{key}]")
        if found is not None:
            return found
    return None


def run_helper(name: str, server: str, env: Mapping[str, str]) -> Credentials | None:
    """Ask ``docker-credential-<name> get`` for the credentials of ``server``.

    Args:
        name: the helper's suffix (``credsStore`` / ``credHelpers`` value).
        server: the key written on the helper's stdin.
        env: the environment (its ``PATH`` finds the helper).

    Returns:
        The credentials, or ``None`` when the helper has none for ``server``, is missing
        or fails (a warning says which; pulls of public images still work).
    """
    program = f"docker-credential-{name}"
    path = shutil.which(program, path=env.get("PATH", os.defpath))
    if path is None:
        log.warning("credential helper %s is not on PATH; continuing without credentials", program)
        return None
    import subprocess  # only when a helper runs: 5 ms of every registry command otherwise

    try:
        done = subprocess.run([path, "get"], input=server.encode(), capture_output=True,
                              timeout=HELPER_TIMEOUT, env=dict(env), check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        log.warning("credential helper %s failed (%s); continuing without credentials",
                    program, type(err).__name__)
        return None
    if done.returncode != 0:
        said = done.stdout.decode("utf-8", "replace").strip()
        if _HELPER_NOT_FOUND in said.lower() or "not found" in said.lower():  # the helpers' wording varies
            log.debug("credential helper %s has no credentials for %s", program, server)
        else:
            log.warning("credential helper %s exited with status %d; continuing without credentials",
                        program, done.returncode)
        return None
    try:
        answer = untrustedjson.loads(done.stdout)
    except untrustedjson.BadJSON:
        log.warning("credential helper %s answered something that is not JSON", program)
        return None
    username = answer.get("Username") if isinstance(answer, dict) else None
    secret = answer.get("Secret") if isinstance(answer, dict) else None
    if not isinstance(username, str) or not isinstance(secret, str) or not secret:
        return None
    if username == _IDENTITY_TOKEN_USER:  # (docker-credential-helpers: the secret is an identity token)
        return Credentials(username, "", secret)
    return Credentials(username, secret)


def _from_helpers(config: dict[str, Any], host: str, env: Mapping[str, str]) -> Credentials | None:
    """Credentials from ``credHelpers`` (per registry) or ``credsStore`` (all registries)."""
    helpers = config.get("credHelpers")
    if isinstance(helpers, dict):
        for key, name in _matching_entries(helpers, host):
            if isinstance(name, str) and name:
                return run_helper(name, key, env)
    store = config.get("credsStore")
    if isinstance(store, str) and store:
        return run_helper(store, config_key(host), env)
    return None


def _parse_legacy_lines(text: str) -> dict[str, Any]:
    """The pre-1.7 ``.dockercfg`` form: ``auth = <base64>`` and ``email = ...`` lines, for Hub."""
    entry: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            entry[name.strip()] = value.strip()
    return {DOCKER_HUB_CONFIG_KEY: entry} if entry.get("auth") else {}


def _home(home: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path:
    if home is not None:
        return Path(home)
    if env.get("HOME"):
        return Path(env["HOME"])
    return Path.home()


def lookup(host: str, *, config_dir: str | os.PathLike[str] | None = None,
           home: str | os.PathLike[str] | None = None,
           env: Mapping[str, str] = os.environ) -> Credentials | None:
    """Find the credentials ``docker login`` stored for a registry.

    Args:
        host: the registry host[:port] (``registry-1.docker.io``, ``docker.io`` and
            ``index.docker.io`` all mean Docker Hub).
        config_dir: the Docker config directory; default ``$DOCKER_CONFIG``, else
            ``<home>/.docker``.
        home: the home directory; default ``$HOME``.
        env: the environment (``DOCKER_CONFIG``, ``HOME``, and ``PATH`` for helpers).

    Returns:
        The credentials, or ``None`` for anonymous access.

    Raises:
        AuthError: ``config.json`` or ``.dockercfg`` exists but is not readable JSON.
    """
    home_dir = _home(home, env)
    if config_dir is None and env.get("DOCKER_CONFIG"):
        config_dir = env["DOCKER_CONFIG"]
    directory = Path(config_dir) if config_dir is not None else home_dir / ".docker"
    config_file = directory / "config.json"
    if config_file.exists():
        config = _read_json_file(config_file)
        if not isinstance(config, dict):
            raise AuthError(str(config_file), "reading Docker credentials: not a JSON object")
        found = _from_helpers(config, host, env)
        if found is None:
            found = _from_auths(config.get("auths"), host, str(config_file))
        if found is not None:
            log.debug("using credentials of user %s for %s from %s", found.username, host, config_file)
        return found
    legacy = home_dir / ".dockercfg"
    if not legacy.exists():
        return None
    try:
        table = _read_json_file(legacy)
    except AuthError as err:
        try:
            table = _parse_legacy_lines(legacy.read_text("utf-8", "replace")[:MAX_CONFIG_FILE_BYTES])
        except OSError:
            table = {}
        if not table:
            raise err from None
    found = _from_auths(table, host, str(legacy))
    if found is not None:
        log.debug("using credentials of user %s for %s from %s", found.username, host, legacy)
    return found
