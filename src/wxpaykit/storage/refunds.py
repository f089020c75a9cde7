"""Apply a refund notification, inside the caller's transaction.

Money rules, enforced by the database rather than by a read:

* the order's ``refunded_total`` never exceeds its ``total`` and at most
  :data:`MAX_REFUNDS` refunds are counted: the order update is
  ``... WHERE state IN ('SUCCESS','REFUND') AND refunded_total + :amount <= total
  AND refund_count < 50``;
* a refund row changes status with a compare-and-set on its previous status.

A conditional write that matches no row raises :class:`RetryTransaction`: the ledger
rolls back and re-runs the whole notification, which then reads the committed state
(for example a concurrent refund used up the amount) and records an anomaly instead.

**Refund seen before the payment succeeded:** the refund is *held*, not implied paid. Its
row is stored (status SUCCESS, ``applied`` false), the order's ``held_refunds`` counter
goes up, the outcome is UNMATCHED with a ``refund.pending_payment`` event. When the
payment notification is applied (WeChat keeps re-sending it until we acknowledge it), the
held refunds are counted in the same transaction and ``refund.succeeded`` is emitted then.
Implying the payment would emit ``payment.succeeded`` from a refund message that does not carry
the payment's own amount check, so we wait for the real one.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from wxpaykit.core.models import RefundStatus, TradeState
from wxpaykit.storage.applied import Applied, RetryTransaction, make_event
from wxpaykit.storage.base import AppliedTransition, RecordOutcome, RefundFacts
from wxpaykit.storage.dialects import insert_or_ignore
from wxpaykit.storage.events import NewEvent
from wxpaykit.storage.schema import orders, refunds
from wxpaykit.storage.state_machine import NEW, refund_transition

__all__ = ["MAX_REFUNDS", "apply_refund", "release_held_refunds"]

#: WeChat Pay accepts at most 50 partial refunds per order.
MAX_REFUNDS = 50
_PAID_STATES = (TradeState.SUCCESS, TradeState.REFUND)


async def apply_refund(
    connection: AsyncConnection,
    *,
    mchid: str,
    notification_id: str,
    facts: RefundFacts,
    now_ms: int,
) -> Applied:
    """Classify and (if the table says so) apply one refund notification."""
    order = (
        await connection.execute(
            select(orders).where(
                orders.c.mchid == mchid, orders.c.out_trade_no == facts.out_trade_no
            )
        )
    ).one_or_none()
    payload = _payload(notification_id, facts)
    if order is None:
        return _single(
            RecordOutcome.UNMATCHED, "refund.unmatched", mchid, facts, payload, facts.refund_status
        )
    refund = (
        await connection.execute(
            select(refunds).where(
                refunds.c.mchid == mchid, refunds.c.out_refund_no == facts.out_refund_no
            )
        )
    ).one_or_none()
    if facts.total != order.total or (
        refund is not None
        and (refund.amount != facts.refund or refund.out_trade_no != facts.out_trade_no)
    ):
        payload["expected_total"] = order.total
        return _single(
            RecordOutcome.ANOMALY,
            "refund.amount_mismatch",
            mchid,
            facts,
            payload,
            f"{facts.total}:{facts.refund}",
        )
    current = refund.status if refund is not None else NEW
    transition = refund_transition(current, facts.refund_status)
    if transition is None:
        return Applied(RecordOutcome.NO_CHANGE)
    refund_change = AppliedTransition(
        entity="refund",
        key=facts.out_refund_no,
        from_state=None if refund is None else refund.status,
        to_state=transition.to_state,
    )
    if transition.to_state != RefundStatus.SUCCESS:
        await _write_refund(connection, refund, mchid, facts, transition.to_state, False, now_ms)
        return Applied(
            RecordOutcome.APPLIED,
            transitions=[refund_change],
            events=_events(transition.events, mchid, facts, payload),
        )
    if order.state not in _PAID_STATES:
        return await _hold(
            connection, order, refund, mchid, facts, payload, transition.events, now_ms
        )
    if order.refunded_total + facts.refund > order.total:
        payload["refunded_total"] = order.refunded_total
        return _single(RecordOutcome.ANOMALY, "refund.exceeds_paid", mchid, facts, payload, "")
    if order.refund_count >= MAX_REFUNDS:
        return _single(RecordOutcome.ANOMALY, "refund.limit_exceeded", mchid, facts, payload, "")
    await _write_refund(connection, refund, mchid, facts, transition.to_state, True, now_ms)
    if not await _count_refund(connection, order.id, facts.refund, now_ms):
        raise RetryTransaction  # a concurrent refund or state change won the row
    transitions = [refund_change]
    if order.state != TradeState.REFUND:
        transitions.append(
            AppliedTransition(
                entity="order",
                key=facts.out_trade_no,
                from_state=order.state,
                to_state=TradeState.REFUND,
            )
        )
    return Applied(
        RecordOutcome.APPLIED,
        transitions=transitions,
        events=_events(transition.events, mchid, facts, payload),
    )


async def release_held_refunds(
    connection: AsyncConnection, *, order_id: int, mchid: str, applied: Applied, now_ms: int
) -> None:
    """Count refunds held while the order was unpaid; called right after it became paid.

    The caller holds the order row (its compare-and-set just succeeded), so no other
    transaction changes the order meanwhile. A held refund that no longer fits the paid
    amount stays held and raises ``refund.exceeds_paid`` for review.
    """
    order = (await connection.execute(select(orders).where(orders.c.id == order_id))).one()
    held = (
        await connection.execute(
            select(refunds)
            .where(
                refunds.c.mchid == mchid,
                refunds.c.out_trade_no == order.out_trade_no,
                refunds.c.status == RefundStatus.SUCCESS,
                refunds.c.applied.is_(False),
            )
            .order_by(refunds.c.id)
        )
    ).all()
    released = 0
    state = order.state
    for refund in held:
        facts = _facts_of(refund, order.total)
        payload = _payload(None, facts)
        if not await _count_refund(connection, order_id, refund.amount, now_ms):
            kind = "refund.exceeds_paid"
            applied.events += [_event(kind, mchid, facts, payload, kind)]
            continue
        marked = await connection.execute(
            update(refunds)
            .where(refunds.c.id == refund.id, refunds.c.applied.is_(False))
            .values(applied=True, updated_at_ms=now_ms)
        )
        if marked.rowcount != 1:
            raise RetryTransaction
        released += 1
        applied.events += _events(("refund.succeeded",), mchid, facts, payload)
        if state != TradeState.REFUND:
            applied.transitions.append(
                AppliedTransition(
                    entity="order",
                    key=order.out_trade_no,
                    from_state=state,
                    to_state=TradeState.REFUND,
                )
            )
            state = TradeState.REFUND
    if released:
        await connection.execute(
            update(orders)
            .where(orders.c.id == order_id)
            .values(held_refunds=orders.c.held_refunds - released)
        )


async def _hold(
    connection: AsyncConnection,
    order: Row[Any],
    refund: Row[Any] | None,
    mchid: str,
    facts: RefundFacts,
    payload: dict[str, Any],
    transition_events: tuple[str, ...],
    now_ms: int,
) -> Applied:
    await _write_refund(connection, refund, mchid, facts, RefundStatus.SUCCESS, False, now_ms)
    counted = await connection.execute(
        update(orders)
        .where(orders.c.id == order.id, orders.c.state.not_in(_PAID_STATES))
        .values(
            held_refunds=orders.c.held_refunds + 1,
            version=orders.c.version + 1,
            updated_at_ms=now_ms,
        )
    )
    if counted.rowcount != 1:
        raise RetryTransaction  # the order was paid meanwhile: apply the refund normally
    payload["order_state"] = order.state
    # refund.succeeded itself is emitted when the payment arrives and the refund counts.
    later = tuple(event for event in transition_events if event != "refund.succeeded")
    return Applied(
        RecordOutcome.UNMATCHED,
        events=_events(("refund.pending_payment", *later), mchid, facts, payload),
    )


async def _write_refund(
    connection: AsyncConnection,
    refund: Row[Any] | None,
    mchid: str,
    facts: RefundFacts,
    status: str,
    applied: bool,
    now_ms: int,
) -> None:
    """Insert the refund, or move it from the status we read; RetryTransaction if raced."""
    success_time = facts.success_time if status == RefundStatus.SUCCESS else None
    if refund is None:
        key = await insert_or_ignore(
            connection,
            refunds,
            {
                "mchid": mchid,
                "out_refund_no": facts.out_refund_no,
                "out_trade_no": facts.out_trade_no,
                "refund_id": facts.refund_id,
                "transaction_id": facts.transaction_id,
                "status": status,
                "amount": facts.refund,
                "applied": applied,
                "success_time": success_time,
                "created_at_ms": now_ms,
                "updated_at_ms": now_ms,
            },
        )
        if key is None:
            raise RetryTransaction
        return
    result = await connection.execute(
        update(refunds)
        .where(
            refunds.c.id == refund.id,
            refunds.c.status == refund.status,
            refunds.c.applied == refund.applied,
        )
        .values(
            status=status,
            applied=applied,
            refund_id=facts.refund_id or refund.refund_id,
            success_time=success_time or refund.success_time,
            updated_at_ms=now_ms,
        )
    )
    if result.rowcount != 1:
        raise RetryTransaction


async def _count_refund(
    connection: AsyncConnection, order_id: int, amount: int, now_ms: int
) -> bool:
    """Add a successful refund to a paid order, never beyond its total or 50 refunds."""
    result = await connection.execute(
        update(orders)
        .where(
            orders.c.id == order_id,
            orders.c.state.in_(_PAID_STATES),
            orders.c.refunded_total + amount <= orders.c.total,
            orders.c.refund_count < MAX_REFUNDS,
        )
        .values(
            refunded_total=orders.c.refunded_total + amount,
            refund_count=orders.c.refund_count + 1,
            state=TradeState.REFUND,
            version=orders.c.version + 1,
            updated_at_ms=now_ms,
        )
    )
    return result.rowcount == 1


def _facts_of(refund: Row[Any], order_total: int) -> RefundFacts:
    return RefundFacts(
        out_trade_no=refund.out_trade_no,
        out_refund_no=refund.out_refund_no,
        refund_id=refund.refund_id or "",
        transaction_id=refund.transaction_id,
        refund_status=refund.status,
        refund=refund.amount,
        total=order_total,
        success_time=refund.success_time,
    )


def _payload(notification_id: str | None, facts: RefundFacts) -> dict[str, Any]:
    return {
        "out_trade_no": facts.out_trade_no,
        "out_refund_no": facts.out_refund_no,
        "refund_id": facts.refund_id,
        "transaction_id": facts.transaction_id,
        "refund_status": facts.refund_status,
        "refund": facts.refund,
        "total": facts.total,
        "success_time": facts.success_time,
        "notification_id": notification_id,
    }


def _event(
    event_type: str, mchid: str, facts: RefundFacts, payload: dict[str, Any], suffix: str
) -> NewEvent:
    return make_event(
        event_type,
        mchid=mchid,
        out_trade_no=facts.out_trade_no,
        dedup_key=f"{mchid}:{facts.out_refund_no}:{suffix}",
        payload=dict(payload),
    )


def _events(
    event_types: tuple[str, ...], mchid: str, facts: RefundFacts, payload: dict[str, Any]
) -> list[NewEvent]:
    """Transition events; dedup ``mchid:out_refund_no:<STATUS>`` (or the event type)."""
    suffixes = {
        "refund.processing": RefundStatus.PROCESSING,
        "refund.succeeded": RefundStatus.SUCCESS,
        "refund.abnormal": RefundStatus.ABNORMAL,
        "refund.closed": RefundStatus.CLOSED,
    }
    return [
        _event(event_type, mchid, facts, payload, str(suffixes.get(event_type, event_type)))
        for event_type in event_types
    ]


def _single(
    outcome: RecordOutcome,
    event_type: str,
    mchid: str,
    facts: RefundFacts,
    payload: dict[str, Any],
    detail: str,
) -> Applied:
    suffix = f"{event_type}:{detail}" if detail else event_type
    return Applied(outcome, events=[_event(event_type, mchid, facts, payload, suffix)])
