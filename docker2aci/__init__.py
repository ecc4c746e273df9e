"""docker2aci: convert Docker and OCI container images into App Container Images (ACI).

Python API::

    import docker2aci
    [aci] = docker2aci.convert("oci-archive:busybox.tar", docker2aci.ConvertOptions(output_dir="out"))
    aci.path, aci.image_id, aci.manifest

The ``docker2aci`` command is a thin layer over :func:`convert`.
"""

from __future__ import annotations

__version__ = "0.1.0"

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without loading typing: this file runs before the Ctrl-C handling
if TYPE_CHECKING:
    from typing import Any

    from .compression import Compression
    from .errors import Docker2ACIError
    from .pipeline import ConvertedACI, ConvertOptions, convert

__all__ = ["Compression", "ConvertOptions", "ConvertedACI", "Docker2ACIError", "__version__", "convert"]

_LAZY = {"convert": "pipeline", "ConvertOptions": "pipeline", "ConvertedACI": "pipeline", "Compression": "compression",
         "Docker2ACIError": "errors"}


def __getattr__(name: str) -> Any:
    """The conversion API, imported on first use: ``docker2aci run`` of an ACI never
    loads the converter, and the console script (:mod:`docker2aci.console`) starts
    before anything but this file is loaded (PEP 562)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
