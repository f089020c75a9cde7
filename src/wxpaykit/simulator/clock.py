"""Time for the simulator: an injectable clock and the time scale.

Every timestamp the simulator signs, every ``next_attempt_at`` it stores and every
expiry it checks comes from one :class:`Clock`, so tests drive retries, rotations and
bill dates with a fake clock instead of sleeping. The *time scale* shrinks platform
delays (the notification retry schedule, refund processing) without touching
timestamps: a 15 s retry at scale 0.01 happens 0.15 s later, signed with the clock's
current time.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Protocol

__all__ = ["BEIJING", "Clock", "SystemClock", "format_rfc3339", "format_v2_time"]

#: WeChat Pay writes every date in Beijing time (UTC+8).
BEIJING = dt.timezone(dt.timedelta(hours=8))


class Clock(Protocol):
    """A source of the current Unix time in seconds (float)."""

    def now(self) -> float:
        """Return the current Unix time in seconds."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        """Return ``time.time()``."""
        return time.time()


def format_rfc3339(timestamp: float) -> str:
    """``2018-06-08T10:34:56+08:00``: the platform's date format (Beijing time)."""
    return dt.datetime.fromtimestamp(int(timestamp), BEIJING).isoformat()


def format_v2_time(timestamp: float) -> str:
    """``yyyyMMddHHmmss`` in Beijing time, as APIv2 writes ``time_end``."""
    return dt.datetime.fromtimestamp(int(timestamp), BEIJING).strftime("%Y%m%d%H%M%S")
