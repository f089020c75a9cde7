"""Apply a payment notification to its order, inside the caller's transaction.

The write is a compare-and-set: ``UPDATE orders ... WHERE id = ? AND state = ? AND
version = ?``. When it matches no row, another transaction changed the order after we
read it; we read again (READ COMMITTED: the latest committed row) and classify again, so
a busy row never turns into a guessed success.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from wxpaykit.core.models import TradeState
from wxpaykit.storage.applied import Applied, RetryTransaction, make_event, parse_time_ms
from wxpaykit.storage.base import AppliedTransition, PaymentFacts, RecordOutcome
from wxpaykit.storage.pg_sql import READ_ORDERS
from wxpaykit.storage.refunds import release_held_refunds
from wxpaykit.storage.schema import orders
from wxpaykit.storage.state_machine import effective_payment_state, payment_transition

__all__ = [
    "PlannedWrite",
    "apply_payment",
    "classify_payment",
    "compare_and_set_columns",
    "read_orders",
    "write_planned",
]

#: Re-reads inside one transaction before starting the transaction over.
_MAX_REREADS = 3
# Built once: building a statement per call (clause coercion, cache key of the literal
# values) costs more CPU than executing it. Values are bound at execution.
_READ_ORDER = select(orders).where(
    orders.c.mchid == bindparam("w_mchid"), orders.c.out_trade_no == bindparam("w_out_trade_no")
)
# Every order of one merchant named in a group of notifications, in one round trip.
_READ_ORDERS = select(orders).where(
    orders.c.mchid == bindparam("w_mchid"),
    orders.c.out_trade_no.in_(bindparam("w_out_trade_nos", expanding=True)),
)
# No .values(): the SET list is the execution parameters named like columns.
_SET_ORDER_IF_UNCHANGED = update(orders).where(
    orders.c.id == bindparam("w_id"),
    orders.c.state == bindparam("w_state"),
    orders.c.version == bindparam("w_version"),
)


class OrderView(Protocol):
    """What the payment table reads of an order: a SQLAlchemy row, or a driver row
    (:mod:`wxpaykit.storage.pg_groups`)."""

    id: int
    mchid: str
    out_trade_no: str
    appid: str | None
    state: str
    version: int
    total: int
    currency: str
    transaction_id: str | None
    success_time: str | None
    expires_at_ms: int | None
    held_refunds: int


#: Orders read ahead for a group of notifications: (mchid, out_trade_no) -> row or None.
OrderRows = dict[tuple[str, str], Row[Any] | None]


async def read_orders(connection: AsyncConnection, keys: set[tuple[str, str]]) -> OrderRows:
    """Read the orders ``keys`` name, one statement per merchant; absent ones map to None.

    Used to read a whole group's orders at once; :func:`apply_payment` still writes with
    a compare-and-set, so a row that changed since (even in this transaction) is read
    again rather than trusted.
    """
    found: OrderRows = dict.fromkeys(keys)
    by_merchant: dict[str, list[str]] = {}
    for mchid, out_trade_no in keys:
        by_merchant.setdefault(mchid, []).append(out_trade_no)
    postgresql = connection.dialect.name == "postgresql"
    for mchid, numbers in by_merchant.items():
        if postgresql:  # one index probe per number (see pg_sql.READ_ORDERS)
            rows = await connection.exec_driver_sql(READ_ORDERS, (mchid, sorted(numbers)))
        else:
            rows = await connection.execute(
                _READ_ORDERS, {"w_mchid": mchid, "w_out_trade_nos": sorted(numbers)}
            )
        for row in rows:
            found[(row.mchid, row.out_trade_no)] = row
    return found


async def apply_payment(
    connection: AsyncConnection,
    *,
    mchid: str,
    notification_id: str,
    facts: PaymentFacts,
    now_ms: int,
    read_ahead: OrderRows | None = None,
) -> Applied:
    """Classify and (if the table says so) apply one payment notification.

    ``read_ahead`` (from :func:`read_orders`) saves the first read; the entry is used
    once and dropped, so a second notification for the same order in one group reads
    the row as this one left it.
    """
    key = (mchid, facts.out_trade_no)
    for _ in range(_MAX_REREADS):
        if read_ahead is not None and key in read_ahead:
            order = read_ahead.pop(key)
        else:
            order = (
                await connection.execute(
                    _READ_ORDER, {"w_mchid": mchid, "w_out_trade_no": facts.out_trade_no}
                )
            ).one_or_none()
        decision = classify_payment(
            order, mchid=mchid, notification_id=notification_id, facts=facts, now_ms=now_ms
        )
        if isinstance(decision, Applied):
            return decision
        result = await connection.execute(_SET_ORDER_IF_UNCHANGED, decision.parameters())
        if result.rowcount != 1:
            continue  # changed since we read it: read the committed row and decide again
        if decision.releases_held_refunds:
            await release_held_refunds(
                connection,
                order_id=decision.order.id,
                mchid=mchid,
                applied=decision.applied,
                now_ms=now_ms,
            )
        return decision.applied
    raise RetryTransaction


@dataclass(frozen=True, slots=True)
class PlannedWrite:
    """A transition decided from ``order`` as read: the write still has to succeed."""

    order: OrderView
    values: dict[str, Any]
    applied: Applied

    def parameters(self) -> dict[str, Any]:
        """The compare-and-set's parameters: the new values, and the row as it was read."""
        return {
            **self.values,
            "w_id": self.order.id,
            "w_state": self.order.state,
            "w_version": self.order.version,
        }

    @property
    def releases_held_refunds(self) -> bool:
        """The order becomes paid while refunds wait for it: they are counted after the write."""
        return bool(self.values["state"] == TradeState.SUCCESS and self.order.held_refunds > 0)


