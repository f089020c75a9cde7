"""Delivery rows: fan events out per sink, claim due deliveries, record attempt results.

Claims never hand one delivery to two workers (the steps are in
:mod:`wxpaykit.dispatch.claims`):

* PostgreSQL, MySQL 8, MariaDB 10.6+: the chosen deliveries are locked ``FOR UPDATE
  SKIP LOCKED`` (rows another worker is claiming are passed over, not waited for),
  their lease re-checked on the locked rows, and leased in the same statement or
  transaction;
* SQLite (and older servers): the lease is taken by a conditional ``UPDATE … WHERE
  lease is free``; a competitor that chose the same deliveries updates nothing.

A lease (``locked_by``, ``locked_until_ms``) outlives the sink's timeout; a worker that
dies mid-delivery leaves it to expire, and the next worker delivers the event again
with the same id (at-least-once).

Order per aggregate (one order's events): a delivery is due only when no earlier
event of the same aggregate is still pending for that sink, and no earlier event
waits for fan-out. Dead letters do not block later events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from wxpaykit.dispatch import claims
from wxpaykit.dispatch.database import (
    DialectFeatures,
    detect_features,
    one_of,
    read_only,
)
from wxpaykit.dispatch.fanout import FanOutStatements, SinkRoute, delivery_rows
from wxpaykit.dispatch.recording import AttemptRecord, ClaimedDelivery, record_delivered
from wxpaykit.dispatch.sinks.base import OutgoingEvent
from wxpaykit.storage.dialects import insert_many
from wxpaykit.storage.events import (
    DeliveryStatus,
    event_deliveries,
    event_delivery_attempts,
)

__all__ = ["AttemptRecord", "BreakerSeen", "ClaimedDelivery", "DeliveryStore", "SinkRoute"]

_d = event_deliveries


@dataclass(frozen=True, slots=True)
class BreakerSeen:
    """What a one-statement claim saw besides its deliveries."""

    #: The sink's breaker row (``None``: no row yet).
    state: str | None
    consecutive_failures: int | None
    #: Every due delivery of the sink was read and nothing that may be leased was
    #: left behind: until something changes (a commit, a finished attempt, time),
    #: another claim would find nothing.
    nothing_more_due: bool = False


def _claimed(rows: Sequence[Any]) -> list[ClaimedDelivery]:
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


class DeliveryStore:
    """The queries the dispatcher runs; one instance per worker and engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._features: DialectFeatures | None = None
        self._claim_statements: claims.ClaimStatements | None = None
        self._fan_out_statements: FanOutStatements | None = None
        # Per routes: the routed fan-out's parameters (None: that statement cannot route them).
        self._routed_parameters: dict[tuple[SinkRoute, ...], dict[str, Any] | None] = {}

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

    async def fan_out(self, routes: Sequence[SinkRoute], *, now_ms: int, limit: int) -> int:
        """Turn queued events into delivery rows, one per accepting sink; returns events done."""
        features = await self.features()
        if self._fan_out_statements is None:
            self._fan_out_statements = FanOutStatements(
                features.name, skip_locked=features.skip_locked
            )
        statements = self._fan_out_statements
        key = tuple(routes)
        if key not in self._routed_parameters:
            self._routed_parameters[key] = statements.routed_parameters(routes)
        routed = self._routed_parameters[key]
        async with read_only(self.engine) as reader:
            if statements.routed is not None and routed is not None:
                # One statement, atomic on its own (autocommit connection).
                parameters = {**routed, "b_limit": limit, "b_now": now_ms}
                return int((await reader.execute(statements.routed, parameters)).scalar_one())
            if (await reader.execute(statements.probe)).first() is None:
                return 0  # the usual idle poll: one read, no transaction
        connection = await self._begin()
        try:
            async with connection.begin():
                rows = await statements.take_events(connection, limit=limit)
                values = delivery_rows(rows, routes, now_ms=now_ms)
                if values:
                    await connection.execute(statements.insert, values)
                return len(rows)
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
        claim = self._claim_skip_locked if features.skip_locked else self._claim_serialised
        rows = await claim(sink, token=token, now_ms=now_ms, lease_ms=lease_ms, limit=limit)
        return _claimed(rows)

    async def claim_if_closed(
        self, sink: str, *, token: str, now_ms: int, lease_ms: int, limit: int
    ) -> tuple[list[ClaimedDelivery], BreakerSeen] | None:
        """Like :meth:`claim`, but only while the sink's breaker is closed (or has no row).

        The claim checks the breaker itself, in its own snapshot: what
        :meth:`CircuitBreaker.admit` reads first, without that round trip. Returns the
        breaker as seen too; ``None`` where the database has no one-statement claim
        (PostgreSQL only): ask the breaker first there, then :meth:`claim`.
        """
        statements = await self._statements()
        if statements.claim is None:
            return None
        rows, seen = await self._claim_in_one_statement(
            statements.claim,
            sink,
            token=token,
            now_ms=now_ms,
            lease_ms=lease_ms,
            limit=limit,
            guard=True,
        )
        return _claimed(rows), seen

    async def _statements(self) -> claims.ClaimStatements:
        if self._claim_statements is None:
            self._claim_statements = claims.ClaimStatements((await self.features()).name)
        return self._claim_statements

    async def _choose(
        self, connection: AsyncConnection, sink: str, *, now_ms: int, limit: int
    ) -> list[int]:
        """Steps 1 and 2 of a claim: the ids that may be leased now."""
        statements = await self._statements()
        scan = claims.scan_size(limit)
        while True:
            found = await connection.execute(
                statements.candidates, {"b_sink": sink, "b_now": now_ms, "b_scan": scan}
            )
            candidates: list[claims.Candidate] = [tuple(row) for row in found]
            if not candidates:
                return []
            keys = sorted({key for _id, key, _seq in candidates})
            heads: dict[str, int] = {}
            unfanned: int | None = None
            for key, row_sink, seq in await connection.execute(statements.heads, {"b_keys": keys}):
                if key is None:
                    unfanned = seq
                elif row_sink == sink:
                    heads[key] = seq
            ids = claims.choose_heads(candidates, heads, unfanned, limit=limit)
            if ids or len(candidates) < scan or scan >= claims.MAX_SCAN:
                return ids
            # Every candidate waits behind an earlier event: look further.
            scan = min(claims.MAX_SCAN, scan * 4)

    async def _claim_skip_locked(
        self, sink: str, *, token: str, now_ms: int, lease_ms: int, limit: int
    ) -> Sequence[Any]:
        statements = await self._statements()
        if statements.claim is not None:
            claimed, _seen = await self._claim_in_one_statement(
                statements.claim, sink, token=token, now_ms=now_ms, lease_ms=lease_ms, limit=limit
            )
            return claimed
        # Choose without locks, then lock only the chosen rows (locking a row writes it).
        async with read_only(self.engine) as reader:
            ids = await self._choose(reader, sink, now_ms=now_ms, limit=limit)
            if not ids:
                return []
            lease = {
                "b_ids": ids,
                "b_now": now_ms,
                "b_token": token,
                "b_lease_end": now_ms + lease_ms,
            }
            if statements.dialect == "postgresql":  # one atomic statement
                leased: Sequence[Any] = (
                    await reader.execute(statements.lease_and_read, lease)
                ).all()
                return leased
        connection = await self._begin()
        try:
            async with connection.begin():
                locked = list(
                    (
                        await connection.scalars(statements.lock, {"b_ids": ids, "b_now": now_ms})
                    ).all()
                )
                if not locked:
                    return []
                await connection.execute(statements.lease, {**lease, "b_ids": locked})
                rows: Sequence[Any] = (
                    await connection.execute(statements.leased, {"b_ids": locked, "b_token": token})
                ).all()
                return rows
        finally:
            await connection.close()

    async def _claim_in_one_statement(
        self,
        statement: Any,
        sink: str,
        *,
        token: str,
        now_ms: int,
        lease_ms: int,
        limit: int,
        guard: bool = False,
    ) -> tuple[Sequence[Any], BreakerSeen]:
        """PostgreSQL: :func:`claims.one_statement_claim`, widening the scan like :meth:`_choose`."""
        scan = claims.scan_size(limit)
        parameters: dict[str, Any] = {
            "b_sink": sink,
            "b_now": now_ms,
            "b_scan": scan,
            "b_limit": limit,
            "b_token": token,
            "b_lease_end": now_ms + lease_ms,
            "b_guard": guard,
        }
        async with read_only(self.engine) as reader:
            while True:
                rows = (await reader.execute(statement, parameters)).all()
                first = rows[0]
                leased = [row for row in rows if row.id is not None]
                seen = BreakerSeen(
                    first.breaker_state,
                    first.breaker_failures,
                    nothing_more_due=first.scanned < scan
                    and first.chosen < limit
                    and len(leased) == first.chosen,
                )
                # Chosen but not leased: another worker claimed them first; as in
                # _claim_skip_locked, try again at the next poll.
                if first.chosen or first.scanned < scan or scan >= claims.MAX_SCAN:
                    return leased, seen
                # Every candidate waits behind an earlier event: look further.
                scan = parameters["b_scan"] = min(claims.MAX_SCAN, scan * 4)

    async def _claim_serialised(
        self, sink: str, *, token: str, now_ms: int, lease_ms: int, limit: int
    ) -> Sequence[Any]:
        statements = await self._statements()
        # Look first without the write lock: most polls find nothing due.
        async with read_only(self.engine) as reader:
            probe = {"b_sink": sink, "b_now": now_ms, "b_scan": 1}
            if (await reader.execute(statements.candidates, probe)).first() is None:
                return []
        connection = await self._begin()
        try:
            async with connection.begin():
                ids = await self._choose(connection, sink, now_ms=now_ms, limit=limit)
                if not ids:
                    return []
                # The lease condition is checked again: without row locks (older
                # MariaDB), a competitor that leased the same rows first leaves
                # nothing for this update.
                lease = {
                    "b_ids": ids,
                    "b_now": now_ms,
                    "b_token": token,
                    "b_lease_end": now_ms + lease_ms,
                }
                await connection.execute(statements.lease, lease)
                rows: Sequence[Any] = (
                    await connection.execute(statements.leased, {"b_ids": ids, "b_token": token})
                ).all()
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

        Successes are recorded whoever holds the lease now and whatever the status
        (the event did arrive: a delivery dead-lettered or replayed meanwhile is done);
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
        if features.name == "postgresql" and len(delivered) == len(records):
            # The usual batch: one atomic statement, no transaction.
            async with read_only(self.engine) as connection:
                await record_delivered(connection, records, worker=worker, now_ms=now_ms)
            return
        connection = await self._begin()
        try:
            async with connection.begin():
                if delivered:
                    await connection.execute(
                        update(_d)
                        # By primary key alone, so no plan can prefer another index.
                        .where(one_of(_d.c.id, delivered, features.name))
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
                await insert_many(
                    connection,
                    event_delivery_attempts,
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
