"""docker2aci: convert Docker and OCI container images into App Container Images (ACI).

Python API::

    import docker2aci
    [aci] = docker2aci.convert("oci-archive:busybox.tar", docker2aci.ConvertOptions(output_dir="out"))
    aci.path, aci.image_id, aci.manifest

The ``docker2aci`` command is a thin layer over :func:`convert`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

from .errors import Docker2ACIError

if TYPE_CHECKING:
    from .compression import Compression
    from .pipeline import ConvertedACI, ConvertOptions, convert

__all__ = ["Compression", "ConvertOptions", "ConvertedACI", "Docker2ACIError", "__version__", "convert"]

_LAZY = {"convert": "pipeline", "ConvertOptions": "pipeline", "ConvertedACI": "pipeline", "Compression": "compression"}


def __getattr__(name: str) -> Any:
    """The conversion API, imported on first use: ``docker2aci run`` of an ACI never
    loads the converter (PEP 562)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
