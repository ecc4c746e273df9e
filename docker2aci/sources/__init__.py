"""Image sources, named the way skopeo names them: ``transport:rest``.

=========================================  ==============================================
``docker://[HOST[:PORT]/]NAME[:TAG|@DIGEST]``  a registry (HTTP API v2)
``docker-daemon:NAME[:TAG]``               an image of the local Docker Engine
``docker-archive:PATH[:NAME[:TAG]]``       a ``docker save`` archive (any layout)
``oci:DIR[:TAG]``                          an OCI image layout directory
``oci-archive:PATH[:TAG]``                 a tar of an OCI image layout
bare ``PATH``                              sniffed: a layout directory or either archive
=========================================  ==============================================

The table below is the only registry of transports (no registration by import). Each
source is imported when first used: the registry's HTTP stack is most of the start-up
time of a local conversion, and the file sources' tar readers are not needed to ask a
registry for a manifest.
"""

from __future__ import annotations

import errno
import functools
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from ..errors import SourceError, UsageError
from ..limits import DEFAULT_MAX_LAYER_BYTES
from ..reference import COMPONENT_RE as _COMPONENT
from ..reference import ImageRef, api_host, split_transport, without_credentials
from ..store import BlobCache, default_cache_dir
from .base import PULL_POLICIES, DownloadHook, ImageName, ImageSource, ResolvedImage

if TYPE_CHECKING:
    from ..registry import RegistryClient
    from ..registry.schemes import PlainHttpHosts

__all__ = ["PULL_POLICIES", "ImageName", "ImageSource", "RemoteOptions", "ResolvedImage", "absolute_source", "open_source",
           "registry_client", "TRANSPORTS"]


def _base_repository(path: str) -> str:
    """The repository of images a layout names by a bare tag: the layout directory's or
    archive's base name up to its first ``.``, lower-cased, each run of characters a
    repository name cannot hold made one ``-`` (``My Image`` → ``my-image``).

    Raises:
        SourceError: nothing usable is left of the name.
    """
    base = os.path.basename(os.path.normpath(path)).split(".", 1)[0]
    name = _NOT_NAME_RUN.sub("-", base.lower()).strip("-_")
    if not _COMPONENT.fullmatch(name):
        raise SourceError(path, f"cannot name the image after {base!r}: rename it, or give it a ref name")
    return name


_NOT_NAME_RUN = re.compile(r"[^a-z0-9_]+")


def _split_path(rest: str) -> tuple[str, str | None]:
    """``PATH[:SELECTOR]``: the shortest prefix that exists (a link counts, whatever it
    leads to: :func:`open_source` says what is wrong with it) is the path."""
    if os.path.lexists(rest):
        return rest, None
    for i, ch in enumerate(rest):
        if ch == ":" and os.path.lexists(rest[:i]):
            return rest[:i], rest[i + 1:] or None
    return rest, None


def _archive(path: str, display: str, remote: RemoteOptions, docker: bool) -> ImageSource:
    """A ``docker save`` or an OCI layout in a tar; ``docker`` says which was named
    (a bare path is sniffed). A containerd-store save (``index.json`` only) is read as
    an OCI layout either way."""
    from .archive import DockerArchive, is_docker_archive
    from .files import TarTree
    from .oci_layout import OciLayout

    files = TarTree(path, display, remote.tmp_dir, remote.max_spool_size)
    try:
        if is_docker_archive(files):
            return DockerArchive(files)
        if docker and not files.exists("index.json"):
            raise SourceError(display, "not a docker save archive: neither manifest.json nor repositories")
        return OciLayout(files, _base_repository(path))
    except BaseException:
        files.close()
        raise


def _docker_archive(path: str, display: str, remote: RemoteOptions) -> ImageSource:
    return _archive(path, display, remote, docker=True)


def _oci(path: str, display: str, remote: RemoteOptions, tag: str | None = None) -> ImageSource:
    from .files import DirectoryTree
    from .oci_layout import OciLayout

    if not os.path.isdir(path):
        raise SourceError(display, "not a directory (an OCI image layout is a directory)")
    return OciLayout(DirectoryTree(path, display), _base_repository(path), tag)


