"""The tar header codec under test: the pure-Python definition, and the C accelerator
(``converters/_tarheader.c``) when it is built."""

from __future__ import annotations

from typing import Iterator

import pytest

from converters import native

BUILT = native.built


@pytest.fixture(params=["python", "native"])
def codec(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run the test once with each codec (the native one is skipped when not built:
    ``tests/converters/test_native.py`` fails where a compiler was there to build it)."""
    if request.param == "native" and BUILT is None:
        pytest.skip("converters._tarheader is not built (no C compiler or Python headers)")
    monkeypatch.setattr(native, "tarheader", BUILT if request.param == "native" else None)
    yield request.param
