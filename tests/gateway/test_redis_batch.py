"""The Redis batcher's own connection, against the real Redis: database selection,
pipelined batches, a killed connection and commands of several loop turns."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis

from tests.services import require_service
from wxpaykit.gateway.redis_batch import RedisBatcher, listen

from .databases import REDIS_URL


async def test_commands_go_to_the_database_of_the_url() -> None:
    require_service("redis", 6379)
    key = f"wxptest:{uuid.uuid4().hex}"
    base = REDIS_URL.rsplit("/", 1)[0]
    on_db3, on_db0 = Redis.from_url(f"{base}/3"), Redis.from_url(f"{base}/0")
    batcher = RedisBatcher(on_db3)
    try:
        assert await batcher.execute("SET", key, "x", "EX", 60) == b"OK"
        assert await on_db3.get(key) == b"x"
        assert await on_db0.exists(key) == 0
    finally:
        await batcher.aclose()
        await on_db3.delete(key)
        await on_db3.aclose()
        await on_db0.aclose()


async def test_a_killed_connection_fails_nothing_later_and_is_replaced(redis: Redis) -> None:
    batcher = RedisBatcher(redis)
    try:
        first_id = await batcher.execute("CLIENT", "ID")
        assert await redis.client_kill_filter(_id=first_id) == 1
        for _ in range(100):  # the close reaches the batcher's connection
            await asyncio.sleep(0.01)
            if await redis.client_list(client_id=[first_id]) == []:
                break
        await asyncio.sleep(0.05)
        assert await batcher.execute("PING") == b"PONG"
        assert await batcher.execute("CLIENT", "ID") != first_id  # a new connection
    finally:
        await batcher.aclose()


async def test_batches_of_later_turns_are_pipelined_and_answered_in_order(redis: Redis) -> None:
    batcher = RedisBatcher(redis)
    key = f"wxptest:{uuid.uuid4().hex}"

    async def later(turns: int) -> int:
        for _ in range(turns):
            await asyncio.sleep(0)
        return int(await batcher.execute("INCR", key))

    try:
        assert await batcher.execute("PING") == b"PONG"  # connected: batches go at once
        replies = await asyncio.gather(*(later(i % 5) for i in range(200)))
        assert sorted(replies) == list(range(1, 201))
        assert 1 < batcher.average_batch < 100  # several batches, several commands each
    finally:
        await batcher.aclose()
        await redis.delete(key)


async def test_a_subscription_hands_over_messages_and_ends_when_killed(redis: Redis) -> None:
    channel = f"wxptest:{uuid.uuid4().hex}"
    heard: list[bytes] = []
    listener = asyncio.get_running_loop().create_task(listen(redis, channel, heard.append))
    try:
        for _ in range(200):  # subscribed once a publish reaches a subscriber
            if await redis.publish(channel, b"first") == 1:
                break
            await asyncio.sleep(0.01)
        await redis.publish(channel, b"second")
        for _ in range(200):
            if len(heard) == 2:
                break
            await asyncio.sleep(0.01)
        assert heard == [b"first", b"second"]
        assert await redis.client_kill_filter(_type="pubsub") >= 1
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(listener, 5)
    finally:
        listener.cancel()
