"""What an attempt produced, and the one-statement write of a batch of successes.

:meth:`~wxpaykit.dispatch.deliveries.DeliveryStore.record` writes any batch of
finished attempts in one transaction. The usual batch, every attempt delivered, is
on the path between a commit and the next claim of a later event of the same order;
on PostgreSQL it is one statement (:func:`record_delivered`), atomic on its own, with
no ``BEGIN``/``COMMIT`` round trips.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection

from wxpaykit.dispatch.sinks.base import OutgoingEvent, SinkResult
from wxpaykit.storage.events import DeliveryStatus, event_deliveries, event_delivery_attempts

__all__ = ["AttemptRecord", "ClaimedDelivery", "record_delivered"]


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


def _record_delivered_statement() -> TextClause:
    # Same effect as DeliveryStore.record for successes: by primary key, whoever holds
    # the lease now (the event did arrive). Arrays keep the text fixed for any batch.
    d, a = event_deliveries.name, event_delivery_attempts.name
    now = "CAST(:b_now AS BIGINT)"
    # Fixed identifiers only: every value is a bound parameter.
    return text(
        f"""WITH done AS (
    UPDATE {d} SET status = '{DeliveryStatus.DELIVERED}', delivered_at_ms = {now},
        updated_at_ms = {now}, locked_by = NULL, locked_until_ms = NULL, last_error = NULL
    WHERE id = ANY(CAST(:b_ids AS BIGINT[]))
)
INSERT INTO {a} (delivery_id, attempt, worker, started_at_ms, duration_ms, outcome,
                 status_code, error)
SELECT u.delivery_id, u.attempt, CAST(:b_worker AS VARCHAR), u.started_at_ms, u.duration_ms,
       'delivered', u.status_code, u.error
FROM unnest(CAST(:b_ids AS BIGINT[]), CAST(:b_attempts AS INTEGER[]),
            CAST(:b_started AS BIGINT[]), CAST(:b_durations AS INTEGER[]),
            CAST(:b_codes AS INTEGER[]), CAST(:b_errors AS VARCHAR[]))
     AS u(delivery_id, attempt, started_at_ms, duration_ms, status_code, error)"""  # noqa: S608
    )


_RECORD_DELIVERED = _record_delivered_statement()


async def record_delivered(
    connection: AsyncConnection, records: Sequence[AttemptRecord], *, worker: str, now_ms: int
) -> None:
    """PostgreSQL, every record delivered: mark them and add their attempts, one statement.

    Run it on an autocommit connection (it is atomic on its own) or inside a transaction.
    """
    await connection.execute(
        _RECORD_DELIVERED,
        {
            "b_now": now_ms,
            "b_worker": worker,
            "b_ids": [r.claimed.delivery_id for r in records],
            "b_attempts": [r.claimed.event.attempt for r in records],
            "b_started": [r.started_at_ms for r in records],
            "b_durations": [r.duration_ms for r in records],
            "b_codes": [r.result.status_code for r in records],
            "b_errors": [r.result.error for r in records],
        },
    )
