"""The statements of a claim, and the choice of which candidates may be leased.

A claim runs in one transaction:

1. **Candidates**: due, unleased deliveries of the sink in due order, up to a few times
   the claim limit, locked ``FOR UPDATE SKIP LOCKED`` where the database has it. One
   index range scan; deliveries in flight are outside the range, because a claim
   moves ``next_attempt_at_ms`` to the lease end.
2. **Heads**: for the candidates' orders, the lowest pending ``event_seq`` per order,
   and the oldest event still waiting for fan-out. A candidate may be leased only if
   it is its order's head and older than every event not yet fanned out.
3. **Lease** the chosen ones and read their events.

Step 2 is a separate statement on purpose: the ordering check is one grouped index
lookup for all candidates instead of a correlated subquery per row (whose plan
PostgreSQL picks badly: with stale statistics it reads every pending row per
candidate). Reading it after the candidates also makes it safe where a locking read
sees rows newer than the statement's snapshot (InnoDB): whatever step 1 saw was
committed before step 2 starts, and so was every earlier event of the same order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.sql.dml import Update

from wxpaykit.storage.events import DeliveryStatus, event_deliveries, event_fanout, events

__all__ = [
    "Candidate",
    "candidates_query",
    "choose_heads",
    "heads_query",
    "lease_statement",
    "leased_query",
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


def heads_query(sink: str, aggregate_keys: Sequence[str]) -> Select[Any]:
    """Step 2: the lowest pending seq of each order, with the oldest unfanned seq."""
    oldest_unfanned = select(func.min(event_fanout.c.event_seq)).scalar_subquery()
    return (
        select(
            _d.c.aggregate_key,
            func.min(_d.c.event_seq).label("head_seq"),
            oldest_unfanned.label("unfanned_seq"),
        )
        .where(
            _d.c.sink == sink,
            _d.c.aggregate_key.in_(aggregate_keys),
            _d.c.status == DeliveryStatus.PENDING,
        )
        .group_by(_d.c.aggregate_key)
    )


def choose_heads(
    candidates: Sequence[Candidate],
    head_seqs: Mapping[str, int],
    unfanned_seq: int | None,
    *,
    limit: int,
) -> list[int]:
    """Ids of the candidates that may be leased now, in due order, at most ``limit``.

    A candidate qualifies when it is the lowest pending event of its order (as step 2
    saw it) and no event older than it still waits for fan-out: an event not fanned
    out holds back every later delivery, not only its own order's, so that one
    probe per claim suffices.
    """
    chosen: list[int] = []
    for candidate in candidates:
        if len(chosen) >= limit:
            break
        if unfanned_seq is not None and candidate.event_seq >= unfanned_seq:
            continue
        if head_seqs.get(candidate.aggregate_key) == candidate.event_seq:
            chosen.append(candidate.id)
    return chosen


def lease_statement(ids: Sequence[int], *, token: str, now_ms: int, lease_ms: int) -> Update:
    """Step 3: lease ``ids``; the lease condition is checked again, for SQLite."""
    return (
        update(_d)
        .where(_d.c.id.in_(ids), _d.c.status == DeliveryStatus.PENDING, _lease_free(now_ms))
        .values(
            locked_by=token,
            locked_until_ms=now_ms + lease_ms,
            # Due again when the lease ends (if the worker dies): claims walk past
            # deliveries in flight without reading them.
            next_attempt_at_ms=now_ms + lease_ms,
            attempts=_d.c.attempts + 1,
            updated_at_ms=now_ms,
        )
    )


def leased_query(ids: Sequence[int], *, token: str) -> Select[Any]:
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
        .where(_d.c.id.in_(ids), _d.c.locked_by == token)
        .order_by(_d.c.event_seq)
    )
