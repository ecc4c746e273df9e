"""When and how long to wait before retrying a registry request.

The policy is a frozen value: how many attempts, the exponential backoff (seconds) with
jitter, which HTTP statuses are worth retrying (RFC 9110 408, RFC 6585 429, 500, 502,
503, 504) and how ``Retry-After`` (RFC 9110 section 10.2.3: delay-seconds or an
HTTP-date) is honoured. ``sleep`` and ``now`` are injectable so tests stay fast without
mocks: a test passes a tiny ``base_delay``.
"""

from __future__ import annotations

import re

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

from ..errors import UsageError

RETRY_STATUSES: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})
"""HTTP statuses that mean "try again later" (request timeout, too many requests, 5xx)."""


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Read a ``Retry-After`` header value (RFC 9110 section 10.2.3).

    Args:
        value: the header value: delay-seconds (``"7"``) or an HTTP-date
            (``"Wed, 21 Oct 2015 07:28:00 GMT"``); ``None`` when absent.
        now: the current POSIX time in seconds (defaults to ``time.time()``), to turn a
            date into a delay.

    Returns:
        The delay in seconds (never negative), or ``None`` when the value is absent or
        unreadable.
    """
    if value is None:
        return None
    text = value.strip()
    if re.fullmatch(r"[0-9]+", text):
        return float(int(text)) if len(text) <= 15 else None  # past 30 million years: unreadable
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


@dataclass(frozen=True)
class RetryPolicy:
    """A bounded retry policy with exponential backoff and jitter.

    Attributes:
        attempts: the total number of tries of one request, the first included (>= 1).
        base_delay: the wait before the second try, in seconds; it doubles each time.
        max_delay: the longest wait, in seconds; also caps ``Retry-After``.
        jitter: a random extra fraction of each backoff delay (``0.1`` = up to +10 %),
            so that parallel clients do not retry in lock step.
        statuses: the HTTP statuses that are retried.
        sleep: waits a number of seconds (``time.sleep``; injectable for tests).
    """

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    jitter: float = 0.1
    statuses: frozenset[int] = RETRY_STATUSES
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise UsageError("RetryPolicy.attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.jitter < 0:
            raise UsageError("RetryPolicy delays and jitter must not be negative")

    def retries_status(self, status: int) -> bool:
        """Whether an HTTP ``status`` is worth another try."""
        return status in self.statuses

    def delay(self, retry: int, retry_after: str | None = None, *, now: float | None = None) -> float:
        """How long to wait before retry number ``retry``.

        Args:
            retry: 1 for the first retry (the second try), 2 for the next, ...
            retry_after: the response's ``Retry-After`` header, if any.
            now: the current POSIX time in seconds, for an HTTP-date ``Retry-After``.

        Returns:
            The delay in seconds: the exponential backoff with jitter, or the server's
            ``Retry-After`` when that is longer, never more than ``max_delay``.
        """
        backoff = min(self.max_delay, self.base_delay * 2.0 ** max(0, retry - 1))
        backoff = min(self.max_delay, backoff * (1.0 + random.uniform(0.0, self.jitter)))
        asked = parse_retry_after(retry_after, now=now)
        if asked is not None:
            backoff = max(backoff, min(asked, self.max_delay))
        return backoff

    def wait(self, retry: int, retry_after: str | None = None) -> float:
        """Sleep for :meth:`delay` and return the seconds slept."""
        seconds = self.delay(retry, retry_after)
        self.sleep(seconds)
        return seconds
