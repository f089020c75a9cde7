"""The statements of a claim, and the choice of which candidates may be leased.

A claim takes three steps:

1. **Candidates**: due, unleased deliveries of the sink in due order, a few more than
   the claim limit. One index range scan; deliveries in flight are outside the range,
   because a claim moves ``next_attempt_at_ms`` to the lease end.
2. **Heads**: for the candidates' orders, the lowest pending ``event_seq`` per order
   and sink, and the lowest seq still waiting for fan-out. A candidate may be leased
   only if it is its order's head and older than every event not yet fanned out.
3. **Lease** the chosen ones and read their events. Where the database has ``FOR
   UPDATE SKIP LOCKED``, steps 1 and 2 take no locks and step 3 locks only the chosen
   rows, skipping any another worker is claiming (on PostgreSQL step 3 is a single
   statement); elsewhere (SQLite) all steps run under the write lock and the lease is
   a conditional update.

Step 2 is a separate statement on purpose: the ordering check is one grouped lookup
by ``aggregate_key`` for all candidates (the deliveries of a few orders), instead of a correlated subquery per row, for which PostgreSQL, short of
fresh statistics, chose to read every pending row of the sink per candidate: seconds
per claim with a backlog of 20,000. Being a later statement, it sees every earlier
event of a candidate's order: the ledger commits an order's events one after the
other, so each was committed before the candidate step 1 read.

The statements are built once per dialect with bind parameters: building and hashing
a SQLAlchemy statement costs more CPU than running it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    bindparam,
    case,
    func,
    null,
    or_,
    select,
    union_all,
    update,
)

from wxpaykit.dispatch.database import one_of_parameter
from wxpaykit.storage.events import DeliveryStatus, event_deliveries, event_fanout, events

__all__ = ["Candidate", "ClaimStatements", "choose_heads", "scan_size"]

_d = event_deliveries

#: Upper bound on candidates read per claim.
MAX_SCAN = 1000

#: ``(delivery id, aggregate_key, event_seq)`` of a due delivery, as step 1 reads it.
Candidate = tuple[int, str, int]


def scan_size(limit: int) -> int:
    """Candidates to read for a claim of ``limit``: room for some that must wait."""
    return min(MAX_SCAN, limit * 2 + 16)


class ClaimStatements:
    """The statements of a claim for one dialect; parameters are named in each method."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        now = bindparam("b_now", type_=BigInteger)
        lease_free = or_(_d.c.locked_until_ms.is_(None), _d.c.locked_until_ms <= now)
        #: Step 1. Parameters: ``b_sink``, ``b_now``, ``b_scan``.
        self.candidates = (
            select(_d.c.id, _d.c.aggregate_key, _d.c.event_seq)
            .where(
                _d.c.sink == bindparam("b_sink", type_=String),
                _d.c.status == DeliveryStatus.PENDING,
                _d.c.next_attempt_at_ms <= now,
                lease_free,
            )
            .order_by(_d.c.next_attempt_at_ms)
            .limit(bindparam("b_scan", type_=Integer))
        )
        # Step 2 names no sink or status in its conditions (the caller picks its own
        # rows): a condition on any column of the candidates' (sink, status,
        # next_attempt_at_ms) index would let the planner, short of statistics,
        # choose to scan that whole index. The row with sink NULL carries the oldest
        # seq still queued for fan-out: one probe of the queue's primary key (the
        # queue may hold a large backlog; a lookup by order there could be planned as
        # a scan of all of it).
        pending_seq = case((_d.c.status == DeliveryStatus.PENDING, _d.c.event_seq))
        #: Step 2. Parameter: ``b_keys``.
        self.heads = union_all(
            select(_d.c.aggregate_key, _d.c.sink, func.min(pending_seq).label("head_seq"))
            .where(one_of_parameter(_d.c.aggregate_key, "b_keys", dialect))
            .group_by(_d.c.aggregate_key, _d.c.sink),
            select(null(), null(), func.min(event_fanout.c.event_seq)),
        )
        chosen = (
            one_of_parameter(_d.c.id, "b_ids", dialect),
            _d.c.status == DeliveryStatus.PENDING,
            lease_free,
        )
        lease_end = bindparam("b_lease_end", type_=BigInteger)
        lease_values = {
            "locked_by": bindparam("b_token", type_=String),
            "locked_until_ms": lease_end,
            # Due again when the lease ends (if the worker dies): claims walk past
            # deliveries in flight without reading them.
            "next_attempt_at_ms": lease_end,
            "attempts": _d.c.attempts + 1,
            "updated_at_ms": now,
        }
        #: Step 3 (MySQL 8, MariaDB 10.6+): lock the chosen rows still free to lease.
        #: Parameters: ``b_ids``, ``b_now``.
        self.lock = select(_d.c.id).where(*chosen).with_for_update(skip_locked=True)
        #: Step 3 elsewhere: lease ``b_ids`` (the lease condition is checked again);
        #: also ``b_now``, ``b_token``, ``b_lease_end``.
        self.lease = update(_d).where(*chosen).values(lease_values)
        event_columns = (
            events.c.seq,
            events.c.event_id,
            events.c.type,
            events.c.mchid,
            events.c.aggregate_key,
            events.c.payload,
            events.c.created_at_ms,
        )
        #: The leased deliveries with their events. Parameters: ``b_ids``, ``b_token``.
        self.leased = (
            select(_d.c.id, _d.c.attempts, _d.c.window_started_at_ms, *event_columns)
            .join(events, events.c.seq == _d.c.event_seq)
            .where(
                one_of_parameter(_d.c.id, "b_ids", dialect), _d.c.locked_by == bindparam("b_token")
            )
            .order_by(_d.c.event_seq)
        )
        if dialect == "postgresql":
            # Step 3 as one atomic statement: lock (skipping rows another worker is
            # claiming), lease and read, with no transaction around it.
            # The rows are found by primary key alone and the conditions checked on
            # the locked (latest) versions: no plan can prefer another index.
            locked = (
                select(_d.c.id, _d.c.status, _d.c.locked_until_ms)
                .where(one_of_parameter(_d.c.id, "b_ids", dialect))
                .with_for_update(skip_locked=True)
                .cte("l")
            )
            leased = (
                update(_d)
                .where(
                    _d.c.id == locked.c.id,
                    locked.c.status == DeliveryStatus.PENDING,
                    or_(locked.c.locked_until_ms.is_(None), locked.c.locked_until_ms <= now),
                )
                .values(lease_values)
                .returning(_d.c.id, _d.c.attempts, _d.c.window_started_at_ms, _d.c.event_seq)
                .cte("leased")
            )
            #: Same parameters as :attr:`lease`; returns what :attr:`leased` returns.
            self.lease_and_read = (
                select(leased.c.id, leased.c.attempts, leased.c.window_started_at_ms)
                .add_columns(*event_columns)
                .select_from(leased.join(events, events.c.seq == leased.c.event_seq))
                .order_by(events.c.seq)
            )


def choose_heads(
    candidates: Sequence[Candidate],
    head_seqs: Mapping[str, int],
    oldest_unfanned: int | None,
    *,
    limit: int,
) -> list[int]:
    """Ids of the candidates that may be leased now, in due order, at most ``limit``.

    A candidate qualifies when it is the lowest pending event of its order on its sink
    (``head_seqs``, as step 2 saw them) and older than every event still waiting for
    fan-out: an event not yet fanned out holds back all later ones, not only its
    order's (fan-out runs in seq order, so this rarely holds anything back for long).
    """
    chosen: list[int] = []
    for delivery_id, aggregate_key, event_seq in candidates:
        if len(chosen) >= limit:
            break
        if oldest_unfanned is not None and oldest_unfanned < event_seq:
            continue
        if head_seqs.get(aggregate_key) == event_seq:
            chosen.append(delivery_id)
    return chosen
