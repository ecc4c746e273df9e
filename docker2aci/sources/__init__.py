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
from typing import Callable

from ..errors import SourceError, UsageError
from ..reference import split_transport
from .archive import DockerArchive, is_docker_archive
from .base import ImageName, ImageSource, ResolvedImage
from .files import DirectoryTree, TarTree
from .oci_layout import OciLayout

__all__ = ["ImageName", "ImageSource", "ResolvedImage", "open_source", "TRANSPORTS"]


def _base_repository(path: str) -> str:
    """The layout directory's or archive's base name up to its first ``.``."""
    return os.path.basename(os.path.normpath(path)).split(".", 1)[0] or "image"


def _split_path(rest: str) -> tuple[str, str | None]:
    """``PATH[:SELECTOR]``: the shortest prefix that exists is the path."""
    if os.path.exists(rest):
        return rest, None
    for i, ch in enumerate(rest):
        if ch == ":" and os.path.exists(rest[:i]):
            return rest[:i], rest[i + 1:] or None
    return rest, None


def _docker_archive(path: str, display: str) -> ImageSource:
    files = TarTree(path, display)
    if not is_docker_archive(files) and files.exists("index.json"):
        return OciLayout(files, _base_repository(path))  # a containerd-store save: only index.json
    return DockerArchive(files)


def _oci(path: str, display: str) -> ImageSource:
    if not os.path.isdir(path):
        raise SourceError(display, "not a directory (an OCI image layout is a directory)")
    return OciLayout(DirectoryTree(path, display), _base_repository(path))


def _oci_archive(path: str, display: str) -> ImageSource:
    return OciLayout(TarTree(path, display), _base_repository(path))


def _sniffed(path: str, display: str) -> ImageSource:
    if os.path.isdir(path):
        return _oci(path, display)
    files = TarTree(path, display)
    if is_docker_archive(files):
        return DockerArchive(files)
    return OciLayout(files, _base_repository(path))


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
