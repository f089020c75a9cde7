"""Inbound dead letters: verified notifications whose processing raised.

Rows are ``pending`` until re-driving records them (any outcome, DUPLICATE included),
then ``resolved``. The payload is :func:`~wxpaykit.storage.codec.dump_notification`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from wxpaykit.storage import dialects
from wxpaykit.storage.base import RecordOutcome, VerifiedNotification
from wxpaykit.storage.codec import dump_notification
from wxpaykit.storage.schema import inbound_dead_letters

__all__ = ["ERROR_WIDTH", "mark_dead_letter", "pending_dead_letters", "save_dead_letter"]

ERROR_WIDTH = 1000
_table = inbound_dead_letters


async def save_dead_letter(
    connection: AsyncConnection, notification: VerifiedNotification, *, error: str, now_ms: int
) -> None:
    """Keep the notification; if it is already pending, count the new failure."""
    error = error[:ERROR_WIDTH]
    key = await dialects.insert_or_ignore(
        connection,
        _table,
        {
            "mchid": notification.mchid,
            "notification_id": notification.notification_id,
            "status": "pending",
            "payload": dump_notification(notification),
            "error": error,
            "attempts": 1,
            "outcome": None,
            "created_at_ms": now_ms,
            "updated_at_ms": now_ms,
            "resolved_at_ms": None,
        },
    )
    if key is None:  # failed again (WeChat re-sent it): count it, keep it pending
        await connection.execute(
            update(_table)
            .where(
                _table.c.mchid == notification.mchid,
                _table.c.notification_id == notification.notification_id,
                _table.c.status == "pending",
            )
            .values(error=error, attempts=_table.c.attempts + 1, updated_at_ms=now_ms)
        )


async def pending_dead_letters(connection: AsyncConnection, *, limit: int | None) -> list[Row[Any]]:
    """Pending dead letters, oldest first."""
    query = select(_table).where(_table.c.status == "pending").order_by(_table.c.id)
    if limit is not None:
        query = query.limit(limit)
    return list((await connection.execute(query)).all())


async def mark_dead_letter(
    connection: AsyncConnection,
    dead_letter_id: int,
    *,
    outcome: RecordOutcome | None,
    error: str | None,
    now_ms: int,
) -> None:
    """Resolve it with ``outcome``, or (outcome None) count one more failed attempt."""
    values: dict[str, Any] = {"updated_at_ms": now_ms}
    if outcome is not None:
        values.update(status="resolved", outcome=outcome.value, resolved_at_ms=now_ms)
    else:
        values.update(error=(error or "")[:ERROR_WIDTH], attempts=_table.c.attempts + 1)
    await connection.execute(update(_table).where(_table.c.id == dead_letter_id).values(**values))
