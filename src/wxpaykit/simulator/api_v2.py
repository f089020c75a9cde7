"""APIv2 (legacy XML) endpoints: unifiedorder, orderquery, closeorder, refund, refundquery.

Requests are parsed with the core's safe XML reader and their ``sign`` checked (MD5
unless ``sign_type`` says HMAC-SHA256, §9.1) before anything else is read. Answers
are signed with the request's algorithm. Communication failures (bad XML, bad sign,
missing parameter) are ``return_code=FAIL``; business failures are
``result_code=FAIL`` with ``err_code``.

``/secapi/pay/refund`` demands the merchant's client certificate, as the real one
does: it is only answered on the mutual-TLS listener (``wxpaykit sim`` runs one; see
:mod:`wxpaykit.simulator.tls`). On the plain listener it answers ``FAIL``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wxpaykit.core.signing import generate_nonce
from wxpaykit.core.v2 import SignType, build_xml, parse_xml, sign_v2, verify_v2
from wxpaykit.errors import (
    MalformedMessageError,
    SignatureMismatchError,
    UnsupportedSignatureTypeError,
)
from wxpaykit.simulator.clock import BEIJING, format_v2_time
from wxpaykit.simulator.endpoint import simulator_of
from wxpaykit.simulator.faults import CLIENT_CERTIFICATE_SCOPE_KEY
from wxpaykit.simulator.merchants import Merchant
from wxpaykit.simulator.notifications import TRADE_STATE_DESC
from wxpaykit.simulator.order_book import OrderRequest
from wxpaykit.simulator.platform_errors import PlatformError
from wxpaykit.simulator.service import Simulator
from wxpaykit.simulator.state import Order, Refund
from wxpaykit.simulator.validation import OUT_TRADE_NO, check_notify_url

__all__ = ["routes"]

_TRADE_TYPES = ("JSAPI", "NATIVE", "APP", "MWEB")
_V2_REFUND_STATUS = {
    "SUCCESS": "SUCCESS",
    "CLOSED": "REFUNDCLOSE",
    "PROCESSING": "PROCESSING",
    "ABNORMAL": "CHANGE",
}


class _CommunicationFailure(Exception):
    """``return_code=FAIL``: the request itself is unusable."""


Params = dict[str, str]
V2Handler = Callable[[Simulator, Merchant, Params, Request], Awaitable[Params]]


def _xml_response(params: dict[str, str]) -> Response:
    return Response(content=build_xml(params), media_type="text/xml; charset=utf-8")


def _require(params: Params, *names: str) -> None:
    for name in names:
        if not params.get(name):
            raise _CommunicationFailure(f"缺少参数{name}")


def _fen(params: Params, name: str) -> int:
    value = params.get(name, "")
    if not value.isdigit() or len(value) > 12 or int(value) < 1:
        raise _CommunicationFailure(f"{name}参数格式错误")
    return int(value)


def _fingerprint(params: Params) -> str:
    # nonce_str and sign differ on every retry; the request's meaning does not.
    kept = sorted((k, v) for k, v in params.items() if k not in ("sign", "nonce_str"))
    return hashlib.sha256(repr(kept).encode("utf-8")).hexdigest()


def v2_endpoint(
    handler: V2Handler, *, mutual_tls: bool = False
) -> Callable[[Request], Awaitable[Response]]:
    """Parse, verify, run ``handler`` and answer signed XML."""

    async def endpoint(request: Request) -> Response:
        simulator = simulator_of(request)
        try:
            params = parse_xml(await request.body())
        except MalformedMessageError:
            return _xml_response({"return_code": "FAIL", "return_msg": "XML格式错误"})
        merchant = simulator.merchant(params.get("mch_id", ""))
        if merchant is None:
            return _xml_response({"return_code": "FAIL", "return_msg": "mch_id参数格式错误"})
        try:
            sign_type = verify_v2(params, merchant.apiv2_key)
        except UnsupportedSignatureTypeError:
            return _xml_response({"return_code": "FAIL", "return_msg": "签名类型错误"})
        except (SignatureMismatchError, MalformedMessageError):
            return _xml_response({"return_code": "FAIL", "return_msg": "签名错误"})
        if (
            mutual_tls
            and simulator.config.require_client_certificate
            and not request.scope.get(CLIENT_CERTIFICATE_SCOPE_KEY)
        ):
            return _xml_response(
                {
                    "return_code": "FAIL",
                    "return_msg": "证书已过期或者未上传证书，请使用商户证书双向认证访问",
                }
            )
        answer: Params = {
            "return_code": "SUCCESS",
            "return_msg": "OK",
            "appid": params.get("appid", ""),
            "mch_id": merchant.mchid,
            "nonce_str": generate_nonce(32),
        }
        try:
            if params.get("appid") not in merchant.appids:
                raise PlatformError(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
            answer.update(await handler(simulator, merchant, params, request))
            answer["result_code"] = "SUCCESS"
        except _CommunicationFailure as failure:
            return _xml_response({"return_code": "FAIL", "return_msg": str(failure)})
        except PlatformError as error:
            answer.update(
                {"result_code": "FAIL", "err_code": error.v2_code, "err_code_des": error.message}
            )
        answer["sign"] = sign_v2(answer, merchant.apiv2_key, sign_type)
        return _xml_response(answer)

    return endpoint


def _v2_time(text: str) -> float | None:
    if not text:
        return None
    try:
        moment = dt.datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=BEIJING)
    except ValueError:
        raise _CommunicationFailure("time_expire参数格式错误") from None
    return moment.timestamp()


async def _unifiedorder(
    simulator: Simulator, merchant: Merchant, params: Params, request: Request
) -> Params:
    _require(
        params, "body", "out_trade_no", "total_fee", "spbill_create_ip", "notify_url", "trade_type"
    )
    trade_type = params["trade_type"]
    if trade_type not in _TRADE_TYPES:
        raise _CommunicationFailure("trade_type参数格式错误")
    if trade_type == "JSAPI" and not params.get("openid"):
        raise PlatformError(400, "PARAM_ERROR", "trade_type=JSAPI时（即JSAPI支付），必须传openid")
    if not OUT_TRADE_NO.fullmatch(params["out_trade_no"]):
        raise _CommunicationFailure("out_trade_no参数格式错误")
    try:
        check_notify_url(
            "notify_url", params["notify_url"], allow_any=simulator.config.allow_any_notify_url
        )
    except PlatformError as error:
        raise _CommunicationFailure(f"notify_url参数格式错误：{error.message}") from None
    order = simulator.create_order(
        OrderRequest(
            mchid=merchant.mchid,
            appid=params["appid"],
            out_trade_no=params["out_trade_no"],
            trade_type=trade_type,
            description=params["body"],
            total=_fen(params, "total_fee"),
            currency=params.get("fee_type") or "CNY",
            notify_url=params["notify_url"],
            attach=params.get("attach", ""),
            openid=params.get("openid", ""),
            time_expire=_v2_time(params.get("time_expire", "")),
            api="v2",
            sign_type=params.get("sign_type") or SignType.MD5.value,
            fingerprint=_fingerprint(params),
        )
    )
    answer = {"trade_type": order.trade_type, "prepay_id": order.prepay_id}
    if trade_type == "NATIVE":
        answer["code_url"] = f"weixin://wxpay/bizpayurl?pr={order.code_token}"
    if trade_type == "MWEB":
        base = str(request.base_url).rstrip("/")
        answer["mweb_url"] = f"{base}/sim/cashier?prepay_id={order.prepay_id}"
    return answer


def _find_order(simulator: Simulator, merchant: Merchant, params: Params) -> Order:
    state = simulator.state
    order: Order | None
    if params.get("transaction_id"):
        order = state.order_by_transaction_id(params["transaction_id"])
        if order is not None and (order.mchid != merchant.mchid or order.trade_state == "NOTPAY"):
            order = None
    elif params.get("out_trade_no"):
        order = state.order_by_out_trade_no(merchant.mchid, "", params["out_trade_no"])
    else:
        raise _CommunicationFailure("缺少参数transaction_id或out_trade_no")
    if order is None:
        raise PlatformError(404, "ORDER_NOT_EXIST", "order not exist", v2_code="ORDERNOTEXIST")
    return order


async def _orderquery(
    simulator: Simulator, merchant: Merchant, params: Params, request: Request
) -> Params:
    order = _find_order(simulator, merchant, params)
    answer = {
        "out_trade_no": order.out_trade_no,
        "trade_state": order.trade_state,
        "trade_state_desc": TRADE_STATE_DESC.get(order.trade_state, order.trade_state),
        "total_fee": str(order.total),
        "fee_type": order.currency,
    }
    if order.trade_state in ("SUCCESS", "REFUND"):
        answer.update(
            {
                "openid": order.openid,
                "is_subscribe": "N",
                "trade_type": order.trade_type,
                "bank_type": "OTHERS",
                "cash_fee": str(order.total),
                "transaction_id": order.transaction_id,
                "time_end": format_v2_time(order.success_time or order.created_at),
            }
        )
        if order.attach:
            answer["attach"] = order.attach
    return answer


async def _closeorder(
    simulator: Simulator, merchant: Merchant, params: Params, request: Request
) -> Params:
    _require(params, "out_trade_no")
    simulator.close_order(
        _find_order(simulator, merchant, {"out_trade_no": params["out_trade_no"]})
    )
    return {}


async def _refund(
    simulator: Simulator, merchant: Merchant, params: Params, request: Request
) -> Params:
    _require(params, "out_refund_no", "total_fee", "refund_fee")
    order = _find_order(simulator, merchant, params)
    notify_url = params.get("notify_url", "")
    if notify_url:
        try:
            check_notify_url(
                "notify_url", notify_url, allow_any=simulator.config.allow_any_notify_url
            )
        except PlatformError as error:
            raise _CommunicationFailure(f"notify_url参数格式错误：{error.message}") from None
    refund = simulator.create_refund(
        order,
        out_refund_no=params["out_refund_no"],
        refund=_fen(params, "refund_fee"),
        total=_fen(params, "total_fee"),
        reason=params.get("refund_desc", ""),
        notify_url=notify_url,
        api="v2",
        fingerprint=_fingerprint(params),
    )
    return {
        "transaction_id": order.transaction_id,
        "out_trade_no": order.out_trade_no,
        "out_refund_no": refund.out_refund_no,
        "refund_id": refund.refund_id,
        "refund_fee": str(refund.refund),
        "settlement_refund_fee": str(refund.refund),
        "total_fee": str(order.total),
        "cash_fee": str(order.total),
        "cash_refund_fee": str(refund.refund),
        "coupon_refund_fee": "0",
        "coupon_refund_count": "0",
    }


async def _refundquery(
    simulator: Simulator, merchant: Merchant, params: Params, request: Request
) -> Params:
    state = simulator.state
    refunds: list[Refund]
    if params.get("refund_id") or params.get("out_refund_no"):
        found = (
            state.refund_by_refund_id(params["refund_id"])
            if params.get("refund_id")
            else state.refund_by_out_refund_no(merchant.mchid, "", params["out_refund_no"])
        )
        refunds = [found] if found is not None and found.mchid == merchant.mchid else []
        order = state.order_by_id(refunds[0].order_id) if refunds else None
    else:
        order = _find_order(simulator, merchant, params)
        refunds = state.refunds_of_order(order.id)
    if order is None or not refunds:
        raise PlatformError(404, "RESOURCE_NOT_EXISTS", "not exist", v2_code="REFUNDNOTEXIST")
    answer = {
        "transaction_id": order.transaction_id,
        "out_trade_no": order.out_trade_no,
        "total_fee": str(order.total),
        "cash_fee": str(order.total),
        "total_refund_count": str(len(refunds)),
        "refund_count": str(len(refunds)),
    }
    for n, refund in enumerate(refunds):
        answer.update(
            {
                f"out_refund_no_{n}": refund.out_refund_no,
                f"refund_id_{n}": refund.refund_id,
                f"refund_channel_{n}": "ORIGINAL",
                f"refund_fee_{n}": str(refund.refund),
                f"refund_status_{n}": _V2_REFUND_STATUS[refund.status],
                f"refund_recv_accout_{n}": "支付用户零钱",
            }
        )
        if refund.success_time is not None:
            answer[f"refund_success_time_{n}"] = dt.datetime.fromtimestamp(
                refund.success_time, BEIJING
            ).strftime("%Y-%m-%d %H:%M:%S")
    return answer


def routes() -> list[Route]:
    """The APIv2 routes."""
    return [
        Route("/pay/unifiedorder", v2_endpoint(_unifiedorder), methods=["POST"]),
        Route("/pay/orderquery", v2_endpoint(_orderquery), methods=["POST"]),
        Route("/pay/closeorder", v2_endpoint(_closeorder), methods=["POST"]),
        Route("/secapi/pay/refund", v2_endpoint(_refund, mutual_tls=True), methods=["POST"]),
        Route("/pay/refundquery", v2_endpoint(_refundquery), methods=["POST"]),
    ]
