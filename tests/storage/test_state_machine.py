"""The state machine tables, row by row: as data, and as applied by the ledger on each DB.

``EXPECTED_*`` restate every applied row independently of the module, so editing a row
in ``state_machine.py`` without meaning to fails here; the ledger tests then walk the
module's own table, so the database behaviour follows the table exactly.
"""

from __future__ import annotations

import pytest

from tests.storage.builders import SUCCESS_TIME, event_types, order, payment, refund
from wxpaykit.storage.applied import parse_time_ms
from wxpaykit.storage.base import RecordOutcome
from wxpaykit.storage.ledger import SqlLedger
from wxpaykit.storage.state_machine import (
    EXPIRED,
    NEW,
    PAYMENT_FROM_STATES,
    PAYMENT_INCOMING,
    PAYMENT_TRANSITIONS,
    REFUND_FROM_STATES,
    REFUND_INCOMING,
    REFUND_TRANSITIONS,
    Transition,
    effective_payment_state,
)

PAID = "SUCCESS payment.succeeded"
PAID_LATE = "SUCCESS payment.succeeded payment.paid_after_close"

#: "current + incoming" -> "new_state event..."; every other pair applies nothing.
EXPECTED_PAYMENT = {
    "NOTPAY + USERPAYING": "USERPAYING payment.userpaying",
    "NOTPAY + SUCCESS": PAID,
    "NOTPAY + REFUND": PAID,
    "NOTPAY + CLOSED": "CLOSED payment.closed",
    "NOTPAY + PAYERROR": "PAYERROR payment.failed",
    "NOTPAY + REVOKED": "REVOKED payment.revoked",
    "USERPAYING + SUCCESS": PAID,
    "USERPAYING + REFUND": PAID,
    "USERPAYING + CLOSED": "CLOSED payment.closed",
    "USERPAYING + PAYERROR": "PAYERROR payment.failed",
    "USERPAYING + REVOKED": "REVOKED payment.revoked",
    "EXPIRED + SUCCESS": PAID_LATE,
    "EXPIRED + REFUND": PAID_LATE,
    "EXPIRED + CLOSED": "CLOSED payment.closed",
    "EXPIRED + PAYERROR": "PAYERROR payment.failed",
    "EXPIRED + REVOKED": "REVOKED payment.revoked",
    "CLOSED + SUCCESS": PAID_LATE,
    "CLOSED + REFUND": PAID_LATE,
    "PAYERROR + SUCCESS": PAID_LATE,
    "PAYERROR + REFUND": PAID_LATE,
    "PAYERROR + CLOSED": "CLOSED payment.closed",
    "REVOKED + SUCCESS": PAID_LATE,
    "REVOKED + REFUND": PAID_LATE,
}

EXPECTED_REFUND = {
    "NEW + PROCESSING": "PROCESSING refund.processing",
    "NEW + SUCCESS": "SUCCESS refund.succeeded",
    "NEW + ABNORMAL": "ABNORMAL refund.abnormal",
    "NEW + CLOSED": "CLOSED refund.closed",
    "PROCESSING + SUCCESS": "SUCCESS refund.succeeded",
    "PROCESSING + ABNORMAL": "ABNORMAL refund.abnormal",
    "PROCESSING + CLOSED": "CLOSED refund.closed",
    "ABNORMAL + SUCCESS": "SUCCESS refund.succeeded",
    "ABNORMAL + CLOSED": "CLOSED refund.closed",
    "CLOSED + SUCCESS": "SUCCESS refund.succeeded refund.succeeded_after_close",
}


def _render(transition: Transition | None) -> str | None:
    return None if transition is None else " ".join((transition.to_state, *transition.events))


def _expected(table: dict[str, str], current: str, incoming: str) -> str | None:
    return table.get(f"{current} + {incoming}")


PAYMENT_ROWS = sorted(PAYMENT_TRANSITIONS)
REFUND_ROWS = sorted(REFUND_TRANSITIONS)


def test_tables_cover_every_pair_of_states() -> None:
    assert len(PAYMENT_TRANSITIONS) == len(PAYMENT_FROM_STATES) * len(PAYMENT_INCOMING) == 64
    assert len(REFUND_TRANSITIONS) == len(REFUND_FROM_STATES) * len(REFUND_INCOMING) == 20
    applied = {f"{c} + {i}" for (c, i), t in PAYMENT_TRANSITIONS.items() if t is not None}
    assert applied == set(EXPECTED_PAYMENT)
    applied = {f"{c} + {i}" for (c, i), t in REFUND_TRANSITIONS.items() if t is not None}
    assert applied == set(EXPECTED_REFUND)


