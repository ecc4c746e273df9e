"""Image sources, named the way skopeo names them: ``transport:rest``.

==================  ==================================================
``docker-archive:PATH[:NAME[:TAG]]``  a ``docker save`` archive (any layout)
``oci:DIR[:TAG]``                     an OCI image layout directory
``oci-archive:PATH[:TAG]``            a tar of an OCI image layout
bare ``PATH``                         sniffed: a layout directory or either archive
==================  ==================================================

The table below is the only registry of transports (no registration by import).
"""

from __future__ import annotations

import os
import re
from typing import Callable

from ..errors import SourceError, UsageError
from ..reference import COMPONENT_RE as _COMPONENT, split_transport
from .archive import DockerArchive, is_docker_archive
from .base import ImageName, ImageSource, ResolvedImage
from .files import DirectoryTree, TarTree
from .oci_layout import OciLayout

__all__ = ["ImageName", "ImageSource", "ResolvedImage", "open_source", "TRANSPORTS"]


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
    """``PATH[:SELECTOR]``: the shortest prefix that exists is the path."""
    if os.path.exists(rest):
        return rest, None
    for i, ch in enumerate(rest):
        if ch == ":" and os.path.exists(rest[:i]):
            return rest[:i], rest[i + 1:] or None
    return rest, None


def _archive(path: str, display: str, docker: bool) -> ImageSource:
    """A ``docker save`` or an OCI layout in a tar; ``docker`` says which was named
    (a bare path is sniffed). A containerd-store save (``index.json`` only) is read as
    an OCI layout either way."""
    files = TarTree(path, display)
    try:
        if is_docker_archive(files):
            return DockerArchive(files)
        if docker and not files.exists("index.json"):
            raise SourceError(display, "not a docker save archive: neither manifest.json nor repositories")
        return OciLayout(files, _base_repository(path))
    except BaseException:
        files.close()
        raise


def _docker_archive(path: str, display: str) -> ImageSource:
    return _archive(path, display, docker=True)


def _oci(path: str, display: str) -> ImageSource:
    if not os.path.isdir(path):
        raise SourceError(display, "not a directory (an OCI image layout is a directory)")
    return OciLayout(DirectoryTree(path, display), _base_repository(path))


def _oci_archive(path: str, display: str) -> ImageSource:
    return OciLayout(TarTree(path, display), _base_repository(path))


def _sniffed(path: str, display: str) -> ImageSource:
    if os.path.isdir(path):
        return _oci(path, display)
    return _archive(path, display, docker=False)


TRANSPORTS: dict[str, Callable[[str, str], ImageSource]] = {
    "docker-archive": _docker_archive,
    "oci": _oci,
    "oci-archive": _oci_archive,
}
_LATER = {"docker": "registry sources (docker://) are not supported yet",
          "docker-daemon": "docker-daemon: sources are not supported yet"}


def open_source(name: str) -> tuple[ImageSource, str | None]:
    """Open the source a user named.

    Args:
        name: ``transport:rest`` or a bare path.

    Returns:
        the source, and the selector the name carried (``oci:DIR:TAG`` → ``TAG``).

    Raises:
        UsageError: an unknown or unsupported transport.
        SourceError: the path does not exist or is not a readable source.
    """
    transport, rest = split_transport(name, frozenset(TRANSPORTS) | frozenset(_LATER))
    if transport in _LATER:
        raise UsageError(f"{name}: {_LATER[transport]}")
    path, selector = _split_path(rest)
    if not os.path.exists(path):
        raise SourceError(name, "no such file or directory")
    opener = TRANSPORTS[transport] if transport else _sniffed
    return opener(path, name), selector
