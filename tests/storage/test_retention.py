"""Retention deletes old raw request bodies only."""

from __future__ import annotations

import dataclasses

from sqlalchemy import func, select

from tests.storage.builders import notification_count, order, payment
from wxpaykit.storage.base import RawRequest
from wxpaykit.storage.ledger import SqlLedger
from wxpaykit.storage.retention import DAY_MS, purge_raw_requests
from wxpaykit.storage.schema import notifications, raw_requests


async def _raw_count(ledger: SqlLedger, mchid: str) -> int:
    async with ledger.engine.connect() as connection:
        count = await connection.scalar(
            select(func.count())
            .select_from(raw_requests)
            .join(notifications, notifications.c.id == raw_requests.c.notification_pk)
            .where(notifications.c.mchid == mchid)
        )
        return int(count or 0)


async def test_retention_deletes_old_raw_bodies_only(ledger: SqlLedger, mchid: str) -> None:
    now = 1_800_000_000_000
    await ledger.create_order(order(mchid, "OLD"))
    await ledger.create_order(order(mchid, "NEW"))
    for out_trade_no, received in (("OLD", now - 31 * DAY_MS), ("NEW", now - 29 * DAY_MS)):
        notification = payment(mchid, out_trade_no)
        assert notification.raw is not None
        raw = RawRequest(headers=notification.raw.headers, body=b"x", received_at_ms=received)
        await ledger.record_notification(dataclasses.replace(notification, raw=raw))

    deleted = await purge_raw_requests(ledger.engine, older_than_ms=now - 30 * DAY_MS, batch_size=1)

    assert deleted >= 1
    assert await _raw_count(ledger, mchid) == 1
    # the notifications themselves (the exactly-once guard) stay
    assert await notification_count(ledger, mchid) == 2
    async with ledger.engine.connect() as connection:
        kept = await connection.scalar(
            select(raw_requests.c.received_at_ms)
            .join(notifications, notifications.c.id == raw_requests.c.notification_pk)
            .where(notifications.c.mchid == mchid)
        )
    assert kept == now - 29 * DAY_MS
