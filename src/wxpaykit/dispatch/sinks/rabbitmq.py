"""RabbitMQ via aio-pika: persistent messages, publisher confirms, mandatory routing.

An attempt succeeds only when the broker confirmed the message (``Basic.Ack``): it is
then on disk in every queue bound to the routing key. An unroutable message (no queue
bound yet) is returned by the broker and counts as a failed attempt, so events are not
silently dropped while a consumer's queue is missing.
"""

from __future__ import annotations

import asyncio
from typing import Any

from wxpaykit.dispatch.sinks.base import OutgoingEvent, SinkResult

__all__ = ["RabbitMqSink"]


class RabbitMqSink:
    """Publish each event to ``exchange`` with ``routing_key`` (``{type}`` is substituted)."""

    def __init__(
        self,
        name: str,
        *,
        url: str,
        exchange: str = "",
        exchange_type: str = "topic",
        routing_key: str = "{type}",
        timeout_seconds: float = 5.0,
    ) -> None:
        self.name = name
        self.url = url
        self.exchange_name = exchange
        self.exchange_type = exchange_type
        self.routing_key = routing_key
        self.timeout_seconds = timeout_seconds
        self._connection: Any = None
        self._exchange: Any = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        """Connect, open a confirming channel, declare the (durable) exchange."""
        import aio_pika

        async with self._lock:
            if self._exchange is not None:
                return
            self._connection = await aio_pika.connect_robust(self.url, timeout=self.timeout_seconds)
            channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
            if self.exchange_name:
                self._exchange = await channel.declare_exchange(
                    self.exchange_name, aio_pika.ExchangeType(self.exchange_type), durable=True
                )
            else:
                self._exchange = channel.default_exchange

    async def close(self) -> None:
        """Close the connection."""
        if self._connection is not None:
            await self._connection.close()
        self._connection = None
        self._exchange = None

    async def deliver(self, event: OutgoingEvent) -> SinkResult:
        """Publish and wait for the broker's confirmation."""
        import aio_pika
        from aio_pika.exceptions import AMQPError

        try:
            if self._exchange is None:
                await self.open()
            message = aio_pika.Message(
                body=event.body,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=event.event_id,
                type=event.type,
                headers={"wxpaykit-aggregate": event.aggregate_key},
            )
            await self._exchange.publish(
                message,
                routing_key=self.routing_key.format(type=event.type, mchid=event.mchid),
                mandatory=True,
                timeout=self.timeout_seconds,
            )
        except (AMQPError, ConnectionError, TimeoutError, OSError) as exc:
            return SinkResult.failed(f"RabbitMQ: {type(exc).__name__}: {exc}"[:300])
        return SinkResult.ok()
