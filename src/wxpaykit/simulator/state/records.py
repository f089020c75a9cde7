"""The rows the simulator keeps: orders, refunds, deliveries, attempts and faults.

Plain mutable dataclasses: the business rules (:mod:`wxpaykit.simulator.orders`,
:mod:`wxpaykit.simulator.refunds`) change a record, then hand it to its store to be
persisted. ``id`` is the row id, 0 until the record is inserted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Attempt", "Delivery", "Fault", "Order", "Refund"]


@dataclass(kw_only=True)
class Order:
    """A payment order, shared by APIv3 and APIv2 (the platform has one order book).

    ``mchid`` is the merchant that placed it (``sp_mchid`` in partner mode, where
    ``sub_mchid`` is set). Amounts are fen; times are Unix seconds.
    """

    id: int = 0
    mchid: str
    sub_mchid: str = ""
    appid: str
    sub_appid: str = ""
    out_trade_no: str
    api: str = "v3"
    trade_type: str
    trade_state: str = "NOTPAY"
    description: str = ""
    total: int
    currency: str = "CNY"
    notify_url: str
    attach: str = ""
    openid: str = ""
    sub_openid: str = ""
    prepay_id: str
    code_token: str
    transaction_id: str
    created_at: float
    expires_at: float
    success_time: float | None = None
    fingerprint: str = ""
    refunded: int = 0
    refund_count: int = 0
    sign_type: str = ""
    scene_info: dict[str, Any] | None = None

    @property
    def is_partner(self) -> bool:
        """True for a service-provider (服务商) order."""
        return self.sub_mchid != ""


@dataclass(kw_only=True)
class Refund:
    """A refund of an order; ``status`` is PROCESSING until completed."""

    id: int = 0
    mchid: str
    sub_mchid: str = ""
    order_id: int
    out_refund_no: str
    refund_id: str
    api: str = "v3"
    status: str = "PROCESSING"
    refund: int
    total: int
    reason: str = ""
    notify_url: str = ""
    funds_account: str = ""
    created_at: float
    complete_at: float | None = None
    success_time: float | None = None
    fingerprint: str = ""


@dataclass(kw_only=True)
class Delivery:
    """One notification to send to a notify_url, retried until acknowledged.

    ``body`` is fixed when the notification is created (retries re-send the same
    bytes, freshly signed); ``marks`` lists the chaos applied to it.
    """

    id: int = 0
    mchid: str
    notification_id: str
    api: str
    event_type: str
    notify_url: str
    body: bytes = field(repr=False)
    status: str = "pending"
    attempts: int = 0
    next_at: float
    created_at: float
    marks: list[str] = field(default_factory=list)
    sign_type: str = ""


@dataclass(kw_only=True)
class Attempt:
    """One HTTP request made for a delivery, as shown by ``GET /sim/notifications``."""

    id: int = 0
    delivery_id: int
    number: int
    at: float
    status_code: int | None = None
    latency_ms: float | None = None
    response_body: str = ""
    error: str = ""
    chaos: str = ""
    forged: bool = False
    acked: bool = False
    serial: str = ""


@dataclass(kw_only=True)
class Fault:
    """Make the next ``remaining`` matching requests fail with ``mode``."""

    id: int = 0
    mchid: str = ""
    path: str
    method: str = ""
    mode: str
    remaining: int
