"""NATS JetStream via nats-py: acknowledged publish, ``Nats-Msg-Id`` = event id.

A JetStream publish returns a ``PubAck`` once the stream stored the message; the
``Nats-Msg-Id`` header lets the stream drop a re-sent copy within its duplicate window
(2 minutes by default), so a retry after a lost ack does not store the event twice.
The stream itself is the operator's to create (subjects, retention, replicas).
"""

from __future__ import annotations

import asyncio
from typing import Any

from wxpaykit.dispatch.sinks.base import OutgoingEvent, SinkResult

__all__ = ["NatsJetStreamSink"]


class NatsJetStreamSink:
    """Publish each event to ``subject`` (``{type}`` is substituted)."""

    def __init__(
        self,
        name: str,
        *,
        url: str,
        subject: str = "wxpaykit.events.{type}",
        stream: str | None = None,
        timeout_seconds: float = 5.0,
    ) -> None:
        self.name = name
        self.url = url
        self.subject = subject
        self.stream = stream
        self.timeout_seconds = timeout_seconds
        self._client: Any = None
        self._jetstream: Any = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        """Connect to the server (again, if a previous connection gave up)."""
        import nats

        async with self._lock:
            if self._jetstream is not None and not self._client.is_closed:
                return
            # A bounded number of reconnects: a closed client is replaced on the next
            # attempt, and a dead server fails attempts quickly instead of hanging them.
            self._client = await nats.connect(
                self.url,
                connect_timeout=max(1, int(self.timeout_seconds)),
                max_reconnect_attempts=3,
                reconnect_time_wait=0.5,
                allow_reconnect=True,
            )
            self._jetstream = self._client.jetstream()

    async def close(self) -> None:
        """Flush and close the connection."""
        if self._client is not None:
            await self._client.close()
        self._client = None
        self._jetstream = None

    async def deliver(self, event: OutgoingEvent) -> SinkResult:
        """Publish and wait for the stream's acknowledgement."""
        from nats.errors import Error as NatsError

        try:
            if self._jetstream is None or self._client.is_closed:
                await self.open()
            await self._jetstream.publish(
                self.subject.format(type=event.type, mchid=event.mchid),
                event.body,
                timeout=self.timeout_seconds,
                stream=self.stream,
                headers={"Nats-Msg-Id": event.event_id, "Wxpaykit-Type": event.type},
            )
        except (NatsError, ConnectionError, TimeoutError, OSError) as exc:
            return SinkResult.failed(f"NATS: {type(exc).__name__}: {exc}"[:300])
        return SinkResult.ok()
