"""The event catalogue: types, the versioned JSON envelope and each type's ``data``.

Every sink receives the same body::

    {"id": "evt_…", "type": "payment.succeeded", "schema_version": 1,
     "created_at": "2025-01-31T08:00:00.123Z", "mchid": "1900000109",
     "data": {"out_trade_no": "…", "transaction_id": "…", "trade_state": "SUCCESS",
              "amount": {"total": 100, "payer_total": 100, "currency": "CNY"}, …}}

``id`` is stable across retries and replays: receivers deduplicate on it. Field names
inside ``data`` are WeChat Pay's own. Amounts are integers in fen. New optional fields
may appear in ``data`` without a version bump; removing or retyping a field bumps
``schema_version``. The JSON Schema is :func:`event_json_schema` (committed as
``docs/events.schema.json``).
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from wxpaykit.storage.base import PaymentFacts, RefundFacts
from wxpaykit.storage.events import ENVELOPE_SCHEMA_VERSION

__all__ = [
    "AmountMismatchData",
    "EventEnvelope",
    "EventType",
    "PaymentData",
    "RefundData",
    "UnmatchedData",
    "event_json_schema",
    "parse_event",
    "payment_data",
    "refund_data",
]


class EventType(StrEnum):
    """Every event type; ``reconciliation.*`` are reserved for the bill reconciler."""

    PAYMENT_SUCCEEDED = "payment.succeeded"
    PAYMENT_CLOSED = "payment.closed"
    PAYMENT_FAILED = "payment.failed"
    PAYMENT_AMOUNT_MISMATCH = "payment.amount_mismatch"
    PAYMENT_UNMATCHED = "payment.unmatched"
    PAYMENT_PAID_AFTER_CLOSE = "payment.paid_after_close"
    REFUND_SUCCEEDED = "refund.succeeded"
    REFUND_ABNORMAL = "refund.abnormal"
    REFUND_CLOSED = "refund.closed"
    RECONCILIATION_MISMATCH = "reconciliation.mismatch"
    RECONCILIATION_COMPLETED = "reconciliation.completed"


class _Data(BaseModel):
    # Receivers must ignore unknown fields; we may add optional ones.
    model_config = ConfigDict(extra="allow", frozen=True)


class PaymentAmount(_Data):
    """``amount`` of a payment, in fen."""

    total: int = Field(description="Order total in fen.")
    payer_total: int | None = Field(default=None, description="What the payer paid, in fen.")
    currency: str = "CNY"


class PaymentData(_Data):
    """``data`` of ``payment.succeeded``, ``payment.closed``, ``payment.failed``,
    ``payment.paid_after_close``."""

    out_trade_no: str
    transaction_id: str | None = None
    trade_state: str = Field(description="WeChat trade_state: SUCCESS, CLOSED, PAYERROR, ...")
    amount: PaymentAmount
    success_time: str | None = Field(default=None, description="RFC 3339, as sent by WeChat Pay.")
    appid: str | None = None


class ExpectedAmount(_Data):
    """An amount and its currency, in fen."""

    total: int
    currency: str = "CNY"


class AmountMismatchData(_Data):
    """``data`` of ``payment.amount_mismatch``: authentic, but not what the order says."""

    out_trade_no: str
    transaction_id: str | None = None
    trade_state: str
    expected: ExpectedAmount
    notified: ExpectedAmount


class UnmatchedData(_Data):
    """``data`` of ``payment.unmatched``: a notification for an order we do not know."""

    out_trade_no: str
    transaction_id: str | None = None
    out_refund_no: str | None = None
    trade_state: str | None = None
    refund_status: str | None = None
    amount: ExpectedAmount | None = None


class RefundAmount(_Data):
    """``amount`` of a refund, in fen."""

    refund: int = Field(description="Refunded amount in fen.")
    total: int = Field(description="Order total in fen.")


class RefundData(_Data):
    """``data`` of ``refund.succeeded``, ``refund.abnormal``, ``refund.closed``."""

    out_trade_no: str
    out_refund_no: str
    refund_id: str
    transaction_id: str | None = None
    refund_status: str = Field(description="WeChat refund_status: SUCCESS, ABNORMAL, CLOSED.")
    amount: RefundAmount
    success_time: str | None = None


class ReconciliationData(_Data):
    """``data`` of ``reconciliation.*`` (reserved; fields to be defined)."""


DATA_MODELS: dict[EventType, type[_Data]] = {
    EventType.PAYMENT_SUCCEEDED: PaymentData,
    EventType.PAYMENT_CLOSED: PaymentData,
    EventType.PAYMENT_FAILED: PaymentData,
    EventType.PAYMENT_PAID_AFTER_CLOSE: PaymentData,
    EventType.PAYMENT_AMOUNT_MISMATCH: AmountMismatchData,
    EventType.PAYMENT_UNMATCHED: UnmatchedData,
    EventType.REFUND_SUCCEEDED: RefundData,
    EventType.REFUND_ABNORMAL: RefundData,
    EventType.REFUND_CLOSED: RefundData,
    EventType.RECONCILIATION_MISMATCH: ReconciliationData,
    EventType.RECONCILIATION_COMPLETED: ReconciliationData,
}


class EventEnvelope(BaseModel):
    """The body every sink receives; ``data`` stays a plain object (see :data:`DATA_MODELS`)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str = Field(description="Stable event id; deduplicate on it.")
    type: str
    schema_version: int
    created_at: str = Field(description="RFC 3339 UTC time the event was committed.")
    mchid: str
    data: dict[str, Any]

    def typed_data(self) -> _Data:
        """``data`` validated against its type's model (unknown types: ValueError)."""
        model = DATA_MODELS[EventType(self.type)]
        return model.model_validate(self.data)


