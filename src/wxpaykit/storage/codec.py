"""JSON form of a :class:`VerifiedNotification`, kept in ``inbound_dead_letters``.

It holds what re-driving needs and nothing more: the normalised facts (amounts, states,
keys) and the raw request as received (the APIv3 body is still ciphertext). The payer's
``openid`` is personal data the ledger never needs, so it is left out.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from wxpaykit.errors import MalformedMessageError
from wxpaykit.storage.base import PaymentFacts, RawRequest, RefundFacts, VerifiedNotification

__all__ = ["dump_notification", "load_notification"]

_PAYMENT_FIELDS = (
    "out_trade_no",
    "transaction_id",
    "trade_state",
    "total",
    "currency",
    "payer_total",
    "success_time",
    "appid",
)
_REFUND_FIELDS = (
    "out_trade_no",
    "out_refund_no",
    "refund_id",
    "transaction_id",
    "refund_status",
    "refund",
    "total",
    "success_time",
)


def dump_notification(notification: VerifiedNotification) -> str:
    """Serialise for storage (compact JSON, no openid)."""
    document: dict[str, Any] = {
        "mchid": notification.mchid,
        "notification_id": notification.notification_id,
        "api_version": notification.api_version,
        "event_type": notification.event_type,
        "kind": notification.kind,
    }
    if notification.payment is not None:
        document["payment"] = {
            name: getattr(notification.payment, name) for name in _PAYMENT_FIELDS
        }
    if notification.refund is not None:
        document["refund"] = {name: getattr(notification.refund, name) for name in _REFUND_FIELDS}
    if notification.raw is not None:
        document["raw"] = {
            "headers": dict(notification.raw.headers),
            "body_b64": base64.b64encode(notification.raw.body).decode("ascii"),
            "received_at_ms": notification.raw.received_at_ms,
        }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def load_notification(text: str) -> VerifiedNotification:
    """Inverse of :func:`dump_notification`; MalformedMessageError if the row is damaged."""
    try:
        document = json.loads(text)
        payment = document.get("payment")
        refund = document.get("refund")
        raw = document.get("raw")
        return VerifiedNotification(
            mchid=document["mchid"],
            notification_id=document["notification_id"],
            api_version=document["api_version"],
            event_type=document["event_type"],
            kind=document["kind"],
            payment=PaymentFacts(**payment) if payment is not None else None,
            refund=RefundFacts(**refund) if refund is not None else None,
            raw=RawRequest(
                headers=raw["headers"],
                body=base64.b64decode(raw["body_b64"], validate=True),
                received_at_ms=raw["received_at_ms"],
            )
            if raw is not None
            else None,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise MalformedMessageError(f"stored dead letter is not readable: {exc}") from exc
