"""PostgreSQL's one-statement claim: while the breaker was closed the claim checks it
itself (no separate read), and a breaker another worker opened still stops it; it
also tells the worker whether claiming again now could find anything."""

from __future__ import annotations

from sqlalchemy import update

from tests.dispatch.conftest import TestDatabase
from tests.dispatch.helpers import append, payment_event, settings
from tests.dispatch.receiver import Receiver
from wxpaykit.dispatch.breaker import BreakerState
from wxpaykit.dispatch.clock import SystemClock
from wxpaykit.dispatch.deliveries import DeliveryStore, SinkRoute
from wxpaykit.dispatch.webhooks import generate_webhook_secret
from wxpaykit.dispatch.worker import Worker
from wxpaykit.storage.events import sink_breakers

ROUTES = [SinkRoute(name="shop", patterns=("*",))]


async def set_state(database: TestDatabase, state: BreakerState, *, open_until_ms: int) -> None:
    """What another worker's breaker does to the shared row."""
    async with database.engine.begin() as connection:
        await connection.execute(
            update(sink_breakers).values(state=state, open_until_ms=open_until_ms)
        )


async def test_a_claim_respects_a_breaker_opened_by_another_worker(
    pg_db: TestDatabase, receiver: Receiver
) -> None:
    clock = SystemClock()
    sink = {
        "name": "shop",
        "type": "http",
        "url": receiver.url,
        "secrets": [generate_webhook_secret().render()],
    }
    worker = Worker(pg_db.engine, settings(sink))
    await worker.open()
    dispatcher = worker.dispatchers["shop"]

    async def deliver_next(order: str) -> int:
        await append(pg_db, [payment_event(order)], now_ms=clock.now_ms())
        await worker.fan_out_once()
        started = await dispatcher.poll()
        await dispatcher.drain(5)
        return started

    assert not dispatcher.breaker.may_skip_admit()  # nothing seen yet: admit reads
    assert await deliver_next("order-1") == 1
    assert dispatcher.breaker.may_skip_admit()  # seen closed: the claim checks

    await set_state(pg_db, BreakerState.OPEN, open_until_ms=clock.now_ms() + 60_000)
    assert await deliver_next("order-2") == 0  # the claim saw it open
    assert not dispatcher.breaker.may_skip_admit()
    assert await dispatcher.poll() == 0  # admit: open, nothing claimed
    assert len(receiver.all_requests()) == 1

    await set_state(pg_db, BreakerState.CLOSED, open_until_ms=0)
    assert await dispatcher.poll() == 1  # admit read it closed again
    await dispatcher.drain(5)
    assert dispatcher.breaker.may_skip_admit()
    assert len(receiver.delivered()) == 2
    await worker.close()


async def test_a_claim_tells_whether_anything_else_is_due(pg_db: TestDatabase) -> None:
    store = DeliveryStore(pg_db.engine)
    orders = [payment_event(f"order-{n}") for n in range(3)]
    await append(pg_db, [*orders, payment_event("order-0", "payment.closed")], now_ms=1_000)
    assert await store.fan_out(ROUTES, now_ms=1_000, limit=10) == 4

    limited = await store.claim_if_closed(
        "shop", token="w:1", now_ms=2_000, lease_ms=60_000, limit=2
    )
    assert limited is not None
    claimed, seen = limited
    assert len(claimed) == 2
    assert not seen.nothing_more_due  # the limit stopped it: claim again
    assert (seen.state, seen.consecutive_failures) == (None, None)  # no breaker row yet

    rest = await store.claim_if_closed("shop", token="w:2", now_ms=2_000, lease_ms=60_000, limit=10)
    assert rest is not None
    claimed, seen = rest
    # order-0's second event waits for its first: nothing else may be leased now
    assert [c.event.event_id for c in claimed] == [orders[2].event_id]
    assert seen.nothing_more_due
