"""What a registry error tells the user, with secrets kept out of it.

* :func:`parse_error_body` turns an error body into short ``CODE: message`` lines:
  the distribution spec's ``{"errors": [{"code", "message", "detail"}]}``
  (docker registry HTTP API v2, "Errors"), OAuth 2.0 ``error``/``error_description``
  (RFC 6749 section 5.2) and the Docker token server's ``details``.
* :func:`redact_url` removes ``user:password@`` and the values of signature-like query
  parameters (presigned object-storage URLs) before a URL goes into a message or a log.
* :func:`causes` walks an exception and what caused it, as requests and urllib3 chain them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .. import untrustedjson

MAX_ERROR_BODY_BYTES = 64 * 1024
"""The most of an error body read to explain an error (bytes)."""
MAX_DIAGNOSTICS = 5
"""The most ``errors[]`` entries reported."""
MAX_MESSAGE_CHARS = 300
"""The longest single diagnostic kept (characters)."""

_SENSITIVE_QUERY = re.compile(r"sig|token|key|credential|password|secret|auth|session", re.IGNORECASE)
_REDACTED = "***"


def redact_url(url: str) -> str:
    """``url`` without credentials: userinfo becomes ``***@``, sensitive query values ``***``.

    Args:
        url: an absolute URL (may be malformed; then it is returned with only the
            userinfo cut, best effort).

    Returns:
        The URL safe to show in messages and logs.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r"//[^/@]*@", f"//{_REDACTED}@", url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{_REDACTED}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, _REDACTED if _SENSITIVE_QUERY.search(k) else v) for k, v in pairs],
                          safe=":/,*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


_QUERY_PARAM_RE = re.compile(r"([?&;])([^=&;#\s'\"()]+)=([^&;#\s'\"()]*)")
_USERINFO_RE = re.compile(r"//[^/\s'\"()]*@")
"""``//USER:PASSWORD@``, to the last ``@`` before the host (a password may hold ``@``)."""


def redact_text(text: str) -> str:
    """``text`` (a traceback, an exception's message) with what :func:`redact_url` hides
    hidden wherever a URL or a bare ``path?query`` appears in it: ``user:password@`` and
    the values of signature-like query parameters. urllib3's and requests' messages quote
    the URL of a failed request as a path and query (``Max retries exceeded with url:
    /store/...?X-Amz-Signature=...``), without a scheme for :func:`redact_url` to find."""
    text = _USERINFO_RE.sub(f"//{_REDACTED}@", text)
    return _QUERY_PARAM_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}={_REDACTED}"
                               if _SENSITIVE_QUERY.search(m.group(2)) else m.group(0), text)


def _short(text: str) -> str:
    """One line, printable characters only (a registry's text never drives a terminal)."""
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


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
