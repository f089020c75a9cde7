"""Each broker receives exactly the committed events, in order per order.

Real servers: RabbitMQ (5672), NATS JetStream (4222), Redis (6379). Names are unique
per test so runs never see each other's messages.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from typing import Any, cast

import pytest

from tests.dispatch.conftest import TestDatabase
from tests.dispatch.helpers import append, committed_ids, payment_event, settings, statuses
from tests.dispatch.receiver import wait_until
from tests.services import require_service
from wxpaykit.dispatch.clock import SystemClock
from wxpaykit.dispatch.sinks.base import OutgoingEvent
from wxpaykit.dispatch.sinks.nats_jetstream import NatsJetStreamSink
from wxpaykit.dispatch.sinks.redis_streams import RedisStreamSink
from wxpaykit.dispatch.worker import Worker
from wxpaykit.storage.events import append_events


async def commit_events_and_one_rollback(database: TestDatabase) -> list[str]:
    """Three orders, two commits each; plus a rolled-back transaction that must not leak."""
    now = SystemClock().now_ms()
    for kind in ("payment.succeeded", "refund.succeeded"):
        await append(database, [payment_event(f"order-{n}", kind) for n in range(3)], now_ms=now)
    connection = await database.engine.connect()
    transaction = await connection.begin()
    await append_events(connection, [payment_event("order-rolled-back")], now_ms=now)
    await transaction.rollback()
    await connection.close()
    return await committed_ids(database)


async def run_until_delivered(database: TestDatabase, sink: dict[str, Any], count: int) -> None:
    async def all_delivered() -> bool:
        values = list((await statuses(database)).values())
        return len(values) == count and set(values) == {"delivered"}

    async with Worker(database.engine, settings(sink)).running():
        await wait_until(all_delivered, timeout_seconds=30, message="broker deliveries")


def assert_exact_and_ordered(bodies: list[bytes], committed: list[str]) -> None:
    received = [json.loads(body) for body in bodies]
    assert sorted(event["id"] for event in received) == sorted(committed)
    position = {event_id: index for index, event_id in enumerate(committed)}
    per_order: dict[str, list[int]] = defaultdict(list)
    for event in received:
        per_order[event["data"]["out_trade_no"]].append(position[event["id"]])
    assert all(seqs == sorted(seqs) for seqs in per_order.values())


async def test_rabbitmq_receives_exactly_the_committed_events(sqlite_db: TestDatabase) -> None:
    require_service("RabbitMQ", 5672)
    import aio_pika

    url = "amqp://guest:guest@127.0.0.1:5672/"
    exchange_name = f"wxpaykit.test.{uuid.uuid4().hex[:10]}"
    connection = await aio_pika.connect_robust(url)
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, routing_key="#")
        committed = await commit_events_and_one_rollback(sqlite_db)
        sink = {"name": "rabbit", "type": "rabbitmq", "url": url, "exchange": exchange_name}
        await run_until_delivered(sqlite_db, sink, len(committed))
        bodies: list[bytes] = []
        while (message := await queue.get(fail=False, timeout=5)) is not None:
            assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
            assert message.message_id == json.loads(message.body)["id"]
            bodies.append(message.body)
            await message.ack()
        assert_exact_and_ordered(bodies, committed)
        await exchange.delete()
    finally:
        await connection.close()


async def test_nats_jetstream_receives_exactly_the_committed_events(
    sqlite_db: TestDatabase,
) -> None:
    require_service("NATS", 4222)
    import nats

    prefix = f"wxt{uuid.uuid4().hex[:10]}"
    stream = prefix.upper()
    client = await nats.connect("nats://127.0.0.1:4222")
    jetstream = client.jetstream()
    try:
        await jetstream.add_stream(name=stream, subjects=[f"{prefix}.>"])
        committed = await commit_events_and_one_rollback(sqlite_db)
        sink = {
            "name": "nats",
            "type": "nats",
            "subject": prefix + ".{type}",
            "stream": stream,
        }
        await run_until_delivered(sqlite_db, sink, len(committed))
        info = await jetstream.stream_info(stream)
        assert info.state.messages == len(committed)
        messages = [await jetstream.get_msg(stream, seq) for seq in range(1, len(committed) + 1)]
        bodies = [message.data or b"" for message in messages]
        for message, body in zip(messages, bodies, strict=True):
            assert message.headers is not None
            assert message.headers["Nats-Msg-Id"] == json.loads(body)["id"]
        assert_exact_and_ordered(bodies, committed)

        # A re-sent copy (lost ack) is dropped by the stream's duplicate window.
        sink_instance = NatsJetStreamSink(
            "nats", url="nats://127.0.0.1:4222", subject=prefix + ".{type}"
        )
        event = json.loads(bodies[0])
        outgoing = OutgoingEvent(
            event_id=event["id"],
            type=event["type"],
            mchid=event["mchid"],
            aggregate_key="x",
            seq=1,
            body=bodies[0],
            attempt=2,
            created_at_ms=0,
        )
        assert (await sink_instance.deliver(outgoing)).delivered
        await sink_instance.close()
        assert (await jetstream.stream_info(stream)).state.messages == len(committed)
    finally:
        await jetstream.delete_stream(stream)
        await client.close()


async def test_redis_stream_receives_exactly_the_committed_events(sqlite_db: TestDatabase) -> None:
    require_service("Redis", 6379)
    from redis.asyncio import Redis

    stream = f"wxpaykit:test:{uuid.uuid4().hex[:10]}"
    client = Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        committed = await commit_events_and_one_rollback(sqlite_db)
        sink = {"name": "redis", "type": "redis", "stream": stream}
        await run_until_delivered(sqlite_db, sink, len(committed))
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], await client.xrange(stream))
        assert_exact_and_ordered([fields[b"body"] for _, fields in entries], committed)

        # Delivering the same event again (a retry after a lost reply) adds nothing.
        sink_instance = RedisStreamSink("redis", url="redis://127.0.0.1:6379/0", stream=stream)
        _, fields = entries[0]
        outgoing = OutgoingEvent(
            event_id=fields[b"id"].decode(),
            type=fields[b"type"].decode(),
            mchid=fields[b"mchid"].decode(),
            aggregate_key=fields[b"aggregate"].decode(),
            seq=1,
            body=fields[b"body"],
            attempt=2,
            created_at_ms=0,
        )
        assert (await sink_instance.deliver(outgoing)).delivered
        await sink_instance.close()
        assert await client.xlen(stream) == len(committed)
    finally:
        keys = [key async for key in client.scan_iter(match=f"{stream}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.mark.parametrize("kind", ["rabbitmq", "nats", "redis"])
async def test_unreachable_broker_is_a_failed_attempt_not_a_crash(kind: str) -> None:
    from wxpaykit.dispatch.sinks.rabbitmq import RabbitMqSink

    sinks = {
        "rabbitmq": RabbitMqSink("b", url="amqp://guest:guest@127.0.0.1:1/", timeout_seconds=1),
        "nats": NatsJetStreamSink("b", url="nats://127.0.0.1:1", timeout_seconds=1),
        "redis": RedisStreamSink("b", url="redis://127.0.0.1:1/0", timeout_seconds=1),
    }
    sink = sinks[kind]
    outgoing = OutgoingEvent(
        event_id="evt_x",
        type="payment.succeeded",
        mchid="1",
        aggregate_key="a",
        seq=1,
        body=b"{}",
        attempt=1,
        created_at_ms=0,
    )
    result = await sink.deliver(outgoing)  # type: ignore[attr-defined]
    await sink.close()  # type: ignore[attr-defined]
    assert not result.delivered
    assert result.error
