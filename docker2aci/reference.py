"""Docker image references (distribution/reference grammar) and ``transport:rest`` names.

``ImageRef.parse("busybox")`` gives domain ``docker.io``, repository ``library/busybox``,
tag ``latest``, exactly as Docker normalises names (``docker/reference/normalize.go``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .digest import ALGORITHMS, Digest
from .errors import InvalidManifest, InvalidReference

DOCKER_HUB_DOMAIN = "docker.io"
DOCKER_HUB_API_HOST = "registry-1.docker.io"
DOCKER_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
"""Every host name Docker Hub is known by."""
DEFAULT_TAG = "latest"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
COMPONENT_RE = re.compile(_COMPONENT)
"""One path component of a repository name (use with ``fullmatch``)."""
_PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_DOMAIN_RE = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:.]+\])(?::[0-9]{1,5})?$"
)
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$", re.ASCII)
_DIGEST_LIKE_RE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}", re.ASCII)
"""What follows ``NAME@`` or ``NAME:TAG@`` when it is a digest (``sha256:`` and its hex), not
a host after a user's credentials (``HOST:PORT`` has too few characters after its colon)."""
_HEX64_RE = re.compile(r"^[a-f0-9]{64}$")
MAX_NAME_LENGTH = 255


@dataclass(frozen=True)
class ImageRef:
    """A parsed, normalised Docker image reference.

    Attributes:
        domain: registry host[:port] as Docker names it (``docker.io`` for Docker Hub).
        repository: the path in the registry, ``library/``-prefixed for official Hub images.
        tag: the tag; ``None`` for a digest-only reference.
        digest: the digest of a ``@sha256:...`` reference, else ``None``.
        original: the reference exactly as typed.
    """

    domain: str
    repository: str
    tag: str | None
    digest: Digest | None
    original: str

    @classmethod
    def parse(cls, text: str, *, default_tag: bool = True) -> ImageRef:
        """Parse ``[HOST[:PORT]/]NAME[:TAG][@DIGEST]`` with Docker's normalisation.

        Args:
            text: the reference.
            default_tag: give ``latest`` to a reference with neither tag nor digest.

        Raises:
            InvalidReference: the text does not follow the reference grammar.
        """
        if not text:
            raise InvalidReference("invalid reference format: empty reference")
        shown = without_credentials(text)
        if shown != text:  # USER:PASSWORD@HOST/NAME: never quoted back (messages, --json, batch reports)
            raise InvalidReference(f"{shown}: invalid reference format: a reference cannot hold credentials "
                                   "(USER:PASSWORD@); use --creds USER:PASSWORD or docker login")
        if _HEX64_RE.fullmatch(text):
            raise InvalidReference(
                f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings"
            )
        rest, digest = text, None
        if "@" in rest:
            rest, digest_text = rest.split("@", 1)
            try:
                digest = Digest.parse(digest_text)
            except InvalidManifest as err:
                raise InvalidReference(f"{text}: invalid digest format") from err
        tag = None
        slash = rest.rfind("/")
        colon = rest.rfind(":")
        if colon > slash:
            rest, tag = rest[:colon], rest[colon + 1 :]
            if not _TAG_RE.fullmatch(tag):
                raise InvalidReference(f"{text}: invalid tag format")
        first, sep, remainder = rest.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost"):
            domain, path = first, remainder
            if not _DOMAIN_RE.fullmatch(domain):
                raise InvalidReference(f"{text}: invalid reference format (registry host)")
            if (problem := port_problem(domain)) is not None:
                raise InvalidReference(f"{text}: invalid reference format: {problem}")
        else:
            domain, path = DOCKER_HUB_DOMAIN, rest
        if domain in DOCKER_HUB_HOSTS:
            domain = DOCKER_HUB_DOMAIN
            if "/" not in path:
                path = f"library/{path}"
        if path.lower() != path and _PATH_RE.fullmatch(path.lower()):
            raise InvalidReference(f"{text}: invalid reference format: repository name must be lowercase")
        if not _PATH_RE.fullmatch(path):
            raise InvalidReference(f"{text}: invalid reference format")
        if len(domain) + 1 + len(path) > MAX_NAME_LENGTH:
            raise InvalidReference(f"{text}: repository name must not be more than 255 characters")
        if tag is None and digest is None and default_tag:
            tag = DEFAULT_TAG
        return cls(domain, path, tag, digest, text)

    @property
    def api_host(self) -> str:
        """The host to send registry API requests to (``registry-1.docker.io`` for Hub)."""
        return api_host(self.domain)

    def __str__(self) -> str:
        out = f"{self.domain}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def without_credentials(text: str) -> str:
    """``text``, a reference as typed, with a leading ``USER[:PASSWORD]@`` replaced by ``***@``.

    A reference holds one ``@``, before its digest; an ``@`` anywhere else ends a user's
    credentials, which may themselves hold ``/``, ``:`` or ``@`` (``user:pa/s@s@host/app``
    gives ``***@host/app``). ``NAME@BAD`` and ``HOST:PORT/NAME[:TAG]@BAD`` are malformed
    digests (``busybox@latest``), kept as typed.

    Args:
        text: the reference (without a transport).

    Returns:
        ``text`` unchanged, or ``***@`` and what follows the credentials.
    """
    body, digest = text, ""
    before, at, after = text.rpartition("@")
    if at and "/" not in after and (after.partition(":")[0] in ALGORITHMS  # a digest, even a malformed one
                                    or _DIGEST_LIKE_RE.fullmatch(after)):
        body, digest = before, f"@{after}"
    userinfo, at, rest = body.rpartition("@")
    if not at:
        return text
    if not digest and "/" not in rest and "@" not in userinfo:
        if ":" not in userinfo:
            return text  # NAME@BAD
        first, slash, _ = userinfo.partition("/")
        if slash and _DOMAIN_RE.fullmatch(first):
            return text  # HOST:PORT/NAME[:TAG]@BAD
    return f"***@{rest}{digest}"


