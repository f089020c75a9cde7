"""``SqlLedger``: the :class:`~wxpaykit.storage.base.Ledger` on SQLite, PostgreSQL, MySQL.

Exactly once, in one transaction per notification::

    1. INSERT the notification (unique mchid + notification_id); taken -> DUPLICATE
    2. conditional UPDATE of the order/refund (payments.py, refunds.py)
    3. append the outbox event(s) (unique dedup_key)
    4. COMMIT - and only then return, so the gateway acknowledges durable work only

Deadlocks, serialization failures, lock timeouts, a lost connection and a refused
conditional write re-run the whole transaction (at most ``max_attempts`` times) until
it reaches a definitive outcome; anything else is a :class:`StorageError` with nothing
committed, which the gateway answers with 500 so WeChat Pay re-sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import bindparam, delete, select, text, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from wxpaykit.core.backoff import backoff_delay
from wxpaykit.errors import MalformedMessageError, StorageError
from wxpaykit.storage import dialects, migrate, records
from wxpaykit.storage.applied import Applied, RetryTransaction
from wxpaykit.storage.base import (
    DeadLetterResult,
    LedgerStats,
    OrderRecord,
    RawRequest,
    RecordOutcome,
    RecordResult,
    RedriveReport,
    RefundRecord,
    VerifiedNotification,
)
from wxpaykit.storage.codec import load_notification
from wxpaykit.storage.dead_letters import mark_dead_letter, pending_dead_letters, save_dead_letter
from wxpaykit.storage.events import append_events
from wxpaykit.storage.group_commit import GroupCommitter
from wxpaykit.storage.payments import (
    OrderRows,
    PlannedWrite,
    apply_payment,
    classify_payment,
    read_orders,
    write_planned,
)
from wxpaykit.storage.pg_groups import DriverGroups
from wxpaykit.storage.pg_sql import (
    BUMP_DUPLICATES,
    INSERT_NOTIFICATIONS,
    insert_notifications_arguments,
)
from wxpaykit.storage.refunds import apply_refund
from wxpaykit.storage.retention import purge_raw_requests
from wxpaykit.storage.schema import (
    notifications,
    raw_requests,
    seen_nonces,
)
from wxpaykit.storage.validation import validate_notification, validate_order

__all__ = ["Clock", "SqlLedger"]

#: Milliseconds since the epoch; injected so tests control expiry and retention.
Clock = Callable[[], int]
_T = TypeVar("_T")
# Built once (building per call costs more CPU than executing); values bound at execution.
_INSERT_RAW_REQUEST = raw_requests.insert()
_SET_OUTCOME = update(notifications).where(notifications.c.id == bindparam("w_id"))
_BUMP_DUPLICATES = (
    update(notifications)
    .where(
        notifications.c.mchid == bindparam("w_mchid"),
        notifications.c.notification_id == bindparam("w_notification_id"),
    )
    .values(duplicate_count=notifications.c.duplicate_count + bindparam("w_copies"))
)


def _system_clock() -> int:
    return time.time_ns() // 1_000_000


class SqlLedger:
    """Durable, idempotent ledger over one SQLAlchemy async engine.

    Build it with :meth:`from_url` (which configures the dialect) and close it with
    :meth:`aclose` (or ``async with``). Safe to share between tasks and processes: all
    guarantees come from unique constraints and conditional updates in the database.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        clock: Clock = _system_clock,
        count_duplicates: bool = True,
        max_attempts: int = 8,
        group_commit: bool = True,
        group_max_items: int = 64,
        group_max_in_flight: int = 1,
        group_max_wait_ms: float = 0.0,
        driver_groups: bool = True,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._engine = engine
        self._dialect = engine.dialect.name
        self._clock = clock
        self._count_duplicates = count_duplicates
        self._max_attempts = max_attempts
        # SQLite has one writer at a time: queue this process's writers on a lock instead
        # of having them poll the file lock (busy_timeout still covers other processes).
        self._sqlite_writer = asyncio.Lock() if self._dialect == "sqlite" else None
        self._retries = 0
        self._batch_fallbacks = 0
        # Concurrent record_notification calls share transactions (see group_commit.py);
        # a lone caller still gets its own transaction at once.
        self._group: GroupCommitter[VerifiedNotification, RecordResult] | None = (
            GroupCommitter(
                self.record_notifications_batch,
                max_items=group_max_items,
                max_in_flight=group_max_in_flight,
                max_wait_ms=group_max_wait_ms,
            )
            if group_commit
            else None
        )
        # PostgreSQL: the common groups go straight through asyncpg (pg_groups.py).
        self._driver_groups = (
            DriverGroups(engine, count_duplicates=count_duplicates)
            if self._dialect == "postgresql" and driver_groups
            else None
        )

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        pool_size: int = 10,
        max_overflow: int = 10,
        schema: str | None = None,
        clock: Clock = _system_clock,
        count_duplicates: bool = True,
        max_attempts: int = 8,
        group_commit: bool = True,
        driver_groups: bool = True,
        sqlite_busy_timeout_ms: int = 10_000,
        echo: bool = False,
    ) -> SqlLedger:
        """Connect to ``sqlite+aiosqlite:///path``, ``postgresql+asyncpg://...`` or
        ``mysql+asyncmy://...`` (plain ``sqlite://``, ``postgresql://``, ``mysql://`` work
        too). No connection is opened until first use; run migrations first
        (:func:`wxpaykit.storage.migrate.upgrade`).
        """
        engine = dialects.create_engine(
            url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            schema=schema,
            sqlite_busy_timeout_ms=sqlite_busy_timeout_ms,
            echo=echo,
        )
        return cls(
            engine,
            clock=clock,
            count_duplicates=count_duplicates,
            max_attempts=max_attempts,
            group_commit=group_commit,
            driver_groups=driver_groups,
        )

    @property
    def engine(self) -> AsyncEngine:
        """The engine (for the dispatcher, retention jobs and tests)."""
        return self._engine

    @property
    def retries(self) -> int:
        """Transactions re-run so far (deadlock, lock timeout, lost row race); a metric."""
        return self._retries

    async def __aenter__(self) -> SqlLedger:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    @property
    def batch_fallbacks(self) -> int:
        """Shared transactions that failed and were redone one notification each; a metric."""
        return self._batch_fallbacks

    @property
    def direct_groups(self) -> tuple[int, int]:
        """PostgreSQL: groups recorded through the driver path, and groups it left to the
        general path (see pg_groups.py); ``(0, 0)`` elsewhere. A metric."""
        if self._driver_groups is None:
            return (0, 0)
        return (self._driver_groups.groups, self._driver_groups.declined)

    @property
    def average_group_size(self) -> float:
        """Notifications per group-commit transaction so far (1.0: no batching); a metric."""
        return self._group.average_group_size if self._group is not None else 1.0

    async def warm_up(self) -> None:
        """Connect now, and on PostgreSQL prepare the group statements, so the first
        notifications after a start do not wait for it (see
        :meth:`~wxpaykit.storage.pg_groups.DriverGroups.warm_up`). Raises what the
        driver raises when the database cannot be reached."""
        if self._driver_groups is not None:
            await self._driver_groups.warm_up()
            return
        async with self._engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def aclose(self) -> None:
        """Finish queued notifications, then close every pooled connection."""
        if self._group is not None:
            await self._group.drain()
        if self._driver_groups is not None:
            await self._driver_groups.aclose()
        await self._engine.dispose()

    # --- the request path -------------------------------------------------------------

    async def record_notification(self, notification: VerifiedNotification) -> RecordResult:
        """Record, apply and append events in one transaction; return after commit.

        With group commit (the default) the transaction may be shared with other
        notifications recorded concurrently; the result is this notification's own, and
        is returned only after the commit.
        """
        validate_notification(notification)
        if self._group is None:
            return await self._record_alone(notification)
        return await self._group.submit(notification)

    async def record_notifications_batch(
        self, batch: Sequence[VerifiedNotification]
    ) -> list[RecordResult | Exception]:
        """Record several notifications in one transaction; one result or error per item.

        Items are handled in ``(mchid, notification_id)`` order so that concurrent
        batches take row locks in the same order. If the shared transaction fails for
        any reason, nothing of it was committed and every item is recorded again in its
        own transaction (with the usual retries), so one bad item cannot fail the others.
        """
        outcomes: list[RecordResult | Exception | None] = [None] * len(batch)
        valid: list[int] = []
        for index, notification in enumerate(batch):
            try:
                validate_notification(notification)
            except MalformedMessageError as exc:
                outcomes[index] = exc
            else:
                valid.append(index)
        valid.sort(key=lambda i: (batch[i].mchid, batch[i].notification_id))
        if valid and self._driver_groups is not None:
            direct = await self._driver_groups.record([batch[i] for i in valid], self._clock())
            if direct is not None:
                for index, result in zip(valid, direct, strict=True):
                    outcomes[index] = result
                valid = []
        if len(valid) > 1:

            async def work(connection: AsyncConnection, now_ms: int) -> list[RecordResult]:
                return await self._record_many_in(connection, [batch[i] for i in valid], now_ms)

            try:
                shared = await self._transaction(
                    work, what="record_notifications_batch", attempts=1
                )
            except Exception:  # fall back below: each item alone, with retries
                self._batch_fallbacks += 1
            else:
                for index, result in zip(valid, shared, strict=True):
                    outcomes[index] = result
                valid = []
        if valid:
            alone = await asyncio.gather(
                *(self._record_alone(batch[i]) for i in valid), return_exceptions=True
            )
            for index, single in zip(valid, alone, strict=True):
                if isinstance(single, BaseException) and not isinstance(single, Exception):
                    raise single
                outcomes[index] = single
        return [outcome for outcome in outcomes if outcome is not None]

    async def _record_alone(self, notification: VerifiedNotification) -> RecordResult:
        async def work(connection: AsyncConnection, now_ms: int) -> RecordResult:
            return await self._record_in(connection, notification, now_ms)

        return await self._transaction(work, what="record_notification")

    async def _record_many_in(
        self, connection: AsyncConnection, items: Sequence[VerifiedNotification], now_ms: int
    ) -> list[RecordResult]:
        """:meth:`_record_in` for several notifications, in as few statements as it can.

        One multi-row insert of the notification rows (a taken key, or a twin earlier in
        ``items``, is skipped and answered DUPLICATE), one insert of their raw requests,
        one read of the payments' orders, then each new notification is applied in order
        (a compare-and-set each), and finally one append of every event and one bump of
        the duplicate counters. Round trips per group, not per notification, is what
        lets a busy gateway keep up.
        """
        rows = [
            _notification_row(item, item.raw.received_at_ms if item.raw is not None else now_ms)
            for item in items
        ]
        if connection.dialect.name == "postgresql":
            # Notification rows and raw requests in one statement (one round trip).
            result = await connection.exec_driver_sql(
                INSERT_NOTIFICATIONS, insert_notifications_arguments(items, now_ms)
            )
            inserted = [tuple(row) for row in result]
        else:
            inserted = await dialects.insert_many_or_ignore(
                connection, notifications, rows, returning=("id", "mchid", "notification_id")
            )
        new_pks = {(str(mchid), str(nid)): int(pk) for pk, mchid, nid in inserted}
        pks: list[int | None] = []
        for item in items:  # the first of twins is the new one; later twins are duplicates
            pks.append(new_pks.pop((item.mchid, item.notification_id), None))
        raws = [
            _raw_request_row(pk, item.raw)
            for item, pk in zip(items, pks, strict=True)
            if pk is not None and item.raw is not None
        ]
        if raws and connection.dialect.name != "postgresql":
            # Multi-row INSERTs (RETURNING makes SQLAlchemy batch the rows), not one per row.
            await dialects.insert_many(connection, raw_requests, raws)
        read_ahead = await read_orders(
            connection,
            {
                (item.mchid, item.payment.out_trade_no)
                for item, pk in zip(items, pks, strict=True)
                if pk is not None and item.payment is not None
            },
        )
        settled = await _write_payments_in_bulk(connection, items, pks, read_ahead, now_ms)
        decided: list[tuple[int, Applied] | None] = []
        for index, (item, pk) in enumerate(zip(items, pks, strict=True)):
            if pk is None:
                decided.append(None)
                continue
            if index in settled:
                decided.append((pk, settled[index]))
                continue
            if item.refund is not None:  # it may change the order: read it fresh later
                read_ahead.pop((item.mchid, item.refund.out_trade_no), None)
            decided.append((pk, await self._apply(connection, item, now_ms, read_ahead)))
        appended = set(
            await append_events(
                connection,
                [event for entry in decided if entry is not None for event in entry[1].events],
                now_ms=now_ms,
            )
        )
        await self._mark_outcomes(connection, [entry for entry in decided if entry is not None])
        if self._count_duplicates:
            counts: dict[tuple[str, str], int] = {}
            for item, pk in zip(items, pks, strict=True):
                if pk is None:
                    key = (item.mchid, item.notification_id)
                    counts[key] = counts.get(key, 0) + 1
            await _bump_duplicates(connection, counts)
        return [
            RecordResult(outcome=RecordOutcome.DUPLICATE)
            if entry is None
            else RecordResult(
                outcome=entry[1].outcome,
                transitions=tuple(entry[1].transitions),
                event_ids=tuple(e.event_id for e in entry[1].events if e.event_id in appended),
            )
            for entry in decided
        ]

    @staticmethod
    async def _mark_outcomes(
        connection: AsyncConnection, decided: Sequence[tuple[int, Applied]]
    ) -> None:
        """Correct the provisional APPLIED outcome of rows that ended otherwise."""
        corrections = [
            {"w_id": pk, "outcome": applied.outcome.value}
            for pk, applied in decided
            if applied.outcome is not RecordOutcome.APPLIED
        ]
        if corrections:
            await connection.execute(_SET_OUTCOME, corrections)

    async def count_duplicates(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Add duplicates absorbed elsewhere (the gateway's fast path) to their rows.

        ``counts`` maps ``(mchid, notification_id)`` to how many copies were
        acknowledged without reaching the ledger; rows that do not exist are ignored.
        """
        if not counts:
            return

        async def work(connection: AsyncConnection, _now_ms: int) -> None:
            await _bump_duplicates(connection, counts)

        await self._transaction(work, what="count_duplicates")

    async def _record_in(
        self, connection: AsyncConnection, notification: VerifiedNotification, now_ms: int
    ) -> RecordResult:
        """Insert, apply and append events for one notification in the caller's transaction."""
        pk = await self._insert_notification(connection, notification, now_ms)
        return await self._apply_recorded(connection, notification, pk, now_ms)

    async def _apply_recorded(
        self,
        connection: AsyncConnection,
        notification: VerifiedNotification,
        pk: int | None,
        now_ms: int,
    ) -> RecordResult:
        """Finish one notification whose row was inserted as ``pk`` (None: key taken)."""
        if pk is None:
            if self._count_duplicates:
                await _bump_duplicates(
                    connection, {(notification.mchid, notification.notification_id): 1}
                )
            return RecordResult(outcome=RecordOutcome.DUPLICATE)
        applied = await self._apply(connection, notification, now_ms)
        event_ids = await append_events(connection, applied.events, now_ms=now_ms)
        await self._mark_outcomes(connection, [(pk, applied)])
        return RecordResult(
            outcome=applied.outcome,
            transitions=tuple(applied.transitions),
            event_ids=tuple(event_ids),
        )

    async def _insert_notification(
        self, connection: AsyncConnection, notification: VerifiedNotification, now_ms: int
    ) -> int | None:
        raw = notification.raw
        received_at_ms = raw.received_at_ms if raw is not None else now_ms
        key = await dialects.insert_or_ignore(
            connection, notifications, _notification_row(notification, received_at_ms)
        )
        if key is None:
            return None
        pk = int(key[0]) if key else await self._notification_pk(connection, notification)
        if raw is not None:
            await connection.execute(_INSERT_RAW_REQUEST, _raw_request_row(pk, raw))
        return pk

    @staticmethod
    async def _notification_pk(
        connection: AsyncConnection, notification: VerifiedNotification
    ) -> int:
        pk = await connection.scalar(
            select(notifications.c.id).where(
                notifications.c.mchid == notification.mchid,
                notifications.c.notification_id == notification.notification_id,
            )
        )
        if pk is None:  # unreachable: we inserted it in this transaction
            raise RetryTransaction
        return int(pk)

    @staticmethod
    async def _apply(
        connection: AsyncConnection,
        notification: VerifiedNotification,
        now_ms: int,
        read_ahead: OrderRows | None = None,
    ) -> Applied:
        if notification.payment is not None:
            return await apply_payment(
                connection,
                mchid=notification.mchid,
                notification_id=notification.notification_id,
                facts=notification.payment,
                now_ms=now_ms,
                read_ahead=read_ahead,
            )
        if notification.refund is None:  # validate_notification makes this unreachable
            raise MalformedMessageError("notification carries neither payment nor refund facts")
        return await apply_refund(
            connection,
            mchid=notification.mchid,
            notification_id=notification.notification_id,
            facts=notification.refund,
            now_ms=now_ms,
        )

    async def claim_nonce(self, mchid: str, nonce: str, *, expires_at_ms: int) -> bool:
        """Record a ``Wechatpay-Nonce``; False when seen before and not yet expired.

        An expired row is deleted and the nonce claimed again, in one transaction; the
        primary key (mchid, nonce) decides between concurrent claimers.
        """
        if not nonce or len(nonce) > 64 or not mchid or len(mchid) > 32:
            raise ValueError("nonce must be 1-64 characters and mchid 1-32 characters")

        async def work(connection: AsyncConnection, now_ms: int) -> bool:
            await connection.execute(
                delete(seen_nonces).where(
                    seen_nonces.c.mchid == mchid,
                    seen_nonces.c.nonce == nonce,
                    seen_nonces.c.expires_at_ms <= now_ms,
                )
            )
            key = await dialects.insert_or_ignore(
                connection,
                seen_nonces,
                {"mchid": mchid, "nonce": nonce, "expires_at_ms": expires_at_ms},
            )
            return key is not None

        return await self._transaction(work, what="claim_nonce")

    async def purge_expired_nonces(self) -> int:
        """Delete expired nonce rows; returns how many."""

        async def work(connection: AsyncConnection, now_ms: int) -> int:
            result = await connection.execute(
                delete(seen_nonces).where(seen_nonces.c.expires_at_ms <= now_ms)
            )
            return int(result.rowcount)

        return await self._transaction(work, what="purge_expired_nonces")

    async def purge_raw_requests(self, *, retention_ms: int) -> int:
        """Delete raw requests received more than ``retention_ms`` ago; returns how many."""
        if retention_ms < 0:
            raise ValueError("retention_ms must not be negative")
        return await purge_raw_requests(self._engine, older_than_ms=self._clock() - retention_ms)

    # --- orders ---------------------------------------------------------------------

    async def create_order(self, order: OrderRecord) -> OrderRecord:
        """Register an order; idempotent for identical fields.

        Raises ValueError when ``(mchid, out_trade_no)`` exists with a different appid,
        description, total, currency or expiry (a merchant must never reuse an order
        number for another order).
        """
        validate_order(order)

        async def work(connection: AsyncConnection, now_ms: int) -> OrderRecord:
            await records.insert_order(connection, order, now_ms=now_ms)
            stored = await records.read_order(connection, order.mchid, order.out_trade_no)
            if stored is None:  # unreachable: inserted now, or the conflicting row is committed
                raise RetryTransaction
            if not records.same_order(stored, order):
                raise ValueError(
                    f"order {order.out_trade_no!r} of merchant {order.mchid} already exists "
                    "with different fields"
                )
            return stored

        return await self._transaction(work, what="create_order")

    async def get_order(self, mchid: str, out_trade_no: str) -> OrderRecord | None:
        """Return the order, or None."""

        async def work(connection: AsyncConnection, _now_ms: int) -> OrderRecord | None:
            return await records.read_order(connection, mchid, out_trade_no)

        return await self._transaction(work, what="get_order", read_only=True)

    async def get_refund(self, mchid: str, out_refund_no: str) -> RefundRecord | None:
        """Return the refund, or None."""

        async def work(connection: AsyncConnection, _now_ms: int) -> RefundRecord | None:
            return await records.read_refund(connection, mchid, out_refund_no)

        return await self._transaction(work, what="get_refund", read_only=True)

    # --- inbound dead letters ---------------------------------------------------------

    async def record_failure(self, notification: VerifiedNotification, *, error: str) -> None:
        """Keep a verified notification whose processing raised, to re-drive it later.

        ``error`` must not contain personal data (the gateway passes the exception class
        and message of a StorageError, which never carry payloads).
        """

        async def work(connection: AsyncConnection, now_ms: int) -> None:
            await save_dead_letter(connection, notification, error=error, now_ms=now_ms)

        await self._transaction(work, what="record_failure")

    async def redrive_dead_letters(self, *, limit: int | None = None) -> RedriveReport:
        """Re-run :meth:`record_notification` for each pending dead letter, oldest first.

        A dead letter is resolved with whatever outcome recording gives (DUPLICATE when
        WeChat's own re-send got through meanwhile); one that fails again stays pending
        with its attempt count and error updated. Safe to run from several processes:
        recording is idempotent.
        """

        async def pending(connection: AsyncConnection, _now_ms: int) -> list[Row[Any]]:
            return await pending_dead_letters(connection, limit=limit)

        results: list[DeadLetterResult] = []
        for row in await self._transaction(pending, what="redrive_dead_letters", read_only=True):
            outcome: RecordOutcome | None = None
            error: str | None = None
            try:
                outcome = (await self.record_notification(load_notification(row.payload))).outcome
            except (StorageError, MalformedMessageError) as exc:
                error = str(exc)

            await self._mark_dead_letter(row.id, outcome=outcome, error=error)
            results.append(
                DeadLetterResult(
                    mchid=row.mchid,
                    notification_id=row.notification_id,
                    outcome=outcome,
                    error=error,
                )
            )
        return RedriveReport(results=tuple(results))

    async def _mark_dead_letter(
        self, dead_letter_id: int, *, outcome: RecordOutcome | None, error: str | None
    ) -> None:
        async def work(connection: AsyncConnection, now_ms: int) -> None:
            await mark_dead_letter(
                connection, dead_letter_id, outcome=outcome, error=error, now_ms=now_ms
            )

        await self._transaction(work, what="redrive_dead_letters")

    # --- readiness and reporting ------------------------------------------------------

    async def is_ready(self) -> bool:
        """True when the database answers and the schema is at the latest migration."""
        try:
            async with self._engine.connect() as connection:
                return await connection.run_sync(migrate.connection_is_current)
        except (SQLAlchemyError, OSError, TimeoutError):
            return False

    async def stats(self, *, mchid: str | None = None) -> LedgerStats:
        """Counts straight from the tables (every process's work included)."""

        async def work(connection: AsyncConnection, _now_ms: int) -> LedgerStats:
            return await records.read_stats(connection, mchid=mchid)

        return await self._transaction(work, what="stats", read_only=True)

    # --- the transaction runner -------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _writer(self, read_only: bool) -> AsyncIterator[None]:
        if self._sqlite_writer is None or read_only:
            yield
            return
        async with self._sqlite_writer:
            yield

    async def _transaction(
        self,
        work: Callable[[AsyncConnection, int], Awaitable[_T]],
        *,
        what: str,
        read_only: bool = False,
        attempts: int | None = None,
    ) -> _T:
        """Run ``work`` in a transaction, re-running it on contention; commit; return."""
        last: BaseException | None = None
        max_attempts = attempts or self._max_attempts
        for attempt in range(1, max_attempts + 1):
            try:
                async with self._writer(read_only), self._engine.connect() as connection:
                    if read_only:
                        connection = await connection.execution_options(
                            **{dialects.READ_ONLY: True}
                        )
                    async with connection.begin():
                        result = await work(connection, self._clock())
                    return result
            except RetryTransaction as exc:
                last = exc
            except DBAPIError as exc:
                if not dialects.is_retryable(exc, self._dialect):
                    raise StorageError(f"{what} failed: {dialects.describe(exc)}") from exc
                last = exc
            except (SQLAlchemyError, OSError, TimeoutError) as exc:
                raise StorageError(f"{what} failed: {dialects.describe(exc)}") from exc
            if attempt < max_attempts:
                self._retries += 1
                await asyncio.sleep(backoff_delay(attempt, base_seconds=0.005, cap_seconds=0.2))
        raise StorageError(
            f"{what} reached no definitive outcome after {max_attempts} attempts"
            + (f": {dialects.describe(last)}" if isinstance(last, DBAPIError) else "")
        ) from last


async def _write_payments_in_bulk(
    connection: AsyncConnection,
    items: Sequence[VerifiedNotification],
    pks: Sequence[int | None],
    read_ahead: OrderRows,
    now_ms: int,
) -> dict[int, Applied]:
    """Decide and write, in one statement, the payments that are alone on their order.

    Returns ``index -> Applied`` for the items settled here. An item is left to the
    one-by-one path (which reads its order again) when another new item of the group
    touches the same order, when its order was not found, when it releases held
    refunds, or when its compare-and-set found the order changed.
    """
    per_order: dict[tuple[str, str], int] = {}
    for item, pk in zip(items, pks, strict=True):
        facts = item.payment or item.refund
        if pk is not None and facts is not None:
            key = (item.mchid, facts.out_trade_no)
            per_order[key] = per_order.get(key, 0) + 1
    settled: dict[int, Applied] = {}
    planned: list[tuple[int, PlannedWrite]] = []
    for index, (item, pk) in enumerate(zip(items, pks, strict=True)):
        payment = item.payment
        if pk is None or payment is None:
            continue
        key = (item.mchid, payment.out_trade_no)
        order = read_ahead.get(key)
        if order is None or per_order[key] != 1:
            continue
        decision = classify_payment(
            order,
            mchid=item.mchid,
            notification_id=item.notification_id,
            facts=payment,
            now_ms=now_ms,
        )
        if isinstance(decision, Applied):
            settled[index] = decision
        elif not decision.releases_held_refunds:
            planned.append((index, decision))
            del read_ahead[key]  # if the write misses, the order is read again
    written = await write_planned(connection, [plan for _, plan in planned])
    for index, plan in planned:
        if plan.order.id in written:
            settled[index] = plan.applied
    return settled


async def _bump_duplicates(
    connection: AsyncConnection, counts: Mapping[tuple[str, str], int]
) -> None:
    """Add ``counts`` to the rows' ``duplicate_count`` (one round trip, one statement on
    PostgreSQL; elsewhere an executemany)."""
    if not counts:
        return
    ordered = sorted(counts.items())
    if connection.dialect.name == "postgresql":
        await connection.exec_driver_sql(
            BUMP_DUPLICATES,
            (
                [mchid for (mchid, _nid), _copies in ordered],
                [nid for (_mchid, nid), _copies in ordered],
                [copies for _key, copies in ordered],
            ),
        )
    else:
        await connection.execute(
            _BUMP_DUPLICATES,
            [
                {"w_mchid": mchid, "w_notification_id": nid, "w_copies": copies}
                for (mchid, nid), copies in ordered
            ],
        )


def _notification_row(notification: VerifiedNotification, received_at_ms: int) -> dict[str, Any]:
    facts = notification.payment or notification.refund
    refund = notification.refund
    return {
        "mchid": notification.mchid,
        "notification_id": notification.notification_id,
        "api_version": notification.api_version,
        "event_type": notification.event_type,
        "kind": notification.kind,
        "out_trade_no": facts.out_trade_no if facts is not None else None,
        "out_refund_no": refund.out_refund_no if refund is not None else None,
        # Provisional: the common case, corrected before commit when it differs
        # (nobody sees the row before commit), which saves an UPDATE per payment.
        "outcome": RecordOutcome.APPLIED.value,
        "duplicate_count": 0,
        "received_at_ms": received_at_ms,
    }


def _raw_request_row(pk: int, raw: RawRequest) -> dict[str, Any]:
    return {
        "notification_pk": pk,
        "headers": json.dumps(dict(raw.headers), ensure_ascii=False),
        "body": raw.body,
        "received_at_ms": raw.received_at_ms,
    }
