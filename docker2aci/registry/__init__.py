"""The registry client (Docker registry HTTP API v2 / OCI distribution spec).

``RegistryClient`` talks to one registry host; ``lookup_credentials`` finds what
``docker login`` stored; ``parse_challenges`` reads ``WWW-Authenticate`` (RFC 7235).
"""

from __future__ import annotations

from .auth import Challenge, parse_challenges
from .client import MANIFEST_MEDIA_TYPES, RegistryClient
from .credentials import Credentials
from .credentials import lookup as lookup_credentials
from .retry import RetryPolicy

__all__ = [
    "MANIFEST_MEDIA_TYPES",
    "Challenge",
    "Credentials",
    "RegistryClient",
    "RetryPolicy",
    "lookup_credentials",
    "parse_challenges",
]
