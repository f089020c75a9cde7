"""Delete the history of deliveries that succeeded long ago.

Each event gets a delivery row per sink, and each attempt a row of its own, so without
a purge these tables grow for as long as the shop takes payments. What goes: deliveries
``delivered`` before the cut-off, with their attempts. What stays: the ``events``
themselves (the outbox's record of what happened, and their dedup keys), pending
deliveries, and dead letters (they wait for an operator's replay).

A purged delivery can no longer be listed or replayed; the receiver has it already
(it answered 2xx). Each batch is its own short transaction, so a purge never holds up
the notification path or the sinks::

    deleted = await purge_delivered(engine, older_than_ms=now_ms - 30 * DAY_MS)
"""

from __future__ import annotations

from sqlalchemy import delete, exists, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from wxpaykit.storage.events import DeliveryStatus, event_deliveries, event_delivery_attempts
from wxpaykit.storage.retention import delete_in_batches

__all__ = ["purge_delivered"]

_d = event_deliveries
_a = event_delivery_attempts


async def purge_delivered(engine: AsyncEngine, *, older_than_ms: int, batch_size: int = 500) -> int:
    """Delete deliveries delivered before ``older_than_ms`` (epoch ms) and their attempts;
    returns how many deliveries went."""

    async def remove(connection: AsyncConnection, ids: list[int]) -> int:
        # The status is checked again: a replay may have made one pending since the
        # select. Its attempts go only if the delivery itself went.
        result = await connection.execute(
            delete(_d).where(_d.c.id.in_(ids), _d.c.status == DeliveryStatus.DELIVERED)
        )
        await connection.execute(
            delete(_a).where(
                _a.c.delivery_id.in_(ids), ~exists().where(_d.c.id == _a.c.delivery_id)
            )
        )
        return int(result.rowcount)

    return await delete_in_batches(
        engine,
        select(_d.c.id).where(
            _d.c.status == DeliveryStatus.DELIVERED, _d.c.delivered_at_ms < older_than_ms
        ),
        _d.c.id,
        remove,
        batch_size=batch_size,
        what="delivery purge",
    )
