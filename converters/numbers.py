"""Decimal numbers read from untrusted text (image configs, ``/etc/passwd``, HTTP headers).

``str.isdigit`` is true for digits ``int`` refuses (``"²"``) and ``int`` refuses more than
4,300 digits, so ``text.isdigit() and int(text)`` can raise on hostile input. Every
reader of such a number goes through :func:`plain_decimal` instead.
"""

from __future__ import annotations

import re

MAX_OWNER_ID = 2**32 - 2
"""Largest uid or gid a Linux file or process can have: ``uid_t`` is 32 bits, and
``(uid_t) -1`` means "leave it unchanged" to ``chown`` and ``setresuid``."""


def plain_decimal(text: str, max_digits: int) -> int | None:
    """The value of ``text`` when it is 1 to ``max_digits`` ASCII digits (no sign, no
    spaces, no underscores), else ``None``."""
    if text.isascii() and text.isdigit() and len(text) <= max_digits:
        return int(text)
    return None


_PAX_TIME = re.compile(r"(-?)([0-9]{1,19})(?:\.([0-9]+))?")


def pax_time_ns(text: str) -> int | None:
    """A PAX time record (``mtime``: ``[-]seconds[.fraction]``, POSIX.1-2001 pax
    "mtime") in nanoseconds since the epoch, exactly; ``None`` for any other text.

    ``tarfile`` reads the record as a float, which keeps about 16 digits: the last
    digits of today's nanoseconds are lost. Digits past the ninth are cut off and the
    sign applies to the fraction too, as Go's archive/tar (Docker, umoci) reads it.
    """
    match = _PAX_TIME.fullmatch(text) if text.isascii() else None
    if match is None:
        return None
    sign, seconds, fraction = match.groups()
    nanoseconds = int(seconds) * 1_000_000_000 + int((fraction or "")[:9].ljust(9, "0"))
    return -nanoseconds if sign else nanoseconds
