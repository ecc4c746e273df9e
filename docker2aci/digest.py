"""The ``Digest`` value type (OCI image-spec "Digests") and hashing helpers."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

from .errors import InvalidManifest

_ALGORITHMS = {"sha256": 64, "sha384": 96, "sha512": 128}
ALGORITHMS = frozenset(_ALGORITHMS)
"""The registered digest algorithms (OCI image-spec "Registered algorithms")."""
_DIGEST_RE = re.compile(r"^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-f0-9]+)$")


@dataclass(frozen=True, order=True)
class Digest:
    """A validated content digest ``<algorithm>:<hex>`` (image-spec descriptor.md#digests).

    Only registered algorithms (sha256, sha384, sha512) with a hex part of the right
    length are accepted, so a ``Digest`` is safe to use in a URL or as a single path
    component.

    Attributes:
        algorithm: ``sha256``, ``sha384`` or ``sha512``.
        hex: lower-case hex of the hash, 64/96/128 characters.
    """

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: str, *, what: str = "digest") -> Digest:
        """Parse ``sha256:<64 hex>`` (and sha384/sha512).

        Args:
            text: the digest string as found in the input.
            what: names the field for the error message.

        Raises:
            InvalidManifest: the string is not a valid digest of a known algorithm.
        """
        m = _DIGEST_RE.fullmatch(text) if isinstance(text, str) else None
        if not m or _ALGORITHMS.get(m.group(1)) != len(m.group(2)):
            raise InvalidManifest(what, f"invalid digest {text!r}")
        return cls(m.group(1), m.group(2))

    @classmethod
    def of_bytes(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """The digest of ``data`` with ``algorithm``."""
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    @classmethod
    def of_file(cls, path: str | os.PathLike[str], algorithm: str = "sha256") -> Digest:
        """The digest of a file's bytes, read in 1 MiB chunks.

        Raises:
            OSError: the file cannot be read.
        """
        h = hashlib.new(algorithm)
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        return cls(algorithm, h.hexdigest())

    def new_hash(self) -> hashlib._Hash:
        """A fresh hashlib object for this digest's algorithm."""
        return hashlib.new(self.algorithm)

    @property
    def short(self) -> str:
        """The first 12 hex characters, as Docker shows image IDs."""
        return self.hex[:12]

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"
