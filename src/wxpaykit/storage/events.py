"""The transactional outbox: events written in the same transaction as the notification.

An **event** goes to the business (a notification arrives from the platform; the two
are never interchanged). ``dedup_key`` is unique per order + transition, so applying
the same transition twice can never emit a second event, whatever the concurrency.

Tables (all times are integer milliseconds since the epoch):

``events``
    The outbox itself: one row per event, ``payload`` holds the exact JSON body every
    sink receives (the versioned envelope of :mod:`wxpaykit.dispatch.events`), so every
    attempt and every replay sends identical bytes.
``event_fanout``
    Written by :func:`append_events` in the same transaction: "this event still needs a
    delivery row per sink". A worker turns it into ``event_deliveries`` rows and deletes
    it. A queue instead of a ``seq`` cursor, because sequence numbers are assigned at
    insert, not at commit: a cursor would skip a slow transaction's event for ever.
``event_deliveries``
    One row per (event, sink): status, attempts, next attempt time and the lease
    (``locked_by``/``locked_until_ms``) that keeps two workers off the same delivery.
``event_delivery_attempts``
    One row per attempt, for ``wxpaykit events show`` and the admin API.
``sink_breakers``
    Circuit-breaker state per sink, shared by every worker through the database.

On PostgreSQL :func:`append_events` also sends one ``NOTIFY`` on :data:`EVENTS_CHANNEL`
(payload: the current schema) when it queued events: PostgreSQL delivers it only if
and when the transaction commits, and workers listening wake at once instead of at
their next poll.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    String,
    Table,
    Text,
    TextClause,
    UniqueConstraint,
    text,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from wxpaykit.storage.dialects import insert_many, insert_many_or_ignore
from wxpaykit.storage.schema import BigIntegerKey, metadata

__all__ = [
    "ENVELOPE_SCHEMA_VERSION",
    "EVENTS_CHANNEL",
    "DeliveryStatus",
    "NewEvent",
    "append_events",
    "event_deliveries",
    "event_delivery_attempts",
    "event_fanout",
    "events",
    "format_timestamp_ms",
    "new_event_id",
    "render_envelope",
    "sink_breakers",
]

#: Version of the event envelope (``schema_version`` in every body); bumped on breaking change.
ENVELOPE_SCHEMA_VERSION = 1

#: PostgreSQL ``NOTIFY`` channel: "events were committed" (payload: the schema's name).
EVENTS_CHANNEL = "wxpaykit_events"

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

event_fanout = Table(
    "event_fanout",
    metadata,
    Column("event_seq", BigInteger, primary_key=True, autoincrement=False),
    Column("aggregate_key", String(160), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    # Deliveries of later events of one order wait while an earlier one is not fanned out.
    Index("ix_event_fanout_aggregate_key_event_seq", "aggregate_key", "event_seq"),
)


class DeliveryStatus:
    """Values of ``event_deliveries.status`` (plain strings: portable and greppable)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    #: A dead letter: retries exhausted or a permanent failure; only a replay revives it.
    DEAD = "dead"


