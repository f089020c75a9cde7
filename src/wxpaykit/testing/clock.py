"""A clock for tests: it moves only when told to.

Pass it as ``SimulatorConfig(clock=...)`` and advance it to drive notification
retries, refund completion, certificate validity and migration days without sleeping.
"""

from __future__ import annotations

import time

__all__ = ["FakeClock"]


class FakeClock:
    """A clock that moves only when told to (starts at the real time by default)."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start

    def now(self) -> float:
        """The current fake Unix time."""
        return self._now

    def advance(self, seconds: float) -> float:
        """Move forward; returns the new time."""
        self._now += seconds
        return self._now

    def set(self, timestamp: float) -> None:
        """Jump to ``timestamp``."""
        self._now = timestamp
