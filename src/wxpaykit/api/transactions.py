"""Payments of a direct merchant: prepay (JSAPI, APP, H5, Native), query, close (§7.1-7.4).

Each function returns an :class:`~wxpaykit.api.call.ApiCall`; send it with
``client.call(...)`` or use ``client.transactions.<name>(...)``. ``mchid`` and
``appid`` default to the client's own. Prepay answers come back as one
:class:`PrepayResult`, with the signed client-side parameters for JSAPI and APP ready
to hand to the front end (§7.2).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from wxpaykit.api.call import (
    ApiCall,
    ApiResponse,
    CallContext,
    parse_empty,
    parse_model,
    path_segment,
)
from wxpaykit.api.orders import (
    Amount,
    Detail,
    GoodsDetail,
    H5Info,
    OrderFields,
    Payer,
    PrepayKind,
    PrepayResult,
    SceneInfo,
    SettleInfo,
    StoreInfo,
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

_PREPAY_PATHS: dict[str, str] = {"JSAPI": "jsapi", "APP": "app", "H5": "h5", "NATIVE": "native"}
Query = tuple[tuple[str, str | None], ...]


class PrepayRequest(OrderFields):
    """Body of ``POST /v3/pay/transactions/{jsapi,app,h5,native}``."""

    appid: str | None = None
    mchid: str | None = None


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


def check_prepay(kind: str, optional: Mapping[str, Any]) -> None:
    """Reject an unknown prepay kind, and an H5 prepay without its scene (direct and partner)."""
    if kind not in _PREPAY_PATHS:
        raise ValueError(f"unknown prepay kind {kind!r}; use JSAPI, APP, H5 or NATIVE")
    if kind == "H5":
        scene = optional.get("scene_info")
        if not isinstance(scene, SceneInfo) or not scene.payer_client_ip or scene.h5_info is None:
            raise ValueError("H5 prepay needs scene_info with payer_client_ip and h5_info")


def order_amount(amount: Amount | int) -> Amount:
    """``amount`` as an :class:`Amount`; an int is the total in fen."""
    return Amount(total=amount) if isinstance(amount, int) else amount


def prepay_call(
    kind: PrepayKind,
    request: OrderFields,
    *,
    base_path: str,
    mchid_key: str,
    appid_key: str,
    pay_mchid_key: str,
) -> ApiCall[PrepayResult]:
    """The prepay call for ``request`` under ``base_path`` (direct or partner).

    ``mchid_key``/``appid_key`` name the body fields the client fills with its own
    mchid/appid; ``pay_mchid_key`` names the field whose value APP ``pay_params`` carry
    as ``partnerId``.
    """
    return ApiCall(
        method="POST",
        path=f"{base_path}/{_PREPAY_PATHS[kind]}",
        body=request.to_wire(),
        fill_mchid=mchid_key,
        fill_appid=appid_key,
        parse=parse_prepay(kind, appid_key=appid_key, mchid_key=pay_mchid_key),
    )


def query_call(path: str, query: Query, *, mchid_key: str) -> ApiCall[Transaction]:
    """``GET`` one transaction at ``path`` (direct or partner)."""
    return ApiCall(
        method="GET",
        path=path,
        query=query,
        fill_mchid=mchid_key,
        parse=parse_model(Transaction),
    )


def close_call(path: str, body: dict[str, Any], *, mchid_key: str) -> ApiCall[None]:
    """``POST`` the close of an order at ``path`` (direct or partner; answer 204)."""
    return ApiCall(method="POST", path=path, body=body, fill_mchid=mchid_key, parse=parse_empty)


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
    check_prepay(kind, optional)
    if kind == "JSAPI" and not payer_openid and "payer" not in optional:
        raise ValueError("JSAPI prepay needs payer_openid")
    if payer_openid is not None:
        optional["payer"] = Payer(openid=payer_openid)
    request = PrepayRequest(
        appid=appid,
        mchid=mchid,
        description=description,
        out_trade_no=out_trade_no,
        notify_url=notify_url,
        amount=order_amount(amount),
        **optional,
    )
    return prepay_call(
        kind,
        request,
        base_path="/v3/pay/transactions",
        mchid_key="mchid",
        appid_key="appid",
        pay_mchid_key="mchid",
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
    path = f"/v3/pay/transactions/id/{path_segment(transaction_id)}"
    return query_call(path, (("mchid", mchid),), mchid_key="mchid")


def query_by_out_trade_no(out_trade_no: str, *, mchid: str | None = None) -> ApiCall[Transaction]:
    """``GET /v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=``."""
    path = f"/v3/pay/transactions/out-trade-no/{path_segment(out_trade_no)}"
    return query_call(path, (("mchid", mchid),), mchid_key="mchid")


def close(out_trade_no: str, *, mchid: str | None = None) -> ApiCall[None]:
    """``POST .../out-trade-no/{out_trade_no}/close`` (answer 204); closing is re-entrant."""
    path = f"/v3/pay/transactions/out-trade-no/{path_segment(out_trade_no)}/close"
    return close_call(path, {"mchid": mchid} if mchid else {}, mchid_key="mchid")
