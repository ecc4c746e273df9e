"""docker2aci: convert Docker and OCI container images into App Container Images (ACI).

Python API::

    import docker2aci
    [aci] = docker2aci.convert("oci-archive:busybox.tar", docker2aci.ConvertOptions(output_dir="out"))
    aci.path, aci.image_id, aci.manifest

The ``docker2aci`` command is a thin layer over :func:`convert`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .aci import Compression
from .errors import Docker2ACIError
from .pipeline import ConvertedACI, ConvertOptions, convert

__all__ = ["convert", "ConvertOptions", "ConvertedACI", "Compression", "Docker2ACIError", "__version__"]
