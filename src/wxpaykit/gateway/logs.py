"""Structured JSON logs with a trace id per request, and nothing secret in them.

``configure_logging`` is called once by the CLI or the ASGI factory (never on import).
Each request binds ``trace_id`` (also returned as the ``X-Trace-Id`` header) through
:mod:`structlog.contextvars`, so every line a request causes can be found together.
What is logged: route, mchid, status, reason code, notification id, ledger outcome,
timings. What never is: keys, bodies, decrypted resources, signatures, openids.
"""

from __future__ import annotations

import logging
import random
import sys

import structlog

__all__ = ["configure_logging", "new_trace_id"]


def new_trace_id() -> str:
    """A short random id for one request: unique enough to find its log lines, not a
    secret (so the process's PRNG, not a system call per request)."""
    return f"{random.getrandbits(64):016x}"


def configure_logging(level: str = "info", *, stream: object = None) -> None:
    """Render structlog events as one JSON object per line on stderr (or ``stream``)."""
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(file=stream or sys.stderr),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
