"""Payments of a direct merchant: prepay (JSAPI, APP, H5, Native), query, close (§7.1-7.4).

Each function returns an :class:`~wxpaykit.api.call.ApiCall`; send it with
``client.call(...)`` or use ``client.transactions.<name>(...)``. ``mchid`` and
``appid`` default to the client's own. Prepay answers come back as one
:class:`PrepayResult`, with the signed client-side parameters for JSAPI and APP ready
to hand to the front end (§7.2).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import Field, StrictInt, field_validator

from wxpaykit.api.call import (
    ApiCall,
    ApiResponse,
    CallContext,
    RequestModel,
    ResponseModel,
    parse_empty,
    parse_model,
    path_segment,
)
from wxpaykit.core.models import TradeType, Transaction
from wxpaykit.core.payment_params import app_pay_params, jsapi_pay_params
from wxpaykit.errors import MalformedMessageError

__all__ = [
    "Amount",
    "Detail",
    "GoodsDetail",
    "H5Info",
    "OrderFields",
    "Payer",
    "PrepayRequest",
    "PrepayResult",
    "SceneInfo",
    "SettleInfo",
    "StoreInfo",
    "app",
    "close",
    "h5",
    "jsapi",
    "native",
    "prepay",
    "query_by_id",
    "query_by_out_trade_no",
]

PrepayKind = Literal["JSAPI", "APP", "H5", "NATIVE"]
_PREPAY_PATHS: dict[str, str] = {"JSAPI": "jsapi", "APP": "app", "H5": "h5", "NATIVE": "native"}


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


class PrepayRequest(OrderFields):
    """Body of ``POST /v3/pay/transactions/{jsapi,app,h5,native}``."""

    appid: str | None = None
    mchid: str | None = None


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


def _required(document: dict[str, Any], key: str) -> str:
    value = document.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedMessageError(f"prepay response lacks {key}")
    return value


def parse_prepay(
    kind: PrepayKind, *, appid_key: str, mchid_key: str
) -> Callable[[ApiResponse, CallContext], PrepayResult]:
    """The parser of a prepay answer; ``appid_key``/``mchid_key`` name the body fields.

    The client-side signature uses the appid the payer pays through: ``appid`` for
    direct merchants; for partners ``sub_appid`` when paying as the sub-merchant's
    user, else ``sp_appid``.
    """

    def parse(response: ApiResponse, context: CallContext) -> PrepayResult:
        document = response.json()
        body = context.request_body
        out_trade_no = str(body.get("out_trade_no", ""))
        if kind == "NATIVE":
            return PrepayResult(
                trade_type=TradeType.NATIVE,
                out_trade_no=out_trade_no,
                code_url=_required(document, "code_url"),
            )
        if kind == "H5":
            return PrepayResult(
                trade_type=TradeType.MWEB,
                out_trade_no=out_trade_no,
                h5_url=_required(document, "h5_url"),
            )
        prepay_id = _required(document, "prepay_id")
        appid = _pay_appid(body, appid_key)
        if kind == "JSAPI":
            params = jsapi_pay_params(
                appid=appid,
                prepay_id=prepay_id,
                private_key=context.private_key,
                timestamp=context.timestamp,
                nonce=context.nonce,
            )
            trade_type = TradeType.JSAPI
        else:
            params = app_pay_params(
                appid=appid,
                mchid=str(body.get(mchid_key, context.mchid)),
                prepay_id=prepay_id,
                private_key=context.private_key,
                timestamp=context.timestamp,
                nonce=context.nonce,
            )
            trade_type = TradeType.APP
        return PrepayResult(
            trade_type=trade_type,
            out_trade_no=out_trade_no,
            prepay_id=prepay_id,
            pay_params=params,
        )

    return parse


def _pay_appid(body: Mapping[str, Any], appid_key: str) -> str:
    payer = body.get("payer") or {}
    if appid_key == "sp_appid" and (payer.get("sub_openid") or not payer) and body.get("sub_appid"):
        return str(body["sub_appid"])
    return str(body.get(appid_key, ""))


def prepay(
    kind: PrepayKind,
    *,
    description: str,
    out_trade_no: str,
    notify_url: str,
    amount: Amount | int,
    payer_openid: str | None = None,
    appid: str | None = None,
    mchid: str | None = None,
    **optional: Any,
) -> ApiCall[PrepayResult]:
    """Prepay of any kind; ``amount`` may be an :class:`Amount` or an int in fen.

    ``optional`` takes the other :class:`OrderFields` (``time_expire``, ``attach``,
    ``scene_info``, ``detail``, ...); unknown names raise ``ValueError``. JSAPI needs
    ``payer_openid``; H5 needs ``scene_info`` with ``payer_client_ip`` and ``h5_info``.
    """
    if kind not in _PREPAY_PATHS:
        raise ValueError(f"unknown prepay kind {kind!r}; use JSAPI, APP, H5 or NATIVE")
    if kind == "JSAPI" and not payer_openid and "payer" not in optional:
        raise ValueError("JSAPI prepay needs payer_openid")
    if kind == "H5":
        scene = optional.get("scene_info")
        if not isinstance(scene, SceneInfo) or not scene.payer_client_ip or scene.h5_info is None:
            raise ValueError("H5 prepay needs scene_info with payer_client_ip and h5_info")
    if payer_openid is not None:
        optional["payer"] = Payer(openid=payer_openid)
    request = PrepayRequest(
        appid=appid,
        mchid=mchid,
        description=description,
        out_trade_no=out_trade_no,
        notify_url=notify_url,
        amount=Amount(total=amount) if isinstance(amount, int) else amount,
        **optional,
    )
    return ApiCall(
        method="POST",
        path=f"/v3/pay/transactions/{_PREPAY_PATHS[kind]}",
        body=request.to_wire(),
        fill_mchid="mchid",
        fill_appid="appid",
        parse=parse_prepay(kind, appid_key="appid", mchid_key="mchid"),
    )


def jsapi(
    *,
    description: str,
    out_trade_no: str,
    notify_url: str,
    amount: Amount | int,
    payer_openid: str,
    appid: str | None = None,
    mchid: str | None = None,
    **optional: Any,
) -> ApiCall[PrepayResult]:
    """JSAPI / mini-program prepay: ``prepay_id`` plus signed ``pay_params``."""
    return prepay(
        "JSAPI",
        description=description,
        out_trade_no=out_trade_no,
        notify_url=notify_url,
        amount=amount,
        payer_openid=payer_openid,
        appid=appid,
        mchid=mchid,
        **optional,
    )


def app(
    *,
    description: str,
    out_trade_no: str,
    notify_url: str,
    amount: Amount | int,
    appid: str | None = None,
    mchid: str | None = None,
    **optional: Any,
) -> ApiCall[PrepayResult]:
    """APP prepay: ``prepay_id`` plus the signed OpenSDK ``PayReq`` parameters."""
    return prepay(
        "APP",
        description=description,
        out_trade_no=out_trade_no,
        notify_url=notify_url,
        amount=amount,
        appid=appid,
        mchid=mchid,
        **optional,
    )


def h5(
    *,
    description: str,
    out_trade_no: str,
    notify_url: str,
    amount: Amount | int,
    scene_info: SceneInfo,
    appid: str | None = None,
    mchid: str | None = None,
    **optional: Any,
) -> ApiCall[PrepayResult]:
    """H5 (mobile browser) prepay: ``h5_url`` to redirect to (valid 5 minutes)."""
    return prepay(
        "H5",
        description=description,
        out_trade_no=out_trade_no,
        notify_url=notify_url,
        amount=amount,
        appid=appid,
        mchid=mchid,
        scene_info=scene_info,
        **optional,
    )


def native(
    *,
    description: str,
    out_trade_no: str,
    notify_url: str,
    amount: Amount | int,
    appid: str | None = None,
    mchid: str | None = None,
    **optional: Any,
) -> ApiCall[PrepayResult]:
    """Native prepay: ``code_url`` to render as a QR code (valid 2 hours)."""
    return prepay(
        "NATIVE",
        description=description,
        out_trade_no=out_trade_no,
        notify_url=notify_url,
        amount=amount,
        appid=appid,
        mchid=mchid,
        **optional,
    )


def query_by_id(transaction_id: str, *, mchid: str | None = None) -> ApiCall[Transaction]:
    """``GET /v3/pay/transactions/id/{transaction_id}?mchid=``: the payment's truth."""
    return ApiCall(
        method="GET",
        path=f"/v3/pay/transactions/id/{path_segment(transaction_id)}",
        query=(("mchid", mchid),),
        fill_mchid="mchid",
        parse=parse_model(Transaction),
    )


def query_by_out_trade_no(out_trade_no: str, *, mchid: str | None = None) -> ApiCall[Transaction]:
    """``GET /v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=``."""
    return ApiCall(
        method="GET",
        path=f"/v3/pay/transactions/out-trade-no/{path_segment(out_trade_no)}",
        query=(("mchid", mchid),),
        fill_mchid="mchid",
        parse=parse_model(Transaction),
    )


def close(out_trade_no: str, *, mchid: str | None = None) -> ApiCall[None]:
    """``POST .../out-trade-no/{out_trade_no}/close`` (answer 204); closing is re-entrant."""
    return ApiCall(
        method="POST",
        path=f"/v3/pay/transactions/out-trade-no/{path_segment(out_trade_no)}/close",
        body={"mchid": mchid} if mchid else {},
        fill_mchid="mchid",
        parse=parse_empty,
    )
