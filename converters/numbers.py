"""Decimal numbers read from untrusted text (image configs, ``/etc/passwd``, HTTP headers).

``str.isdigit`` is true for digits ``int`` refuses (``"²"``) and ``int`` refuses more than
4,300 digits, so ``text.isdigit() and int(text)`` can raise on hostile input. Every
reader of such a number goes through :func:`plain_decimal` instead.
"""

from __future__ import annotations

MAX_OWNER_ID = 2**32 - 2
"""Largest uid or gid a Linux file or process can have: ``uid_t`` is 32 bits, and
``(uid_t) -1`` means "leave it unchanged" to ``chown`` and ``setresuid``."""


def plain_decimal(text: str, max_digits: int) -> int | None:
    """The value of ``text`` when it is 1 to ``max_digits`` ASCII digits (no sign, no
    spaces, no underscores), else ``None``."""
    if text.isascii() and text.isdigit() and len(text) <= max_digits:
        return int(text)
    return None
