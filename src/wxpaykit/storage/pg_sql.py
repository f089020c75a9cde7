"""PostgreSQL statements shared by the general and the driver-level group paths.

Written with positional (``$n``) parameters: asyncpg takes them as they are
(:mod:`wxpaykit.storage.pg_groups`), and so does SQLAlchemy's ``exec_driver_sql`` on
the general path, so each statement exists once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from wxpaykit.storage.base import RecordOutcome, VerifiedNotification

__all__ = [
    "BUMP_DUPLICATES",
    "INSERT_NOTIFICATIONS",
    "READ_ORDERS",
    "insert_notifications_arguments",
    "raw_request_columns",
]

# Add copies to the rows' duplicate counts: (mchids, notification ids, copies).
BUMP_DUPLICATES = """UPDATE notifications AS n SET duplicate_count = n.duplicate_count + u.copies
FROM unnest($1::varchar[], $2::varchar[], $3::integer[]) AS u(mchid, notification_id, copies)
WHERE n.mchid = u.mchid AND n.notification_id = u.notification_id"""

# A group's notification rows and, for the rows actually inserted, their raw requests.
# Rows go in item order (ids follow it); a key taken already, or a twin later in the
# group, is skipped; a twin's raw request is the first copy's (DISTINCT ON ... ORDER BY
# ord), matching the row that was inserted.
INSERT_NOTIFICATIONS = """WITH u AS (
    SELECT * FROM unnest(
        $1::varchar[], $2::varchar[], $3::varchar[], $4::varchar[], $5::varchar[],
        $6::varchar[], $7::varchar[], $8::varchar[], $9::bigint[], $10::text[],
        $11::bytea[], $12::bigint[]
    ) WITH ORDINALITY AS u(mchid, notification_id, api_version, event_type, kind,
                          out_trade_no, out_refund_no, outcome, received_at_ms, headers,
                          body, raw_received_at_ms, ord)
), n AS (
    INSERT INTO notifications (mchid, notification_id, api_version, event_type, kind,
                               out_trade_no, out_refund_no, outcome, duplicate_count,
                               received_at_ms)
    SELECT mchid, notification_id, api_version, event_type, kind, out_trade_no,
           out_refund_no, outcome, 0, received_at_ms
    FROM u ORDER BY ord
    ON CONFLICT DO NOTHING
    RETURNING id, mchid, notification_id
), r AS (
    INSERT INTO raw_requests (notification_pk, headers, body, received_at_ms)
    SELECT DISTINCT ON (n.id) n.id, u.headers, u.body, u.raw_received_at_ms
    FROM n JOIN u ON u.mchid = n.mchid AND u.notification_id = n.notification_id
    WHERE u.headers IS NOT NULL
    ORDER BY n.id, u.ord
)
SELECT id, mchid, notification_id FROM n"""

# One merchant's orders by number: one probe of the unique (mchid, out_trade_no) index
# per number. Left to itself, the planner joins an IN list (or unnest) with "every
# order of the merchant" whenever its statistics say the table is small, which a new
# install's always do (seen: 0.7-1.6 ms instead of 0.01 ms for a handful of rows). The
# LIMIT keeps the LATERAL subquery from being merged into a join.
READ_ORDERS = """SELECT o.* FROM unnest($2::varchar[]) AS u(out_trade_no)
CROSS JOIN LATERAL (
    SELECT * FROM orders
    WHERE orders.mchid = $1 AND orders.out_trade_no = u.out_trade_no
    LIMIT 1
) AS o"""


def insert_notifications_arguments(
    items: Sequence[VerifiedNotification], now_ms: int
) -> tuple[Any, ...]:
    """The positional parameters of :data:`INSERT_NOTIFICATIONS` for ``items``."""
    facts = [item.payment or item.refund for item in items]
    return (
        [item.mchid for item in items],
        [item.notification_id for item in items],
        [item.api_version for item in items],
        [item.event_type for item in items],
        [item.kind for item in items],
        [fact.out_trade_no if fact is not None else None for fact in facts],
        [item.refund.out_refund_no if item.refund is not None else None for item in items],
        # Provisional: the common case, corrected before commit when it differs
        # (nobody sees the row before commit), which saves an UPDATE per payment.
        [RecordOutcome.APPLIED.value] * len(items),
        *raw_request_columns(items, now_ms),
    )


def raw_request_columns(
    items: Sequence[VerifiedNotification], now_ms: int
) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    """The notification's received time (``now_ms`` without a raw request), then the raw
    request's headers (JSON), body and received time (None without one)."""
    raws = [item.raw for item in items]
    return (
        [raw.received_at_ms if raw is not None else now_ms for raw in raws],
        [None if raw is None else json.dumps(raw.headers, ensure_ascii=False) for raw in raws],
        [None if raw is None else raw.body for raw in raws],
        [None if raw is None else raw.received_at_ms for raw in raws],
    )
