"""Several workers on one database never deliver one event at the same time, and keep
each order's events in commit order (SQLite, PostgreSQL, MariaDB)."""

from __future__ import annotations

import contextlib
import json
from collections import defaultdict

from tests.dispatch.conftest import TestDatabase
from tests.dispatch.helpers import append, committed_ids, payment_event, settings, statuses
from tests.dispatch.receiver import Receiver, wait_until
from wxpaykit.dispatch.clock import SystemClock
from wxpaykit.dispatch.database import detect_features
from wxpaykit.dispatch.webhooks import generate_webhook_secret
from wxpaykit.dispatch.worker import Worker
from wxpaykit.storage.dialects import create_engine

WORKERS = 3
ORDERS = 12
EVENTS_PER_ORDER = 4


async def test_concurrent_workers_deliver_each_event_once_in_order(
    any_db: TestDatabase, receiver: Receiver
) -> None:
    receiver.hold_seconds = 0.005  # make a concurrent duplicate observable
    dispatch = settings(
        {
            "name": "shop",
            "type": "http",
            "url": receiver.url,
            "secrets": [generate_webhook_secret().render()],
            "concurrency": 8,
        },
        batch_size=5,
    )
    now = SystemClock().now_ms()
    for round_ in range(EVENTS_PER_ORDER):  # one commit per round, like successive notifications
        kinds = ("payment.succeeded", "refund.processing", "refund.succeeded", "refund.closed")
        await append(
            any_db, [payment_event(f"order-{o}", kinds[round_]) for o in range(ORDERS)], now_ms=now
        )
    expected = await committed_ids(any_db)

    engines = [create_engine(any_db.url, schema=any_db.schema) for _ in range(WORKERS)]
    async with contextlib.AsyncExitStack() as stack:
        for engine in engines:
            stack.push_async_callback(engine.dispose)
            await stack.enter_async_context(Worker(engine, dispatch).running())
        await wait_until(
            lambda: len(receiver.delivered()) >= len(expected),
            timeout_seconds=60,
            message="all events",
        )
        if any_db.kind != "sqlite":  # the skip-locked path is the one under test there
            async with engines[0].connect() as connection:
                assert detect_features(connection).skip_locked
    delivered = receiver.delivered()
    assert receiver.overlaps == []
    assert sorted(r.headers["webhook-id"] for r in delivered) == sorted(expected)
    by_order: dict[str, list[str]] = defaultdict(list)
    for request in sorted(delivered, key=lambda r: r.received_ns):
        body = json.loads(request.body)
        by_order[body["data"]["out_trade_no"]].append(body["id"])
    position = {event_id: index for index, event_id in enumerate(expected)}
    for ids in by_order.values():
        assert ids == sorted(ids, key=position.__getitem__)
    assert set((await statuses(any_db)).values()) == {"delivered"}
