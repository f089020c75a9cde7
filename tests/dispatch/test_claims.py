"""Which due deliveries a claim may lease, and how a retried event holds its order back."""

from __future__ import annotations

from sqlalchemy import delete, insert, select

from tests.dispatch.conftest import TestDatabase
from tests.dispatch.helpers import append, payment_event
from wxpaykit.dispatch.claims import choose_heads
from wxpaykit.dispatch.deliveries import AttemptRecord, DeliveryStore, SinkRoute
from wxpaykit.dispatch.history import replay
from wxpaykit.dispatch.sinks.base import SinkResult
from wxpaykit.storage.events import event_deliveries, event_fanout, events

ROUTES = [SinkRoute(name="shop", patterns=("*",))]


def test_only_the_head_of_each_order_is_chosen_in_due_order_up_to_the_limit() -> None:
    candidates = [(1, "a", 10), (2, "a", 11), (3, "b", 12), (4, "c", 13), (5, "d", 14)]
    heads = {"a": 10, "b": 9, "c": 13, "d": 14}  # b's head (9) is elsewhere, e.g. in flight
    assert choose_heads(candidates, heads, None, limit=10) == [1, 4, 5]
    assert choose_heads(candidates, heads, None, limit=2) == [1, 4]


def test_an_event_not_yet_fanned_out_holds_back_every_later_event() -> None:
    candidates = [(1, "a", 10), (2, "b", 20), (3, "c", 30)]
    heads = {"a": 10, "b": 20, "c": 30}
    assert choose_heads(candidates, heads, 25, limit=10) == [1, 2]
    assert choose_heads(candidates, heads, 5, limit=10) == []


async def test_later_events_wait_for_a_retry_and_a_replay_makes_them_due_again(
    any_db: TestDatabase,
) -> None:
    first, second, other = (
        payment_event("order-1"),
        payment_event("order-1", "payment.closed"),
        payment_event("order-2"),
    )
    await append(any_db, [first, second, other], now_ms=1_000)
    store = DeliveryStore(any_db.engine)
    assert await store.fan_out(ROUTES, now_ms=1_000, limit=10) == 3

    claimed = await store.claim("shop", token="w:1", now_ms=2_000, lease_ms=60_000, limit=10)
    # order-1's second event waits for its first; order-2 is independent
    assert sorted(c.event.event_id for c in claimed) == sorted([first.event_id, other.event_id])
    head = next(c for c in claimed if c.event.event_id == first.event_id)
    retry_at = 500_000
    await store.record(
        "shop",
        [
            AttemptRecord(
                claimed=head,
                result=SinkResult.failed("HTTP 503", status_code=503),
                started_at_ms=2_000,
                duration_ms=5,
                next_attempt_at_ms=retry_at,
            )
        ],
        token_by_id={head.delivery_id: "w:1"},
        worker="w",
        now_ms=3_000,
    )

    due = await next_attempts(any_db)
    assert due[first.event_id] == retry_at
    assert due[second.event_id] == retry_at  # never attempted: not due before its head
    assert await store.claim("shop", token="w:2", now_ms=4_000, lease_ms=60_000, limit=10) == []

    assert await replay(any_db.engine, now_ms=5_000, event_id=first.event_id) == 1
    due = await next_attempts(any_db)
    assert due[first.event_id] == due[second.event_id] == 5_000
    again = await store.claim("shop", token="w:3", now_ms=6_000, lease_ms=60_000, limit=10)
    assert [c.event.event_id for c in again] == [first.event_id]


async def next_attempts(database: TestDatabase) -> dict[str, int]:
    """event_id -> next_attempt_at_ms of its shop delivery."""
    d = event_deliveries
    async with database.engine.connect() as connection:
        rows = (await connection.execute(select(d.c.event_id, d.c.next_attempt_at_ms))).all()
    return {row.event_id: row.next_attempt_at_ms for row in rows}


async def test_a_claim_looks_past_due_deliveries_that_wait_for_their_order(
    any_db: TestDatabase,
) -> None:
    busy = [payment_event("order-busy", f"payment.step{n}") for n in range(40)]
    await append(any_db, busy, now_ms=1_000)
    store = DeliveryStore(any_db.engine)
    assert await store.fan_out(ROUTES, now_ms=1_000, limit=100) == 40
    (head,) = await store.claim("shop", token="w:1", now_ms=2_000, lease_ms=60_000, limit=1)
    assert head.event.event_id == busy[0].event_id  # in flight: its 39 successors wait
    other = payment_event("order-other")
    await append(any_db, [other], now_ms=3_000)
    assert await store.fan_out(ROUTES, now_ms=3_000, limit=100) == 1

    # The first candidates read (limit 1: 18) all wait; the claim reads further.
    claimed = await store.claim("shop", token="w:2", now_ms=4_000, lease_ms=60_000, limit=1)
    assert [c.event.event_id for c in claimed] == [other.event_id]


async def test_an_event_still_queued_for_fan_out_holds_back_later_ones(
    any_db: TestDatabase,
) -> None:
    first, second = payment_event("order-1"), payment_event("order-2")
    await append(any_db, [first], now_ms=1_000)
    await append(any_db, [second], now_ms=1_000)
    store = DeliveryStore(any_db.engine)
    # A slow concurrent fan-out: the first event is taken but not yet committed.
    async with any_db.engine.connect() as connection:
        seqs = dict((await connection.execute(select(events.c.event_id, events.c.seq))).all())
    assert await store.fan_out(ROUTES, now_ms=1_000, limit=10) == 2
    async with any_db.engine.begin() as connection:
        await connection.execute(
            insert(event_fanout).values(
                event_seq=seqs[first.event_id], aggregate_key="elsewhere", created_at_ms=1_000
            )
        )
    held = await store.claim("shop", token="w:1", now_ms=2_000, lease_ms=60_000, limit=10)
    assert [c.event.event_id for c in held] == [first.event_id]  # not the later one

    async with any_db.engine.begin() as connection:
        await connection.execute(delete(event_fanout))
    claimed = await store.claim("shop", token="w:2", now_ms=3_000, lease_ms=60_000, limit=10)
    assert [c.event.event_id for c in claimed] == [second.event_id]
