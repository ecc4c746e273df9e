"""The registry client (Docker registry HTTP API v2 / OCI distribution spec).

``RegistryClient`` talks to one registry host; ``lookup_credentials`` finds what
``docker login`` stored; ``parse_challenges`` reads ``WWW-Authenticate`` (RFC 7235).

The names below are imported on first use (PEP 562), so that a light module of the
package (:mod:`.schemes`) can be read before requests is imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .auth import Challenge, parse_challenges
    from .client import MANIFEST_MEDIA_TYPES, RegistryClient
    from .credentials import Credentials
    from .credentials import lookup as lookup_credentials
    from .retry import RetryPolicy

_EXPORTS = {
    "MANIFEST_MEDIA_TYPES": (".client", "MANIFEST_MEDIA_TYPES"),
    "Challenge": (".auth", "Challenge"),
    "Credentials": (".credentials", "Credentials"),
    "RegistryClient": (".client", "RegistryClient"),
    "RetryPolicy": (".retry", "RetryPolicy"),
    "lookup_credentials": (".credentials", "lookup"),
    "parse_challenges": (".auth", "parse_challenges"),
}

__all__ = [
    "MANIFEST_MEDIA_TYPES",
    "Challenge",
    "Credentials",
    "RegistryClient",
    "RetryPolicy",
    "lookup_credentials",
    "parse_challenges",
]


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    return getattr(importlib.import_module(module, __name__), attribute)
