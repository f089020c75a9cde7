"""The ledger's state machines as data: ``(current_state, incoming) -> Transition | None``.

``None`` means "recorded, nothing to apply" (:attr:`RecordOutcome.NO_CHANGE`). Every
pair of known states has an entry, so a reviewer reads the whole behaviour here and the
contract tests walk the tables row by row.

Decisions on late and out-of-order events (see ``docs/storage.md``):

* **Paid after close or expiry.** A ``SUCCESS`` notification means the money was taken,
  so the order becomes ``SUCCESS`` whatever it was before (``CLOSED``, ``REVOKED``,
  ``PAYERROR``, or ``NOTPAY``/``USERPAYING`` past its ``expires_at_ms``, the pseudo-state
  :data:`EXPIRED`), and ``payment.paid_after_close`` is emitted next to
  ``payment.succeeded`` for a human to review (refund or deliver).
* **Late failures after success** (``CLOSED``/``PAYERROR``/``REVOKED`` arriving after
  ``SUCCESS``) change nothing: a paid order is never un-paid by a notification.
* **Nothing goes back** to ``NOTPAY`` or ``USERPAYING``; the graph has no cycle, so every
  transition happens at most once per order and its event's dedup key is stable.
* ``trade_state=REFUND`` (seen only in queries) proves the payment: it is applied like
  ``SUCCESS``; refund amounts come only from refund notifications.
* ``ACCEPT`` (accepted, awaiting debit) is informational: never applied.
* **Refunds** move ``PROCESSING -> SUCCESS | ABNORMAL | CLOSED`` and
  ``ABNORMAL -> SUCCESS | CLOSED`` (an abnormal refund is re-initiated and then
  succeeds or is closed). ``CLOSED -> SUCCESS`` is applied, because the money left, with
  ``refund.succeeded_after_close`` for review. A refund seen before its order was paid is
  *held* (see :mod:`wxpaykit.storage.refunds`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from wxpaykit.core.models import RefundStatus, TradeState

__all__ = [
    "EXPIRED",
    "NEW",
    "PAYMENT_FROM_STATES",
    "PAYMENT_INCOMING",
    "PAYMENT_TRANSITIONS",
    "REFUND_FROM_STATES",
    "REFUND_INCOMING",
    "REFUND_TRANSITIONS",
    "Transition",
    "effective_payment_state",
    "payment_transition",
    "refund_transition",
]

#: Pseudo-state: ``NOTPAY``/``USERPAYING`` whose ``expires_at_ms`` has passed. Never stored.
EXPIRED = "EXPIRED"
#: Pseudo-state of a refund the ledger has not seen yet. Never stored.
NEW = "NEW"


@dataclass(frozen=True, slots=True)
class Transition:
    """Move to ``to_state`` and emit ``events`` (outbox event types, in order)."""

    to_state: str
    events: tuple[str, ...]


def _t(to_state: str, *events: str) -> Transition:
    return Transition(to_state, events)


_S = TradeState
_PAID = _t(_S.SUCCESS, "payment.succeeded")
_PAID_LATE = _t(_S.SUCCESS, "payment.succeeded", "payment.paid_after_close")
_CLOSED = _t(_S.CLOSED, "payment.closed")
_FAILED = _t(_S.PAYERROR, "payment.failed")
_REVOKED = _t(_S.REVOKED, "payment.revoked")
_PAYING = _t(_S.USERPAYING, "payment.userpaying")

PAYMENT_FROM_STATES: tuple[str, ...] = (
    _S.NOTPAY,
    _S.USERPAYING,
    EXPIRED,
    _S.SUCCESS,
    _S.CLOSED,
    _S.PAYERROR,
    _S.REVOKED,
    _S.REFUND,
)
PAYMENT_INCOMING: tuple[str, ...] = (
    _S.NOTPAY,
    _S.USERPAYING,
    _S.ACCEPT,
    _S.SUCCESS,
    _S.REFUND,
    _S.CLOSED,
    _S.PAYERROR,
    _S.REVOKED,
)

# (current, incoming) -> transition; pairs not listed are None (recorded, not applied).
_PAYMENT_ROWS: dict[tuple[str, str], Transition] = {
    # not yet paid
    (_S.NOTPAY, _S.USERPAYING): _PAYING,
    (_S.NOTPAY, _S.SUCCESS): _PAID,
    (_S.NOTPAY, _S.REFUND): _PAID,
    (_S.NOTPAY, _S.CLOSED): _CLOSED,
    (_S.NOTPAY, _S.PAYERROR): _FAILED,
    (_S.NOTPAY, _S.REVOKED): _REVOKED,
    (_S.USERPAYING, _S.SUCCESS): _PAID,
    (_S.USERPAYING, _S.REFUND): _PAID,
    (_S.USERPAYING, _S.CLOSED): _CLOSED,
    (_S.USERPAYING, _S.PAYERROR): _FAILED,
    (_S.USERPAYING, _S.REVOKED): _REVOKED,
    # past time_expire: payment is late, closing is what the merchant expected anyway
    (EXPIRED, _S.SUCCESS): _PAID_LATE,
    (EXPIRED, _S.REFUND): _PAID_LATE,
    (EXPIRED, _S.CLOSED): _CLOSED,
    (EXPIRED, _S.PAYERROR): _FAILED,
    (EXPIRED, _S.REVOKED): _REVOKED,
    # money taken after the order was given up: apply, and ask a human
    (_S.CLOSED, _S.SUCCESS): _PAID_LATE,
    (_S.CLOSED, _S.REFUND): _PAID_LATE,
    (_S.PAYERROR, _S.SUCCESS): _PAID_LATE,
    (_S.PAYERROR, _S.REFUND): _PAID_LATE,
    (_S.PAYERROR, _S.CLOSED): _CLOSED,
    (_S.REVOKED, _S.SUCCESS): _PAID_LATE,
    (_S.REVOKED, _S.REFUND): _PAID_LATE,
    # SUCCESS and REFUND accept no payment transition: refunds move them.
}

PAYMENT_TRANSITIONS: Mapping[tuple[str, str], Transition | None] = {
    (current, incoming): _PAYMENT_ROWS.get((current, incoming))
    for current in PAYMENT_FROM_STATES
    for incoming in PAYMENT_INCOMING
}

_R = RefundStatus
REFUND_FROM_STATES: tuple[str, ...] = (NEW, _R.PROCESSING, _R.ABNORMAL, _R.SUCCESS, _R.CLOSED)
REFUND_INCOMING: tuple[str, ...] = (_R.PROCESSING, _R.SUCCESS, _R.ABNORMAL, _R.CLOSED)

_REFUND_ROWS: dict[tuple[str, str], Transition] = {
    (NEW, _R.PROCESSING): _t(_R.PROCESSING, "refund.processing"),
    (NEW, _R.SUCCESS): _t(_R.SUCCESS, "refund.succeeded"),
    (NEW, _R.ABNORMAL): _t(_R.ABNORMAL, "refund.abnormal"),
    (NEW, _R.CLOSED): _t(_R.CLOSED, "refund.closed"),
    (_R.PROCESSING, _R.SUCCESS): _t(_R.SUCCESS, "refund.succeeded"),
    (_R.PROCESSING, _R.ABNORMAL): _t(_R.ABNORMAL, "refund.abnormal"),
    (_R.PROCESSING, _R.CLOSED): _t(_R.CLOSED, "refund.closed"),
    (_R.ABNORMAL, _R.SUCCESS): _t(_R.SUCCESS, "refund.succeeded"),
    (_R.ABNORMAL, _R.CLOSED): _t(_R.CLOSED, "refund.closed"),
    (_R.CLOSED, _R.SUCCESS): _t(_R.SUCCESS, "refund.succeeded", "refund.succeeded_after_close"),
}

REFUND_TRANSITIONS: Mapping[tuple[str, str], Transition | None] = {
    (current, incoming): _REFUND_ROWS.get((current, incoming))
    for current in REFUND_FROM_STATES
    for incoming in REFUND_INCOMING
}


def effective_payment_state(
    state: str, *, expires_at_ms: int | None, event_time_ms: int | None
) -> str:
    """The row of the table to use: :data:`EXPIRED` for an unpaid order past its expiry.

    ``event_time_ms`` is when the platform says it happened (``success_time``), so a
    payment made in time but notified late (retries last 24 h) is not "late".
    """
    if (
        state in (_S.NOTPAY, _S.USERPAYING)
        and expires_at_ms is not None
        and event_time_ms is not None
        and event_time_ms > expires_at_ms
    ):
        return EXPIRED
    return state


def payment_transition(current: str, incoming: str) -> Transition | None:
    """Look up the payment table; unknown states are never applied."""
    return PAYMENT_TRANSITIONS.get((current, incoming))


def refund_transition(current: str, incoming: str) -> Transition | None:
    """Look up the refund table (``current`` is :data:`NEW` for an unseen refund)."""
    return REFUND_TRANSITIONS.get((current, incoming))
