"""The event catalogue: types, the versioned JSON envelope and each type's ``data``.

Every sink receives the same body::

    {"id": "evt_…", "type": "payment.succeeded", "schema_version": 1,
     "created_at": "2025-01-31T08:00:00.123Z", "mchid": "1900000109",
     "data": {"out_trade_no": "…", "transaction_id": "…", "trade_state": "SUCCESS",
              "previous_state": "NOTPAY", "state": "SUCCESS", "total": 100, "currency": "CNY",
              "payer_total": 100, "success_time": "…", "appid": "…", "notification_id": "…"}}

``id`` is stable across retries and replays: receivers deduplicate on it. Field names
inside ``data`` are WeChat Pay's own (written by the ledger, ``wxpaykit.storage``).
Amounts are integers in fen. New optional fields
may appear in ``data`` without a version bump; removing or retyping a field bumps
``schema_version``. The JSON Schema is :func:`event_json_schema` (committed as
``docs/events.schema.json``).
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from wxpaykit.storage.events import ENVELOPE_SCHEMA_VERSION

__all__ = [
    "EventEnvelope",
    "EventType",
    "PaymentData",
    "ReconciliationData",
    "RefundData",
    "data_model",
    "event_json_schema",
    "parse_event",
    "render_json_schema",
]


class EventType(StrEnum):
    """Every event type the ledger emits; ``reconciliation.*`` are reserved."""

    PAYMENT_SUCCEEDED = "payment.succeeded"
    PAYMENT_USERPAYING = "payment.userpaying"
    PAYMENT_CLOSED = "payment.closed"
    PAYMENT_FAILED = "payment.failed"
    PAYMENT_REVOKED = "payment.revoked"
    PAYMENT_AMOUNT_MISMATCH = "payment.amount_mismatch"
    PAYMENT_TRANSACTION_MISMATCH = "payment.transaction_mismatch"
    PAYMENT_UNMATCHED = "payment.unmatched"
    PAYMENT_PAID_AFTER_CLOSE = "payment.paid_after_close"
    REFUND_PROCESSING = "refund.processing"
    REFUND_PENDING_PAYMENT = "refund.pending_payment"
    REFUND_SUCCEEDED = "refund.succeeded"
    REFUND_SUCCEEDED_AFTER_CLOSE = "refund.succeeded_after_close"
    REFUND_ABNORMAL = "refund.abnormal"
    REFUND_CLOSED = "refund.closed"
    REFUND_AMOUNT_MISMATCH = "refund.amount_mismatch"
    REFUND_EXCEEDS_PAID = "refund.exceeds_paid"
    REFUND_LIMIT_EXCEEDED = "refund.limit_exceeded"
    REFUND_UNMATCHED = "refund.unmatched"
    RECONCILIATION_MISMATCH = "reconciliation.mismatch"
    RECONCILIATION_COMPLETED = "reconciliation.completed"


class _Data(BaseModel):
    # Receivers must ignore unknown fields; we may add optional ones.
    model_config = ConfigDict(extra="allow", frozen=True)


class PaymentData(_Data):
    """``data`` of every ``payment.*`` event. Amounts in fen; never the payer's openid."""

    out_trade_no: str
    transaction_id: str | None = None
    trade_state: str = Field(description="trade_state as notified: SUCCESS, CLOSED, PAYERROR, ...")
    previous_state: str | None = Field(
        default=None, description="Order state before; null if unknown."
    )
    state: str | None = Field(default=None, description="Order state after; null if not applied.")
    total: int = Field(description="Notified order total in fen.")
    currency: str = "CNY"
    payer_total: int | None = Field(default=None, description="What the payer paid, in fen.")
    success_time: str | None = Field(default=None, description="RFC 3339, as sent by WeChat Pay.")
    appid: str | None = None
    notification_id: str | None = Field(
        default=None, description="The notification that caused it."
    )
    expected_total: int | None = Field(
        default=None, description="payment.amount_mismatch: the order's total in fen."
    )
    expected_currency: str | None = Field(
        default=None, description="payment.amount_mismatch: the order's currency."
    )


class RefundData(_Data):
    """``data`` of every ``refund.*`` event. Amounts in fen."""

    out_trade_no: str
    out_refund_no: str
    refund_id: str | None = None
    transaction_id: str | None = None
    refund_status: str = Field(description="refund_status: PROCESSING, SUCCESS, ABNORMAL, CLOSED.")
    refund: int = Field(description="Refund amount in fen.")
    total: int = Field(description="Order total in fen, as WeChat Pay sees it.")
    success_time: str | None = None
    notification_id: str | None = None


class ReconciliationData(_Data):
    """``data`` of ``reconciliation.*`` (reserved; fields to be defined)."""


def data_model(event_type: EventType) -> type[_Data]:
    """The model of ``data`` for one event type."""
    if event_type.value.startswith("payment."):
        return PaymentData
    if event_type.value.startswith("refund."):
        return RefundData
    return ReconciliationData


class EventEnvelope(BaseModel):
    """The body every sink receives; ``data`` stays a plain object (see :func:`data_model`)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str = Field(description="Stable event id; deduplicate on it.")
    type: str
    schema_version: int
    created_at: str = Field(description="RFC 3339 UTC time the event was committed.")
    mchid: str
    data: dict[str, Any]

    def typed_data(self) -> _Data:
        """``data`` validated against its type's model (unknown type: ValueError)."""
        return data_model(EventType(self.type)).model_validate(self.data)


def parse_event(body: bytes | str) -> EventEnvelope:
    """Parse a delivered body (after verifying its signature, for webhooks)."""
    return EventEnvelope.model_validate_json(body)


def event_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the envelope, one branch per event type."""
    definitions: dict[str, Any] = {}
    branches: list[dict[str, Any]] = []
    for event_type in EventType:
        model = data_model(event_type)
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
