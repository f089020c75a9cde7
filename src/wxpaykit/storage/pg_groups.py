"""PostgreSQL: a group of payment notifications recorded straight through asyncpg.

The general path (:meth:`SqlLedger._record_many_in`) runs every statement through
SQLAlchemy's async layer, in an explicit transaction of six round trips. Measured on
the benchmark machine, that layer costs about 100 µs of CPU per statement and 130 µs
per pool checkout, against 25 µs for the same statement through asyncpg; and under
load every round trip is also a turn of a busy event loop that each notification of
the group waits for. This module records the common group (every item a payment, no
order named by two different notifications) in two statements and no ORM layer:

1. read the group's orders (:data:`~wxpaykit.storage.pg_sql.READ_ORDERS`, one
   statement per merchant, as the general path does), then classify every
   notification in Python (:func:`~wxpaykit.storage.payments.classify_payment`, the
   table used everywhere);
2. one statement (:data:`_RECORD`), atomic by itself: insert the notification rows
   (unique key: a row already there, or a twin later in the group, is skipped) with
   their final outcome and raw requests, and, only for the rows it inserted, write
   the planned compare-and-sets, append the events with their fan-out rows and
   notify the dispatch workers.

If an order changed between the read and the write, a compare-and-set matches no
row, and the statement fails on purpose (an integer cast of a message, the one way a
plain statement can raise): nothing of it is kept, and the group goes to the
general path, which reads again. So does every other case this path leaves alone
(a refund, two notifications for one order, refunds held until payment, any database
error): it never decides differently, it only decides the easy groups for less.

Copies that found their notification already recorded add to its duplicate count in
a second, separate statement (so a crash between the two can lose that count, never
a notification); twins inside the group are counted in the inserted row.

The driver connection is one of the engine's pooled connections, kept for the next
group (a pool checkout through SQLAlchemy costs more than a statement) and given
back to the pool once no group has used it for ``idle_seconds``. A connection that
failed is invalidated, never reused.
"""

from __future__ import annotations

import asyncio
import collections
import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy.exc import SQLAlchemyError

from wxpaykit.storage.applied import Applied
from wxpaykit.storage.base import RecordOutcome, RecordResult, VerifiedNotification
from wxpaykit.storage.events import EVENTS_CHANNEL, event_columns
from wxpaykit.storage.payments import PlannedWrite, classify_payment, compare_and_set_columns
from wxpaykit.storage.pg_sql import BUMP_DUPLICATES, READ_ORDERS, raw_request_columns

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ["DriverGroups", "NeedsGeneralPath"]

_log = structlog.get_logger("wxpaykit.storage.pg_groups")

#: The text of the deliberate failure when a compare-and-set missed.
_STALE = "wxpaykit: an order changed since it was read; compare-and-sets written: "

# See the module docstring. Every part that writes for a notification joins ``n``,
# the rows actually inserted, so a copy of a recorded notification changes nothing.
_RECORD = f"""WITH u AS (
    SELECT * FROM unnest(
        $1::varchar[], $2::varchar[], $3::varchar[], $4::varchar[], $5::varchar[],
        $6::varchar[], $7::integer[], $8::bigint[], $9::text[], $10::bytea[], $11::bigint[]
    ) WITH ORDINALITY AS u(mchid, notification_id, api_version, event_type, out_trade_no,
                          outcome, duplicate_count, received_at_ms, headers, body,
                          raw_received_at_ms, ord)
), n AS (
    INSERT INTO notifications (mchid, notification_id, api_version, event_type, kind,
                               out_trade_no, out_refund_no, outcome, duplicate_count,
                               received_at_ms)
    SELECT mchid, notification_id, api_version, event_type, 'payment', out_trade_no, NULL,
           outcome, duplicate_count, received_at_ms
    FROM u ORDER BY ord
    ON CONFLICT DO NOTHING
    RETURNING id, mchid, notification_id
), r AS (
    INSERT INTO raw_requests (notification_pk, headers, body, received_at_ms)
    SELECT n.id, u.headers, u.body, u.raw_received_at_ms
    FROM n JOIN u ON u.mchid = n.mchid AND u.notification_id = n.notification_id
    WHERE u.headers IS NOT NULL
), planned AS (
    SELECT p.* FROM unnest(
        $12::varchar[], $13::varchar[], $14::bigint[], $15::varchar[], $16::integer[],
        $17::varchar[], $18::integer[], $19::bigint[], $20::varchar[], $21::varchar[]
    ) AS p(mchid, notification_id, id, state, version, new_state, new_version,
           updated_at_ms, transaction_id, success_time)
    JOIN n ON n.mchid = p.mchid AND n.notification_id = p.notification_id
), cas AS (
    UPDATE orders AS o
    SET state = p.new_state, version = p.new_version, updated_at_ms = p.updated_at_ms,
        transaction_id = p.transaction_id, success_time = p.success_time
    FROM planned AS p
    WHERE o.id = p.id AND o.state = p.state AND o.version = p.version
    RETURNING o.id
), inserted AS (
    INSERT INTO events (event_id, type, mchid, aggregate_key, dedup_key, payload,
                        created_at_ms)
    SELECT e.event_id, e.type, e.mchid, e.aggregate_key, e.dedup_key, e.payload, $22::bigint
    FROM unnest(
        $23::varchar[], $24::varchar[], $25::varchar[], $26::varchar[], $27::varchar[],
        $28::varchar[], $29::varchar[], $30::text[]
    ) WITH ORDINALITY AS e(n_mchid, n_notification_id, event_id, type, mchid,
                          aggregate_key, dedup_key, payload, ord)
    JOIN n ON n.mchid = e.n_mchid AND n.notification_id = e.n_notification_id
    ORDER BY e.ord
    ON CONFLICT DO NOTHING
    RETURNING seq, event_id, aggregate_key
), queued AS (
    INSERT INTO event_fanout (event_seq, aggregate_key, created_at_ms)
    SELECT seq, aggregate_key, $22::bigint FROM inserted
)
SELECT ARRAY(SELECT ARRAY[n.mchid, n.notification_id] FROM n) AS recorded,
       ARRAY(SELECT event_id FROM inserted) AS event_ids,
       CASE WHEN (SELECT count(*) FROM cas) = (SELECT count(*) FROM planned) THEN 0
            ELSE CAST('{_STALE}' || (SELECT count(*) FROM cas) AS integer) END AS stale,
       CASE WHEN EXISTS (SELECT 1 FROM inserted)
            THEN (SELECT 1 FROM pg_notify('{EVENTS_CHANNEL}', current_schema())) END
       AS notified"""  # noqa: S608 - fixed identifiers only; every value is bound