def parse_event(body: bytes | str) -> EventEnvelope:
    """Parse a delivered body (after verifying its signature, for webhooks)."""
    return EventEnvelope.model_validate_json(body)


def payment_data(facts: PaymentFacts) -> dict[str, Any]:
    """``data`` for a payment event, from the ledger's normalised facts (no openid)."""
    return PaymentData(
        out_trade_no=facts.out_trade_no,
        transaction_id=facts.transaction_id,
        trade_state=facts.trade_state,
        amount=PaymentAmount(
            total=facts.total, payer_total=facts.payer_total, currency=facts.currency
        ),
        success_time=facts.success_time,
        appid=facts.appid,
    ).model_dump(mode="json")


def refund_data(facts: RefundFacts) -> dict[str, Any]:
    """``data`` for a refund event, from the ledger's normalised facts."""
    return RefundData(
        out_trade_no=facts.out_trade_no,
        out_refund_no=facts.out_refund_no,
        refund_id=facts.refund_id,
        transaction_id=facts.transaction_id,
        refund_status=facts.refund_status,
        amount=RefundAmount(refund=facts.refund, total=facts.total),
        success_time=facts.success_time,
    ).model_dump(mode="json")


def event_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the envelope, one branch per event type."""
    definitions: dict[str, Any] = {}
    branches: list[dict[str, Any]] = []
    for event_type, model in DATA_MODELS.items():
        schema = model.model_json_schema(ref_template="#/$defs/{model}")
        definitions.update(schema.pop("$defs", {}))
        definitions[model.__name__] = schema
        branches.append(
            {
                "properties": {
                    "type": {"const": event_type.value},
                    "data": {"$ref": f"#/$defs/{model.__name__}"},
                }
            }
        )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://wxpaykit.dev/schemas/event-v1.json",
        "title": "wxpaykit event",
        "description": "Body of every event delivered by wxpaykit (webhooks, brokers, handlers).",
        "type": "object",
        "required": ["id", "type", "schema_version", "created_at", "mchid", "data"],
        "properties": {
            "id": {"type": "string", "description": "Stable event id; deduplicate on it."},
            "type": {"type": "string", "enum": [t.value for t in EventType]},
            "schema_version": {"const": ENVELOPE_SCHEMA_VERSION},
            "created_at": {"type": "string", "format": "date-time"},
            "mchid": {"type": "string"},
            "data": {"type": "object"},
        },
        "oneOf": branches,
        "$defs": dict(sorted(definitions.items())),
    }


def render_json_schema() -> str:
    """The schema as committed in ``docs/events.schema.json``."""
    return json.dumps(event_json_schema(), indent=2, ensure_ascii=False) + "\n"
