"""The sink port: where an event goes, and what a delivery attempt produced."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["EventSink", "OutgoingEvent", "SinkResult"]


@dataclass(frozen=True, slots=True, kw_only=True)
class OutgoingEvent:
    """One event on its way to one sink; ``body`` is the stored JSON envelope, byte for byte."""

    event_id: str
    type: str
    mchid: str
    aggregate_key: str
    seq: int
    body: bytes
    #: 1 on the first attempt, counted again from 1 after a replay.
    attempt: int
    created_at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkResult:
    """The outcome of one attempt; failures are values, not exceptions."""

    delivered: bool
    #: The receiver refused this event for good (HTTP 4xx other than 408/429).
    permanent: bool = False
    status_code: int | None = None
    #: Short, secret-free description of the failure.
    error: str | None = None
    #: The receiver asked for a pause (``Retry-After``).
    retry_after_seconds: float | None = None

    @classmethod
    def ok(cls, status_code: int | None = None) -> SinkResult:
        """A successful delivery."""
        return cls(delivered=True, status_code=status_code)

    @classmethod
    def failed(
        cls,
        error: str,
        *,
        permanent: bool = False,
        status_code: int | None = None,
        retry_after_seconds: float | None = None,
    ) -> SinkResult:
        """A failed attempt (retried or dead-lettered by the retry policy)."""
        return cls(
            delivered=False,
            permanent=permanent,
            status_code=status_code,
            error=error[:500],
            retry_after_seconds=retry_after_seconds,
        )


class EventSink(Protocol):
    """A destination for events. Implementations must be safe to call concurrently."""

    name: str

    async def open(self) -> None:
        """Connect (called once before the first delivery)."""
        ...

    async def deliver(self, event: OutgoingEvent) -> SinkResult:
        """Deliver one event; return a failure rather than raise for expected errors."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