def _oci_archive(path: str, display: str, remote: RemoteOptions, tag: str | None = None) -> ImageSource:
    from .files import TarTree
    from .oci_layout import OciLayout

    base = _base_repository(path)  # first: a name it refuses leaves no archive open
    return OciLayout(TarTree(path, display, remote.tmp_dir, remote.max_spool_size), base, tag)


def _sniffed(path: str, display: str, remote: RemoteOptions) -> ImageSource:
    if os.path.isdir(path):
        return _oci(path, display, remote)
    return _archive(path, display, remote, docker=False)


TRANSPORTS: dict[str, Callable[[str, str, RemoteOptions], ImageSource]] = {
    "docker-archive": _docker_archive,
    "oci": _oci,
    "oci-archive": _oci_archive,
}
"""Local transports: ``name → opener(path, display, options)``."""
_TAGGED_LAYOUTS: dict[str, Callable[[str, str, RemoteOptions, str | None], ImageSource]] = {
    "oci": _oci,
    "oci-archive": _oci_archive,
}
"""The transports whose ``PATH:TAG`` names a ref name: ``name → opener(path, display, options, tag)``."""
REMOTE_TRANSPORTS = frozenset({"docker", "docker-daemon"})


@dataclass(frozen=True)
class RemoteOptions:
    """How to reach registries and engines (the reference tool's flag names).

    Attributes:
        creds: ``USER:PASS`` for the registry (``--creds``); else looked up in the Docker
            config files.
        cert_dir: a directory of CA certificates (``*.crt``) and client certificates.
        insecure_skip_verify: do not verify TLS certificates.
        allow_http: fall back to plain http.
        cache_dir: the blob and conversion cache root.
        tmp_dir: where an engine export or a compressed archive is spooled.
        progress: called as ``hook(digest, bytes_done, bytes_total)`` during downloads.
        max_spool_size: the most bytes a compressed archive may decompress to (bytes;
            the pipeline passes ``--max-layer-size``), ``None`` for no cap.
        pull_policy: when a registry is asked what a tag names (:data:`PULL_POLICIES`).
    """

    creds: str | None = field(default=None, repr=False)
    cert_dir: str | None = None
    insecure_skip_verify: bool = False
    allow_http: bool = False
    cache_dir: str | None = None
    tmp_dir: str | None = None
    progress: DownloadHook | None = None
    max_spool_size: int | None = DEFAULT_MAX_LAYER_BYTES
    pull_policy: str = "update"


def _registry(rest: str, name: str, remote: RemoteOptions) -> ImageSource:
    if not rest.startswith("//"):
        raise UsageError(f"{name}: expected docker://[HOST[:PORT]/]NAME[:TAG|@DIGEST]")
    ref = ImageRef.parse(rest[2:])
    preload_tls(ref.api_host, remote)
    from .registry import RegistrySource

    return RegistrySource(ref, functools.partial(registry_client, ref.api_host, remote),
                          BlobCache(remote.cache_dir or default_cache_dir()), remote.progress, remote.pull_policy,
                          insecure=remote.allow_http or remote.insecure_skip_verify)


def registry_client(host: str, remote: RemoteOptions) -> RegistryClient:
    """A client for the registry API host ``host`` set up as ``remote`` says: ``--creds``,
    else what ``docker login`` stored for that host; TLS and http options (with
    ``allow_http``, hosts that answered only over http are remembered in the cache
    directory's ``plain-http/``).

    Raises:
        UsageError: malformed ``--creds`` or an unusable ``--cert-dir``.
        InvalidReference: ``host`` is not ``HOST[:PORT]``.
        AuthError: the Docker config file cannot be read.
    """
    from ..registry import Credentials, RegistryClient, lookup_credentials

    credentials = Credentials.parse(remote.creds) if remote.creds is not None else lookup_credentials(host)
    return RegistryClient(host, credentials=credentials, insecure_skip_verify=remote.insecure_skip_verify,
                          allow_http=remote.allow_http, cert_dir=remote.cert_dir, plain_http=_plain_http(remote))