# PostgreSQL plans a prepared statement anew at every execution for as long as its
# custom plans look cheaper than its generic plan, and READ_ORDERS's always do (the
# planner sees how few elements the array holds): planning it was about a seventh of
# PostgreSQL's time per group (perf, small groups). Both statements have one right plan
# whatever their arrays hold (READ_ORDERS's LATERAL ... LIMIT 1 fixes its shape), so a
# kept connection plans them once; the setting is undone before the pool gets it back.
_PLAN_ONCE = "SET plan_cache_mode = force_generic_plan"
_PLAN_AS_USUAL = "RESET plan_cache_mode"


class NeedsGeneralPath(Exception):
    """The group needs the general path; nothing of this attempt is committed."""


@functools.cache
def _row_type(columns: tuple[str, ...]) -> Any:
    """A named tuple for rows with these columns: the attribute access of a SQLAlchemy
    row (what :func:`classify_payment` reads), at C speed."""
    return collections.namedtuple("OrderRow", columns)


class DriverGroups:
    """Records easy groups through kept asyncpg connections (see the module docstring)."""

    def __init__(
        self, engine: AsyncEngine, *, count_duplicates: bool, idle_seconds: float = 1.0
    ) -> None:
        self._engine = engine
        self._count_duplicates = count_duplicates
        # Kept connections, each with the asyncpg connection under it (looked up once:
        # SQLAlchemy hands it out through a greenlet switch).
        self._idle: list[tuple[AsyncConnection, Any]] = []
        self._idle_seconds = idle_seconds
        self._last_used = 0.0
        self._release: asyncio.TimerHandle | None = None
        self._releasing: set[asyncio.Task[None]] = set()
        self.groups = 0
        self.declined = 0

    async def record(
        self, items: Sequence[VerifiedNotification], now_ms: int
    ) -> list[RecordResult] | None:
        """Record ``items`` (sorted by key) and commit; None when the general path must.

        None also when anything failed: the general path then tries again, with its own
        retries and per-item fallback, and answers for the group. The connection is
        kept for the next group, and given back after ``idle_seconds`` without one.
        """
        if not _fits(items):
            self.declined += 1
            return None
        try:
            connection, driver = self._idle.pop() if self._idle else await self._checkout()
        except Exception as exc:  # the general path meets it again, and reports it
            _log.warning("driver_group_no_connection", error=type(exc).__name__)
            self.declined += 1
            return None
        healthy = False
        try:
            results, earlier = await self._record_in(driver, items, now_ms)
            # Committed: from here on nothing may send the group to the general path,
            # which would answer its notifications as duplicates of themselves.
            healthy = await _count_copies(driver, earlier)
        except NeedsGeneralPath:
            healthy = True  # nothing was written
            self.declined += 1
            return None
        except Exception as exc:
            # A statement the server refused (an order changed since the read, a
            # deadlock) kept nothing and leaves the connection usable; anything else
            # (a lost connection, a value the driver could not encode) may have left
            # it mid-protocol.
            healthy = isinstance(exc, _server_errors())
            if not (healthy and _STALE in str(exc)):
                _log.info("driver_group_declined", error=type(exc).__name__)
            self.declined += 1
            return None
        finally:
            await self._keep_or_discard(connection, driver, healthy=healthy)
        self.groups += 1
        return results

    async def warm_up(self) -> None:
        """Open the kept connection and prepare both statements now, at start-up.

        Otherwise the first group after a start pays for them while its notifications
        wait: a connection, asyncpg's introspection of the array types, and PostgreSQL
        parsing and planning both statements (measured in the benchmark: 30-55 ms for
        the first group of each process, 3-5 ms for the next). Both run on empty
        arrays, which read and write nothing. The connection then goes back to the pool
        after ``idle_seconds`` like any other, its prepared statements with it.
        """
        if self._idle:
            return
        connection, driver = await self._checkout()
        healthy = False
        try:
            await driver.fetch(READ_ORDERS, "", [])
            await driver.fetchrow(_RECORD, *self._record_arguments([], {}, {}, [], 0))
            healthy = True
        finally:
            await self._keep_or_discard(connection, driver, healthy=healthy)

    async def aclose(self) -> None:
        """Give the kept connections back (before the engine is disposed)."""
        if self._release is not None:
            self._release.cancel()
            self._release = None
        if self._releasing:
            await asyncio.wait(set(self._releasing))
        while self._idle:
            await _give_back(*self._idle.pop())

    async def _checkout(self) -> tuple[AsyncConnection, Any]:
        """A pooled connection and its asyncpg connection, set to plan the driver
        path's statements once."""
        connection = await self._engine.connect()
        try:
            driver = (await connection.get_raw_connection()).driver_connection
            if driver is None:  # pragma: no cover - an open pooled connection has one
                raise RuntimeError("the pooled connection has no driver connection")
            await driver.execute(_PLAN_ONCE)
        except BaseException:
            await _discard(connection)
            raise
        return connection, driver

    async def _keep_or_discard(
        self, connection: AsyncConnection, driver: Any, *, healthy: bool
    ) -> None:
        """Keep a usable connection for the next group; drop one that failed."""
        if healthy:
            self._idle.append((connection, driver))
            self._release_when_idle()
        else:
            await _discard(connection)

    def _release_when_idle(self) -> None:
        """Give the kept connections back once no group used them for ``idle_seconds``
        (so an idle ledger holds none; a busy one does not pay a checkout per group)."""
        loop = asyncio.get_running_loop()
        self._last_used = loop.time()
        if self._release is None:
            self._release = loop.call_later(self._idle_seconds, self._release_due)

    def _release_due(self) -> None:
        loop = asyncio.get_running_loop()
        self._release = None
        remaining = self._last_used + self._idle_seconds - loop.time()
        if remaining > 0:  # used since the timer was set
            self._release = loop.call_later(remaining, self._release_due)
            return
        idle, self._idle = self._idle, []
        for connection, driver in idle:
            task = loop.create_task(_give_back(connection, driver))
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)

    async def _record_in(
        self, driver: Any, items: Sequence[VerifiedNotification], now_ms: int
    ) -> tuple[list[RecordResult], dict[tuple[str, str], int]]:
        """Read, classify, write; the results, and the copies of notifications that
        were recorded before (their duplicate counts are still to be added)."""
        # Each notification once, in the group's order; its copies in the group counted.
        first: dict[tuple[str, str], VerifiedNotification] = {}
        copies: dict[tuple[str, str], int] = {}
        for item in items:
            key = (item.mchid, item.notification_id)
            first.setdefault(key, item)
            copies[key] = copies.get(key, 0) + 1
        unique = list(first.values())
        orders = await _read_orders(driver, unique)
        decided: dict[tuple[str, str], Applied] = {}
        planned: list[tuple[VerifiedNotification, PlannedWrite]] = []
        for item in unique:
            if item.payment is None:  # unreachable: _fits admitted payments only
                raise NeedsGeneralPath
            decision = classify_payment(
                orders.get((item.mchid, item.payment.out_trade_no)),
                mchid=item.mchid,
                notification_id=item.notification_id,
                facts=item.payment,
                now_ms=now_ms,
            )
            if isinstance(decision, PlannedWrite):
                if decision.releases_held_refunds:
                    raise NeedsGeneralPath
                planned.append((item, decision))
                decision = decision.applied
            decided[(item.mchid, item.notification_id)] = decision
        row = await driver.fetchrow(
            _RECORD, *self._record_arguments(unique, copies, decided, planned, now_ms)
        )
        recorded = {(mchid, notification_id) for mchid, notification_id in row["recorded"]}
        recorded_keys = frozenset(recorded)
        appended = set(row["event_ids"])
        results: list[RecordResult] = []
        for item in items:
            key = (item.mchid, item.notification_id)
            if key not in recorded:
                results.append(RecordResult(outcome=RecordOutcome.DUPLICATE))
                continue
            recorded.discard(key)  # later twins are duplicates
            applied = decided[key]
            results.append(
                RecordResult(
                    outcome=applied.outcome,
                    transitions=tuple(applied.transitions),
                    event_ids=tuple(e.event_id for e in applied.events if e.event_id in appended),
                )
            )
        earlier = {key: n for key, n in sorted(copies.items()) if key not in recorded_keys}
        return results, earlier if self._count_duplicates else {}

    def _record_arguments(
        self,
        unique: Sequence[VerifiedNotification],
        copies: dict[tuple[str, str], int],
        decided: dict[tuple[str, str], Applied],
        planned: Sequence[tuple[VerifiedNotification, PlannedWrite]],
        now_ms: int,
    ) -> tuple[Any, ...]:
        keys = [(item.mchid, item.notification_id) for item in unique]
        new_events = [(key, event) for key in keys for event in decided[key].events]
        return (
            [item.mchid for item in unique],
            [item.notification_id for item in unique],
            [item.api_version for item in unique],
            [item.event_type for item in unique],
            [item.payment.out_trade_no if item.payment is not None else None for item in unique],
            [decided[key].outcome.value for key in keys],
            [copies[key] - 1 if self._count_duplicates else 0 for key in keys],
            *raw_request_columns(unique, now_ms),
            [item.mchid for item, _plan in planned],
            [item.notification_id for item, _plan in planned],
            *compare_and_set_columns([plan for _item, plan in planned]),
            now_ms,
            [key[0] for key, _event in new_events],
            [key[1] for key, _event in new_events],
            *event_columns([event for _key, event in new_events], now_ms=now_ms),
        )


