"""APIv3 endpoints at WeChat's paths: prepay, query, close, refunds, certificates.

Direct-merchant and partner (服务商) variants share one implementation; the partner
variant names ``sp_mchid``/``sub_mchid`` and ``sp_appid``/``sub_appid`` (§7.9).
"""

from __future__ import annotations

import secrets
from typing import Any

from starlette.routing import Route

from wxpaykit.core.crypto import aes_gcm_seal
from wxpaykit.core.signing import generate_nonce
from wxpaykit.simulator.clock import format_rfc3339
from wxpaykit.simulator.endpoint import V3Call, v3_endpoint
from wxpaykit.simulator.notifications import refund_api_object, transaction_resource
from wxpaykit.simulator.order_book import OrderRequest
from wxpaykit.simulator.platform_errors import PlatformError, param_error
from wxpaykit.simulator.state import Order
from wxpaykit.simulator.validation import (
    OUT_REFUND_NO,
    OUT_TRADE_NO,
    check_notify_url,
    optional_str,
    parse_rfc3339,
    pointer_get,
    required_int,
    required_str,
)

__all__ = ["routes"]

_TRADE_TYPES = {"jsapi": "JSAPI", "app": "APP", "h5": "MWEB", "native": "NATIVE"}
_NO_CERTIFICATE = (
    "无可用的平台证书，请在商户平台-API安全申请使用微信支付公钥。"
    "可查看指引https://pay.weixin.qq.com/docs/merchant/products/platform-certificate/wxp-pub-key-guide.html"
)


def _order_not_exist() -> PlatformError:
    return PlatformError(404, "ORDER_NOT_EXIST", "订单不存在")


def _check_own_mchid(call: V3Call, pointer: str, mchid: str, *, location: str = "body") -> None:
    if mchid != call.merchant.mchid:
        raise param_error(pointer, "商户号与Authorization中的mchid不一致", location=location)