def _plain_http(remote: RemoteOptions) -> PlainHttpHosts | None:
    """Where hosts that answered only over http are remembered (with ``allow_http`` only)."""
    from ..registry.schemes import PlainHttpHosts

    return (PlainHttpHosts(os.path.join(remote.cache_dir or default_cache_dir(), "plain-http"))
            if remote.allow_http else None)


def preload_tls(host: str, remote: RemoteOptions) -> None:
    """Start loading the default CA bundle (:func:`docker2aci.cabundle.preload`) while the
    HTTP stack is imported, when the first request to ``host`` will be verified https
    through it: not with ``insecure_skip_verify``, nor with a ``cert_dir`` (the registry's
    own context), nor for a host remembered as plain http."""
    if remote.insecure_skip_verify or remote.cert_dir is not None:
        return
    plain_http = _plain_http(remote)
    if plain_http is not None and plain_http.remembers(api_host(host)):
        return
    from .. import cabundle

    cabundle.preload()


_TRANSPORT_LIKE = re.compile(r"([A-Za-z][A-Za-z0-9-]*):")
_TAG_OR_PORT = re.compile(r"\w[\w.-]{0,127}|\d+/.*", re.ASCII)  # busybox:latest, ubuntu:22.04, localhost:5000/app
_ARCHIVE_NAME = re.compile(r".*\.(tar|tgz|tar\.\w+)", re.IGNORECASE)


def redact_source(name: str) -> str:
    """``name``, a source as given, fit to be shown: a user's ``USER:PASSWORD@`` in a URL
    (``docker://``, ``https://``) or in what reads as a bare registry reference becomes
    ``***@``, even when the password holds ``/`` or ``@``
    (:func:`~docker2aci.reference.without_credentials`); signature-like query values are
    hidden (:func:`~docker2aci.redact.redact_text`).

    Args:
        name: the source (a batch line, a command-line argument).

    Returns:
        The source with its secrets replaced by ``***``.
    """
    from ..redact import redact_text

    scheme, sep, rest = name.partition("://")
    if sep and _SCHEME_RE.fullmatch(scheme):
        name = f"{scheme}{sep}{without_credentials(rest)}"
    elif split_transport(name, frozenset(TRANSPORTS))[0] is None and not name.startswith(("/", ".")):
        name = without_credentials(name)  # USER:PASSWORD@HOST/NAME typed without docker://
    return redact_text(name)


_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
"""A URL scheme (RFC 3986 section 3.1)."""


def _unknown_transport(name: str) -> str:
    """A hint for a missing path that starts like a transport: the closest transport
    (``oci-archve:x.tar``), or ``docker://`` for what reads as a registry image
    (``busybox:latest``, ``localhost:5000/app``, ``https://host/app``, and, through
    :func:`_registry_hint`, ``busybox``, ``quay.io/coreos/etcd:v3.5.0``, ``127.0.0.1:5000/app``)."""
    m = _TRANSPORT_LIKE.match(name)
    if m is None:
        return _registry_hint(name)
    import difflib  # only for this message

    prefix, rest = m.group(1), name[m.end():]
    known = sorted(frozenset(TRANSPORTS) | REMOTE_TRANSPORTS)
    close = difflib.get_close_matches(prefix.lower(), known, n=1)
    if close:
        guess = f"; did you mean {close[0]}:?"
    elif prefix.lower() in ("http", "https") and rest.startswith("//"):
        guess = f"; for a registry image: docker:{rest}"
    elif prefix.islower() and _TAG_OR_PORT.fullmatch(rest) and not _ARCHIVE_NAME.fullmatch(rest):
        guess = f"; for a registry image: docker://{name}"
    else:
        guess = ""
    return f" ({prefix!r} is not a transport: {', '.join(known)}{guess})"