def classify_payment(
    order: OrderView | None,
    *,
    mchid: str,
    notification_id: str,
    facts: PaymentFacts,
    now_ms: int,
) -> Applied | PlannedWrite:
    """What the table says for ``facts`` against ``order`` as read (no I/O).

    An :class:`Applied` is final (unmatched, anomaly, no change); a
    :class:`PlannedWrite` must still be written with a compare-and-set.
    """
    if order is None:
        return _unmatched(mchid, notification_id, facts)
    refused = _check_facts(order, mchid, notification_id, facts)
    if refused is not None:
        return refused
    event_time = parse_time_ms(facts.success_time) or now_ms
    current = effective_payment_state(
        order.state, expires_at_ms=order.expires_at_ms, event_time_ms=event_time
    )
    transition = payment_transition(current, facts.trade_state)
    if transition is None:
        return Applied(RecordOutcome.NO_CHANGE)
    values: dict[str, Any] = {
        "state": transition.to_state,
        "version": order.version + 1,
        "updated_at_ms": now_ms,
    }
    if transition.to_state == TradeState.SUCCESS:
        values["transaction_id"] = facts.transaction_id or order.transaction_id
        values["success_time"] = facts.success_time
    payload = _payload(order, notification_id, facts, to_state=transition.to_state)
    applied = Applied(
        RecordOutcome.APPLIED,
        transitions=[
            AppliedTransition(
                entity="order",
                key=facts.out_trade_no,
                from_state=order.state,
                to_state=transition.to_state,
            )
        ],
        events=[
            make_event(
                event_type,
                mchid=mchid,
                out_trade_no=facts.out_trade_no,
                dedup_key=f"{mchid}:{facts.out_trade_no}:{event_type}",
                payload=payload,
            )
            for event_type in transition.events
        ],
    )
    return PlannedWrite(order=order, values=values, applied=applied)


# PostgreSQL: a group's compare-and-set writes in one statement. Each row changes only
# if it still has the state and version it was read with; RETURNING names the rows
# written, and the caller redoes the others one by one (they changed meanwhile).
_SET_ORDERS_IF_UNCHANGED_PG = text(
    """UPDATE orders AS o
SET state = u.new_state, version = u.new_version, updated_at_ms = u.updated_at_ms,
    transaction_id = u.transaction_id, success_time = u.success_time
FROM unnest(CAST(:ids AS BIGINT[]), CAST(:states AS VARCHAR[]), CAST(:versions AS INTEGER[]),
            CAST(:new_states AS VARCHAR[]), CAST(:new_versions AS INTEGER[]),
            CAST(:updated AS BIGINT[]), CAST(:transaction_ids AS VARCHAR[]),
            CAST(:success_times AS VARCHAR[]))
     AS u(id, state, version, new_state, new_version, updated_at_ms, transaction_id,
          success_time)
WHERE o.id = u.id AND o.state = u.state AND o.version = u.version
RETURNING o.id"""
)


