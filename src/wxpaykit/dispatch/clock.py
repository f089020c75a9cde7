"""Time as a port: the dispatcher asks a :class:`Clock`, tests inject a fake one."""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """Wall-clock milliseconds since the epoch."""

    def now_ms(self) -> int:
        """The current time."""
        ...


class SystemClock:
    """The real clock."""

    def now_ms(self) -> int:
        """Milliseconds since the epoch from :func:`time.time_ns`."""
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that moves only when told to; for tests and simulations."""

    def __init__(self, start_ms: int) -> None:
        self._now_ms = start_ms

    def now_ms(self) -> int:
        """The current (manual) time."""
        return self._now_ms

    def advance(self, seconds: float) -> None:
        """Move forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._now_ms += round(seconds * 1000)
