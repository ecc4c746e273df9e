"""Where an ACI's detached signature sits: ``foo.aci`` → ``foo.aci.asc`` (appc
``spec/aci.md``, and ``spec/discovery.md``: signature URLs end in ``aci.asc``).

Kept apart from :mod:`docker2aci.signing`, which loads OpenPGP, so that a conversion
that signs nothing can still find a signature beside the file it replaces.
"""

from __future__ import annotations

import os

SIGNATURE_SUFFIX = ".asc"
"""What a detached signature's file name adds to the ACI's."""


def signature_path(aci_path: str | os.PathLike[str]) -> str:
    """Where the signature of ``aci_path`` lives: ``<aci_path>.asc``."""
    return os.fspath(aci_path) + SIGNATURE_SUFFIX
