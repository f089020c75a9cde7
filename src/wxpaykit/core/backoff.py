"""Exponential backoff with full jitter: attempt number -> delay in seconds.

The formula (attempt numbers start at 1, the attempt that just failed)::

    ceiling(attempt) = min(cap_seconds, base_seconds * 2 ** (attempt - 1))
    delay(attempt)   = random() * ceiling(attempt)         # "full jitter"

``random`` returns a float in ``[0, 1)``; it is injected so tests choose the jitter and
so the client and the dispatcher can share one formula. Full jitter (rather than a
fixed or "equal" jitter) spreads the retries of many clients that failed at the same
moment across the whole window, which is what a rate-limited platform needs.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable

__all__ = ["backoff_ceiling", "backoff_delay"]


def backoff_ceiling(attempt: int, *, base_seconds: float, cap_seconds: float) -> float:
    """The largest delay after failed attempt ``attempt`` (1-based), before jitter."""
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt}")
    if base_seconds < 0 or cap_seconds < 0:
        raise ValueError("base_seconds and cap_seconds must not be negative")
    # Cap the exponent: 2 ** 1000 would overflow a float long before min() applies.
    exponent = min(attempt - 1, 62)
    return float(min(cap_seconds, base_seconds * 2**exponent))


def backoff_delay(
    attempt: int,
    *,
    base_seconds: float,
    cap_seconds: float,
    random: Callable[[], float] = _random.random,
) -> float:
    """Full-jitter delay after failed attempt ``attempt``: uniform in ``[0, ceiling)``."""
    fraction = random()
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"random() must return a value in [0, 1], got {fraction}")
    return fraction * backoff_ceiling(attempt, base_seconds=base_seconds, cap_seconds=cap_seconds)
