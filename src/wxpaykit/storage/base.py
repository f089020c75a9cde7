"""The ledger port: what the gateway needs from storage, whatever the database.

The gateway depends on this module only; adapters (``storage.ledger.SqlLedger`` on
SQLite, PostgreSQL or MySQL/MariaDB) satisfy :class:`Ledger` structurally. Expected
outcomes are values (:class:`RecordOutcome`), not exceptions; a driver failure is a
:class:`~wxpaykit.errors.StorageError`, which the gateway answers with 500 so WeChat
Pay retries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, Protocol

__all__ = [
    "AppliedTransition",
    "DeadLetterResult",
    "Ledger",
    "LedgerAdmin",
    "LedgerStats",
    "NotificationKind",
    "OrderRecord",
    "PaymentFacts",
    "RawRequest",
    "RecordOutcome",
    "RecordResult",
    "RedriveReport",
    "RefundFacts",
    "RefundRecord",
    "VerifiedNotification",
]

NotificationKind = Literal["payment", "refund"]


class RecordOutcome(StrEnum):
    """What recording one verified notification did. Every outcome is acknowledged."""

    #: First sighting; a state transition was applied and its event(s) appended.
    APPLIED = "applied"
    #: The same notification (merchant + notification id) was already recorded.
    DUPLICATE = "duplicate"
    #: New notification, but the order/refund already was in that state (or a later one):
    #: recorded, nothing applied, no event (a platform re-send under a new id).
    NO_CHANGE = "no_change"
    #: Authentic but amount/currency differ from the order: recorded, never applied, event raised.
    ANOMALY = "anomaly"
    #: No order with that out_trade_no (or refund without its order): recorded, event raised.
    UNMATCHED = "unmatched"


@dataclass(frozen=True, slots=True, kw_only=True)
class RawRequest:
    """The request exactly as received, kept for audit (retention is configurable)."""

    headers: Mapping[str, str]
    body: bytes
    received_at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentFacts:
    """What a payment notification asserts, normalised across APIv3 and APIv2."""

    out_trade_no: str
    transaction_id: str | None
    trade_state: str  # TradeState value: SUCCESS, CLOSED, PAYERROR, REVOKED, ...
    total: int  # fen
    currency: str
    payer_total: int | None = None
    success_time: str | None = None  # RFC 3339 as received
    appid: str | None = None
    openid: str | None = field(default=None, repr=False)  # personal data: never logged


@dataclass(frozen=True, slots=True, kw_only=True)
class RefundFacts:
    """What a refund notification asserts, normalised across APIv3 and APIv2."""

    out_trade_no: str
    out_refund_no: str
    refund_id: str
    transaction_id: str | None
    refund_status: str  # RefundStatus value: SUCCESS, ABNORMAL, CLOSED, PROCESSING
    refund: int  # fen
    total: int  # fen, the order total as WeChat sees it
    success_time: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedNotification:
    """A notification that passed signature, timestamp, nonce, decryption and merchant checks."""

    mchid: str
    notification_id: str  # APIv3 envelope id; APIv2: derived (see gateway docs)
    api_version: Literal["v3", "v2"]
    event_type: str  # TRANSACTION.SUCCESS, REFUND.SUCCESS, ... (v2 mapped to the same names)
    kind: NotificationKind
    payment: PaymentFacts | None = None
    refund: RefundFacts | None = None
    raw: RawRequest | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AppliedTransition:
    """One state change the ledger applied."""

    entity: Literal["order", "refund"]
    key: str  # out_trade_no or out_refund_no
    from_state: str | None
    to_state: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordResult:
    """The outcome of :meth:`Ledger.record_notification`, known only after commit."""

    outcome: RecordOutcome
    transitions: tuple[AppliedTransition, ...] = ()
    event_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRecord:
    """A merchant order as the ledger holds it."""

    mchid: str
    out_trade_no: str
    appid: str | None
    description: str
    total: int  # fen
    currency: str
    state: str  # TradeState value
    transaction_id: str | None = None
    refunded_total: int = 0  # fen, sum of successful refunds
    created_at_ms: int = 0
    updated_at_ms: int = 0
    #: ``time_expire`` in epoch ms: a payment whose ``success_time`` is later is "late".
    expires_at_ms: int | None = None
    #: Successful refunds counted in ``refunded_total`` (WeChat allows at most 50).
    refund_count: int = 0


class Ledger(Protocol):
    """Durable, idempotent record of orders, refunds, notifications and events."""

    async def record_notification(self, notification: VerifiedNotification) -> RecordResult:
        """In ONE transaction: insert the notification (unique on mchid + notification_id),
        apply the transition with a conditional update, append the event(s) to the outbox.

        Returns only after commit. Raises :class:`StorageError` on driver failure, with
        nothing committed.
        """
        ...

    async def count_duplicates(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Add copies acknowledged without recording (``(mchid, notification_id)`` -> n)
        to the notifications' duplicate counts; unknown keys are ignored."""
        ...

    async def record_failure(self, notification: VerifiedNotification, *, error: str) -> None:
        """Keep a verified notification whose processing raised (inbound dead letter)."""
        ...

    async def claim_nonce(self, mchid: str, nonce: str, *, expires_at_ms: int) -> bool:
        """Record a ``Wechatpay-Nonce``; False when it was already seen and not expired."""
        ...

    async def create_order(self, order: OrderRecord) -> OrderRecord:
        """Register an order (idempotent on mchid + out_trade_no with identical fields)."""
        ...

    async def get_order(self, mchid: str, out_trade_no: str) -> OrderRecord | None:
        """Return the order, or None."""
        ...


