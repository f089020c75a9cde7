"""The demo's view of event delivery: the outbox (what was emitted) against the shop.

An event is *lost* when it is in the outbox but the shop never processed it; the demo
waits, with a deadline, until that number is 0 before it prints the summary.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from wxpaykit.demo.shop import ShopInbox, ShopSnapshot
from wxpaykit.storage.events import events

__all__ = ["DeliveryTally", "emitted_events", "tally", "wait_until_delivered"]

#: How often the outbox and the shop are compared while waiting.
POLL_SECONDS = 0.1


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryTally:
    """Outbox against shop, at one moment."""

    emitted: dict[str, str]  # event id -> type
    shop: ShopSnapshot

    @property
    def received(self) -> int:
        """Distinct outbox events the shop processed."""
        return sum(1 for event_id in self.emitted if event_id in self.shop.processed)

    @property
    def lost(self) -> int:
        """Outbox events the shop has not processed (0 once delivery is complete)."""
        return len(self.emitted) - self.received

    @property
    def emitted_by_type(self) -> dict[str, int]:
        """Outbox events per type."""
        return dict(Counter(self.emitted.values()))


async def emitted_events(engine: AsyncEngine) -> dict[str, str]:
    """Every event in the outbox, id -> type."""
    async with engine.connect() as connection:
        rows = await connection.execute(select(events.c.event_id, events.c.type))
        return {str(row.event_id): str(row.type) for row in rows}


async def tally(engine: AsyncEngine, inbox: ShopInbox) -> DeliveryTally:
    """Compare the outbox with what the shop processed."""
    emitted = await emitted_events(engine)
    return DeliveryTally(emitted=emitted, shop=inbox.snapshot())


async def wait_until_delivered(
    engine: AsyncEngine,
    inbox: ShopInbox,
    *,
    timeout_seconds: float,
    on_progress: Callable[[DeliveryTally], None] = lambda _: None,
) -> DeliveryTally:
    """Poll until the shop has processed every outbox event, or the deadline passes."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        current = await tally(engine, inbox)
        on_progress(current)
        if current.lost == 0 or time.monotonic() >= deadline:
            return current
        await asyncio.sleep(POLL_SECONDS)
