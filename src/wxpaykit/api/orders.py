"""The order models that direct and partner prepay share (§7.1-7.4, §7.9).

Import them from :mod:`wxpaykit.api.transactions`, which re-exports every one.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field, StrictInt, field_validator

from wxpaykit.api.call import RequestModel, ResponseModel
from wxpaykit.core.models import TradeType

__all__ = [
    "Amount",
    "Detail",
    "GoodsDetail",
    "H5Info",
    "OrderFields",
    "Payer",
    "PrepayKind",
    "PrepayResult",
    "SceneInfo",
    "SettleInfo",
    "StoreInfo",
]

PrepayKind = Literal["JSAPI", "APP", "H5", "NATIVE"]


class Amount(RequestModel):
    """Order amount in fen (分): ``total`` >= 1."""

    total: StrictInt = Field(ge=1)
    currency: str = "CNY"


class Payer(RequestModel):
    """The payer: ``openid`` (direct), ``sp_openid`` or ``sub_openid`` (partner)."""

    openid: str | None = None
    sp_openid: str | None = None
    sub_openid: str | None = None


class StoreInfo(RequestModel):
    """The merchant's store (``scene_info.store_info``)."""

    id: str
    name: str | None = None
    area_code: str | None = None
    address: str | None = None


class H5Info(RequestModel):
    """``scene_info.h5_info``, required by H5 prepay."""

    type: Literal["iOS", "Android", "Wap"]
    app_name: str | None = None
    app_url: str | None = None
    bundle_id: str | None = None
    package_name: str | None = None


class SceneInfo(RequestModel):
    """``scene_info``; H5 needs ``payer_client_ip`` and ``h5_info``."""

    payer_client_ip: str | None = None
    device_id: str | None = None
    store_info: StoreInfo | None = None
    h5_info: H5Info | None = None


class GoodsDetail(RequestModel):
    """One line of ``detail.goods_detail``; prices in fen."""

    merchant_goods_id: str
    wechatpay_goods_id: str | None = None
    goods_name: str | None = None
    quantity: StrictInt = Field(ge=1)
    unit_price: StrictInt


class Detail(RequestModel):
    """``detail`` (goods and cost price) for discounts and single-product coupons."""

    cost_price: StrictInt | None = None
    invoice_id: str | None = None
    goods_detail: list[GoodsDetail] | None = None


class SettleInfo(RequestModel):
    """``settle_info``: ``profit_sharing`` freezes the funds for later sharing."""

    profit_sharing: bool | None = None


class OrderFields(RequestModel):
    """The fields every prepay shares (direct and partner)."""

    description: str = Field(min_length=1, max_length=127)
    out_trade_no: str = Field(pattern=r"^[0-9A-Za-z_\-|*]{6,32}$")
    notify_url: str = Field(max_length=255, pattern=r"^https?://[^?#]+$")
    amount: Amount
    time_expire: str | None = None
    attach: str | None = Field(default=None, max_length=128)
    goods_tag: str | None = None
    support_fapiao: bool | None = None
    limit_pay: list[str] | None = None
    payer: Payer | None = None
    detail: Detail | None = None
    scene_info: SceneInfo | None = None
    settle_info: SettleInfo | None = None

    @field_validator("time_expire", mode="before")
    @classmethod
    def _rfc3339(cls, value: object) -> object:
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                raise ValueError("time_expire needs a timezone (RFC 3339)")
            return value.isoformat(timespec="seconds")
        return value


class PrepayResult(ResponseModel):
    """What the front end needs to pay.

    ``prepay_id`` and the signed ``pay_params`` for JSAPI and APP (hand ``pay_params``
    to ``wx.requestPayment`` / ``WeixinJSBridge`` or the OpenSDK as is), ``code_url``
    for Native (render as a QR code), ``h5_url`` for H5 (redirect the browser).
    """

    trade_type: TradeType
    out_trade_no: str
    prepay_id: str | None = None
    code_url: str | None = None
    h5_url: str | None = None
    pay_params: dict[str, str] | None = None
