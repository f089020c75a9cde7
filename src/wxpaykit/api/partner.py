"""Partner (服务商) mode: the same calls on behalf of a sub-merchant (protocol reference §7.9).

The service provider signs with its own key; ``sp_mchid`` defaults to the client's
``mchid`` and ``sp_appid`` to its ``appid``. Every call names the ``sub_mchid``.
Refunds and bills use the direct endpoints with ``sub_mchid`` (see :func:`refund` and
:func:`trade_bill`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from wxpaykit.api import bills, refunds
from wxpaykit.api.call import ApiCall, path_segment
from wxpaykit.api.orders import Amount, OrderFields, Payer, PrepayKind, PrepayResult, SceneInfo
from wxpaykit.api.transactions import (
    Query,
    check_prepay,
    close_call,
    order_amount,
    prepay_call,
    query_call,
)
from wxpaykit.core.models import Transaction

__all__ = [
    "PartnerPrepayRequest",
    "app",
    "close",
    "h5",
    "jsapi",
    "native",
    "prepay",
    "query_by_id",
    "query_by_out_trade_no",
    "query_refund",
    "refund",
    "trade_bill",
]


class PartnerPrepayRequest(OrderFields):
    """Body of ``POST /v3/pay/partner/transactions/{jsapi,app,h5,native}``."""

    sp_appid: str | None = None
    sp_mchid: str | None = None
    sub_appid: str | None = None
    sub_mchid: str


def prepay(
    kind: PrepayKind,
    *,
    sub_mchid: str,
    description: str,
    out_trade_no: str,
    notify_url: str,
    amount: Amount | int,
    sp_openid: str | None = None,
    sub_openid: str | None = None,
    sub_appid: str | None = None,
    sp_appid: str | None = None,
    sp_mchid: str | None = None,
    **optional: Any,
) -> ApiCall[PrepayResult]:
    """Partner prepay of any kind; JSAPI needs ``sp_openid`` or ``sub_openid`` (+ ``sub_appid``)."""
    check_prepay(kind, optional)
    if kind == "JSAPI":
        if not (sp_openid or sub_openid):
            raise ValueError("partner JSAPI prepay needs sp_openid or sub_openid")
        if sub_openid and not sub_appid:
            raise ValueError("sub_openid needs sub_appid")
        optional["payer"] = Payer(sp_openid=sp_openid, sub_openid=sub_openid)
    request = PartnerPrepayRequest(
        sp_appid=sp_appid,
        sp_mchid=sp_mchid,
        sub_appid=sub_appid,
        sub_mchid=sub_mchid,
        description=description,
        out_trade_no=out_trade_no,
        notify_url=notify_url,
        amount=order_amount(amount),
        **optional,
    )
    return prepay_call(
        kind,
        request,
        base_path="/v3/pay/partner/transactions",
        mchid_key="sp_mchid",
        appid_key="sp_appid",
        # APP PayReq partnerId: the sub-merchant (protocol reference has no partner
        # example; unconfirmed, see docs/sdk.md).
        pay_mchid_key="sub_mchid",
    )


def jsapi(
    *,
    sub_mchid: str,
    description: str,
    out_trade_no: str,
    notify_url: str,
    amount: Amount | int,
    sp_openid: str | None = None,
    sub_openid: str | None = None,
    sub_appid: str | None = None,
    **optional: Any,
) -> ApiCall[PrepayResult]:
    """Partner JSAPI / mini-program prepay with signed ``pay_params``."""
    return prepay(
        "JSAPI",
        sub_mchid=sub_mchid,
        description=description,
        out_trade_no=out_trade_no,
        notify_url=notify_url,
        amount=amount,
        sp_openid=sp_openid,
        sub_openid=sub_openid,
        sub_appid=sub_appid,
        **optional,
    )


def app(
    *,
    sub_mchid: str,
    description: str,
    out_trade_no: str,
    notify_url: str,
    amount: Amount | int,
    sub_appid: str | None = None,
    **optional: Any,
) -> ApiCall[PrepayResult]:
    """Partner APP prepay with signed OpenSDK parameters."""
    return prepay(
        "APP",
        sub_mchid=sub_mchid,
        description=description,
        out_trade_no=out_trade_no,
        notify_url=notify_url,
        amount=amount,
        sub_appid=sub_appid,
        **optional,
    )


def h5(
    *,
    sub_mchid: str,
    description: str,
    out_trade_no: str,
    notify_url: str,
    amount: Amount | int,
    scene_info: SceneInfo,
    **optional: Any,
) -> ApiCall[PrepayResult]:
    """Partner H5 prepay (``h5_url``)."""
    return prepay(
        "H5",
        sub_mchid=sub_mchid,
        description=description,
        out_trade_no=out_trade_no,
        notify_url=notify_url,
        amount=amount,
        scene_info=scene_info,
        **optional,
    )


def native(
    *,
    sub_mchid: str,
    description: str,
    out_trade_no: str,
    notify_url: str,
    amount: Amount | int,
    **optional: Any,
) -> ApiCall[PrepayResult]:
    """Partner Native prepay (``code_url``)."""
    return prepay(
        "NATIVE",
        sub_mchid=sub_mchid,
        description=description,
        out_trade_no=out_trade_no,
        notify_url=notify_url,
        amount=amount,
        **optional,
    )


def _query(sub_mchid: str, sp_mchid: str | None) -> Query:
    # Alphabetical (sp_mchid before sub_mchid), as the official go SDK encodes it.
    return (("sp_mchid", sp_mchid), ("sub_mchid", sub_mchid))


def query_by_id(
    transaction_id: str, *, sub_mchid: str, sp_mchid: str | None = None
) -> ApiCall[Transaction]:
    """``GET /v3/pay/partner/transactions/id/{transaction_id}?sp_mchid=&sub_mchid=``."""
    path = f"/v3/pay/partner/transactions/id/{path_segment(transaction_id)}"
    return query_call(path, _query(sub_mchid, sp_mchid), mchid_key="sp_mchid")


def query_by_out_trade_no(
    out_trade_no: str, *, sub_mchid: str, sp_mchid: str | None = None
) -> ApiCall[Transaction]:
    """``GET /v3/pay/partner/transactions/out-trade-no/{out_trade_no}?sp_mchid=&sub_mchid=``."""
    path = f"/v3/pay/partner/transactions/out-trade-no/{path_segment(out_trade_no)}"
    return query_call(path, _query(sub_mchid, sp_mchid), mchid_key="sp_mchid")


def close(out_trade_no: str, *, sub_mchid: str, sp_mchid: str | None = None) -> ApiCall[None]:
    """Close a sub-merchant's order (answer 204)."""
    body: dict[str, Any] = {"sub_mchid": sub_mchid}
    if sp_mchid:
        body = {"sp_mchid": sp_mchid, **body}
    path = f"/v3/pay/partner/transactions/out-trade-no/{path_segment(out_trade_no)}/close"
    return close_call(path, body, mchid_key="sp_mchid")