def _fits(items: Sequence[VerifiedNotification]) -> bool:
    """Every item a payment, and no order named by two different notifications."""
    orders: dict[tuple[str, str], str] = {}
    for item in items:
        if item.payment is None:
            return False
        key = (item.mchid, item.payment.out_trade_no)
        if orders.setdefault(key, item.notification_id) != item.notification_id:
            return False  # twins (one id) are fine: the later ones are duplicates
    return bool(items)


async def _read_orders(
    driver: Any, items: Sequence[VerifiedNotification]
) -> dict[tuple[str, str], Any]:
    """The orders ``items`` name, one statement per merchant; absent ones are left out."""
    by_merchant: dict[str, set[str]] = {}
    for item in items:
        if item.payment is not None:
            by_merchant.setdefault(item.mchid, set()).add(item.payment.out_trade_no)
    found: dict[tuple[str, str], Any] = {}
    for mchid, numbers in sorted(by_merchant.items()):
        for row in await driver.fetch(READ_ORDERS, mchid, sorted(numbers)):
            found[(mchid, row["out_trade_no"])] = _row_type(tuple(row.keys()))._make(row)
    return found


async def _count_copies(driver: Any, counts: dict[tuple[str, str], int]) -> bool:
    """Add copies of earlier notifications to their counts (after the group's commit);
    False when the connection failed. A failure costs the counts, never an answer."""
    if not counts:
        return True
    try:
        await driver.execute(
            BUMP_DUPLICATES,
            [mchid for mchid, _ in counts],
            [notification_id for _, notification_id in counts],
            list(counts.values()),
        )
    except Exception as exc:  # a metric; the notifications are durable
        _log.warning("duplicate_counts_not_written", error=type(exc).__name__)
        return isinstance(exc, _server_errors())
    return True


async def _give_back(connection: AsyncConnection, driver: Any) -> None:
    """Return a kept connection to the pool with the planner setting it had before."""
    try:
        await driver.execute(_PLAN_AS_USUAL)
    except Exception as exc:  # broken meanwhile: it must not go back to the pool
        _log.debug("driver_connection_reset_failed", error=type(exc).__name__)
        await _discard(connection)
        return
    await connection.close()


async def _discard(connection: AsyncConnection) -> None:
    """Drop a connection that failed: invalidated, so the pool never hands it out again."""
    try:
        await connection.invalidate()
        await connection.close()
    except (OSError, SQLAlchemyError) as exc:  # already broken; nothing more to do
        _log.debug("driver_connection_discard_failed", error=type(exc).__name__)


def _server_errors() -> tuple[type[Exception], ...]:
    import asyncpg

    return (asyncpg.PostgresError,)
