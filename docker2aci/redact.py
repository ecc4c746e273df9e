"""Secrets kept out of what is shown: URLs and texts (messages, tracebacks) with their
credentials hidden.

* :func:`redact_url` removes ``user:password@`` and the values of signature-like query
  parameters (presigned object-storage URLs) before a URL goes into a message or a log.
* :func:`redact_text` does the same wherever a URL, or a bare ``path?query``, appears in a
  text (urllib3's and requests' messages, a ``--debug`` traceback).

A reference as the user typed it (``USER:PASSWORD@host/app``) has its own rule, which
knows the reference syntax: :func:`docker2aci.reference.without_credentials`.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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
