"""Structured JSON logs with a trace id per request, and nothing secret in them.

``configure_logging`` is called once by the server's app factory (never on import).
Each request gets a ``trace_id`` (also returned as the ``X-Trace-Id`` header), passed
to every line the request logs, so the lines of one request can be found together.
What is logged: route, mchid, status, reason code, notification id, ledger outcome,
timings. What never is: keys, bodies, decrypted resources, signatures, openids.

The gateway logs one line per notification, copies included, so the line's cost is
part of every request's: lines are rendered by orjson and stamped from a clock string
formatted once a second (measured in docs/gateway.md, Performance).
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import sys
import time
from collections.abc import Callable
from typing import BinaryIO

import orjson
import structlog
from structlog.typing import EventDict, WrappedLogger

__all__ = ["IsoUtcStamper", "configure_logging", "new_trace_id"]


def new_trace_id() -> str:
    """A short random id for one request: unique enough to find its log lines, not a
    secret (so the process's PRNG, not a system call per request)."""
    return f"{random.getrandbits(64):016x}"


class IsoUtcStamper:
    """Adds ``timestamp``: UTC ISO 8601 with microseconds, ``2026-11-26T20:49:31.123456Z``.

    The same text as structlog's ``TimeStamper(fmt="iso", utc=True)`` (which drops the
    fraction when it is zero), without building a datetime for every line: the part
    down to the second is formatted once per second.
    """

    __slots__ = ("_clock", "_prefix", "_second")

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._second = -1
        self._prefix = ""

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        now = self._clock()
        second = int(now)
        if second != self._second:
            moment = dt.datetime.fromtimestamp(second, dt.UTC)
            self._prefix = moment.strftime("%Y-%m-%dT%H:%M:%S")
            self._second = second
        micros = int((now - second) * 1_000_000)
        event_dict["timestamp"] = f"{self._prefix}.{micros:06d}Z"
        return event_dict


def configure_logging(level: str = "info", *, stream: BinaryIO | None = None) -> None:
    """Render structlog events as one JSON object per line on stderr (or ``stream``)."""
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            IsoUtcStamper(),
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.BytesLoggerFactory(file=stream or sys.stderr.buffer),
        cache_logger_on_first_use=True,
    )
