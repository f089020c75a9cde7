"""Small helpers shared by the dispatch tests."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Row

from tests.dispatch.conftest import TestDatabase
from wxpaykit.dispatch.config import DispatchSettings, parse_dispatch_settings
from wxpaykit.storage.events import NewEvent, append_events, event_deliveries, events

MCHID = "1900000109"
_counter = itertools.count(1)


def payment_event(out_trade_no: str, event_type: str = "payment.succeeded") -> NewEvent:
    """A payment event for one order; each call has a fresh dedup key."""
    n = next(_counter)
    return NewEvent(
        type=event_type,
        mchid=MCHID,
        aggregate_key=f"{MCHID}:{out_trade_no}",
        dedup_key=f"{MCHID}:{out_trade_no}:{event_type}:{n}",
        payload={
            "out_trade_no": out_trade_no,
            "transaction_id": f"42000{n:010d}",
            "trade_state": "SUCCESS",
            "total": 100 + n,
            "currency": "CNY",
        },
    )


async def append(
    database: TestDatabase, new_events: Sequence[NewEvent], *, now_ms: int
) -> list[str]:
    """Commit events the way the ledger does (inside one transaction)."""
    async with database.engine.begin() as connection:
        return await append_events(connection, new_events, now_ms=now_ms)


async def deliveries(database: TestDatabase) -> list[Row[Any]]:
    """Every delivery row, in event order."""
    async with database.engine.connect() as connection:
        result = await connection.execute(
            select(event_deliveries).order_by(event_deliveries.c.event_seq, event_deliveries.c.sink)
        )
        return list(result.all())


async def statuses(database: TestDatabase) -> dict[str, str]:
    """``event_id:sink`` -> status."""
    return {f"{row.event_id}:{row.sink}": row.status for row in await deliveries(database)}


async def committed_ids(database: TestDatabase) -> list[str]:
    """Event ids in the outbox, in seq order."""
    async with database.engine.connect() as connection:
        return list(
            (await connection.scalars(select(events.c.event_id).order_by(events.c.seq))).all()
        )


def body_id(body: bytes) -> str:
    """The event id inside a delivered body."""
    return str(json.loads(body)["id"])


def settings(
    *sinks: dict[str, Any], poll_interval_seconds: float = 0.005, **worker: Any
) -> DispatchSettings:
    """Dispatch settings with a fast poll for tests."""
    return parse_dispatch_settings(
        {
            "worker": {"poll_interval_seconds": poll_interval_seconds, **worker},
            "sinks": list(sinks),
        }
    )