event_deliveries = Table(
    "event_deliveries",
    metadata,
    Column("id", BigIntegerKey, primary_key=True, autoincrement=True),
    Column("event_seq", BigInteger, nullable=False),
    Column("event_id", String(40), nullable=False),
    Column("sink", String(64), nullable=False),
    Column("aggregate_key", String(160), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at_ms", BigInteger, nullable=False),
    # Start of the retry window (creation or last replay): the age limit counts from here.
    Column("window_started_at_ms", BigInteger, nullable=False),
    Column("locked_by", String(64), nullable=True),
    Column("locked_until_ms", BigInteger, nullable=True),
    Column("last_error", String(500), nullable=True),
    Column("replays", Integer, nullable=False, default=0),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    Column("delivered_at_ms", BigInteger, nullable=True),
    UniqueConstraint("event_id", "sink"),
    # Claims walk due deliveries in due order and stop at the claim limit. A claimed
    # delivery's next_attempt_at_ms is its lease end, so deliveries in flight lie
    # outside the walked range.
    Index(
        "ix_event_deliveries_sink_status_next_attempt_at_ms", "sink", "status", "next_attempt_at_ms"
    ),
    # The ordering check ("the lowest pending event of these orders?") looks orders up
    # here. aggregate_key comes first, and that check names no sink, so that no other
    # index can serve it: whatever the statistics say (none yet, or "almost nothing
    # is pending" from before an outage), the planner cannot prefer walking every
    # pending row of a sink through the index above.
    Index(
        "ix_event_deliveries_aggregate_key_sink_status_event_seq",
        "aggregate_key",
        "sink",
        "status",
        "event_seq",
    ),
)

event_delivery_attempts = Table(
    "event_delivery_attempts",
    metadata,
    Column("id", BigIntegerKey, primary_key=True, autoincrement=True),
    Column("delivery_id", BigInteger, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("worker", String(64), nullable=False),
    Column("started_at_ms", BigInteger, nullable=False),
    Column("duration_ms", Integer, nullable=False),
    # delivered, retry, dead
    Column("outcome", String(16), nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", String(500), nullable=True),
    Index("ix_event_delivery_attempts_delivery_id", "delivery_id"),
)

sink_breakers = Table(
    "sink_breakers",
    metadata,
    Column("sink", String(64), primary_key=True),
    # closed, open, half_open
    Column("state", String(16), nullable=False),
    Column("consecutive_failures", Integer, nullable=False),
    # How many times in a row the breaker opened; lengthens the open period.
    Column("trips", Integer, nullable=False),
    Column("open_until_ms", BigInteger, nullable=True),
    # The worker probing in half-open state, and until when its probe counts.
    Column("probe_owner", String(64), nullable=True),
    Column("probe_until_ms", BigInteger, nullable=True),
    Column("updated_at_ms", BigInteger, nullable=False),
)


def new_event_id() -> str:
    """A random, URL-safe event id that receivers use to deduplicate."""
    return "evt_" + uuid.uuid4().hex


@functools.lru_cache(maxsize=16)  # a group's events share one commit time
def format_timestamp_ms(epoch_ms: int) -> str:
    """RFC 3339 UTC with milliseconds, e.g. ``2025-01-31T08:00:00.123Z``."""
    moment = dt.datetime.fromtimestamp(epoch_ms / 1000, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


@dataclass(frozen=True, slots=True, kw_only=True)
class NewEvent:
    """An event to append to the outbox; ``payload`` becomes the envelope's ``data``."""

    type: str
    mchid: str
    aggregate_key: str
    dedup_key: str
    payload: dict[str, Any]
    event_id: str = field(default_factory=new_event_id)


def render_envelope(event: NewEvent, *, now_ms: int) -> str:
    """The JSON body delivered to every sink (documented in ``docs/events.md``)."""
    envelope = {
        "id": event.event_id,
        "type": event.type,
        "schema_version": ENVELOPE_SCHEMA_VERSION,
        "created_at": format_timestamp_ms(now_ms),
        "mchid": event.mchid,
        "data": event.payload,
    }
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))


def event_columns(new_events: Sequence[NewEvent], *, now_ms: int) -> tuple[list[str], ...]:
    """One list per column of a bulk event insert (PostgreSQL ``unnest``): event id,
    type, mchid, aggregate key, dedup key and the rendered envelope."""
    return (
        [event.event_id for event in new_events],
        [event.type for event in new_events],
        [event.mchid for event in new_events],
        [event.aggregate_key for event in new_events],
        [event.dedup_key for event in new_events],
        [render_envelope(event, now_ms=now_ms) for event in new_events],
    )


async def append_events(
    connection: AsyncConnection, new_events: Sequence[NewEvent], *, now_ms: int
) -> list[str]:
    """Insert events inside the caller's transaction; returns the ids actually inserted.

    An event whose ``dedup_key`` already exists (or repeats one earlier in
    ``new_events``) is skipped, not an error: the transition it describes was already
    recorded. Concurrent writers of one key are safe: the insert skips on the unique
    constraint (on PostgreSQL it waits for the other transaction, then skips).
    Inserted events are queued in ``event_fanout`` in the same transaction, so a
    worker creates their deliveries exactly when (and only if) the caller commits.
    On PostgreSQL one statement for the whole batch, which also notifies listening
    workers (see :data:`EVENTS_CHANNEL`); two on SQLite (see
    :func:`~wxpaykit.storage.dialects.insert_many_or_ignore`). ``seq`` follows the
    order of ``new_events``.
    """
    if not new_events:
        return []
    if connection.dialect.name == "postgresql":
        return await _append_postgresql(connection, new_events, now_ms=now_ms)
    inserted = await insert_many_or_ignore(
        connection,
        events,
        [
            {
                "event_id": event.event_id,
                "type": event.type,
                "mchid": event.mchid,
                "aggregate_key": event.aggregate_key,
                "dedup_key": event.dedup_key,
                "payload": render_envelope(event, now_ms=now_ms),
                "created_at_ms": now_ms,
            }
            for event in new_events
        ],
        returning=("seq", "event_id", "aggregate_key"),
    )
    if not inserted:
        return []
    await insert_many(
        connection,
        event_fanout,
        [
            {"event_seq": seq, "aggregate_key": aggregate_key, "created_at_ms": now_ms}
            for seq, _event_id, aggregate_key in inserted
        ],
    )
    ids = {event_id for _seq, event_id, _aggregate_key in inserted}
    return [event.event_id for event in new_events if event.event_id in ids]


def _append_statement() -> TextClause:
    """PostgreSQL: insert, queue and notify in one statement (one round trip per batch).

    The events arrive as one array per column (the statement text is the same for any
    batch size, so asyncpg prepares it once per connection). ``ON CONFLICT DO NOTHING``
    also skips a repeat of a key earlier in the same batch; rows are inserted in
    array order, so ``seq`` follows it. The notification is an InitPlan of the output
    list: evaluated once, when the first inserted row is returned, never when nothing
    was inserted. PostgreSQL sends it at commit, not at all on rollback.
    """
    # Fixed identifiers only: every value is a bound parameter.
    return text(
        f"""WITH inserted AS (
    INSERT INTO {events.name} (event_id, type, mchid, aggregate_key, dedup_key, payload,
                               created_at_ms)
    SELECT u.event_id, u.type, u.mchid, u.aggregate_key, u.dedup_key, u.payload, CAST(:now AS BIGINT)
    FROM unnest(CAST(:event_ids AS VARCHAR[]), CAST(:types AS VARCHAR[]),
                CAST(:mchids AS VARCHAR[]), CAST(:keys AS VARCHAR[]),
                CAST(:dedup_keys AS VARCHAR[]), CAST(:payloads AS TEXT[]))
         WITH ORDINALITY AS u(event_id, type, mchid, aggregate_key, dedup_key, payload, n)
    ORDER BY u.n
    ON CONFLICT DO NOTHING
    RETURNING seq, event_id, aggregate_key
), queued AS (
    INSERT INTO {event_fanout.name} (event_seq, aggregate_key, created_at_ms)
    SELECT seq, aggregate_key, CAST(:now AS BIGINT) FROM inserted
)
SELECT event_id, (SELECT 1 FROM pg_notify('{EVENTS_CHANNEL}', current_schema())) AS notified
FROM inserted"""  # noqa: S608
    )


_PG_APPEND = _append_statement()


async def _append_postgresql(
    connection: AsyncConnection, new_events: Sequence[NewEvent], *, now_ms: int
) -> list[str]:
    names = ("event_ids", "types", "mchids", "keys", "dedup_keys", "payloads")
    result = await connection.execute(
        _PG_APPEND,
        {"now": now_ms, **dict(zip(names, event_columns(new_events, now_ms=now_ms), strict=True))},
    )
    ids = {row[0] for row in result}
    return [event.event_id for event in new_events if event.event_id in ids]
