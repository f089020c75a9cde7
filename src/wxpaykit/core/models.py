"""Typed wire models for APIv3 notifications and resources (protocol reference §6).

Field names are WeChat's own (``out_trade_no``, ``mchid``, ``amount.total``) so they can be
checked against the API reference. Amounts are integer fen (分). Unknown fields are kept
(``model_extra``) because the platform adds keys at any time.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt

__all__ = [
    "EventType",
    "NotificationEnvelope",
    "NotificationResource",
    "Payer",
    "RefundAmount",
    "RefundResource",
    "RefundStatus",
    "TradeState",
    "TradeType",
    "Transaction",
    "TransactionAmount",
    "WireModel",
]


class EventType(StrEnum):
    """``event_type`` values of the notifications wxpaykit handles."""

    TRANSACTION_SUCCESS = "TRANSACTION.SUCCESS"
    REFUND_SUCCESS = "REFUND.SUCCESS"
    REFUND_ABNORMAL = "REFUND.ABNORMAL"
    REFUND_CLOSED = "REFUND.CLOSED"


class TradeState(StrEnum):
    """``trade_state`` of a payment (the query API's truth, not v2's ``result_code``)."""

    SUCCESS = "SUCCESS"
    REFUND = "REFUND"
    NOTPAY = "NOTPAY"
    CLOSED = "CLOSED"
    REVOKED = "REVOKED"
    USERPAYING = "USERPAYING"
    PAYERROR = "PAYERROR"
    ACCEPT = "ACCEPT"


class TradeType(StrEnum):
    """``trade_type``: JSAPI covers both official accounts and mini-programs."""

    JSAPI = "JSAPI"
    NATIVE = "NATIVE"
    APP = "APP"
    MICROPAY = "MICROPAY"
    MWEB = "MWEB"
    FACEPAY = "FACEPAY"


class RefundStatus(StrEnum):
    """``refund_status`` (notification) / ``status`` (refund API). ABNORMAL is not final."""

    SUCCESS = "SUCCESS"
    CLOSED = "CLOSED"
    PROCESSING = "PROCESSING"
    ABNORMAL = "ABNORMAL"


# Known values become the enum, unknown ones stay strings. Pydantic's default "smart"
# union would keep every JSON string a plain str (exact type match), never the enum.
_OpenEventType = Annotated[EventType | str, Field(union_mode="left_to_right")]
_OpenTradeType = Annotated[TradeType | str, Field(union_mode="left_to_right")]


class WireModel(BaseModel):
    """Base of all wire models: immutable, unknown fields kept."""

    model_config = ConfigDict(extra="allow", frozen=True)


class NotificationResource(WireModel):
    """The encrypted ``resource`` of a notification envelope."""

    original_type: str = ""
    algorithm: str
    ciphertext: str
    associated_data: str = ""
    nonce: str


class NotificationEnvelope(WireModel):
    """The outer JSON of an APIv3 notification; ``id`` identifies it for deduplication."""

    id: str
    create_time: str
    resource_type: str = "encrypt-resource"
    # A closed set we know, but an authentic notification of a newer type is still typed.
    event_type: _OpenEventType
    summary: str = ""
    resource: NotificationResource


class Payer(WireModel):
    """The payer; direct merchants get ``openid``, partners ``sp_openid``/``sub_openid``."""

    openid: str | None = None
    sp_openid: str | None = None
    sub_openid: str | None = None


class TransactionAmount(WireModel):
    """Amounts in fen: ``total`` ordered, ``payer_total`` actually paid after discounts."""

    total: StrictInt
    payer_total: StrictInt | None = None
    currency: str = "CNY"
    payer_currency: str | None = None


class Transaction(WireModel):
    """A payment (decrypted ``TRANSACTION.*`` resource, or the query API's answer)."""

    appid: str | None = None
    mchid: str | None = None
    sp_appid: str | None = None
    sp_mchid: str | None = None
    sub_appid: str | None = None
    sub_mchid: str | None = None
    out_trade_no: str
    transaction_id: str | None = None
    trade_type: _OpenTradeType | None = None
    trade_state: TradeState
    trade_state_desc: str | None = None
    bank_type: str | None = None
    attach: str | None = None
    success_time: dt.datetime | None = None
    payer: Payer | None = None
    amount: TransactionAmount | None = None
    scene_info: dict[str, Any] | None = None
    promotion_detail: list[dict[str, Any]] | None = None

    @property
    def merchant_id(self) -> str | None:
        """The merchant the payment belongs to: ``mchid``, or ``sub_mchid`` for partners."""
        return self.mchid or self.sub_mchid

    @property
    def app_id(self) -> str | None:
        """The appid the payer paid through (``sub_appid`` before ``sp_appid`` for partners)."""
        return self.appid or self.sub_appid or self.sp_appid


class RefundAmount(WireModel):
    """Refund amounts in fen."""

    total: StrictInt
    refund: StrictInt
    payer_total: StrictInt | None = None
    payer_refund: StrictInt | None = None
    currency: str | None = None


class RefundResource(WireModel):
    """A refund (decrypted ``REFUND.*`` resource)."""

    mchid: str | None = None
    sp_mchid: str | None = None
    sub_mchid: str | None = None
    transaction_id: str | None = None
    out_trade_no: str
    refund_id: str
    out_refund_no: str
    refund_status: RefundStatus
    success_time: dt.datetime | None = None
    user_received_account: str | None = None
    amount: RefundAmount

    @property
    def merchant_id(self) -> str | None:
        """The merchant the refund belongs to."""
        return self.mchid or self.sub_mchid
