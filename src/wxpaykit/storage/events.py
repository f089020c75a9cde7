"""The transactional outbox: events written in the same transaction as the notification.

An **event** goes to the business (a notification arrives from the platform; the two
are never interchanged). ``dedup_key`` is unique per order + transition, so applying
the same transition twice can never emit a second event, whatever the concurrency.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BigInteger, Column, Index, String, Table, Text, select
from sqlalchemy.ext.asyncio import AsyncConnection

from wxpaykit.storage.schema import BigIntegerKey, metadata

__all__ = ["NewEvent", "append_events", "events"]

events = Table(
    "events",
    metadata,
    # Global order of commit; per-order delivery order follows it.
    Column("seq", BigIntegerKey, primary_key=True, autoincrement=True),
    Column("event_id", String(40), nullable=False, unique=True),
    Column("type", String(64), nullable=False),
    Column("mchid", String(32), nullable=False),
    # Events sharing an aggregate_key (one order) are delivered in seq order.
    Column("aggregate_key", String(160), nullable=False),
    Column("dedup_key", String(190), nullable=False, unique=True),
    Column("payload", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Index("ix_events_aggregate_key_seq", "aggregate_key", "seq"),
)


def new_event_id() -> str:
    """A random, URL-safe event id that receivers use to deduplicate."""
    return "evt_" + uuid.uuid4().hex


@dataclass(frozen=True, slots=True, kw_only=True)
class NewEvent:
    """An event to append to the outbox."""

    type: str
    mchid: str
    aggregate_key: str
    dedup_key: str
    payload: dict[str, Any]
    event_id: str = field(default_factory=new_event_id)


async def append_events(
    connection: AsyncConnection, new_events: Sequence[NewEvent], *, now_ms: int
) -> list[str]:
    """Insert events inside the caller's transaction; returns the ids actually inserted.

    An event whose ``dedup_key`` already exists is skipped (not an error): the
    transition it describes was already recorded. The check is a plain select followed
    by insert; the unique constraint on ``dedup_key`` is what makes it safe, because the
    caller's conditional update already serialised concurrent writers of one order.
    """
    inserted: list[str] = []
    for event in new_events:
        existing = await connection.scalar(
            select(events.c.event_id).where(events.c.dedup_key == event.dedup_key)
        )
        if existing is not None:
            continue
        await connection.execute(
            events.insert().values(
                event_id=event.event_id,
                type=event.type,
                mchid=event.mchid,
                aggregate_key=event.aggregate_key,
                dedup_key=event.dedup_key,
                payload=json.dumps(
                    {"id": event.event_id, "type": event.type, **event.payload},
                    ensure_ascii=False,
                    separators=(",", ":"),
                ),
                created_at_ms=now_ms,
            )
        )
        inserted.append(event.event_id)
    return inserted