# --- Additions by the storage engineer (additive: nothing above was renamed or removed) ---


@dataclass(frozen=True, slots=True, kw_only=True)
class RefundRecord:
    """A refund as the ledger holds it."""

    mchid: str
    out_refund_no: str
    out_trade_no: str
    refund_id: str | None
    status: str  # RefundStatus value
    amount: int  # fen
    #: True once ``amount`` is counted in the order's ``refunded_total``; a SUCCESS refund
    #: seen before its order was paid stays False ("held") until the payment arrives.
    applied: bool
    created_at_ms: int = 0
    updated_at_ms: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetterResult:
    """What re-driving one inbound dead letter did."""

    mchid: str
    notification_id: str
    outcome: RecordOutcome | None  # None when it failed again
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RedriveReport:
    """The result of :meth:`LedgerAdmin.redrive_dead_letters`."""

    results: tuple[DeadLetterResult, ...] = ()

    @property
    def resolved(self) -> int:
        """Dead letters recorded this time (any outcome, including DUPLICATE)."""
        return sum(1 for result in self.results if result.outcome is not None)

    @property
    def failed(self) -> int:
        """Dead letters that raised again and stay pending."""
        return sum(1 for result in self.results if result.outcome is None)


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerStats:
    """Counts from the database itself (summed over every gateway process)."""

    notifications_by_outcome: Mapping[str, int]
    #: Re-deliveries absorbed (each DUPLICATE answer increments its notification's counter).
    duplicates_absorbed: int
    events: int
    orders_by_state: Mapping[str, int]
    pending_dead_letters: int


class LedgerAdmin(Protocol):
    """Operations beyond the request path: readiness, replay, reporting, shutdown."""

    async def is_ready(self) -> bool:
        """True when the database answers and the schema is at the latest migration."""
        ...

    async def redrive_dead_letters(self, *, limit: int | None = None) -> RedriveReport:
        """Re-run ``record_notification`` for each pending inbound dead letter."""
        ...

    async def stats(self, *, mchid: str | None = None) -> LedgerStats:
        """Counts for dashboards and the demo summary."""
        ...

    async def aclose(self) -> None:
        """Release the connection pool."""
        ...