def _registry_hint(name: str) -> str:
    """`` (for a registry image: docker://NAME)`` for a missing path that reads as a Docker
    reference typed without its transport, as ``docker pull`` takes it (``busybox``,
    ``quay.io/coreos/etcd:v3.5.0``, ``127.0.0.1:5000/app:1``); ``""`` for what reads as a
    path (``./x``, ``/x``, ``x.tar``, ``x.aci``) or is no reference."""
    from ..errors import InvalidReference

    if name.startswith((".", "/", "~")) or _ARCHIVE_NAME.fullmatch(name) or name.lower().endswith(".aci"):
        return ""
    try:
        ImageRef.parse(name)
    except InvalidReference:
        return ""
    return f" (for a registry image: docker://{name})"


def absolute_source(name: str, cwd: str) -> str:
    """``name`` with its relative local path made absolute against ``cwd``, for a worker
    whose working directory is another (a Dask cluster's): ``oci-archive:demo.tar:v1`` →
    ``oci-archive:CWD/demo.tar:v1``. The text after the path is kept as given, so the
    worker splits ``PATH[:SELECTOR]`` as :func:`open_source` would in ``cwd``.

    Registry and engine sources (``docker://``, ``docker-daemon:``), absolute paths and an
    empty path are returned unchanged, as is a bare name no file of ``cwd`` starts
    (``busybox:latest``: its error keeps the hint :func:`open_source` gives).
    """
    transport, rest = split_transport(name, frozenset(TRANSPORTS) | REMOTE_TRANSPORTS)
    if transport in REMOTE_TRANSPORTS or not rest or os.path.isabs(rest):
        return name
    if transport is None:
        path, _ = _split_path(os.path.join(cwd, rest))
        if not os.path.lexists(path):  # a link that leads nowhere is still this directory's
            return name
        return os.path.join(cwd, rest)
    return f"{transport}:{os.path.join(cwd, rest)}"


def open_source(name: str, remote: RemoteOptions | None = None) -> tuple[ImageSource, str | None]:
    """Open the source a user named.

    Args:
        name: ``transport:rest`` or a bare path.
        remote: how to reach registries and engines.

    Returns:
        the source, and the selector the name carried (``oci:DIR:TAG`` → ``TAG``).

    Raises:
        UsageError: an unknown transport, a malformed remote name, bad ``--creds`` or
            ``--cert-dir``.
        InvalidReference: a registry or engine reference does not parse.
        AuthError: the Docker config file cannot be read.
        SourceError: the path does not exist or is not a readable source; the engine
            cannot be reached or lacks the image (ImageNotFound).
    """
    remote = remote or RemoteOptions()
    if not name.strip():
        raise UsageError("the image source is empty: give a path, or TRANSPORT:NAME (docker://NAME, oci:DIR, ...)")
    transport, rest = split_transport(name, frozenset(TRANSPORTS) | REMOTE_TRANSPORTS)
    if transport == "docker":
        return _registry(rest, name, remote), None
    if transport == "docker-daemon":
        if not rest:
            raise UsageError(f"{name}: expected docker-daemon:NAME[:TAG]")
        from .daemon import DaemonSource

        return DaemonSource(rest, remote.tmp_dir), None
    path, selector = _split_path(rest)
    try:
        os.stat(path)
    except OSError as err:
        shown = redact_source(name)  # a URL's user:password@ is never quoted back
        if err.errno != errno.ENOENT:  # a link loop, a parent that is a file, no permission
            raise SourceError(shown, (err.strerror or str(err)).lower()) from None
        raise SourceError(shown, "no such file or directory" + (_unknown_transport(shown) if transport is None else ""))
    if transport in _TAGGED_LAYOUTS:  # their TAG is a ref name (OciLayout's tag)
        return _TAGGED_LAYOUTS[transport](path, name, remote, selector), selector
    opener = TRANSPORTS[transport] if transport else _sniffed
    return opener(path, name, remote), selector
