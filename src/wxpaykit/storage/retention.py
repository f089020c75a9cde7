"""Delete raw request bodies (and their headers) older than the retention period.

Only ``raw_requests`` rows go: the ``notifications`` rows stay, because they are the
exactly-once guard and an audit trail of what was applied. Deleting in small batches
keeps each transaction short so it never holds up the notification path::

    deleted = await purge_raw_requests(ledger.engine, older_than_ms=now_ms - 30 * DAY_MS)

:func:`delete_in_batches` is the batching itself, shared with the purge of delivered
event history (:mod:`wxpaykit.dispatch.retention`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from wxpaykit.errors import StorageError
from wxpaykit.storage import dialects
from wxpaykit.storage.schema import raw_requests

__all__ = ["DAY_MS", "delete_in_batches", "purge_raw_requests"]

DAY_MS = 24 * 60 * 60 * 1000


async def purge_raw_requests(
    engine: AsyncEngine, *, older_than_ms: int, batch_size: int = 500
) -> int:
    """Delete raw requests received before ``older_than_ms``; returns how many.

    ``older_than_ms`` is a cut-off instant (epoch ms), typically ``now - retention``.
    """

    async def remove(connection: AsyncConnection, ids: list[int]) -> int:
        result = await connection.execute(delete(raw_requests).where(raw_requests.c.id.in_(ids)))
        return int(result.rowcount)

    return await delete_in_batches(
        engine,
        select(raw_requests.c.id).where(raw_requests.c.received_at_ms < older_than_ms),
        raw_requests.c.id,
        remove,
        batch_size=batch_size,
        what="retention",
    )


async def delete_in_batches(
    engine: AsyncEngine,
    pick: Select[Any],
    key: ColumnElement[int],
    remove: Callable[[AsyncConnection, list[int]], Awaitable[int]],
    *,
    batch_size: int,
    what: str,
) -> int:
    """Take up to ``batch_size`` ids from ``pick`` (ordered by ``key``) and ``remove``
    them, one short transaction per batch, until ``pick`` finds none; returns the total
    ``remove`` reported. Ids are selected first, then deleted by id: MySQL refuses
    ``LIMIT`` inside ``IN (subquery)``. Driver errors become a :class:`StorageError`
    that starts with ``what``."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    deleted = 0
    try:
        while True:
            async with engine.begin() as connection:
                ids = list(
                    (await connection.execute(pick.order_by(key).limit(batch_size))).scalars()
                )
                if not ids:
                    return deleted
                deleted += await remove(connection, ids)
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        raise StorageError(f"{what} failed: {dialects.describe(exc)}") from exc
