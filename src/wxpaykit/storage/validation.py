"""Checks before touching the database, so bad input never becomes a driver error.

Column widths are generous compared with WeChat's limits (``out_trade_no`` is 6-32
characters on the platform, stored up to 64), so only nonsense is refused. A verified
notification that fails here is authentic but not usable:
:class:`~wxpaykit.errors.MalformedMessageError`; an unusable order from the merchant's own
code: ``ValueError``.
"""

from __future__ import annotations

from wxpaykit.core.models import TradeState
from wxpaykit.errors import MalformedMessageError
from wxpaykit.storage.base import OrderRecord, VerifiedNotification

__all__ = ["validate_notification", "validate_order"]

_WIDTHS = {
    "mchid": 32,
    "notification_id": 128,
    "event_type": 64,
    "out_trade_no": 64,
    "out_refund_no": 64,
    "transaction_id": 64,
    "refund_id": 64,
    "trade_state": 16,
    "refund_status": 16,
    "currency": 16,
    "appid": 64,
    "success_time": 40,
    "description": 256,
}


def _too_long(name: str, value: str | None, *, required: bool) -> str | None:
    if value is None or value == "":
        return f"{name} is missing" if required else None
    if len(value) > _WIDTHS[name]:
        return f"{name} is longer than {_WIDTHS[name]} characters"
    return None


def validate_notification(notification: VerifiedNotification) -> None:
    """Raise MalformedMessageError naming the first unusable field."""
    problems = [
        _too_long("mchid", notification.mchid, required=True),
        _too_long("notification_id", notification.notification_id, required=True),
        _too_long("event_type", notification.event_type, required=True),
    ]
    if notification.api_version not in ("v3", "v2"):
        problems.append("api_version must be v3 or v2")
    payment, refund = notification.payment, notification.refund
    if notification.kind == "payment" and (payment is None or refund is not None):
        problems.append("a payment notification carries exactly the payment facts")
    elif notification.kind == "refund" and (refund is None or payment is not None):
        problems.append("a refund notification carries exactly the refund facts")
    elif notification.kind not in ("payment", "refund"):
        problems.append("kind must be payment or refund")
    if payment is not None:
        problems += [
            _too_long("out_trade_no", payment.out_trade_no, required=True),
            _too_long("transaction_id", payment.transaction_id, required=False),
            _too_long("trade_state", payment.trade_state, required=True),
            _too_long("currency", payment.currency, required=True),
            _too_long("appid", payment.appid, required=False),
            _too_long("success_time", payment.success_time, required=False),
            None if payment.total >= 0 else "total must not be negative",
        ]
    if refund is not None:
        problems += [
            _too_long("out_trade_no", refund.out_trade_no, required=True),
            _too_long("out_refund_no", refund.out_refund_no, required=True),
            _too_long("refund_id", refund.refund_id, required=False),
            _too_long("transaction_id", refund.transaction_id, required=False),
            _too_long("refund_status", refund.refund_status, required=True),
            _too_long("success_time", refund.success_time, required=False),
            None if refund.refund > 0 else "refund must be positive",
            None if refund.total >= 0 else "total must not be negative",
        ]
    first = next((problem for problem in problems if problem is not None), None)
    if first is not None:
        raise MalformedMessageError(f"notification {notification.notification_id[:128]!r}: {first}")


def validate_order(order: OrderRecord) -> None:
    """Raise ValueError naming the first unusable field of a new order."""
    problems = [
        _too_long("mchid", order.mchid, required=True),
        _too_long("out_trade_no", order.out_trade_no, required=True),
        _too_long("appid", order.appid, required=False),
        _too_long("description", order.description, required=False),
        _too_long("currency", order.currency, required=True),
        _too_long("transaction_id", order.transaction_id, required=False),
        None if order.total > 0 else "total must be a positive number of fen",
        None if order.state in TradeState.__members__ else f"unknown state {order.state!r}",
        None if 0 <= order.refunded_total <= order.total else "refunded_total out of range",
    ]
    first = next((problem for problem in problems if problem is not None), None)
    if first is not None:
        raise ValueError(f"order {order.out_trade_no[:64]!r}: {first}")
