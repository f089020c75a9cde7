"""Group commit on every database: shared transactions, outcomes per item, ack after commit.

Concurrent ``record_notification`` calls share transactions; each caller must still get
its own notification's outcome, nothing may be returned before the shared commit, and
one item that fails must not fail the others (the group is redone one item each).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, update

from tests.storage.builders import event_types, new_id, notification_count, order, payment
from tests.storage.conftest import FakeClock
from wxpaykit.storage.base import RawRequest, RecordOutcome, RecordResult, VerifiedNotification
from wxpaykit.storage.ledger import SqlLedger
from wxpaykit.storage.schema import notifications, orders


@pytest.fixture
async def siblings() -> AsyncIterator[list[SqlLedger]]:
    """Second ledgers on a test's engine, closed after it (the driver path keeps a
    connection for a while after each group)."""
    made: list[SqlLedger] = []
    yield made
    for sibling in made:
        await sibling.aclose()


def grouped(
    ledger: SqlLedger, clock: FakeClock, siblings: list[SqlLedger], *, wait_ms: float = 0.0
) -> SqlLedger:
    """A second ledger on the same engine with one group in flight at a time."""
    sibling = SqlLedger(
        ledger.engine, clock=clock, group_max_in_flight=1, group_max_wait_ms=wait_ms
    )
    siblings.append(sibling)
    return sibling


def unwritable(notification: VerifiedNotification) -> VerifiedNotification:
    """Valid for the ledger's checks, but no driver can encode its raw headers (a lone
    surrogate is not UTF-8): writing it fails inside the transaction on every database."""
    assert notification.raw is not None
    raw = RawRequest(
        headers={"Wechatpay-Nonce": "\ud800"},
        body=notification.raw.body,
        received_at_ms=notification.raw.received_at_ms,
    )
    return dataclasses.replace(notification, raw=raw)


async def test_concurrent_callers_share_transactions_and_keep_their_outcomes(
    ledger: SqlLedger, clock: FakeClock, mchid: str, siblings: list[SqlLedger]
) -> None:
    sharing = grouped(ledger, clock, siblings)
    for name in ("A", "B", "C"):
        await ledger.create_order(order(mchid, name))
    twin = payment(mchid, "A", notification_id=new_id())
    items = [
        twin,
        twin,  # the same notification twice in one group: recorded once
        payment(mchid, "B"),
        payment(mchid, "B"),  # a re-send under a new id: no second transition
        payment(mchid, "C"),
        payment(mchid, "NO-SUCH-ORDER"),
    ]

    results = await asyncio.gather(*(sharing.record_notification(item) for item in items))

    assert sharing.average_group_size > 1  # submitted in one turn: one group
    assert Counter(result.outcome for result in results) == {
        RecordOutcome.APPLIED: 3,
        RecordOutcome.DUPLICATE: 1,
        RecordOutcome.NO_CHANGE: 1,
        RecordOutcome.UNMATCHED: 1,
    }
    assert results[5].outcome is RecordOutcome.UNMATCHED
    assert {results[0].outcome, results[1].outcome} == {
        RecordOutcome.APPLIED,
        RecordOutcome.DUPLICATE,
    }
    assert {results[2].outcome, results[3].outcome} == {
        RecordOutcome.APPLIED,
        RecordOutcome.NO_CHANGE,
    }
    assert Counter(await event_types(ledger, mchid))["payment.succeeded"] == 3
    assert await notification_count(ledger, mchid) == 5


async def test_one_failing_item_falls_back_and_fails_alone(
    ledger: SqlLedger, clock: FakeClock, mchid: str
) -> None:
    for name in ("A", "B", "C"):
        await ledger.create_order(order(mchid, name))
    bad = unwritable(payment(mchid, "B"))
    batch = [payment(mchid, "A"), bad, payment(mchid, "C")]

    results = await ledger.record_notifications_batch(batch)

    assert ledger.batch_fallbacks == 1
    assert isinstance(results[1], Exception)
    good = [result for result in (results[0], results[2]) if isinstance(result, RecordResult)]
    assert [result.outcome for result in good] == [RecordOutcome.APPLIED] * 2
    paid_b = await ledger.get_order(mchid, "B")
    assert paid_b is not None
    assert paid_b.state == "NOTPAY"  # nothing of the failed item was kept
    assert await notification_count(ledger, mchid) == 2


async def test_a_failing_caller_does_not_fail_concurrent_callers(
    ledger: SqlLedger, clock: FakeClock, mchid: str, siblings: list[SqlLedger]
) -> None:
    sharing = grouped(ledger, clock, siblings, wait_ms=50)
    for name in ("A", "B", "C"):
        await ledger.create_order(order(mchid, name))
    items = [payment(mchid, "A"), unwritable(payment(mchid, "B")), payment(mchid, "C")]

    results = await asyncio.gather(
        *(sharing.record_notification(item) for item in items), return_exceptions=True
    )

    assert isinstance(results[1], Exception)
    assert [getattr(results[i], "outcome", None) for i in (0, 2)] == [RecordOutcome.APPLIED] * 2
    assert sharing.batch_fallbacks == 1
    assert await event_types(ledger, mchid) == ["payment.succeeded"] * 2


async def test_a_batch_answers_twins_and_earlier_notifications_as_duplicates(
    ledger: SqlLedger, mchid: str
) -> None:
    for name in ("A", "B"):
        await ledger.create_order(order(mchid, name))
    earlier = payment(mchid, "A")
    await ledger.record_notification(earlier)
    twin = payment(mchid, "B")

    results = await ledger.record_notifications_batch([twin, earlier, twin])

    assert [getattr(result, "outcome", None) for result in results] == [
        RecordOutcome.APPLIED,
        RecordOutcome.DUPLICATE,
        RecordOutcome.DUPLICATE,
    ]
    assert ledger.batch_fallbacks == 0
    async with ledger.engine.connect() as connection:
        rows = await connection.execute(
            select(notifications.c.out_trade_no, notifications.c.duplicate_count).where(
                notifications.c.mchid == mchid
            )
        )
        counts = {str(row.out_trade_no): int(row.duplicate_count) for row in rows}
    assert counts == {"A": 1, "B": 1}


async def test_invalid_item_is_refused_without_touching_the_group(
    ledger: SqlLedger, mchid: str
) -> None:
    await ledger.create_order(order(mchid, "A"))
    invalid = payment(mchid, "X" * 200)  # longer than out_trade_no's column

    results = await ledger.record_notifications_batch([invalid, payment(mchid, "A")])

    assert isinstance(results[0], Exception)
    assert isinstance(results[1], RecordResult)
    assert results[1].outcome is RecordOutcome.APPLIED
    assert ledger.batch_fallbacks == 0


async def test_nothing_is_returned_before_the_shared_commit(
    ledger: SqlLedger, clock: FakeClock, mchid: str, siblings: list[SqlLedger]
) -> None:
    sharing = grouped(ledger, clock, siblings, wait_ms=50)
    for name in ("A", "B", "C"):
        await ledger.create_order(order(mchid, name))
    items = [payment(mchid, name) for name in ("A", "B", "C")]

    async with ledger.engine.connect() as blocker:
        transaction = await blocker.begin()
        # Hold a write lock on order B (a row lock; SQLite: the database write lock).
        await blocker.execute(
            update(orders)
            .where(orders.c.mchid == mchid, orders.c.out_trade_no == "B")
            .values(updated_at_ms=orders.c.updated_at_ms)
        )
        pending = asyncio.gather(*(sharing.record_notification(item) for item in items))
        done, _ = await asyncio.wait({pending}, timeout=0.5)
        assert not done  # A and C share the blocked transaction: not acknowledged either
        await transaction.rollback()
    results = await asyncio.wait_for(pending, timeout=30)

    assert [result.outcome for result in results] == [RecordOutcome.APPLIED] * 3
    async with ledger.engine.connect() as observer:  # committed: visible to anyone
        recorded = await observer.scalar(
            select(notifications.c.id)
            .where(notifications.c.mchid == mchid)
            .order_by(notifications.c.id.desc())
            .limit(1)
        )
    assert recorded is not None
    assert await notification_count(ledger, mchid) == 3


@pytest.mark.parametrize("group_commit", [True, False])
async def test_both_modes_give_the_same_outcomes(
    ledger: SqlLedger, clock: FakeClock, mchid: str, group_commit: bool, siblings: list[SqlLedger]
) -> None:
    mode = SqlLedger(ledger.engine, clock=clock, group_commit=group_commit)
    siblings.append(mode)
    await mode.create_order(order(mchid, "A"))
    twin = payment(mchid, "A", notification_id=new_id())

    results = await asyncio.gather(*(mode.record_notification(twin) for _ in range(10)))

    assert Counter(result.outcome for result in results) == {
        RecordOutcome.APPLIED: 1,
        RecordOutcome.DUPLICATE: 9,
    }
