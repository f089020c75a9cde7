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
event of the same aggregate is still pending for that sink, or not yet fanned out.
Dead letters do not block later events.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, delete, insert, select, update
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from wxpaykit.dispatch import claims
from wxpaykit.dispatch.database import DialectFeatures, detect_features, one_of, read_only
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
                        ).where(one_of(events.c.seq, seqs, features.name))
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
                    delete(event_fanout).where(
                        one_of(event_fanout.c.event_seq, seqs, features.name)
                    )
                )
                return len(seqs)
        finally:
            await connection.close()

    async def claim(
        self, sink: str, *, token: str, now_ms: int, lease_ms: int, limit: int
    ) -> list[ClaimedDelivery]:
        """Lease up to ``limit`` due deliveries of ``sink`` under ``token``.

        The steps are described in :mod:`wxpaykit.dispatch.claims`.
        """
        if limit <= 0:
            return []
        features = await self.features()
        if features.skip_locked:
            rows = await self._claim_skip_locked(
                sink, features.name, token=token, now_ms=now_ms, lease_ms=lease_ms, limit=limit
            )
        else:
            rows = await self._claim_serialised(
                sink, features.name, token=token, now_ms=now_ms, lease_ms=lease_ms, limit=limit
            )
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

    async def _choose(
        self, connection: AsyncConnection, sink: str, dialect: str, *, now_ms: int, limit: int
    ) -> list[int]:
        """Steps 1 and 2 of a claim: the ids that may be leased now."""
        scan = claims.candidates_query(sink, now_ms=now_ms, limit=claims.scan_size(limit))
        candidates = [
            claims.Candidate(row.id, row.aggregate_key, row.event_seq)
            for row in await connection.execute(scan)
        ]
        if not candidates:
            return []
        keys = sorted({candidate.aggregate_key for candidate in candidates})
        heads = (await connection.execute(claims.heads_query(keys, dialect=dialect))).all()
        return claims.choose_heads(
            candidates,
            {row.aggregate_key: row.head_seq for row in heads if row.sink == sink},
            {row.aggregate_key: row.head_seq for row in heads if row.sink is None},
            limit=limit,
        )

    async def _claim_skip_locked(
        self, sink: str, dialect: str, *, token: str, now_ms: int, lease_ms: int, limit: int
    ) -> Sequence[Row[Any]]:
        # Choose without locks, then lock only the chosen rows (locking a row writes it).
        async with self.engine.connect() as reader:
            reader = await reader.execution_options(isolation_level="AUTOCOMMIT")
            ids = await self._choose(reader, sink, dialect, now_ms=now_ms, limit=limit)
            if not ids:
                return []
            if dialect == "postgresql":  # one atomic statement
                statement = claims.lease_and_read_postgresql(
                    ids, token=token, now_ms=now_ms, lease_ms=lease_ms
                )
                leased: Sequence[Row[Any]] = (await reader.execute(statement)).all()
                return leased
        connection = await self._begin()
        try:
            async with connection.begin():
                locked = list(
                    (
                        await connection.scalars(
                            claims.lock_query(ids, now_ms=now_ms, dialect=dialect)
                        )
                    ).all()
                )
                if not locked:
                    return []
                await connection.execute(
                    claims.lease_statement(
                        locked, token=token, now_ms=now_ms, lease_ms=lease_ms, dialect=dialect
                    )
                )
                query = claims.leased_query(locked, token=token, dialect=dialect)
                rows: Sequence[Row[Any]] = (await connection.execute(query)).all()
                return rows
        finally:
            await connection.close()

    async def _claim_serialised(
        self, sink: str, dialect: str, *, token: str, now_ms: int, lease_ms: int, limit: int
    ) -> Sequence[Row[Any]]:
        # Look first without the write lock: most polls find nothing due.
        async with read_only(self.engine) as reader:
            probe = claims.candidates_query(sink, now_ms=now_ms, limit=1)
            if (await reader.execute(probe)).first() is None:
                return []
        connection = await self._begin()
        try:
            async with connection.begin():
                ids = await self._choose(connection, sink, dialect, now_ms=now_ms, limit=limit)
                if not ids:
                    return []
                # The lease condition is checked again: without row locks (older
                # MariaDB), a competitor that leased the same rows first leaves
                # nothing for this update.
                await connection.execute(
                    claims.lease_statement(
                        ids, token=token, now_ms=now_ms, lease_ms=lease_ms, dialect=dialect
                    )
                )
                query = claims.leased_query(ids, token=token, dialect=dialect)
                rows: Sequence[Row[Any]] = (await connection.execute(query)).all()
                return rows
        finally:
            await connection.close()

    async def record(
        self,
        sink: str,
        records: Sequence[AttemptRecord],
        *,
        token_by_id: dict[int, str],
        worker: str,
        now_ms: int,
    ) -> None:
        """Write the outcome of finished attempts in one transaction.

        Successes are recorded whoever holds the lease now (the event did arrive);
        retries and dead letters only while our lease still stands, so a worker that
        overran its lease cannot undo a newer worker's result. Later events of an
        order whose delivery is retried, if never attempted, become due no earlier
        than that retry: they could not be delivered before it anyway, and claims
        need not read them (a replay makes them due again at once).
        """
        if not records:
            return
        delivered = [r.claimed.delivery_id for r in records if r.result.delivered]
        retries = [
            r for r in records if not r.result.delivered and r.next_attempt_at_ms is not None
        ]
        dead = [r for r in records if not r.result.delivered and r.next_attempt_at_ms is None]
        features = await self.features()
        connection = await self._begin()
        try:
            async with connection.begin():
                if delivered:
                    await connection.execute(
                        update(_d)
                        .where(
                            one_of(_d.c.id, delivered, features.name),
                            _d.c.status == DeliveryStatus.PENDING,
                        )
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
                if retries:
                    await connection.execute(
                        update(_d)
                        .where(
                            _d.c.sink == sink,
                            _d.c.aggregate_key == bindparam("b_key"),
                            _d.c.status == DeliveryStatus.PENDING,
                            _d.c.event_seq > bindparam("b_seq"),
                            _d.c.attempts == 0,
                            _d.c.next_attempt_at_ms < bindparam("b_next"),
                        )
                        .values(next_attempt_at_ms=bindparam("b_next")),
                        [
                            {
                                "b_key": r.claimed.event.aggregate_key,
                                "b_seq": r.claimed.event.seq,
                                "b_next": r.next_attempt_at_ms,
                            }
                            for r in retries
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
