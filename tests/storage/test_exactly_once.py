"""Concurrency: twins, re-sends under new ids and competing refunds, on every database.

``asyncio.gather`` over a pool of 10 connections puts up to 10 transactions in flight at
once; the database's unique constraints and conditional updates must decide.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from sqlalchemy import func, select

from tests.storage.builders import event_types, new_id, notification_count, order, payment, refund
from wxpaykit.storage.base import RecordOutcome
from wxpaykit.storage.ledger import SqlLedger
from wxpaykit.storage.schema import notifications, refunds

COPIES = 50


async def test_fifty_concurrent_twins_apply_once(ledger: SqlLedger, mchid: str) -> None:
    await ledger.create_order(order(mchid, "T1"))
    twin = payment(mchid, "T1", notification_id=new_id())

    results = await asyncio.gather(*(ledger.record_notification(twin) for _ in range(COPIES)))

    outcomes = Counter(result.outcome for result in results)
    assert outcomes == {RecordOutcome.APPLIED: 1, RecordOutcome.DUPLICATE: COPIES - 1}
    assert sum(len(result.transitions) for result in results) == 1
    assert sum(len(result.event_ids) for result in results) == 1
    assert await event_types(ledger, mchid) == ["payment.succeeded"]
    assert await notification_count(ledger, mchid) == 1
    stored = await ledger.get_order(mchid, "T1")
    assert stored is not None
    assert stored.state == "SUCCESS"
    async with ledger.engine.connect() as connection:
        absorbed = await connection.scalar(
            select(notifications.c.duplicate_count).where(notifications.c.mchid == mchid)
        )
    assert absorbed == COPIES - 1


async def test_fifty_resends_under_new_ids_apply_once(ledger: SqlLedger, mchid: str) -> None:
    await ledger.create_order(order(mchid, "T1"))

    results = await asyncio.gather(
        *(ledger.record_notification(payment(mchid, "T1")) for _ in range(COPIES))
    )

    outcomes = Counter(result.outcome for result in results)
    assert outcomes == {RecordOutcome.APPLIED: 1, RecordOutcome.NO_CHANGE: COPIES - 1}
    assert await event_types(ledger, mchid) == ["payment.succeeded"]
    assert await notification_count(ledger, mchid) == COPIES


async def test_concurrent_partial_refunds_never_exceed_the_paid_amount(
    ledger: SqlLedger, mchid: str
) -> None:
    await ledger.create_order(order(mchid, "T1", total=100))
    await ledger.record_notification(payment(mchid, "T1", total=100))

    # 12 refunds of 30 fen each: only 3 fit into 100 fen.
    results = await asyncio.gather(
        *(
            ledger.record_notification(refund(mchid, "T1", f"R{i}", amount=30, total=100))
            for i in range(12)
        )
    )

    outcomes = Counter(result.outcome for result in results)
    assert outcomes == {RecordOutcome.APPLIED: 3, RecordOutcome.ANOMALY: 9}
    stored = await ledger.get_order(mchid, "T1")
    assert stored is not None
    assert (stored.refunded_total, stored.refund_count, stored.state) == (90, 3, "REFUND")
    kinds = Counter(await event_types(ledger, mchid))
    assert kinds == {"payment.succeeded": 1, "refund.succeeded": 3, "refund.exceeds_paid": 9}
    async with ledger.engine.connect() as connection:
        applied_sum = await connection.scalar(
            select(func.coalesce(func.sum(refunds.c.amount), 0)).where(
                refunds.c.mchid == mchid, refunds.c.applied.is_(True)
            )
        )
    assert applied_sum == 90


async def test_same_refund_resent_concurrently_counts_once(ledger: SqlLedger, mchid: str) -> None:
    await ledger.create_order(order(mchid, "T1"))
    await ledger.record_notification(payment(mchid, "T1"))

    results = await asyncio.gather(
        *(ledger.record_notification(refund(mchid, "T1", "R1", amount=40)) for _ in range(20))
    )

    outcomes = Counter(result.outcome for result in results)
    assert outcomes == {RecordOutcome.APPLIED: 1, RecordOutcome.NO_CHANGE: 19}
    stored = await ledger.get_order(mchid, "T1")
    assert stored is not None
    assert (stored.refunded_total, stored.refund_count) == (40, 1)
    assert Counter(await event_types(ledger, mchid)) == {
        "payment.succeeded": 1,
        "refund.succeeded": 1,
    }
