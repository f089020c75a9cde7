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

Step 2 is a lookup of its own on purpose: the ordering check is one grouped lookup
by ``aggregate_key`` for all candidates (the deliveries of a few orders), instead of
a correlated subquery per row, for which PostgreSQL, short of fresh statistics, chose
to read every pending row of the sink per candidate: seconds per claim with a backlog
of 20,000. It sees every earlier event of a candidate's order: the ledger commits an
order's events one after the other, so each was committed before the candidate, and
a snapshot (or a later statement) that sees the candidate sees them too.

On PostgreSQL the three steps are one statement (:func:`one_statement_claim`): the
same conditions and the same lookups, as ``MATERIALIZED`` CTEs so that each is planned
on its own as above, in one round trip instead of three, with no transaction around
it. Elsewhere they are separate statements, as described.

The statements are built once per dialect with bind parameters: building and hashing
a SQLAlchemy statement costs more CPU than running it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    TextClause,
    bindparam,
    case,
    func,
    null,
    or_,
    select,
    text,
    union_all,
    update,
)

from wxpaykit.dispatch.breaker import BreakerState
from wxpaykit.dispatch.database import one_of_parameter
from wxpaykit.storage.events import (
    DeliveryStatus,
    event_deliveries,
    event_fanout,
    events,
    sink_breakers,
)

__all__ = ["Candidate", "ClaimStatements", "choose_heads", "one_statement_claim", "scan_size"]

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
        #: PostgreSQL: all three steps, see :func:`one_statement_claim`.
        self.claim: TextClause | None = one_statement_claim() if dialect == "postgresql" else None
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


def one_statement_claim() -> TextClause:
    """PostgreSQL: steps 1-3 in one statement.

    Parameters: ``b_sink``, ``b_now``, ``b_scan``, ``b_limit``, ``b_token``,
    ``b_lease_end``, ``b_guard``. Always returns at least one row: ``scanned`` and
    ``chosen`` (how many candidates step 1 read and step 2 kept, to widen the scan
    as :meth:`DeliveryStore._choose` does), the sink's breaker row as the statement saw it (``breaker_state``,
    ``breaker_failures``; ``NULL`` without a row) and the leased deliveries with their
    events, by seq (all ``NULL`` when none was leased). With ``b_guard`` true nothing
    is claimed unless the breaker is closed (or has no row yet), in the same snapshot:
    the breaker check of :meth:`CircuitBreaker.admit` without its own round trip.
    """
    d, e, q, b = _d.name, events.name, event_fanout.name, sink_breakers.name
    pending = DeliveryStatus.PENDING
    now = "CAST(:b_now AS BIGINT)"
    lease_end = "CAST(:b_lease_end AS BIGINT)"
    # Fixed identifiers only: every value is a bound parameter.
    return text(
        f"""WITH candidates AS MATERIALIZED (
    SELECT id, aggregate_key, event_seq, next_attempt_at_ms FROM {d}
    WHERE sink = CAST(:b_sink AS VARCHAR) AND status = '{pending}'
      AND next_attempt_at_ms <= {now}
      AND (locked_until_ms IS NULL OR locked_until_ms <= {now})
      AND (NOT CAST(:b_guard AS BOOLEAN) OR NOT EXISTS (
          SELECT 1 FROM {b} WHERE {b}.sink = CAST(:b_sink AS VARCHAR) AND {b}.state <> '{BreakerState.CLOSED}'))
    ORDER BY next_attempt_at_ms
    LIMIT CAST(:b_scan AS INTEGER)
), heads AS MATERIALIZED (
    SELECT aggregate_key, sink,
           min(CASE WHEN status = '{pending}' THEN event_seq END) AS head_seq
    FROM {d}
    WHERE aggregate_key = ANY(ARRAY(SELECT DISTINCT aggregate_key FROM candidates))
    GROUP BY aggregate_key, sink
), chosen AS MATERIALIZED (
    SELECT c.id FROM candidates c
    JOIN heads h ON h.aggregate_key = c.aggregate_key AND h.head_seq = c.event_seq
    WHERE h.sink = CAST(:b_sink AS VARCHAR)
      AND c.event_seq <= coalesce((SELECT min(event_seq) FROM {q}), c.event_seq)
    ORDER BY c.next_attempt_at_ms, c.id
    LIMIT CAST(:b_limit AS INTEGER)
), locked AS (
    SELECT id, status, locked_until_ms FROM {d}
    WHERE id = ANY(ARRAY(SELECT id FROM chosen))
    FOR UPDATE SKIP LOCKED
), leased AS (
    UPDATE {d} SET locked_by = CAST(:b_token AS VARCHAR), locked_until_ms = {lease_end},
        next_attempt_at_ms = {lease_end}, attempts = {d}.attempts + 1, updated_at_ms = {now}
    FROM locked
    WHERE {d}.id = locked.id AND locked.status = '{pending}'
      AND (locked.locked_until_ms IS NULL OR locked.locked_until_ms <= {now})
    RETURNING {d}.id, {d}.attempts, {d}.window_started_at_ms, {d}.event_seq
)
SELECT s.scanned, s.chosen, b.state AS breaker_state,
       b.consecutive_failures AS breaker_failures, r.*
FROM (SELECT (SELECT count(*) FROM candidates) AS scanned,
             (SELECT count(*) FROM chosen) AS chosen) s
LEFT JOIN {b} b ON b.sink = CAST(:b_sink AS VARCHAR)
LEFT JOIN (
    SELECT leased.id, leased.attempts, leased.window_started_at_ms, e.seq, e.event_id,
           e.type, e.mchid, e.aggregate_key, e.payload, e.created_at_ms
    FROM leased JOIN {e} e ON e.seq = leased.event_seq
) r ON true
ORDER BY r.seq"""  # noqa: S608
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