async def write_planned(connection: AsyncConnection, planned: Sequence[PlannedWrite]) -> set[int]:
    """Write several planned transitions with one compare-and-set statement (PostgreSQL).

    Returns the ids of the orders written; a planned write whose order changed since it
    was read is not written and is absent from the result. Other dialects write one
    statement per transition.
    """
    if not planned:
        return set()
    if connection.dialect.name != "postgresql":
        written: set[int] = set()
        for plan in planned:
            if (await connection.execute(_SET_ORDER_IF_UNCHANGED, plan.parameters())).rowcount == 1:
                written.add(int(plan.order.id))
        return written
    names = (
        "ids",
        "states",
        "versions",
        "new_states",
        "new_versions",
        "updated",
        "transaction_ids",
        "success_times",
    )
    rows = await connection.execute(
        _SET_ORDERS_IF_UNCHANGED_PG, dict(zip(names, compare_and_set_columns(planned), strict=True))
    )
    return {int(order_id) for (order_id,) in rows}


def compare_and_set_columns(planned: Sequence[PlannedWrite]) -> tuple[list[Any], ...]:
    """One list per column of a bulk compare-and-set (PostgreSQL ``unnest``): order id,
    state and version as read, then the new state, version, update time, transaction id
    and success time."""
    return (
        [plan.order.id for plan in planned],
        [plan.order.state for plan in planned],
        [plan.order.version for plan in planned],
        [plan.values["state"] for plan in planned],
        [plan.values["version"] for plan in planned],
        [plan.values["updated_at_ms"] for plan in planned],
        [plan.values.get("transaction_id", plan.order.transaction_id) for plan in planned],
        [plan.values.get("success_time", plan.order.success_time) for plan in planned],
    )


def _check_facts(
    order: OrderView, mchid: str, notification_id: str, facts: PaymentFacts
) -> Applied | None:
    """An authentic notification that contradicts the order: recorded, never applied."""
    if facts.total != order.total or facts.currency != order.currency:
        kind, detail = "payment.amount_mismatch", f"{facts.total}:{facts.currency}"
    elif (
        order.transaction_id is not None
        and facts.transaction_id is not None
        and facts.transaction_id != order.transaction_id
    ):
        # Same out_trade_no paid by a second transaction: never hide a double charge.
        kind, detail = "payment.transaction_mismatch", facts.transaction_id
    else:
        return None
    payload = _payload(order, notification_id, facts, to_state=None)
    payload["expected_total"] = order.total
    payload["expected_currency"] = order.currency
    return Applied(
        RecordOutcome.ANOMALY,
        events=[
            make_event(
                kind,
                mchid=mchid,
                out_trade_no=facts.out_trade_no,
                dedup_key=f"{mchid}:{facts.out_trade_no}:{kind}:{detail}",
                payload=payload,
            )
        ],
    )


def _unmatched(mchid: str, notification_id: str, facts: PaymentFacts) -> Applied:
    return Applied(
        RecordOutcome.UNMATCHED,
        events=[
            make_event(
                "payment.unmatched",
                mchid=mchid,
                out_trade_no=facts.out_trade_no,
                dedup_key=f"{mchid}:{facts.out_trade_no}:payment.unmatched:{facts.trade_state}",
                payload=_payload(None, notification_id, facts, to_state=None),
            )
        ],
    )


def _payload(
    order: OrderView | None, notification_id: str, facts: PaymentFacts, *, to_state: str | None
) -> dict[str, Any]:
    """Event data: identifiers, amounts and states; never the payer's openid."""
    return {
        "out_trade_no": facts.out_trade_no,
        "transaction_id": facts.transaction_id,
        "trade_state": facts.trade_state,
        "previous_state": order.state if order is not None else None,
        "state": to_state,
        "total": facts.total,
        "currency": facts.currency,
        "payer_total": facts.payer_total,
        "success_time": facts.success_time,
        "appid": facts.appid or (order.appid if order is not None else None),
        "notification_id": notification_id,
    }
