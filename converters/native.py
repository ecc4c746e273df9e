"""The optional C accelerator of the tar header codec (``converters/_tarheader.c``).

:data:`tarheader` is the compiled module, or ``None`` when it was not built (no C
compiler or Python headers at install time) or ``DOCKER2ACI_PURE_PYTHON=1`` is set. Its
users keep the pure-Python definition and fall back to it for every header the
accelerator declines, so results never depend on whether it is there.
"""

from __future__ import annotations

import os
from types import ModuleType

built: ModuleType | None
"""``converters._tarheader`` if it was built (whatever the environment says), else ``None``."""
try:
    from . import _tarheader as built
except ImportError:  # built without a compiler: the Python codec alone
    built = None

tarheader: ModuleType | None = None if os.environ.get("DOCKER2ACI_PURE_PYTHON") == "1" else built
"""The accelerator in use (``decode(buf)``, ``encode(...)``), or ``None``."""