def is_valid_host(text: str) -> bool:
    """Whether ``text`` is a registry ``host[:port]`` (a DNS name, IPv4, or ``[IPv6]``; a
    port from 1 to 65535)."""
    return bool(_DOMAIN_RE.fullmatch(text)) and port_problem(text) is None


def port_problem(domain: str) -> str | None:
    """What is wrong with the port of ``domain`` (``host[:port]``), or ``None`` when it
    has none or a TCP port (1-65535): the grammar takes five digits, and ``:0`` or
    ``:99999`` failed later, as a connection refused or as requests' ``InvalidURL``."""
    port = _PORT_RE.search(domain)
    if port is None or 0 < int(port.group(1)) < 65536:
        return None
    return f"the registry's port {port.group(1)} is not 1-65535"


_PORT_RE = re.compile(r":([0-9]+)$")


def api_host(host: str) -> str:
    """The host that answers registry API requests for ``host`` (Hub names → ``registry-1.docker.io``)."""
    return DOCKER_HUB_API_HOST if host.lower() in DOCKER_HUB_HOSTS else host


def is_valid_tag(text: str) -> bool:
    """Whether ``text`` follows the tag grammar (``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``)."""
    return bool(_TAG_RE.fullmatch(text))


def split_transport(name: str, transports: frozenset[str]) -> tuple[str | None, str]:
    """Split ``transport:rest`` on the first ``:`` when the prefix is a known transport.

    Args:
        name: the source as given on the command line.
        transports: the known transport names (``docker-archive``, ``oci``, ...).

    Returns:
        ``(transport, rest)``, or ``(None, name)`` for a bare path.
    """
    prefix, sep, rest = name.partition(":")
    if sep and prefix in transports:
        return prefix, rest
    return None, name
