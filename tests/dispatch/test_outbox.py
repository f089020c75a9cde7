"""append_events: a batch in a few statements, duplicates skipped, fan-out queued in order."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import select

from tests.dispatch.conftest import TestDatabase
from tests.dispatch.helpers import append, payment_event
from wxpaykit.storage.events import event_fanout, events


async def test_a_batch_skips_known_and_repeated_dedup_keys_and_keeps_its_order(
    any_db: TestDatabase,
) -> None:
    first = payment_event("order-1")
    assert await append(any_db, [first], now_ms=1_000) == [first.event_id]

    again = replace(first, event_id="evt_again")  # same dedup_key, recorded before
    batch = [payment_event(f"order-{n}") for n in range(2, 40)]
    twin = replace(batch[3], event_id="evt_twin")  # same dedup_key within the batch
    inserted = await append(any_db, [again, *batch[:5], twin, *batch[5:]], now_ms=2_000)

    assert inserted == [event.event_id for event in batch]
    async with any_db.engine.connect() as connection:
        stored = (
            await connection.execute(
                select(events.c.event_id, events.c.seq, events.c.created_at_ms).order_by(
                    events.c.seq
                )
            )
        ).all()
        queued = (
            await connection.execute(
                select(event_fanout.c.event_seq, event_fanout.c.aggregate_key).order_by(
                    event_fanout.c.event_seq
                )
            )
        ).all()
    assert [row.event_id for row in stored] == [first.event_id, *inserted]
    assert [row.created_at_ms for row in stored[1:]] == [2_000] * len(batch)
    # every inserted event is queued for fan-out, under its own seq and order
    assert [(row.event_seq, row.aggregate_key) for row in queued] == [
        (row.seq, event.aggregate_key) for row, event in zip(stored, [first, *batch], strict=True)
    ]


async def test_an_empty_or_fully_known_batch_inserts_nothing(any_db: TestDatabase) -> None:
    event = payment_event("order-1")
    await append(any_db, [event], now_ms=1)
    assert await append(any_db, [], now_ms=2) == []
    assert await append(any_db, [replace(event, event_id="evt_other")], now_ms=3) == []