def refund(
    *,
    sub_mchid: str,
    out_refund_no: str,
    refund: int,
    total: int,
    transaction_id: str | None = None,
    out_trade_no: str | None = None,
    reason: str | None = None,
    notify_url: str | None = None,
) -> ApiCall[refunds.Refund]:
    """Refund a sub-merchant's payment (``sub_mchid`` in the body)."""
    return refunds.create(
        sub_mchid=sub_mchid,
        out_refund_no=out_refund_no,
        refund=refund,
        total=total,
        transaction_id=transaction_id,
        out_trade_no=out_trade_no,
        reason=reason,
        notify_url=notify_url,
    )


def query_refund(out_refund_no: str, *, sub_mchid: str) -> ApiCall[refunds.Refund]:
    """Query a sub-merchant's refund (``?sub_mchid=``)."""
    return refunds.query(out_refund_no, sub_mchid=sub_mchid)


def trade_bill(
    bill_date: dt.date | str,
    *,
    sub_mchid: str,
    bill_type: bills.BillType = "ALL",
    gzip: bool = True,
) -> ApiCall[bills.BillInfo]:
    """A sub-merchant's trade bill."""
    return bills.trade_bill(bill_date, bill_type=bill_type, gzip=gzip, sub_mchid=sub_mchid)
