"""Text from images, registries, archives and key files made safe to show on a terminal
or in a log.

An image config, a ``docker save`` archive's ``RepoTags``, a layer entry name, a
registry's error body or a key's user ID may hold characters a terminal acts on: ESC
(CSI colours, cursor moves that overwrite a line, OSC 8 hyperlinks, OSC 52 clipboard
writes), BEL, backspace, carriage return, and the bidi overrides (U+202E) that reorder
what is shown. :func:`printable` writes every such character as the escape Python's
``repr()`` would use (``\\x1b``, ``\\r``, ``\\u202e``; a byte that was not UTF-8,
carried as a surrogate escape, as ``\\udcff``), so that what is shown is what is there.
"""

from __future__ import annotations

__all__ = ["printable"]

_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str, *, newlines: bool = False) -> str:
    """``text`` with every character that :meth:`str.isprintable` refuses (controls, format
    characters such as the bidi overrides, line and paragraph separators, surrogates,
    unassigned code points) written as its escape.

    Args:
        text: the text to show.
        newlines: keep ``\\n`` as it is (a message of several lines, a traceback); else
            it is escaped too, for text that must stay on one line or in one field.

    Returns:
        ``text`` itself when nothing needs escaping.
    """
    if text.isprintable():
        return text
    if newlines:
        return "\n".join(printable(line) for line in text.split("\n"))
    return "".join(c if c.isprintable() else _escape(c) for c in text)
