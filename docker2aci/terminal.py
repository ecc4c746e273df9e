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

__all__ = ["MAX_SHOWN_CHARS", "abridged", "go_quoted", "printable"]

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


CONTINUATION = "  "
"""What starts every line but the first of a text of several lines (:func:`printable` with
``newlines``): a line a message quotes (an image's label holding ``\\nERROR: ...``) can
never pass for a line of its own, such as a log line or the error line."""


def printable(text: str, *, newlines: bool = False, continuation: str = CONTINUATION) -> str:
    """``text`` with every character that :meth:`str.isprintable` refuses (controls, format
    characters such as the bidi overrides, line and paragraph separators, surrogates,
    unassigned code points) written as its escape.

    Args:
        text: the text to show.
        newlines: keep ``\\n`` (a message of several lines, a traceback), each line after
            the first indented by ``continuation``; else it is escaped too, for text that
            must stay on one line or in one field.
        continuation: the indent of those lines (``""`` only for a text whose lines are
            all its own, each escaped where it was made).

    Returns:
        ``text`` itself when nothing needs escaping.
    """
    if newlines and "\n" in text:
        return ("\n" + continuation).join(printable(line) for line in text.split("\n"))
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


_GO_NAMED = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
             "\v": "\\v", "\\": "\\\\", '"': '\\"'}


def go_quoted(text: str) -> str:
    """``text`` in double quotes as Go's ``%q`` (``strconv.Quote``) writes it, which is how the
    reference tool shows a volume's path: ``"`` and ``\\`` escaped, so that what is shown
    reads back as one string (a path holding ``", readOnly: true`` cannot pass for another
    field, a backslash and ``t`` cannot pass for a tab); controls as ``\\n``, ``\\x1b``,
    other unprintable characters as ``\\u202e``, a byte that was not UTF-8 as ``\\xff``.
    """
    out = []
    for char in text:
        code = ord(char)
        if char in _GO_NAMED:
            out.append(_GO_NAMED[char])
        elif char.isprintable():
            out.append(char)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, carried as a surrogate escape
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


MAX_SHOWN_CHARS = 200
"""The most characters of a value a server or an image chose (a header, a URL, a tag) a
message shows (:func:`abridged`)."""


def abridged(text: str, limit: int = MAX_SHOWN_CHARS) -> str:
    """``text``, or its first ``limit`` characters and ``…`` when it is longer: such a value
    can be megabytes long (a header up to the HTTP client's limit, a tag a registry lists),
    and a message that names it need not hold all of it."""
    return text if len(text) <= limit else text[:limit] + "…"
