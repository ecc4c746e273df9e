"""The output compressions of an ACI and their levels (``--compression``,
``--compression-level``): what the options accept, apart from the writing itself
(:mod:`docker2aci.aci`), so that checking options imports no compressor.
"""

from __future__ import annotations

import enum

GZIP_LEVEL = 3
"""Default gzip level: ISA-L's level 3, its smallest (see :data:`ISAL_LEVELS`). Of the
benchmark image's ACI (a 149 MB tar uncompressed) it makes 57.6 MB, 1.04 × what the
reference tool's compressor (``klauspost/pgzip`` at its default level) makes of the same
tar; level 1 makes 59.5 MB (1.08 ×) in half the CPU time (``docs/performance.md``, "Why
level 3")."""
GZIP_THREADS = 2
"""ISA-L compression threads (levels 0-3). Each 1 MiB block is compressed on its own,
primed with the previous 32 KiB, so the bytes do not depend on the number of threads;
two keep the level-3 compression off the critical path on a two-core machine."""
ISAL_LEVELS = range(4)
"""Levels compressed with ISA-L (0 fastest, 3 smallest); 4-9 are zlib's."""
ZLIB_LEVELS = range(4, 10)
"""Levels compressed with zlib (``gzip`` module)."""


class Compression(enum.Enum):
    """Output compression (``--compression``): the appc set (``spec/aci.md``, "Image
    Archives": an ACI may be gzip, bzip2 or xz compressed, or plain)."""

    GZIP = "gzip"
    NONE = "none"
    XZ = "xz"
    BZIP2 = "bzip2"


def check_level(level: int) -> int:
    """Check a gzip level (``--compression-level``).

    Raises:
        ValueError: not in 0-9.
    """
    if level not in ISAL_LEVELS and level not in ZLIB_LEVELS:
        raise ValueError(f"gzip level {level}: choose 0-3 (ISA-L, fast) or 4-9 (zlib, smaller and slower)")
    return level
