"""The squashed tree + the image config → the image's appc manifest.

The one step of the pipeline that reads the rootfs for the manifest: ``/etc/passwd``
gives the group of a bare ``USER`` (see :func:`converters.manifest.build_manifest`).
"""

from __future__ import annotations

from typing import Any

from converters.errors import BadConfig
from converters.manifest import ImageConfig, Naming, build_manifest
from converters.rootfs import RootfsTree

from .errors import InvalidConfig
from .limits import MAX_PASSWD_BYTES


def image_manifest(display: str, tree: RootfsTree, config: ImageConfig, naming: Naming,
                   os_arch: tuple[str, str], warnings: list[str]) -> dict[str, Any]:
    """The appc image manifest of the image whose tree is ``tree`` (with its app).

    Args:
        display: the image, for messages.
        tree: the rootfs as it will be run (``/etc/passwd`` read from it, at most
            :data:`MAX_PASSWD_BYTES`).
        config, naming, os_arch: as for :func:`converters.manifest.build_manifest`.
        warnings: receives what was dropped or changed.

    Raises:
        InvalidConfig: the config cannot be expressed as an appc manifest.
    """
    passwd = tree.read_file("/etc/passwd", MAX_PASSWD_BYTES)
    try:
        result = build_manifest(config, naming, os_arch,
                                passwd.decode("utf-8", "replace") if passwd is not None else None)
    except BadConfig as err:
        raise InvalidConfig(f"{display}: {err}") from err
    warnings.extend(result.warnings)
    return result.manifest
