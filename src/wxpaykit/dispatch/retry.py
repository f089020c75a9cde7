"""When to try a failed delivery again, and when to give up (dead letter).

After failed attempt ``n`` (1-based) the next attempt waits a full-jitter delay from
:mod:`wxpaykit.core.backoff`::

    delay(n) = random() * min(cap_seconds, base_seconds * 2 ** (n - 1))

The delivery becomes a dead letter when any limit is reached:

* ``max_attempts`` attempts were made (``None``: no limit on the count);
* the retry window (``max_age_seconds`` from creation or the last replay) is over.
  An attempt that would land after the window's end is moved to the end instead, so
  the last attempt happens close to the deadline (like WeChat Pay's own schedule,
  15 s ... 6 h, 24 h 4 min in total);
* the failure is permanent (HTTP 4xx other than 408 and 429) and
  ``dead_letter_permanent`` is set; by default permanent failures are retried too,
  because a misconfigured endpoint is usually fixed within the day.

A ``Retry-After`` hint from the sink lengthens the delay, never shortens it.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable
from dataclasses import dataclass

from wxpaykit.core.backoff import backoff_delay

__all__ = ["DEFAULT_RETRY_POLICY", "RetryPolicy"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Backoff and limits for one sink."""

    base_seconds: float = 15.0
    cap_seconds: float = 3 * 3600.0
    max_attempts: int | None = None
    #: 24 h 4 min, the span of WeChat Pay's notification retries.
    max_age_seconds: float | None = 24 * 3600.0 + 4 * 60.0
    dead_letter_permanent: bool = False

    def __post_init__(self) -> None:
        if self.base_seconds < 0 or self.cap_seconds < 0:
            raise ValueError("base_seconds and cap_seconds must not be negative")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1 (or None for no limit)")
        if self.max_age_seconds is not None and self.max_age_seconds <= 0:
            raise ValueError("max_age_seconds must be positive (or None for no limit)")
        if self.max_attempts is None and self.max_age_seconds is None:
            raise ValueError("set max_attempts or max_age_seconds: retries must end")

    def next_attempt_at_ms(
        self,
        *,
        attempts: int,
        now_ms: int,
        window_started_at_ms: int,
        permanent: bool = False,
        retry_after_seconds: float | None = None,
        random: Callable[[], float] = _random.random,
    ) -> int | None:
        """When to try again after ``attempts`` failed attempts, or ``None`` to dead-letter."""
        if permanent and self.dead_letter_permanent:
            return None
        if self.max_attempts is not None and attempts >= self.max_attempts:
            return None
        delay_seconds = backoff_delay(
            attempts, base_seconds=self.base_seconds, cap_seconds=self.cap_seconds, random=random
        )
        if retry_after_seconds is not None:
            delay_seconds = max(delay_seconds, retry_after_seconds)
        next_at_ms = now_ms + round(delay_seconds * 1000)
        if self.max_age_seconds is not None:
            deadline_ms = window_started_at_ms + round(self.max_age_seconds * 1000)
            if now_ms >= deadline_ms:
                return None
            next_at_ms = min(next_at_ms, deadline_ms)
        return next_at_ms


DEFAULT_RETRY_POLICY = RetryPolicy()
