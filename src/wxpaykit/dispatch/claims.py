"""The statements of a claim, and the choice of which candidates may be leased.

A claim runs in one transaction:

1. **Candidates**: due, unleased deliveries of the sink in due order, up to a few times
   the claim limit. One index range scan; deliveries in flight are outside the range,
   because a claim moves ``next_attempt_at_ms`` to the lease end.
2. **Heads**: for the candidates' orders, the lowest pending ``event_seq`` per order
   and sink, and the lowest still waiting for fan-out. A candidate may be leased only
   if it is its order's head and no earlier event of its order waits for fan-out.
3. **Lease** the chosen ones and read their events. Where the database has ``FOR
   UPDATE SKIP LOCKED``, steps 1 and 2 take no locks and step 3 locks only the chosen
   rows, skipping any another worker is claiming (on PostgreSQL steps 3 and 4 are one
   statement); elsewhere (SQLite) all steps run under the write lock and the lease is
   a conditional update.

Step 2 is a separate statement on purpose: the ordering check is one grouped lookup
by ``aggregate_key`` for all candidates (the deliveries and fan-out queue rows of a
few orders), instead of a correlated subquery per row, for which PostgreSQL, short of
fresh statistics, chose to read every pending row of the sink per candidate: seconds
per claim with a backlog of 20,000. Being a later statement, it sees every earlier
event of a candidate's order: the ledger commits an order's events one after the
other, so each was committed before the candidate step 1 read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import CompoundSelect, Select, case, func, null, or_, select, union_all, update
from sqlalchemy.sql.dml import Update

from wxpaykit.dispatch.database import one_of
from wxpaykit.storage.events import DeliveryStatus, event_deliveries, event_fanout, events

__all__ = [
    "Candidate",
    "candidates_query",
    "choose_heads",
    "heads_query",
    "lease_and_read_postgresql",
    "lease_statement",
    "leased_query",
    "lock_query",
    "scan_size",
]

_d = event_deliveries

#: Upper bound on candidates read per claim.
MAX_SCAN = 1000


@dataclass(frozen=True, slots=True)
class Candidate:
    """A due delivery as read by step 1."""

    id: int
    aggregate_key: str
    event_seq: int


def scan_size(limit: int) -> int:
    """Candidates to read for a claim of ``limit``: room for some that must wait."""
    return min(MAX_SCAN, limit * 4 + 16)


def _lease_free(now_ms: int) -> Any:
    return or_(_d.c.locked_until_ms.is_(None), _d.c.locked_until_ms <= now_ms)


def candidates_query(sink: str, *, now_ms: int, limit: int) -> Select[Any]:
    """Step 1: due, unleased deliveries of ``sink``, oldest due first."""
    return (
        select(_d.c.id, _d.c.aggregate_key, _d.c.event_seq)
        .where(
            _d.c.sink == sink,
            _d.c.status == DeliveryStatus.PENDING,
            _d.c.next_attempt_at_ms <= now_ms,
            _lease_free(now_ms),
        )
        .order_by(_d.c.next_attempt_at_ms)
        .limit(limit)
    )


def heads_query(aggregate_keys: Sequence[str], *, dialect: str) -> CompoundSelect[Any]:
    """Step 2: per order, the lowest pending seq of each sink and the lowest unfanned seq.

    Rows with ``sink`` NULL come from the fan-out queue. The statement names no sink
    or status in its conditions (the caller picks its own sink's rows): a condition
    on any column of the candidates' (sink, status, next_attempt_at_ms) index would
    let the planner, short of statistics, choose to scan that whole index here.
    """
    pending_seq = case((_d.c.status == DeliveryStatus.PENDING, _d.c.event_seq))
    return union_all(
        select(_d.c.aggregate_key, _d.c.sink, func.min(pending_seq).label("head_seq"))
        .where(one_of(_d.c.aggregate_key, aggregate_keys, dialect))
        .group_by(_d.c.aggregate_key, _d.c.sink),
        select(
            event_fanout.c.aggregate_key,
            null().label("sink"),
            func.min(event_fanout.c.event_seq).label("head_seq"),
        )
        .where(one_of(event_fanout.c.aggregate_key, aggregate_keys, dialect))
        .group_by(event_fanout.c.aggregate_key),
    )


def choose_heads(
    candidates: Sequence[Candidate],
    head_seqs: Mapping[str, int],
    unfanned_seqs: Mapping[str, int],
    *,
    limit: int,
) -> list[int]:
    """Ids of the candidates that may be leased now, in due order, at most ``limit``.

    A candidate qualifies when it is the lowest pending event of its order on its sink
    (``head_seqs``, as step 2 saw them) and no earlier event of its order still waits
    for fan-out (``unfanned_seqs``).
    """
    chosen: list[int] = []
    for candidate in candidates:
        if len(chosen) >= limit:
            break
        unfanned = unfanned_seqs.get(candidate.aggregate_key)
        if unfanned is not None and unfanned < candidate.event_seq:
            continue
        if head_seqs.get(candidate.aggregate_key) == candidate.event_seq:
            chosen.append(candidate.id)
    return chosen


def lock_query(ids: Sequence[int], *, now_ms: int, dialect: str) -> Select[Any]:
    """Step 3 (MySQL 8, MariaDB 10.6+): lock the chosen rows still free to lease."""
    return (
        select(_d.c.id)
        .where(
            one_of(_d.c.id, ids, dialect),
            _d.c.status == DeliveryStatus.PENDING,
            _lease_free(now_ms),
        )
        .with_for_update(skip_locked=True)
    )


def lease_statement(
    ids: Sequence[int], *, token: str, now_ms: int, lease_ms: int, dialect: str
) -> Update:
    """Step 3: lease ``ids``; the lease condition is checked again, for SQLite."""
    return (
        update(_d)
        .where(
            one_of(_d.c.id, ids, dialect),
            _d.c.status == DeliveryStatus.PENDING,
            _lease_free(now_ms),
        )
        .values(_lease_values(token=token, now_ms=now_ms, lease_ms=lease_ms))
    )


def _lease_values(*, token: str, now_ms: int, lease_ms: int) -> dict[str, Any]:
    return {
        "locked_by": token,
        "locked_until_ms": now_ms + lease_ms,
        # Due again when the lease ends (if the worker dies): claims walk past
        # deliveries in flight without reading them.
        "next_attempt_at_ms": now_ms + lease_ms,
        "attempts": _d.c.attempts + 1,
        "updated_at_ms": now_ms,
    }


def leased_query(ids: Sequence[int], *, token: str, dialect: str) -> Select[Any]:
    """The leased deliveries with their events, in event order."""
    return (
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
        .where(one_of(_d.c.id, ids, dialect), _d.c.locked_by == token)
        .order_by(_d.c.event_seq)
    )


def lease_and_read_postgresql(
    ids: Sequence[int], *, token: str, now_ms: int, lease_ms: int
) -> Select[Any]:
    """Steps 3 and 4 in one PostgreSQL statement (atomic, so it needs no transaction).

    Locks the chosen deliveries that are still pending and unleased, skipping those
    another worker is claiming, leases them and returns them with their events.
    """
    locked = (
        select(_d.c.id)
        .where(
            one_of(_d.c.id, ids, "postgresql"),
            _d.c.status == DeliveryStatus.PENDING,
            _lease_free(now_ms),
        )
        .with_for_update(skip_locked=True)
        .cte("locked")
    )
    leased = (
        update(_d)
        .where(_d.c.id == locked.c.id)
        .values(_lease_values(token=token, now_ms=now_ms, lease_ms=lease_ms))
        .returning(_d.c.id, _d.c.attempts, _d.c.window_started_at_ms, _d.c.event_seq)
        .cte("leased")
    )
    return (
        select(
            leased.c.id,
            leased.c.attempts,
            leased.c.window_started_at_ms,
            events.c.seq,
            events.c.event_id,
            events.c.type,
            events.c.mchid,
            events.c.aggregate_key,
            events.c.payload,
            events.c.created_at_ms,
        )
        .join(events, events.c.seq == leased.c.event_seq)
        .order_by(events.c.seq)
    )
