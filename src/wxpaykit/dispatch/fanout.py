"""Fan-out: turn events queued by ``append_events`` into one delivery row per sink.

One transaction takes the oldest queued events (``FOR UPDATE SKIP LOCKED`` where the
database has it, so several workers share the queue), inserts their deliveries
(ignoring any that exist) and deletes them from the queue. On PostgreSQL taking,
deleting and reading the events is a single statement. An idle poll is one cheap
read outside any transaction.

On PostgreSQL, when every sink's event types can be written as ``LIKE`` patterns (only
``*`` and ``?`` wildcards, as in ``payment.*``), the whole fan-out is one statement
instead (:attr:`FanOutStatements.routed`): take, dequeue, route and insert, atomic on
its own, so no ``BEGIN``/``COMMIT`` round trips and no probe first. It sits between
a commit and its delivery, so its round trips are the events' latency.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, TextClause, any_, bindparam, delete, func, insert, select, text
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from wxpaykit.dispatch.database import one_of_parameter
from wxpaykit.storage.events import DeliveryStatus, event_deliveries, event_fanout, events

__all__ = ["FanOutStatements", "SinkRoute", "delivery_rows", "like_pattern"]

_d = event_deliveries
_q = event_fanout


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkRoute:
    """A sink name and the event types it receives (for fan-out)."""

    name: str
    patterns: tuple[str, ...]

    def accepts(self, event_type: str) -> bool:
        """Whether ``event_type`` matches one of the patterns."""
        return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in self.patterns)


def like_pattern(pattern: str) -> str | None:
    """The SQL ``LIKE`` pattern (escape ``\\``) matching what ``fnmatchcase`` matches.

    ``None`` for a pattern with a character class (``[...]``), which LIKE cannot say.
    """
    out: list[str] = []
    for char in pattern:
        if char == "*":
            out.append("%")
        elif char == "?":
            out.append("_")
        elif char == "[":
            return None
        elif char in "%_\\":
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)


def _routed_statement() -> TextClause:
    # "= ANY(ARRAY(subquery))" as in take_and_read below. DISTINCT ON: a sink with two
    # patterns matching one type gets one delivery.
    pending = DeliveryStatus.PENDING
    # Fixed identifiers only: every value is a bound parameter.
    return text(
        f"""WITH taken AS (
    DELETE FROM {_q.name}
    WHERE event_seq = ANY(ARRAY(
        SELECT event_seq FROM {_q.name} ORDER BY event_seq
        LIMIT CAST(:b_limit AS INTEGER) FOR UPDATE SKIP LOCKED))
    RETURNING event_seq
), routed AS (
    INSERT INTO {_d.name} (event_seq, event_id, sink, aggregate_key, status, attempts,
        next_attempt_at_ms, window_started_at_ms, replays, created_at_ms, updated_at_ms)
    SELECT DISTINCT ON (e.seq, r.sink)
        e.seq, e.event_id, r.sink, e.aggregate_key, '{pending}', 0,
        CAST(:b_now AS BIGINT), CAST(:b_now AS BIGINT), 0,
        CAST(:b_now AS BIGINT), CAST(:b_now AS BIGINT)
    FROM taken
    JOIN {events.name} e ON e.seq = taken.event_seq
    JOIN unnest(CAST(:b_sinks AS VARCHAR[]), CAST(:b_patterns AS VARCHAR[])) AS r(sink, pattern)
        ON e.type LIKE r.pattern
    ORDER BY e.seq, r.sink
    ON CONFLICT (event_id, sink) DO NOTHING
)
SELECT count(*) FROM taken"""  # noqa: S608
    )


class FanOutStatements:
    """The fan-out statements for one dialect, built once."""

    def __init__(self, dialect: str, *, skip_locked: bool) -> None:
        self.dialect = dialect
        #: Anything queued? (no lock, no transaction needed)
        self.probe = select(_q.c.event_seq).limit(1)
        oldest = (
            select(_q.c.event_seq)
            .order_by(_q.c.event_seq)
            .limit(bindparam("b_limit", type_=Integer))
        )
        if skip_locked:
            oldest = oldest.with_for_update(skip_locked=True)
        #: The oldest queued seqs, locked. Parameter: ``b_limit``.
        self.take = oldest
        event_columns = (events.c.seq, events.c.event_id, events.c.type, events.c.aggregate_key)
        #: Their events. Parameter: ``b_seqs``.
        self.read = select(*event_columns).where(one_of_parameter(events.c.seq, "b_seqs", dialect))
        #: Parameter: ``b_seqs``.
        self.dequeue = delete(_q).where(one_of_parameter(_q.c.event_seq, "b_seqs", dialect))
        self.take_and_read: Any = None
        if dialect == "postgresql":
            # "= ANY(ARRAY(subquery))": the locked seqs become one value computed first,
            # then rows are deleted by primary key; an IN (subquery) may be planned as a
            # join that scans the whole queue.
            taken = (
                delete(_q)
                .where(_q.c.event_seq == any_(func.array(oldest.scalar_subquery())))
                .returning(_q.c.event_seq)
                .cte("taken")
            )
            #: PostgreSQL: take, dequeue and read in one statement. Parameter: ``b_limit``.
            self.take_and_read = select(*event_columns).join(
                taken, taken.c.event_seq == events.c.seq
            )
        #: PostgreSQL: the whole fan-out, see :meth:`routed_parameters`.
        self.routed: TextClause | None = _routed_statement() if dialect == "postgresql" else None
        #: Insert deliveries, skipping (event_id, sink) pairs that exist.
        self.insert: Any
        # RETURNING makes SQLAlchemy send multi-row INSERTs (see
        # wxpaykit.storage.dialects.insert_many); the ids returned are not needed.
        if dialect == "postgresql":
            self.insert = (
                postgresql.insert(_d)
                .on_conflict_do_nothing(index_elements=["event_id", "sink"])
                .returning(_d.c.id)
            )
        elif dialect == "sqlite":
            self.insert = (
                sqlite.insert(_d)
                .on_conflict_do_nothing(index_elements=["event_id", "sink"])
                .returning(_d.c.id)
            )
        elif dialect in ("mysql", "mariadb"):
            self.insert = mysql.insert(_d).prefix_with("IGNORE")
        else:  # pragma: no cover - unsupported dialects fail on conflict
            self.insert = insert(_d)

    def routed_parameters(self, routes: Sequence[SinkRoute]) -> dict[str, Any] | None:
        """``b_sinks``/``b_patterns`` for :attr:`routed`; None if it cannot route them."""
        if self.routed is None:
            return None
        sinks: list[str] = []
        patterns: list[str] = []
        for route in routes:
            for pattern in route.patterns:
                like = like_pattern(pattern)
                if like is None:
                    return None
                sinks.append(route.name)
                patterns.append(like)
        return {"b_sinks": sinks, "b_patterns": patterns}

    async def take_events(self, connection: AsyncConnection, *, limit: int) -> list[Any]:
        """Dequeue up to ``limit`` events (in the caller's transaction); their rows."""
        if self.take_and_read is not None:
            return list((await connection.execute(self.take_and_read, {"b_limit": limit})).all())
        seqs = list((await connection.scalars(self.take, {"b_limit": limit})).all())
        if not seqs:
            return []
        rows = list((await connection.execute(self.read, {"b_seqs": seqs})).all())
        await connection.execute(self.dequeue, {"b_seqs": seqs})
        return rows


def delivery_rows(
    rows: Sequence[Any], routes: Sequence[SinkRoute], *, now_ms: int
) -> list[dict[str, Any]]:
    """One pending delivery per (event, accepting sink), due now."""
    accepting: dict[str, list[str]] = {}
    values: list[dict[str, Any]] = []
    for seq, event_id, event_type, aggregate_key in rows:
        sinks = accepting.get(event_type)
        if sinks is None:
            sinks = accepting[event_type] = [r.name for r in routes if r.accepts(event_type)]
        values.extend(
            {
                "event_seq": seq,
                "event_id": event_id,
                "sink": sink,
                "aggregate_key": aggregate_key,
                "status": DeliveryStatus.PENDING,
                "attempts": 0,
                "next_attempt_at_ms": now_ms,
                "window_started_at_ms": now_ms,
                "replays": 0,
                "created_at_ms": now_ms,
                "updated_at_ms": now_ms,
            }
            for sink in sinks
        )
    return values
