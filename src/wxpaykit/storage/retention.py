"""Delete raw request bodies (and their headers) older than the retention period.

Only ``raw_requests`` rows go: the ``notifications`` rows stay, because they are the
exactly-once guard and an audit trail of what was applied. Deleting in small batches
keeps each transaction short so it never holds up the notification path::

    deleted = await purge_raw_requests(ledger.engine, older_than_ms=now_ms - 30 * DAY_MS)
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from wxpaykit.errors import StorageError
from wxpaykit.storage import dialects
from wxpaykit.storage.schema import raw_requests

__all__ = ["DAY_MS", "purge_raw_requests"]

DAY_MS = 24 * 60 * 60 * 1000


async def purge_raw_requests(
    engine: AsyncEngine, *, older_than_ms: int, batch_size: int = 500
) -> int:
    """Delete raw requests received before ``older_than_ms``; returns how many.

    ``older_than_ms`` is a cut-off instant (epoch ms), typically ``now - retention``.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    deleted = 0
    try:
        while True:
            async with engine.begin() as connection:
                # Select then delete by id: MySQL refuses LIMIT inside IN (subquery).
                ids = list(
                    (
                        await connection.execute(
                            select(raw_requests.c.id)
                            .where(raw_requests.c.received_at_ms < older_than_ms)
                            .order_by(raw_requests.c.id)
                            .limit(batch_size)
                        )
                    ).scalars()
                )
                if not ids:
                    return deleted
                result = await connection.execute(
                    delete(raw_requests).where(raw_requests.c.id.in_(ids))
                )
                deleted += int(result.rowcount)
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        raise StorageError(f"retention failed: {dialects.describe(exc)}") from exc
