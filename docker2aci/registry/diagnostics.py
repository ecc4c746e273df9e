"""What a registry error tells the user (its URLs redacted by :mod:`docker2aci.redact`).

* :func:`parse_error_body` turns an error body into short ``CODE: message`` lines:
  the distribution spec's ``{"errors": [{"code", "message", "detail"}]}``
  (docker registry HTTP API v2, "Errors"), OAuth 2.0 ``error``/``error_description``
  (RFC 6749 section 5.2) and the Docker token server's ``details``.
* :func:`causes` walks an exception and what caused it, as requests and urllib3 chain them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .. import untrustedjson
from ..terminal import abridged

MAX_ERROR_BODY_BYTES = 64 * 1024
"""The most of an error body read to explain an error (bytes)."""
MAX_DIAGNOSTICS = 5
"""The most ``errors[]`` entries reported."""
MAX_MESSAGE_CHARS = 300
"""The longest single diagnostic kept (characters)."""


def _short(text: str) -> str:
    """One line, printable characters only (a registry's text never drives a terminal)."""
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return abridged(text, MAX_MESSAGE_CHARS - 1)  # with its "…", at most MAX_MESSAGE_CHARS


def parse_error_body(untrusted_body: bytes) -> tuple[str, ...]:
    """Diagnostics from an error response body.

    Args:
        untrusted_body: at most :data:`MAX_ERROR_BODY_BYTES` of the body.

    Returns:
        ``("MANIFEST_UNKNOWN: manifest unknown", ...)``; empty when the body says nothing
        readable. ``detail`` values are left out (they can be large and say little).
    """
    try:
        doc: Any = untrustedjson.loads(untrusted_body)
    except untrustedjson.BadJSON:
        return ()
    if not isinstance(doc, dict):
        return ()
    out: list[str] = []
    errors = doc.get("errors")
    if isinstance(errors, list):
        for item in errors[:MAX_DIAGNOSTICS]:
            if not isinstance(item, dict):
                continue
            code = item.get("code")
            message = item.get("message")
            parts = [str(p) for p in (code, message) if isinstance(p, str) and p]
            if parts:
                out.append(_short(": ".join(parts)))
    error = doc.get("error")
    if isinstance(error, str) and error:
        desc = doc.get("error_description")
        out.append(_short(f"{error}: {desc}" if isinstance(desc, str) and desc else error))
    details = doc.get("details")
    if isinstance(details, str) and details:
        out.append(_short(details))
    return tuple(out)


def is_temporary_status(status: int) -> bool:
    """Whether an HTTP status may succeed later (408, 429, 5xx)."""
    return status in (408, 429) or status >= 500


def causes(err: BaseException) -> Iterator[BaseException]:
    """``err`` and what caused it, as requests and urllib3 chain them (``reason``, an
    exception among ``args``, ``__cause__``, ``__context__``), each once."""
    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        nxt = getattr(cur, "reason", None)
        if not isinstance(nxt, BaseException):
            args = getattr(cur, "args", ())
            nxt = next((a for a in args if isinstance(a, BaseException)), None)
        cur = nxt or cur.__cause__ or cur.__context__
