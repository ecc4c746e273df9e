"""docker2aci/untrustedjson.py: every way ``json.loads`` fails on outside bytes is one
error, ``BadJSON``, whose message never quotes the document."""

from __future__ import annotations

import sys

import pytest

from docker2aci.untrustedjson import BadJSON, loads

SECRET = "hunter2-c2VjcmV0"


@pytest.mark.parametrize(("doc", "message", "pos"), [
    (b'{"token": "' + SECRET.encode() + b'", ', "Expecting property name enclosed in double quotes", 30),
    (b'{"token": "' + SECRET.encode() + b'\xff"}', "not UTF-8 text (byte 27)", None),
    (b'{"token": "' + SECRET.encode() + b'", "n": ' + b"9" * 4301 + b"}", "a number longer than 4300 digits", None),
    (b'{"token": "' + SECRET.encode() + b'", "n": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "nested too deeply", None),
], ids=["syntax", "not-utf8", "big-number", "nested"])
def test_each_failure_is_bad_json_without_the_document(doc: bytes, message: str, pos: int | None) -> None:
    with pytest.raises(BadJSON) as info:
        loads(doc)
    assert str(info.value).startswith(message)
    assert info.value.pos == pos
    assert SECRET not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no chained text quoting it either
    assert isinstance(info.value, ValueError)  # callers that caught ValueError still catch it


def test_the_limit_named_is_the_interpreters() -> None:
    limit = sys.get_int_max_str_digits()
    assert loads(b"9" * limit) == int("9" * limit)
    with pytest.raises(BadJSON, match=f"longer than {limit} digits"):
        loads(b"9" * (limit + 1))


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(("doc", "value"), [
    (b'{"a": [1, 2.5, null, true], "b": "\\u00e9"}', {"a": [1, 2.5, None, True], "b": "é"}),
    ('{"x": "é"}', {"x": "é"}),
    ('{"x": 1}'.encode("utf-16"), {"x": 1}),
    (b"[" * 500 + b"]" * 500, _nested(500)),
], ids=["bytes", "str", "utf-16", "nested-500"])
def test_documents_parse_as_json_loads_parses_them(doc: bytes | str, value: object) -> None:
    assert loads(doc) == value


@pytest.mark.parametrize("doc", [b'{"x": NaN}', b'{"x": -Infinity}', b'{"x": 1e400}', b'[-1.5e999]'],
                         ids=["nan", "infinity", "overflow", "negative-overflow"])
def test_no_infinity_is_read_when_it_would_not_be_written_back_as_json(doc: bytes) -> None:
    """``allow_nan=False`` (an ACI's manifest, which render writes out again): a number
    past a float's range read as Infinity, and came out as ``Infinity``, not JSON."""
    with pytest.raises(BadJSON, match="Infinity"):
        loads(doc, allow_nan=False)
    assert loads(b'[1e308, -2.5e-400]', allow_nan=False) == [1e308, -0.0]
