"""The retry policy: Retry-After forms (RFC 9110 section 10.2.3), backoff, caps."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from docker2aci.errors import UsageError
from docker2aci.registry import RetryPolicy
from docker2aci.registry.retry import RETRY_STATUSES, parse_retry_after

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(("value", "expected"), [
    pytest.param("7", 7.0, id="case31-seconds"),
    pytest.param(" 0 ", 0.0, id="zero-with-spaces"),
    pytest.param(format_datetime(datetime(2026, 11, 29, 12, 0, 9, tzinfo=UTC), usegmt=True), 9.0,
                 id="http-date"),
    pytest.param("Sun, 29 Nov 2026 11:59:00 GMT", 0.0, id="date-in-the-past"),
    pytest.param("-3", None, id="negative"),
    pytest.param("soon", None, id="garbage"),
    pytest.param("1" * 400, None, id="past-float"),  # float(int()) overflows
    pytest.param("1" * 5000, None, id="past-int-digits"),  # int() refuses over 4,300 digits
    pytest.param("1" * 15, 111111111111111.0, id="fifteen-digits-are-read"),
    pytest.param("1" * 16, None, id="sixteen-digits-are-not"),
    pytest.param("7s", None, id="digits-then-garbage"),  # (int("7s") raised ValueError out of delay())
    pytest.param("Sun, 29 Nov 2026 12:00:09 -0000", None, id="date-in-no-known-zone"),  # not GMT: no delay
    pytest.param(None, None, id="absent"),
])
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_backoff_doubles_and_is_capped() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=3.0, jitter=0.0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_jitter_only_adds_and_stays_under_the_cap() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=1.05, jitter=0.1)
    delays = [policy.delay(1) for _ in range(200)]
    assert all(1.0 <= d <= 1.05 for d in delays) and len(set(delays)) > 1


def test_retry_after_wins_when_longer_and_is_capped() -> None:
    policy = RetryPolicy(base_delay=0.01, max_delay=30.0, jitter=0.0)
    assert policy.delay(1, "7") == 7.0
    assert policy.delay(1, "3600") == 30.0
    assert RetryPolicy(base_delay=2.0, jitter=0.0).delay(1, "1") == 2.0


def test_wait_uses_the_injected_sleep() -> None:
    slept: list[float] = []
    policy = RetryPolicy(base_delay=0.25, jitter=0.0, sleep=slept.append)
    assert policy.wait(2, "1") == 1.0 and slept == [1.0]


def test_statuses() -> None:
    policy = RetryPolicy()
    assert RETRY_STATUSES == {408, 429, 500, 502, 503, 504}
    assert all(policy.retries_status(s) for s in RETRY_STATUSES)
    assert not any(policy.retries_status(s) for s in (400, 401, 403, 404, 501))


@pytest.mark.parametrize("kwargs", [{"attempts": 0}, {"base_delay": -1.0}, {"jitter": -0.1}])
def test_invalid_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(UsageError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
