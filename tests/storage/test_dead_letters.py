"""Inbound dead letters: kept when processing raised, re-driven later."""

from __future__ import annotations

import dataclasses

from sqlalchemy import select

from tests.storage.builders import event_types, order, payment
from wxpaykit.storage.base import RecordOutcome
from wxpaykit.storage.codec import dump_notification, load_notification
from wxpaykit.storage.ledger import SqlLedger
from wxpaykit.storage.schema import inbound_dead_letters


async def test_dead_letter_is_redriven_and_resolved(ledger: SqlLedger, mchid: str) -> None:
    await ledger.create_order(order(mchid, "T1"))
    failed = payment(mchid, "T1")
    await ledger.record_failure(failed, error="StorageError: deadlock, gave up")
    await ledger.record_failure(failed, error="StorageError: again")  # WeChat re-sent it

    report = await ledger.redrive_dead_letters()

    mine = [r for r in report.results if r.mchid == mchid]
    assert [(r.notification_id, r.outcome) for r in mine] == [
        (failed.notification_id, RecordOutcome.APPLIED)
    ]
    stored = await ledger.get_order(mchid, "T1")
    assert stored is not None
    assert stored.state == "SUCCESS"
    assert await event_types(ledger, mchid) == ["payment.succeeded"]
    async with ledger.engine.connect() as connection:
        row = (
            await connection.execute(
                select(inbound_dead_letters).where(inbound_dead_letters.c.mchid == mchid)
            )
        ).one()
    assert (row.status, row.attempts, row.outcome) == ("resolved", 2, "applied")
    assert "oUpF8uMuAJO" not in row.payload  # no openid at rest

    # a second re-drive finds nothing pending for this merchant
    again = await ledger.redrive_dead_letters()
    assert [r for r in again.results if r.mchid == mchid] == []


async def test_dead_letter_of_an_already_recorded_notification_resolves_as_duplicate(
    ledger: SqlLedger, mchid: str
) -> None:
    await ledger.create_order(order(mchid, "T1"))
    notification = payment(mchid, "T1")
    await ledger.record_failure(notification, error="timeout")
    await ledger.record_notification(notification)  # WeChat's retry got through

    report = await ledger.redrive_dead_letters()

    mine = [r for r in report.results if r.mchid == mchid]
    assert [r.outcome for r in mine] == [RecordOutcome.DUPLICATE]
    assert await event_types(ledger, mchid) == ["payment.succeeded"]


def test_codec_round_trip_drops_only_the_openid() -> None:
    notification = payment("1900000109", "T1")
    restored = load_notification(dump_notification(notification))
    assert restored.payment is not None
    assert notification.payment is not None
    assert restored.payment.openid is None
    assert restored.payment == dataclasses.replace(notification.payment, openid=None)
    assert restored.raw == notification.raw
    assert (restored.mchid, restored.notification_id) == (
        notification.mchid,
        notification.notification_id,
    )
