"""Delivery rows: fan events out per sink, claim due deliveries, record attempt results.

Claims never hand one delivery to two workers:

* PostgreSQL, MySQL 8, MariaDB 10.6+: candidates are selected ``FOR UPDATE SKIP
  LOCKED`` (rows another worker is claiming are passed over, not waited for), then
  leased in the same transaction;
* SQLite (and older servers): the lease is taken by a conditional ``UPDATE … WHERE
  lease is free``; a competitor that selected the same candidates updates nothing.

A lease (``locked_by``, ``locked_until_ms``) outlives the sink's timeout; a worker that
dies mid-delivery leaves it to expire, and the next worker delivers the event again
with the same id (at-least-once).

Order per aggregate (one order's events): a delivery is due only when no earlier
event of the same aggregate is still pending for that sink, and no earlier event at
all still waits for fan-out. Dead letters do not block later events.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from wxpaykit.dispatch.database import DialectFeatures, detect_features, read_only
from wxpaykit.dispatch.sinks.base import OutgoingEvent, SinkResult
from wxpaykit.storage.events import (
    DeliveryStatus,
    event_deliveries,
    event_delivery_attempts,
    event_fanout,
    events,
)

__all__ = ["AttemptRecord", "ClaimedDelivery", "DeliveryStore", "SinkRoute"]

_d = event_deliveries
_earlier = event_deliveries.alias("earlier")
#: Larger than any event seq: "no event waits for fan-out".
_NO_SEQ_LIMIT = 2**62


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkRoute:
    """A sink name and the event types it receives (for fan-out)."""

    name: str
    patterns: tuple[str, ...]

    def accepts(self, event_type: str) -> bool:
        """Whether ``event_type`` matches one of the patterns."""
        return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in self.patterns)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimedDelivery:
    """A leased delivery and its event."""

    delivery_id: int
    window_started_at_ms: int
    event: OutgoingEvent


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptRecord:
    """What one attempt produced and what happens next."""

    claimed: ClaimedDelivery
    result: SinkResult
    started_at_ms: int
    duration_ms: int
    #: ``None`` with a failed result: dead letter.
    next_attempt_at_ms: int | None


class DeliveryStore:
    """The queries the dispatcher runs; one instance per worker and engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._features: DialectFeatures | None = None

    async def features(self) -> DialectFeatures:
        """The server's capabilities (asked once)."""
        if self._features is None:
            async with read_only(self.engine) as connection:
                self._features = detect_features(connection)
        return self._features

    async def _begin(self) -> AsyncConnection:
        features = await self.features()
        connection = await self.engine.connect()
        if features.read_committed:
            # MySQL/MariaDB default REPEATABLE READ takes gap locks on these scans.
            connection = await connection.execution_options(isolation_level="READ COMMITTED")
        return connection

    def _insert_ignore(self, connection: AsyncConnection) -> Any:
        name = connection.dialect.name
        if name == "postgresql":
            return postgresql.insert(_d).on_conflict_do_nothing(index_elements=["event_id", "sink"])
        if name == "sqlite":
            return sqlite.insert(_d).on_conflict_do_nothing(index_elements=["event_id", "sink"])
        if name in ("mysql", "mariadb"):
            return mysql.insert(_d).prefix_with("IGNORE")
        return insert(_d)  # pragma: no cover - unsupported dialects fail on conflict

    async def fan_out(self, routes: Sequence[SinkRoute], *, now_ms: int, limit: int) -> int:
        """Turn queued events into delivery rows, one per accepting sink; returns events done."""
        features = await self.features()
        if not features.skip_locked:
            async with read_only(self.engine) as reader:
                if await reader.scalar(select(event_fanout.c.event_seq).limit(1)) is None:
                    return 0
        connection = await self._begin()
        try:
            async with connection.begin():
                query = (
                    select(event_fanout.c.event_seq).order_by(event_fanout.c.event_seq).limit(limit)
                )
                if features.skip_locked:
                    query = query.with_for_update(skip_locked=True)
                seqs = list((await connection.scalars(query)).all())
                if not seqs:
                    return 0
                rows = (
                    await connection.execute(
                        select(
                            events.c.seq, events.c.event_id, events.c.type, events.c.aggregate_key
                        ).where(events.c.seq.in_(seqs))
                    )
                ).all()
                values = [
                    {
                        "event_seq": row.seq,
                        "event_id": row.event_id,
                        "sink": route.name,
                        "aggregate_key": row.aggregate_key,
                        "status": DeliveryStatus.PENDING,
                        "attempts": 0,
                        "next_attempt_at_ms": now_ms,
                        "window_started_at_ms": now_ms,
                        "replays": 0,
                        "created_at_ms": now_ms,
                        "updated_at_ms": now_ms,
                    }
                    for row in rows
                    for route in routes
                    if route.accepts(row.type)
                ]
                if values:
                    await connection.execute(self._insert_ignore(connection), values)
                await connection.execute(
                    delete(event_fanout).where(event_fanout.c.event_seq.in_(seqs))
                )
                return len(seqs)
        finally:
            await connection.close()

    def _due_query(self, sink: str, *, now_ms: int, limit: int) -> Any:
        # Due only if it is the lowest pending event of its order for this sink. A
        # scalar min() per candidate, answered from the (sink, aggregate_key, status,
        # event_seq) index: unlike NOT EXISTS, the planner cannot turn it into a join
        # that compares every pending row with every other.
        head_of_order = (
            select(func.min(_earlier.c.event_seq))
            .where(
                _earlier.c.sink == _d.c.sink,
                _earlier.c.aggregate_key == _d.c.aggregate_key,
                _earlier.c.status == DeliveryStatus.PENDING,
            )
            .scalar_subquery()
        )
        # An event not yet fanned out holds back every delivery of a later event, not
        # only those of its own order: one probe per claim instead of one per candidate
        # (the fan-out queue is short, and its deleted rows make each probe slower).
        # Same statement, same snapshot: an event is either still queued or has its
        # deliveries, never neither (fan-out moves it in one transaction).
        oldest_unfanned = select(func.min(event_fanout.c.event_seq)).scalar_subquery()
        return (
            select(_d.c.id)
            .where(
                _d.c.sink == sink,
                _d.c.status == DeliveryStatus.PENDING,
                _d.c.next_attempt_at_ms <= now_ms,
                or_(_d.c.locked_until_ms.is_(None), _d.c.locked_until_ms <= now_ms),
                _d.c.event_seq < func.coalesce(oldest_unfanned, _NO_SEQ_LIMIT),
                _d.c.event_seq == head_of_order,
            )
            .order_by(_d.c.next_attempt_at_ms)
            .limit(limit)
        )

    async def claim(
        self, sink: str, *, token: str, now_ms: int, lease_ms: int, limit: int
    ) -> list[ClaimedDelivery]:
        """Lease up to ``limit`` due deliveries of ``sink`` under ``token``."""
        if limit <= 0:
            return []
        features = await self.features()
        due = self._due_query(sink, now_ms=now_ms, limit=limit)
        if not features.skip_locked:
            # Look first without the write lock: most polls find nothing due.
            async with read_only(self.engine) as reader:
                ids = list((await reader.scalars(due)).all())
            if not ids:
                return []
        connection = await self._begin()
        try:
            async with connection.begin():
                if features.skip_locked:
                    due = due.with_for_update(skip_locked=True)
                    ids = list((await connection.scalars(due)).all())
                    if not ids:
                        return []
                # The lease condition is re-checked here: a competitor that claimed
                # the same candidates first leaves nothing for this update.
                await connection.execute(
                    update(_d)
                    .where(
                        _d.c.id.in_(ids),
                        _d.c.status == DeliveryStatus.PENDING,
                        or_(_d.c.locked_until_ms.is_(None), _d.c.locked_until_ms <= now_ms),
                    )
                    .values(
                        locked_by=token,
                        locked_until_ms=now_ms + lease_ms,
                        # Due again when the lease ends (if the worker died): the claim
                        # walk skips deliveries in flight without reading them.
                        next_attempt_at_ms=now_ms + lease_ms,
                        attempts=_d.c.attempts + 1,
                        updated_at_ms=now_ms,
                    )
                )
                rows = (
                    await connection.execute(
                        select(
                            _d.c.id,
                            _d.c.attempts,
                            _d.c.window_started_at_ms,
                            events.c.seq,
                            events.c.event_id,
                            events.c.type,
                            events.c.mchid,
                            events.c.aggregate_key,
                            events.c.payload,
                            events.c.created_at_ms,
                        )
                        .join(events, events.c.seq == _d.c.event_seq)
                        .where(_d.c.id.in_(ids), _d.c.locked_by == token)
                        .order_by(_d.c.event_seq)
                    )
                ).all()
        finally:
            await connection.close()
        return [
            ClaimedDelivery(
                delivery_id=row.id,
                window_started_at_ms=row.window_started_at_ms,
                event=OutgoingEvent(
                    event_id=row.event_id,
                    type=row.type,
                    mchid=row.mchid,
                    aggregate_key=row.aggregate_key,
                    seq=row.seq,
                    body=row.payload.encode("utf-8"),
                    attempt=row.attempts,
                    created_at_ms=row.created_at_ms,
                ),
            )
            for row in rows
        ]

    async def record(
        self,
        records: Sequence[AttemptRecord],
        *,
        token_by_id: dict[int, str],
        worker: str,
        now_ms: int,
    ) -> None:
        """Write the outcome of finished attempts in one transaction.

        Successes are recorded whoever holds the lease now (the event did arrive);
        retries and dead letters only while our lease still stands, so a worker that
        overran its lease cannot undo a newer worker's result.
        """
        if not records:
            return
        delivered = [r.claimed.delivery_id for r in records if r.result.delivered]
        retries = [
            r for r in records if not r.result.delivered and r.next_attempt_at_ms is not None
        ]
        dead = [r for r in records if not r.result.delivered and r.next_attempt_at_ms is None]
        connection = await self._begin()
        try:
            async with connection.begin():
                if delivered:
                    await connection.execute(
                        update(_d)
                        .where(_d.c.id.in_(delivered), _d.c.status == DeliveryStatus.PENDING)
                        .values(
                            status=DeliveryStatus.DELIVERED,
                            delivered_at_ms=now_ms,
                            updated_at_ms=now_ms,
                            locked_by=None,
                            locked_until_ms=None,
                            last_error=None,
                        )
                    )
                for group, status in (
                    (retries, DeliveryStatus.PENDING),
                    (dead, DeliveryStatus.DEAD),
                ):
                    if not group:
                        continue
                    await connection.execute(
                        update(_d)
                        .where(
                            and_(
                                _d.c.id == bindparam("b_id"),
                                _d.c.locked_by == bindparam("b_token"),
                            )
                        )
                        .values(
                            status=status,
                            next_attempt_at_ms=bindparam("b_next"),
                            last_error=bindparam("b_error"),
                            locked_by=None,
                            locked_until_ms=None,
                            updated_at_ms=now_ms,
                        ),
                        [
                            {
                                "b_id": r.claimed.delivery_id,
                                "b_token": token_by_id[r.claimed.delivery_id],
                                "b_next": r.next_attempt_at_ms
                                if r.next_attempt_at_ms is not None
                                else now_ms,
                                "b_error": r.result.error or "failed",
                            }
                            for r in group
                        ],
                    )
                await connection.execute(
                    event_delivery_attempts.insert(),
                    [
                        {
                            "delivery_id": r.claimed.delivery_id,
                            "attempt": r.claimed.event.attempt,
                            "worker": worker,
                            "started_at_ms": r.started_at_ms,
                            "duration_ms": r.duration_ms,
                            "outcome": "delivered"
                            if r.result.delivered
                            else ("retry" if r.next_attempt_at_ms is not None else "dead"),
                            "status_code": r.result.status_code,
                            "error": r.result.error,
                        }
                        for r in records
                    ],
                )
        finally:
            await connection.close()
