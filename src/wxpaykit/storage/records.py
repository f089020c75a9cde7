"""Reading and registering orders and refunds, and counting, inside a caller's transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, Table, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from wxpaykit.storage import dialects
from wxpaykit.storage.base import LedgerStats, OrderRecord, RefundRecord
from wxpaykit.storage.events import events
from wxpaykit.storage.schema import inbound_dead_letters, notifications, orders, refunds

__all__ = ["insert_order", "read_order", "read_refund", "read_stats"]


async def insert_order(connection: AsyncConnection, order: OrderRecord, *, now_ms: int) -> None:
    """Insert the order unless ``(mchid, out_trade_no)`` exists (then nothing happens)."""
    created = order.created_at_ms or now_ms
    await dialects.insert_or_ignore(
        connection,
        orders,
        {
            "mchid": order.mchid,
            "out_trade_no": order.out_trade_no,
            "appid": order.appid,
            "description": order.description,
            "total": order.total,
            "currency": order.currency,
            "state": order.state,
            "transaction_id": order.transaction_id,
            "expires_at_ms": order.expires_at_ms,
            "refunded_total": order.refunded_total,
            "refund_count": order.refund_count,
            "held_refunds": 0,
            "version": 0,
            "created_at_ms": created,
            "updated_at_ms": order.updated_at_ms or created,
        },
    )


def same_order(stored: OrderRecord, wanted: OrderRecord) -> bool:
    """True when ``wanted`` describes the order already stored (idempotent registration)."""
    return (
        stored.appid,
        stored.description,
        stored.total,
        stored.currency,
        stored.expires_at_ms,
    ) == (wanted.appid, wanted.description, wanted.total, wanted.currency, wanted.expires_at_ms)


async def read_order(
    connection: AsyncConnection, mchid: str, out_trade_no: str
) -> OrderRecord | None:
    """The order, or None."""
    row = (
        await connection.execute(
            select(orders).where(orders.c.mchid == mchid, orders.c.out_trade_no == out_trade_no)
        )
    ).one_or_none()
    if row is None:
        return None
    return OrderRecord(
        mchid=row.mchid,
        out_trade_no=row.out_trade_no,
        appid=row.appid,
        description=row.description,
        total=row.total,
        currency=row.currency,
        state=row.state,
        transaction_id=row.transaction_id,
        refunded_total=row.refunded_total,
        created_at_ms=row.created_at_ms,
        updated_at_ms=row.updated_at_ms,
        expires_at_ms=row.expires_at_ms,
        refund_count=row.refund_count,
    )


async def read_refund(
    connection: AsyncConnection, mchid: str, out_refund_no: str
) -> RefundRecord | None:
    """The refund, or None."""
    row = (
        await connection.execute(
            select(refunds).where(
                refunds.c.mchid == mchid, refunds.c.out_refund_no == out_refund_no
            )
        )
    ).one_or_none()
    if row is None:
        return None
    return RefundRecord(
        mchid=row.mchid,
        out_refund_no=row.out_refund_no,
        out_trade_no=row.out_trade_no,
        refund_id=row.refund_id,
        status=row.status,
        amount=row.amount,
        applied=bool(row.applied),
        created_at_ms=row.created_at_ms,
        updated_at_ms=row.updated_at_ms,
    )


async def read_stats(connection: AsyncConnection, *, mchid: str | None) -> LedgerStats:
    """Counts for dashboards and the demo summary, optionally for one merchant."""

    def scoped(table: Table, query: Select[Any]) -> Select[Any]:
        return query if mchid is None else query.where(table.c.mchid == mchid)

    by_outcome = await connection.execute(
        scoped(
            notifications,
            select(notifications.c.outcome, func.count()).group_by(notifications.c.outcome),
        )
    )
    duplicates = await connection.scalar(
        scoped(notifications, select(func.coalesce(func.sum(notifications.c.duplicate_count), 0)))
    )
    event_count = await connection.scalar(scoped(events, select(func.count()).select_from(events)))
    by_state = await connection.execute(
        scoped(orders, select(orders.c.state, func.count()).group_by(orders.c.state))
    )
    dead = await connection.scalar(
        scoped(
            inbound_dead_letters,
            select(func.count())
            .select_from(inbound_dead_letters)
            .where(inbound_dead_letters.c.status == "pending"),
        )
    )
    return LedgerStats(
        notifications_by_outcome={str(o): int(n) for o, n in by_outcome.all()},
        duplicates_absorbed=int(duplicates or 0),
        events=int(event_count or 0),
        orders_by_state={str(s): int(n) for s, n in by_state.all()},
        pending_dead_letters=int(dead or 0),
    )
