"""Sinks: where events go. :class:`EventSink` is the port; one module per kind.

Broker drivers (aio-pika, nats-py, redis-py) are imported only when a sink of that
kind is opened, so a webhook-only installation needs none of them.
"""

from __future__ import annotations

from wxpaykit.dispatch.clock import Clock
from wxpaykit.dispatch.config import (
    CallableSinkConfig,
    HttpSinkConfig,
    NatsSinkConfig,
    RabbitMqSinkConfig,
    RedisSinkConfig,
    SinkConfig,
)
from wxpaykit.dispatch.sinks.base import EventSink, OutgoingEvent, SinkResult

__all__ = ["EventSink", "OutgoingEvent", "SinkResult", "build_sink"]


def build_sink(config: SinkConfig, *, clock: Clock | None = None) -> EventSink:
    """The sink described by ``config``."""
    if isinstance(config, HttpSinkConfig):
        from wxpaykit.dispatch.sinks.http import HttpSink
        from wxpaykit.dispatch.webhooks import WebhookSecret

        return HttpSink(
            config.name,
            url=config.url,
            secrets=[WebhookSecret.parse(text) for text in config.secret_texts()],
            timeout_seconds=config.timeout_seconds,
            headers=config.headers,
            max_connections=config.concurrency,
            clock=clock,
        )
    if isinstance(config, CallableSinkConfig):
        from wxpaykit.dispatch.sinks.callable import CallableSink

        return CallableSink(config.name, config.target)
    if isinstance(config, RabbitMqSinkConfig):
        from wxpaykit.dispatch.sinks.rabbitmq import RabbitMqSink

        return RabbitMqSink(
            config.name,
            url=config.url,
            exchange=config.exchange,
            exchange_type=config.exchange_type,
            routing_key=config.routing_key,
            timeout_seconds=config.timeout_seconds,
        )
    if isinstance(config, NatsSinkConfig):
        from wxpaykit.dispatch.sinks.nats_jetstream import NatsJetStreamSink

        return NatsJetStreamSink(
            config.name,
            url=config.url,
            subject=config.subject,
            stream=config.stream,
            timeout_seconds=config.timeout_seconds,
        )
    if isinstance(config, RedisSinkConfig):
        from wxpaykit.dispatch.sinks.redis_streams import RedisStreamSink

        return RedisStreamSink(
            config.name,
            url=config.url,
            stream=config.stream,
            maxlen=config.maxlen,
            dedupe_seconds=config.dedupe_seconds,
            timeout_seconds=config.timeout_seconds,
        )
    raise TypeError(f"unknown sink config {type(config).__name__}")  # pragma: no cover
