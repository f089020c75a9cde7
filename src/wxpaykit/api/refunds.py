"""Refunds: create and query (protocol reference §7.5-7.6), direct and partner.

Retrying a refund is safe only with the same ``out_refund_no``: the platform treats it
as the same refund. The client's retries resend the same body bytes, so the number
never changes; after an unknown outcome (timeout), query before creating anew.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field, StrictInt, model_validator

from wxpaykit.api.call import ApiCall, RequestModel, ResponseModel, parse_model, path_segment
from wxpaykit.core.models import RefundStatus

__all__ = [
    "Refund",
    "RefundAmountDetail",
    "RefundAmountRequest",
    "RefundFrom",
    "RefundGoodsDetail",
    "RefundRequest",
    "create",
    "query",
]


class RefundFrom(RequestModel):
    """``amount.from[]``: which account funds part of the refund."""

    account: Literal["AVAILABLE", "UNAVAILABLE"]
    amount: StrictInt


class RefundAmountRequest(RequestModel):
    """Refund amounts in fen: ``refund`` out of the order's ``total``."""

    refund: StrictInt = Field(ge=1)
    total: StrictInt = Field(ge=1)
    currency: str = "CNY"
    from_: list[RefundFrom] | None = Field(default=None, alias="from")

    @model_validator(mode="after")
    def _refund_within_total(self) -> RefundAmountRequest:
        if self.refund > self.total:
            raise ValueError("refund must not exceed total")
        return self


class RefundGoodsDetail(RequestModel):
    """One line of ``goods_detail`` for a partial refund by goods."""

    merchant_goods_id: str
    wechatpay_goods_id: str | None = None
    goods_name: str | None = None
    unit_price: StrictInt
    refund_amount: StrictInt
    refund_quantity: StrictInt


class RefundRequest(RequestModel):
    """Body of ``POST /v3/refund/domestic/refunds``; one of the two order ids is required."""

    sub_mchid: str | None = None
    transaction_id: str | None = None
    out_trade_no: str | None = None
    out_refund_no: str = Field(pattern=r"^[0-9A-Za-z_\-|*@]{1,64}$")
    reason: str | None = Field(default=None, max_length=80)
    notify_url: str | None = Field(default=None, max_length=256)
    funds_account: Literal["AVAILABLE"] | None = None
    amount: RefundAmountRequest
    goods_detail: list[RefundGoodsDetail] | None = None

    @model_validator(mode="after")
    def _one_order_id(self) -> RefundRequest:
        if not (self.transaction_id or self.out_trade_no):
            raise ValueError("a refund needs transaction_id or out_trade_no")
        return self


class RefundAmountDetail(ResponseModel):
    """Amounts of a refund, in fen."""

    total: StrictInt
    refund: StrictInt
    payer_total: StrictInt | None = None
    payer_refund: StrictInt | None = None
    settlement_refund: StrictInt | None = None
    settlement_total: StrictInt | None = None
    discount_refund: StrictInt | None = None
    currency: str | None = None


class Refund(ResponseModel):
    """The refund object of the API (``status``; notifications say ``refund_status``)."""

    refund_id: str
    out_refund_no: str
    transaction_id: str | None = None
    out_trade_no: str | None = None
    channel: str | None = None
    user_received_account: str | None = None
    success_time: dt.datetime | None = None
    create_time: dt.datetime | None = None
    status: RefundStatus
    funds_account: str | None = None
    amount: RefundAmountDetail


def create(
    *,
    out_refund_no: str,
    refund: int,
    total: int,
    transaction_id: str | None = None,
    out_trade_no: str | None = None,
    reason: str | None = None,
    notify_url: str | None = None,
    currency: str = "CNY",
    sub_mchid: str | None = None,
    funds_account: Literal["AVAILABLE"] | None = None,
    goods_detail: list[RefundGoodsDetail] | None = None,
) -> ApiCall[Refund]:
    """Create (or, with the same ``out_refund_no``, re-submit) a refund of ``refund`` fen."""
    request = RefundRequest(
        sub_mchid=sub_mchid,
        transaction_id=transaction_id,
        out_trade_no=out_trade_no,
        out_refund_no=out_refund_no,
        reason=reason,
        notify_url=notify_url,
        funds_account=funds_account,
        amount=RefundAmountRequest(refund=refund, total=total, currency=currency),
        goods_detail=goods_detail,
    )
    return ApiCall(
        method="POST",
        path="/v3/refund/domestic/refunds",
        body=request.to_wire(),
        parse=parse_model(Refund),
    )


def query(out_refund_no: str, *, sub_mchid: str | None = None) -> ApiCall[Refund]:
    """``GET /v3/refund/domestic/refunds/{out_refund_no}`` (partners add ``sub_mchid``)."""
    return ApiCall(
        method="GET",
        path=f"/v3/refund/domestic/refunds/{path_segment(out_refund_no)}",
        query=(("sub_mchid", sub_mchid),) if sub_mchid else (),
        parse=parse_model(Refund),
    )
