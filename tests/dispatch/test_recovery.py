"""A receiver that fails for a while then recovers: nothing is lost, the breaker opens
and closes, permanent failures go to dead letters, and replays keep the event id.

Time is a :class:`ManualClock`; the dispatcher is stepped by hand (claim, deliver to the
real receiver, record), so every assertion is about one known step.
"""

from __future__ import annotations

import json
from typing import Any

from tests.dispatch.conftest import TestDatabase
from tests.dispatch.helpers import append, committed_ids, deliveries, payment_event, settings
from tests.dispatch.receiver import Receiver
from wxpaykit.dispatch.breaker import BreakerState
from wxpaykit.dispatch.clock import ManualClock
from wxpaykit.dispatch.dispatcher import SinkDispatcher
from wxpaykit.dispatch.history import replay, show_event
from wxpaykit.dispatch.webhooks import generate_webhook_secret
from wxpaykit.dispatch.worker import Worker

START_MS = 1_700_000_000_000


def http_sink(receiver: Receiver, **overrides: Any) -> dict[str, Any]:
    return {
        "name": "shop",
        "type": "http",
        "url": receiver.url,
        "secrets": [generate_webhook_secret().render()],
        "timeout_seconds": 2,
        **overrides,
    }


async def step(worker: Worker, dispatcher: SinkDispatcher) -> int:
    """One poll: fan out, claim what is due, wait for the attempts, record them."""
    await worker.fan_out_once()
    started = await dispatcher.poll()
    await dispatcher.drain(10)
    return started


async def test_failing_receiver_recovers_without_losing_events_and_breaker_cycles(
    sqlite_db: TestDatabase, receiver: Receiver
) -> None:
    clock = ManualClock(START_MS)
    sink = http_sink(
        receiver,
        retry={"base_seconds": 1, "cap_seconds": 10},
        breaker={"failure_threshold": 3, "open_seconds": 30, "max_open_seconds": 300},
    )
    worker = Worker(sqlite_db.engine, settings(sink), clock=clock, random=lambda: 1.0)
    await worker.open()
    dispatcher = worker.dispatchers["shop"]
    breaker = dispatcher.breaker
    new_events = [
        payment_event("order-a"),
        payment_event("order-b"),
        payment_event("order-c"),
        payment_event("order-a", "payment.closed"),
        payment_event("order-b", "payment.closed"),
    ]
    ids = await append(sqlite_db, new_events, now_ms=clock.now_ms())

    receiver.status = 503
    # Only the first event of each order is due: later ones wait for their predecessor.
    assert await step(worker, dispatcher) == 3
    assert len(receiver.all_requests()) == 3
    assert await breaker.state() == BreakerState.OPEN

    clock.advance(15)  # retries are due (cap 10 s), but the breaker is open for 30 s
    assert await step(worker, dispatcher) == 0
    assert len(receiver.all_requests()) == 3

    clock.advance(20)  # open period over: exactly one probe; it fails, open again (60 s)
    assert await step(worker, dispatcher) == 1
    assert len(receiver.all_requests()) == 4
    assert await breaker.state() == BreakerState.OPEN
    clock.advance(31)
    assert await step(worker, dispatcher) == 0

    receiver.status = 200  # the endpoint recovers
    clock.advance(30)
    assert await step(worker, dispatcher) == 1  # the probe succeeds
    assert await breaker.state() == BreakerState.CLOSED
    for _ in range(10):
        clock.advance(11)
        await step(worker, dispatcher)
    await worker.close()

    delivered = receiver.delivered()
    assert sorted({r.headers["webhook-id"] for r in delivered}) == sorted(
        await committed_ids(sqlite_db)
    )
    assert all(r.headers["webhook-id"] == json.loads(r.body)["id"] for r in receiver.all_requests())
    for order in ("order-a", "order-b"):
        types = [json.loads(r.body)["type"] for r in delivered if order.encode() in r.body]
        assert types == ["payment.succeeded", "payment.closed"]
    assert {row.status for row in await deliveries(sqlite_db)} == {"delivered"}
    detail = await show_event(sqlite_db.engine, ids[0])
    assert detail is not None
    assert [a.outcome for a in detail.attempts][-1] == "delivered"
    assert "retry" in [a.outcome for a in detail.attempts]


async def test_permanent_4xx_goes_to_dead_letters_and_replay_keeps_the_event_id(
    sqlite_db: TestDatabase, receiver: Receiver
) -> None:
    clock = ManualClock(START_MS)
    sink = http_sink(receiver, retry={"dead_letter_permanent": True})
    worker = Worker(sqlite_db.engine, settings(sink), clock=clock)
    await worker.open()
    dispatcher = worker.dispatchers["shop"]
    (event_id,) = await append(sqlite_db, [payment_event("order-d")], now_ms=clock.now_ms())

    receiver.status = 422
    assert await step(worker, dispatcher) == 1
    (row,) = await deliveries(sqlite_db)
    assert (row.status, row.attempts, row.last_error) == ("dead", 1, "HTTP 422")
    assert await breaker_state(dispatcher) == BreakerState.CLOSED  # 4xx: the endpoint is up

    receiver.status = 200
    clock.advance(3600)
    assert await step(worker, dispatcher) == 0  # dead letters are not retried
    assert await replay(sqlite_db.engine, now_ms=clock.now_ms(), sink="shop") == 1
    assert await step(worker, dispatcher) == 1
    await worker.close()
    ids = [r.headers["webhook-id"] for r in receiver.all_requests()]
    assert ids == [event_id, event_id]
    (row,) = await deliveries(sqlite_db)
    assert (row.status, row.replays) == ("delivered", 1)


async def test_permanent_4xx_is_retried_by_default_and_408_429_are_transient(
    sqlite_db: TestDatabase, receiver: Receiver
) -> None:
    clock = ManualClock(START_MS)
    worker = Worker(sqlite_db.engine, settings(http_sink(receiver)), clock=clock)
    await worker.open()
    dispatcher = worker.dispatchers["shop"]
    await append(sqlite_db, [payment_event("order-e")], now_ms=clock.now_ms())
    for status in (404, 408, 429):
        receiver.status = status
        clock.advance(4 * 3600)
        assert await step(worker, dispatcher) == 1
        (row,) = await deliveries(sqlite_db)
        assert row.status == "pending"
        assert row.last_error == f"HTTP {status}"
    await worker.close()


async def test_age_limit_dead_letters_after_the_window(
    sqlite_db: TestDatabase, receiver: Receiver
) -> None:
    clock = ManualClock(START_MS)
    sink = http_sink(receiver, retry={"max_age_seconds": 60, "base_seconds": 10, "cap_seconds": 10})
    worker = Worker(sqlite_db.engine, settings(sink), clock=clock, random=lambda: 1.0)
    await worker.open()
    dispatcher = worker.dispatchers["shop"]
    await append(sqlite_db, [payment_event("order-f")], now_ms=clock.now_ms())
    receiver.status = 500
    attempts = 0
    for _ in range(20):
        attempts += await step(worker, dispatcher)
        clock.advance(10)
    await worker.close()
    (row,) = await deliveries(sqlite_db)
    assert row.status == "dead"
    assert 6 <= attempts <= 8  # every 10 s for 60 s, the last one at the deadline


async def breaker_state(dispatcher: SinkDispatcher) -> BreakerState:
    return await dispatcher.breaker.state()
