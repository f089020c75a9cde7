"""Outcomes other than a plain transition: anomalies, unmatched, late and early events."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from tests.storage.builders import (
    event_types,
    notification_count,
    order,
    payment,
    refund,
)
from wxpaykit.errors import MalformedMessageError
from wxpaykit.storage.base import RecordOutcome
from wxpaykit.storage.events import events
from wxpaykit.storage.ledger import SqlLedger
from wxpaykit.storage.refunds import MAX_REFUNDS
from wxpaykit.storage.schema import notifications, raw_requests


@pytest.mark.parametrize(("total", "currency"), [(99, "CNY"), (100, "USD")])
async def test_amount_or_currency_mismatch_is_an_anomaly_never_applied(
    ledger: SqlLedger, mchid: str, total: int, currency: str
) -> None:
    await ledger.create_order(order(mchid, "T1", total=100))

    result = await ledger.record_notification(payment(mchid, "T1", total=total, currency=currency))

    assert result.outcome is RecordOutcome.ANOMALY
    assert result.transitions == ()
    assert len(result.event_ids) == 1
    assert await event_types(ledger, mchid) == ["payment.amount_mismatch"]
    stored = await ledger.get_order(mchid, "T1")
    assert stored is not None
    assert (stored.state, stored.transaction_id) == ("NOTPAY", None)
    # a re-send of the same mismatch under a new id is recorded but raises no second event
    again = await ledger.record_notification(payment(mchid, "T1", total=total, currency=currency))
    assert again.outcome is RecordOutcome.ANOMALY
    assert await event_types(ledger, mchid) == ["payment.amount_mismatch"]
    assert await notification_count(ledger, mchid) == 2


async def test_unknown_out_trade_no_is_unmatched_with_an_event(
    ledger: SqlLedger, mchid: str
) -> None:
    result = await ledger.record_notification(payment(mchid, "NOSUCHORDER"))

    assert result.outcome is RecordOutcome.UNMATCHED
    assert await event_types(ledger, mchid) == ["payment.unmatched"]
    assert await ledger.get_order(mchid, "NOSUCHORDER") is None
    async with ledger.engine.connect() as connection:
        outcome = await connection.scalar(
            select(notifications.c.outcome).where(notifications.c.mchid == mchid)
        )
    assert outcome == "unmatched"


async def test_second_transaction_for_a_paid_order_is_an_anomaly(
    ledger: SqlLedger, mchid: str
) -> None:
    await ledger.create_order(order(mchid, "T1"))
    await ledger.record_notification(payment(mchid, "T1", transaction_id="4200000001"))

    result = await ledger.record_notification(payment(mchid, "T1", transaction_id="4200000002"))

    assert result.outcome is RecordOutcome.ANOMALY
    assert await event_types(ledger, mchid) == ["payment.succeeded", "payment.transaction_mismatch"]


async def test_paid_after_close_applies_and_flags_for_review(ledger: SqlLedger, mchid: str) -> None:
    await ledger.create_order(order(mchid, "T1"))
    closed = await ledger.record_notification(payment(mchid, "T1", trade_state="CLOSED"))
    assert closed.outcome is RecordOutcome.APPLIED

    paid = await ledger.record_notification(payment(mchid, "T1"))

    assert paid.outcome is RecordOutcome.APPLIED
    assert [(t.from_state, t.to_state) for t in paid.transitions] == [("CLOSED", "SUCCESS")]
    async with ledger.engine.connect() as connection:
        rows = (
            await connection.execute(
                select(events.c.type, events.c.payload)
                .where(events.c.mchid == mchid)
                .order_by(events.c.seq)
            )
        ).all()
    assert [row.type for row in rows] == [
        "payment.closed",
        "payment.succeeded",
        "payment.paid_after_close",
    ]
    review = json.loads(rows[-1].payload)
    assert "CLOSED" in json.dumps(review)
    # events never carry the payer's openid
    assert all("oUpF8uMuAJO" not in row.payload for row in rows)


async def test_late_close_after_payment_changes_nothing(ledger: SqlLedger, mchid: str) -> None:
    await ledger.create_order(order(mchid, "T1"))
    await ledger.record_notification(payment(mchid, "T1"))

    result = await ledger.record_notification(payment(mchid, "T1", trade_state="CLOSED"))

    assert result.outcome is RecordOutcome.NO_CHANGE
    stored = await ledger.get_order(mchid, "T1")
    assert stored is not None
    assert stored.state == "SUCCESS"


async def test_refund_before_payment_is_held_then_counted_when_paid(
    ledger: SqlLedger, mchid: str
) -> None:
    await ledger.create_order(order(mchid, "T1", total=100))

    early = await ledger.record_notification(refund(mchid, "T1", "R1", amount=40))

    assert early.outcome is RecordOutcome.UNMATCHED
    held = await ledger.get_refund(mchid, "R1")
    assert held is not None
    assert (held.status, held.applied) == ("SUCCESS", False)
    stored = await ledger.get_order(mchid, "T1")
    assert stored is not None
    assert (stored.state, stored.refunded_total) == ("NOTPAY", 0)
    assert await event_types(ledger, mchid) == ["refund.pending_payment"]

    paid = await ledger.record_notification(payment(mchid, "T1", total=100))

    assert paid.outcome is RecordOutcome.APPLIED
    assert [(t.from_state, t.to_state) for t in paid.transitions] == [
        ("NOTPAY", "SUCCESS"),
        ("SUCCESS", "REFUND"),
    ]
    stored = await ledger.get_order(mchid, "T1")
    assert stored is not None
    assert (stored.state, stored.refunded_total, stored.refund_count) == ("REFUND", 40, 1)
    released = await ledger.get_refund(mchid, "R1")
    assert released is not None
    assert released.applied
    assert await event_types(ledger, mchid) == [
        "refund.pending_payment",
        "payment.succeeded",
        "refund.succeeded",
    ]
    # the refund's own re-send after that changes nothing
    resent = await ledger.record_notification(refund(mchid, "T1", "R1", amount=40))
    assert resent.outcome is RecordOutcome.NO_CHANGE


async def test_refund_amount_or_total_mismatch_is_an_anomaly(ledger: SqlLedger, mchid: str) -> None:
    await ledger.create_order(order(mchid, "T1", total=100))
    await ledger.record_notification(payment(mchid, "T1"))
    await ledger.record_notification(refund(mchid, "T1", "R1", amount=10, status="PROCESSING"))

    wrong_total = await ledger.record_notification(refund(mchid, "T2", "R9", amount=10, total=5))
    other_amount = await ledger.record_notification(refund(mchid, "T1", "R1", amount=11))
    order_total = await ledger.record_notification(refund(mchid, "T1", "R2", amount=1, total=99))

    assert wrong_total.outcome is RecordOutcome.UNMATCHED  # no order T2
    assert other_amount.outcome is RecordOutcome.ANOMALY
    assert order_total.outcome is RecordOutcome.ANOMALY
    stored = await ledger.get_order(mchid, "T1")
    assert stored is not None
    assert (stored.refunded_total, stored.state) == (0, "SUCCESS")
    assert (await event_types(ledger, mchid))[-3:] == [
        "refund.unmatched",
        "refund.amount_mismatch",
        "refund.amount_mismatch",
    ]


async def test_at_most_fifty_refunds_per_order(ledger: SqlLedger, mchid: str) -> None:
    await ledger.create_order(order(mchid, "T1", total=1_000))
    await ledger.record_notification(payment(mchid, "T1", total=1_000))
    for i in range(MAX_REFUNDS):
        result = await ledger.record_notification(
            refund(mchid, "T1", f"R{i}", amount=1, total=1_000)
        )
        assert result.outcome is RecordOutcome.APPLIED

    extra = await ledger.record_notification(refund(mchid, "T1", "R50", amount=1, total=1_000))

    assert extra.outcome is RecordOutcome.ANOMALY
    stored = await ledger.get_order(mchid, "T1")
    assert stored is not None
    assert (stored.refund_count, stored.refunded_total) == (50, 50)
    assert (await event_types(ledger, mchid))[-1] == "refund.limit_exceeded"


async def test_raw_request_is_stored_as_received(ledger: SqlLedger, mchid: str) -> None:
    await ledger.create_order(order(mchid, "T1"))
    notification = payment(mchid, "T1", body=b'{"id":"EV-9","resource":{"ciphertext":"AAA="}}')

    await ledger.record_notification(notification)

    async with ledger.engine.connect() as connection:
        row = (
            await connection.execute(
                select(raw_requests.c.headers, raw_requests.c.body)
                .join(notifications, notifications.c.id == raw_requests.c.notification_pk)
                .where(notifications.c.mchid == mchid)
            )
        ).one()
    assert notification.raw is not None
    assert bytes(row.body) == notification.raw.body
    assert json.loads(row.headers) == dict(notification.raw.headers)


async def test_create_order_is_idempotent_and_refuses_a_different_order(
    ledger: SqlLedger, mchid: str
) -> None:
    first = await ledger.create_order(order(mchid, "T1", total=100))
    again = await ledger.create_order(order(mchid, "T1", total=100))
    assert first == again
    with pytest.raises(ValueError, match="different fields"):
        await ledger.create_order(order(mchid, "T1", total=200))
    # keys are case-sensitive on every database (MySQL uses utf8mb4_bin)
    other = await ledger.create_order(order(mchid, "t1", total=200))
    assert other.total == 200


async def test_malformed_notification_is_refused_before_any_write(
    ledger: SqlLedger, mchid: str
) -> None:
    await ledger.create_order(order(mchid, "T1"))
    with pytest.raises(MalformedMessageError, match="out_trade_no is longer than 64"):
        await ledger.record_notification(payment(mchid, "T" * 65))
    with pytest.raises(MalformedMessageError, match="refund must be positive"):
        await ledger.record_notification(refund(mchid, "T1", "R1", amount=0))
    assert await notification_count(ledger, mchid) == 0
