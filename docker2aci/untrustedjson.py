"""JSON from outside (manifests, configs, registry answers, files): one error for every
way a document can fail to parse, with a message fit for a user.

``json.loads`` fails in four ways on bytes it did not write: ``JSONDecodeError`` (not
JSON), ``UnicodeDecodeError`` (not UTF-8), a bare ``ValueError`` for an integer of more
digits than Python converts (4,300 by default: ``sys.get_int_max_str_digits``), and
``RecursionError`` for arrays or objects nested thousands deep. Callers that caught only
the first two let the others out as tracebacks.
"""

from __future__ import annotations

import codecs
import json
import math
import sys
from typing import Any


class BadJSON(ValueError):
    """The bytes are not a JSON document Python can hold; the message says why, without
    quoting the document (it may hold secrets). ``pos``: the character offset of a syntax
    error, else ``None``."""

    def __init__(self, message: str, pos: int | None = None) -> None:
        super().__init__(message)
        self.pos = pos


def _no_constant(constant: str) -> Any:
    raise BadJSON(f"{constant} is not JSON (RFC 8259 has no NaN or Infinity)")


def _finite(number: str) -> float:
    """A number whose float is finite: ``1e400`` reads as Infinity, which would be written
    back as ``Infinity``, not JSON."""
    value = float(number)
    if math.isinf(value):
        raise BadJSON(f"{number[:20]} is too large for a 64-bit float: it reads as Infinity, which is not JSON")
    return value


def loads(untrusted: bytes | str, *, allow_nan: bool = True, utf8_only: bool = False) -> Any:
    """Parse one JSON document (RFC 8259; bytes are decoded as UTF-8, or UTF-16/32 when
    they start so, as :func:`json.loads` does).

    Args:
        untrusted: the document.
        allow_nan: read ``NaN``, ``Infinity`` and ``-Infinity`` as Python does (a
            registry's token answer: its lifetime is checked as a number); ``False`` for a
            document that is written out again for other readers (an ACI's manifest).
        utf8_only: bytes must be UTF-8 without a byte order mark (RFC 8259, section 8.1:
            JSON exchanged between systems is UTF-8, and a BOM is not added), as Go's
            ``encoding/json`` (appc's and rkt's reader) reads them; ``False`` also reads
            UTF-16 and UTF-32, and skips a UTF-8 BOM.

    Raises:
        BadJSON: not JSON, not text, an integer longer than Python's conversion limit, or
            nested too deeply for the interpreter's stack; a NaN or an Infinity (also a
            number too large for a float, ``1e400``) unless ``allow_nan``; a byte order
            mark or text that is not UTF-8 when ``utf8_only``.
    """
    try:
        if utf8_only and isinstance(untrusted, bytes):
            if untrusted.startswith(codecs.BOM_UTF8):
                raise BadJSON("it starts with a byte order mark (U+FEFF), which JSON text does not have "
                              "(RFC 8259, section 8.1)")
            untrusted = untrusted.decode("utf-8")
        if allow_nan:
            return json.loads(untrusted)
        return json.loads(untrusted, parse_constant=_no_constant, parse_float=_finite)
    except BadJSON:
        raise
    except json.JSONDecodeError as err:
        raise BadJSON(str(err), err.pos) from None
    except UnicodeDecodeError as err:
        raise BadJSON(f"not UTF-8 text (byte {err.start})") from None
    except RecursionError:
        raise BadJSON("nested too deeply") from None
    except ValueError:  # what remains: int() refusing a number of too many digits
        raise BadJSON(f"a number longer than {sys.get_int_max_str_digits()} digits") from None