@pytest.mark.parametrize(("current", "incoming"), PAYMENT_ROWS)
def test_payment_row_matches_expectation(current: str, incoming: str) -> None:
    assert _render(PAYMENT_TRANSITIONS[current, incoming]) == _expected(
        EXPECTED_PAYMENT, current, incoming
    )


@pytest.mark.parametrize(("current", "incoming"), REFUND_ROWS)
def test_refund_row_matches_expectation(current: str, incoming: str) -> None:
    assert _render(REFUND_TRANSITIONS[current, incoming]) == _expected(
        EXPECTED_REFUND, current, incoming
    )


def test_no_state_is_reached_twice() -> None:
    """The graph is acyclic, so each transition's dedup key names it uniquely."""
    edges = {
        (current, t.to_state)
        for (current, _), t in PAYMENT_TRANSITIONS.items()
        if t is not None and current != EXPIRED
    }
    for start in {edge[0] for edge in edges}:
        seen: set[str] = set()
        frontier = {start}
        while frontier:
            step = {to for (frm, to) in edges if frm in frontier}
            assert start not in step, f"cycle through {start}"
            frontier = step - seen
            seen |= step


def test_expiry_uses_the_platform_time_not_the_arrival_time() -> None:
    assert effective_payment_state("NOTPAY", expires_at_ms=10, event_time_ms=11) == EXPIRED
    assert effective_payment_state("USERPAYING", expires_at_ms=10, event_time_ms=11) == EXPIRED
    assert effective_payment_state("NOTPAY", expires_at_ms=10, event_time_ms=10) == "NOTPAY"
    assert effective_payment_state("NOTPAY", expires_at_ms=None, event_time_ms=11) == "NOTPAY"
    assert effective_payment_state("CLOSED", expires_at_ms=10, event_time_ms=11) == "CLOSED"


@pytest.mark.parametrize(("current", "incoming"), PAYMENT_ROWS)
async def test_ledger_applies_payment_row(
    ledger: SqlLedger, mchid: str, current: str, incoming: str
) -> None:
    success_ms = parse_time_ms(SUCCESS_TIME)
    assert success_ms is not None
    if current == EXPIRED:
        await ledger.create_order(order(mchid, "T1", expires_at_ms=success_ms - 1_000))
    else:
        await ledger.create_order(order(mchid, "T1", state=current))

    result = await ledger.record_notification(payment(mchid, "T1", trade_state=incoming))

    stored = await ledger.get_order(mchid, "T1")
    assert stored is not None
    expected = _expected(EXPECTED_PAYMENT, current, incoming)
    if expected is None:
        assert result.outcome is RecordOutcome.NO_CHANGE
        assert stored.state == ("NOTPAY" if current == EXPIRED else current)
        assert result.event_ids == ()
        assert await event_types(ledger, mchid) == []
    else:
        to_state, *emitted = expected.split()
        assert result.outcome is RecordOutcome.APPLIED
        assert stored.state == to_state
        assert len(result.event_ids) == len(emitted)
        assert await event_types(ledger, mchid) == emitted
        assert [t.to_state for t in result.transitions] == [to_state]


async def _bring_refund_to(ledger: SqlLedger, mchid: str, state: str) -> None:
    if state == NEW:
        return
    result = await ledger.record_notification(refund(mchid, "T1", "R1", amount=30, status=state))
    assert result.outcome is RecordOutcome.APPLIED


@pytest.mark.parametrize(("current", "incoming"), REFUND_ROWS)
async def test_ledger_applies_refund_row(
    ledger: SqlLedger, mchid: str, current: str, incoming: str
) -> None:
    await ledger.create_order(order(mchid, "T1"))
    await ledger.record_notification(payment(mchid, "T1"))
    await _bring_refund_to(ledger, mchid, current)
    before = await event_types(ledger, mchid)

    result = await ledger.record_notification(refund(mchid, "T1", "R1", amount=30, status=incoming))

    stored_refund = await ledger.get_refund(mchid, "R1")
    stored_order = await ledger.get_order(mchid, "T1")
    assert stored_order is not None
    expected = _expected(EXPECTED_REFUND, current, incoming)
    if expected is None:
        assert result.outcome is RecordOutcome.NO_CHANGE
        assert (stored_refund.status if stored_refund else NEW) == current
        assert await event_types(ledger, mchid) == before
    else:
        to_state, *emitted = expected.split()
        assert result.outcome is RecordOutcome.APPLIED
        assert stored_refund is not None
        assert stored_refund.status == to_state
        assert (await event_types(ledger, mchid))[len(before) :] == emitted
    counted = stored_refund is not None and stored_refund.status == "SUCCESS"
    assert stored_order.refunded_total == (30 if counted else 0)
    assert stored_order.state == ("REFUND" if counted else "SUCCESS")