def _prepay_request(call: V3Call, kind: str, *, partner: bool) -> OrderRequest:
    doc = call.json()
    merchant = call.merchant
    if partner:
        appid = required_str(doc, "/sp_appid")
        _check_own_mchid(call, "/sp_mchid", required_str(doc, "/sp_mchid"))
        sub_mchid = required_str(doc, "/sub_mchid")
        sub_appid = optional_str(doc, "/sub_appid")
    else:
        appid = required_str(doc, "/appid")
        _check_own_mchid(call, "/mchid", required_str(doc, "/mchid"))
        sub_mchid = sub_appid = ""
    if appid not in merchant.appids:
        raise PlatformError(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
    notify_url = required_str(doc, "/notify_url")
    check_notify_url(
        "/notify_url", notify_url, allow_any=call.simulator.config.allow_any_notify_url
    )
    currency = optional_str(doc, "/amount/currency") or "CNY"
    if currency != "CNY":
        raise param_error("/amount/currency", "Currency code is invalid", value=currency)
    time_expire = optional_str(doc, "/time_expire")
    openid = sub_openid = ""
    if kind == "jsapi":
        if partner:
            openid = optional_str(doc, "/payer/sp_openid")
            sub_openid = optional_str(doc, "/payer/sub_openid")
            if sub_openid and not sub_appid:
                raise param_error("/sub_appid", "传sub_openid时必须传sub_appid")
        else:
            openid = optional_str(doc, "/payer/openid")
        if not (openid or sub_openid):
            raise param_error("/payer/openid", "JSAPI支付必须传openid")
    scene_info = pointer_get(doc, "/scene_info")
    if kind == "h5":
        required_str(doc, "/scene_info/payer_client_ip")
        required_str(doc, "/scene_info/h5_info/type")
    return OrderRequest(
        mchid=merchant.mchid,
        sub_mchid=sub_mchid,
        appid=appid,
        sub_appid=sub_appid,
        out_trade_no=required_str(doc, "/out_trade_no", pattern=OUT_TRADE_NO),
        trade_type=_TRADE_TYPES[kind],
        description=required_str(doc, "/description", max_length=127),
        total=required_int(doc, "/amount/total", minimum=1),
        currency=currency,
        notify_url=notify_url,
        attach=optional_str(doc, "/attach", max_length=128),
        openid=openid,
        sub_openid=sub_openid,
        time_expire=parse_rfc3339("/time_expire", time_expire) if time_expire else None,
        scene_info=scene_info if isinstance(scene_info, dict) else None,
        fingerprint=call.fingerprint(),
    )


def _prepay_answer(call: V3Call, order: Order) -> dict[str, str]:
    if order.trade_type == "NATIVE":
        return {"code_url": f"weixin://wxpay/bizpayurl?pr={order.code_token}"}
    if order.trade_type == "MWEB":
        package = secrets.token_hex(5)
        return {
            "h5_url": f"{call.base_url}/sim/cashier?prepay_id={order.prepay_id}&package={package}"
        }
    return {"prepay_id": order.prepay_id}


def _prepay(kind: str, *, partner: bool) -> Route:
    async def handler(call: V3Call) -> dict[str, str]:
        order = call.simulator.create_order(_prepay_request(call, kind, partner=partner))
        return _prepay_answer(call, order)

    prefix = "/v3/pay/partner/transactions" if partner else "/v3/pay/transactions"
    return Route(f"{prefix}/{kind}", v3_endpoint(handler), methods=["POST"])


def _owner(call: V3Call, *, partner: bool) -> str:
    """Check the merchant query parameters; return the sub_mchid ("" for direct)."""
    if partner:
        _check_own_mchid(call, "sp_mchid", call.query("sp_mchid"), location="query")
        return call.query("sub_mchid")
    _check_own_mchid(call, "mchid", call.query("mchid"), location="query")
    return ""


def _find_by_id(call: V3Call, sub_mchid: str) -> Order:
    order = call.simulator.state.order_by_transaction_id(call.path("transaction_id"))
    if order is None or order.mchid != call.merchant.mchid or order.sub_mchid != sub_mchid:
        raise _order_not_exist()
    if order.trade_state not in ("SUCCESS", "REFUND"):
        # Unpaid orders have no transaction id yet, as far as the merchant knows.
        raise _order_not_exist()
    return order


def _find_by_out_trade_no(call: V3Call, sub_mchid: str) -> Order:
    order = call.simulator.state.order_by_out_trade_no(
        call.merchant.mchid, sub_mchid, call.path("out_trade_no")
    )
    if order is None:
        raise _order_not_exist()
    return order


def _query_routes(*, partner: bool) -> list[Route]:
    prefix = "/v3/pay/partner/transactions" if partner else "/v3/pay/transactions"

    async def by_id(call: V3Call) -> dict[str, Any]:
        return transaction_resource(_find_by_id(call, _owner(call, partner=partner)))

    async def by_out_trade_no(call: V3Call) -> dict[str, Any]:
        return transaction_resource(_find_by_out_trade_no(call, _owner(call, partner=partner)))

    async def close(call: V3Call) -> None:
        doc = call.json()
        if partner:
            _check_own_mchid(call, "/sp_mchid", required_str(doc, "/sp_mchid"))
            sub_mchid = required_str(doc, "/sub_mchid")
        else:
            _check_own_mchid(call, "/mchid", required_str(doc, "/mchid"))
            sub_mchid = ""
        call.simulator.close_order(_find_by_out_trade_no(call, sub_mchid))

    return [
        Route(f"{prefix}/id/{{transaction_id}}", v3_endpoint(by_id), methods=["GET"]),
        Route(
            f"{prefix}/out-trade-no/{{out_trade_no}}", v3_endpoint(by_out_trade_no), methods=["GET"]
        ),
        Route(
            f"{prefix}/out-trade-no/{{out_trade_no}}/close",
            v3_endpoint(close, status=204),
            methods=["POST"],
        ),
    ]


async def _create_refund(call: V3Call) -> dict[str, Any]:
    doc = call.json()
    sub_mchid = optional_str(doc, "/sub_mchid")
    transaction_id = optional_str(doc, "/transaction_id")
    out_trade_no = optional_str(doc, "/out_trade_no")
    if not (transaction_id or out_trade_no):
        raise param_error("/out_trade_no", "transaction_id和out_trade_no必须二选一")
    out_refund_no = required_str(doc, "/out_refund_no", pattern=OUT_REFUND_NO)
    refund = required_int(doc, "/amount/refund", minimum=1)
    total = required_int(doc, "/amount/total", minimum=1)
    currency = required_str(doc, "/amount/currency")
    if currency != "CNY":
        raise param_error("/amount/currency", "Currency code is invalid", value=currency)
    notify_url = optional_str(doc, "/notify_url")
    if notify_url:
        check_notify_url(
            "/notify_url", notify_url, allow_any=call.simulator.config.allow_any_notify_url
        )
    state = call.simulator.state
    if transaction_id:
        order = state.order_by_transaction_id(transaction_id)
        if order is not None and (
            order.mchid != call.merchant.mchid or order.sub_mchid != sub_mchid
        ):
            order = None
    else:
        order = state.order_by_out_trade_no(call.merchant.mchid, sub_mchid, out_trade_no)
    if order is None:
        raise _order_not_exist()
    created = call.simulator.create_refund(
        order,
        out_refund_no=out_refund_no,
        refund=refund,
        total=total,
        reason=optional_str(doc, "/reason", max_length=80),
        notify_url=notify_url,
        funds_account=optional_str(doc, "/funds_account"),
        fingerprint=call.fingerprint(),
    )
    return refund_api_object(created, order)


async def _query_refund(call: V3Call) -> dict[str, Any]:
    sub_mchid = call.query("sub_mchid", required=False)
    state = call.simulator.state
    refund = state.refund_by_out_refund_no(
        call.merchant.mchid, sub_mchid, call.path("out_refund_no")
    )
    order = state.order_by_id(refund.order_id) if refund is not None else None
    if refund is None or order is None:
        raise PlatformError(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
    return refund_api_object(refund, order)


async def _certificates(call: V3Call) -> dict[str, Any]:
    algorithm = call.query("algorithm_type", required=False) or "RSA"
    if algorithm not in ("RSA", "SM2", "ALL"):
        raise param_error("algorithm_type", "取值应为 RSA、SM2 或 ALL", location="query")
    merchant = call.merchant
    if not merchant.has_certificates:
        raise PlatformError(404, "RESOURCE_NOT_EXISTS", _NO_CERTIFICATE)
    if algorithm == "SM2":
        return {"data": []}
    data = []
    for entry in merchant.platform_certificates:
        nonce = generate_nonce(12)
        data.append(
            {
                "serial_no": entry.serial_no,
                "effective_time": format_rfc3339(
                    entry.certificate.not_valid_before_utc.timestamp()
                ),
                "expire_time": format_rfc3339(entry.certificate.not_valid_after_utc.timestamp()),
                "encrypt_certificate": {
                    "algorithm": "AEAD_AES_256_GCM",
                    "nonce": nonce,
                    "associated_data": "certificate",
                    "ciphertext": aes_gcm_seal(
                        merchant.apiv3_key,
                        nonce=nonce,
                        associated_data="certificate",
                        plaintext=entry.certificate_pem,
                    ),
                },
            }
        )
    return {"data": data}


def routes() -> list[Route]:
    """Every APIv3 route except bills."""
    found: list[Route] = []
    for partner in (False, True):
        found.extend(_prepay(kind, partner=partner) for kind in _TRADE_TYPES)
        found.extend(_query_routes(partner=partner))
    found.extend(
        [
            Route("/v3/refund/domestic/refunds", v3_endpoint(_create_refund), methods=["POST"]),
            Route(
                "/v3/refund/domestic/refunds/{out_refund_no}",
                v3_endpoint(_query_refund),
                methods=["GET"],
            ),
            Route("/v3/certificates", v3_endpoint(_certificates), methods=["GET"]),
        ]
    )
    return found
