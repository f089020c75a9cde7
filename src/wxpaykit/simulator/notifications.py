"""Notification bodies exactly as the platform sends them (protocol reference §6, §9.3, §9.4).

APIv3: a compact JSON envelope whose ``resource`` is the transaction or refund object
sealed with AES-256-GCM under the merchant's APIv3key (12-character nonce, associated
data always present); headers are signed per attempt. APIv2: signed payment XML, and
refund XML whose ``req_info`` is AES-256-ECB encrypted.

These are pure functions of their inputs, so the testing kit can build notifications
without a running simulator.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from wxpaykit.core.crypto import aes_gcm_seal
from wxpaykit.core.signing import generate_nonce
from wxpaykit.core.v2 import SignType, build_xml, encrypt_req_info, sign_v2
from wxpaykit.simulator.clock import format_rfc3339, format_v2_time
from wxpaykit.simulator.state import Order, Refund

__all__ = [
    "SUMMARIES",
    "TRADE_STATE_DESC",
    "build_envelope",
    "compact_json",
    "new_notification_id",
    "refund_api_object",
    "refund_resource",
    "transaction_resource",
    "v2_payment_xml",
    "v2_refund_xml",
]

SUMMARIES = {
    "TRANSACTION.SUCCESS": "支付成功",
    "REFUND.SUCCESS": "退款成功",
    "REFUND.ABNORMAL": "退款异常",
    "REFUND.CLOSED": "退款关闭",
}

TRADE_STATE_DESC = {
    "SUCCESS": "支付成功",
    "REFUND": "订单发生过退款",
    "NOTPAY": "订单未支付",
    "CLOSED": "订单已关闭",
    "PAYERROR": "支付失败，请重新下单支付",
}


def compact_json(document: Any) -> bytes:
    """Compact UTF-8 JSON, as the platform writes it (no spaces, no ASCII escapes)."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def new_notification_id() -> str:
    """A UUID-shaped notification id, like the ids seen on real notifications."""
    return str(uuid.uuid4())


def transaction_resource(order: Order) -> dict[str, Any]:
    """The transaction object (§6.3): notification resource and query answer alike."""
    doc: dict[str, Any] = {}
    if order.is_partner:
        doc["sp_appid"] = order.appid
        doc["sp_mchid"] = order.mchid
        if order.sub_appid:
            doc["sub_appid"] = order.sub_appid
        doc["sub_mchid"] = order.sub_mchid
    else:
        doc["appid"] = order.appid
        doc["mchid"] = order.mchid
    doc["out_trade_no"] = order.out_trade_no
    paid = order.trade_state in ("SUCCESS", "REFUND")
    if paid:
        doc["transaction_id"] = order.transaction_id
        doc["trade_type"] = order.trade_type
    doc["trade_state"] = order.trade_state
    doc["trade_state_desc"] = TRADE_STATE_DESC.get(order.trade_state, order.trade_state)
    if paid:
        doc["bank_type"] = "OTHERS"
        if order.attach:
            doc["attach"] = order.attach
        if order.success_time is not None:
            doc["success_time"] = format_rfc3339(order.success_time)
        if order.is_partner:
            payer = {"sp_openid": order.openid}
            if order.sub_openid:
                payer["sub_openid"] = order.sub_openid
            doc["payer"] = payer
        else:
            doc["payer"] = {"openid": order.openid}
        doc["amount"] = {
            "total": order.total,
            "payer_total": order.total,
            "currency": order.currency,
            "payer_currency": order.currency,
        }
    else:
        doc["amount"] = {"total": order.total, "currency": order.currency, "payer_currency": "CNY"}
    return doc


def refund_resource(refund: Refund, order: Order) -> dict[str, Any]:
    """The decrypted ``REFUND.*`` resource (§6.4): note ``refund_status``, not ``status``."""
    doc: dict[str, Any] = {}
    if order.is_partner:
        doc["sp_mchid"] = order.mchid
        doc["sub_mchid"] = order.sub_mchid
    else:
        doc["mchid"] = order.mchid
    doc.update(
        {
            "transaction_id": order.transaction_id,
            "out_trade_no": order.out_trade_no,
            "refund_id": refund.refund_id,
            "out_refund_no": refund.out_refund_no,
            "refund_status": refund.status,
        }
    )
    if refund.success_time is not None:
        doc["success_time"] = format_rfc3339(refund.success_time)
    doc["user_received_account"] = "支付用户零钱"
    doc["amount"] = {
        "total": refund.total,
        "refund": refund.refund,
        "payer_total": refund.total,
        "payer_refund": refund.refund,
    }
    return doc


def refund_api_object(refund: Refund, order: Order) -> dict[str, Any]:
    """The Refund object of the refund create and query APIs (§7.5)."""
    doc: dict[str, Any] = {
        "refund_id": refund.refund_id,
        "out_refund_no": refund.out_refund_no,
        "transaction_id": order.transaction_id,
        "out_trade_no": order.out_trade_no,
        "channel": "ORIGINAL",
        "user_received_account": "支付用户零钱",
    }
    if refund.success_time is not None:
        doc["success_time"] = format_rfc3339(refund.success_time)
    doc.update(
        {
            "create_time": format_rfc3339(refund.created_at),
            "status": refund.status,
            "funds_account": refund.funds_account or "UNSETTLED",
            "amount": {
                "total": refund.total,
                "refund": refund.refund,
                "from": [],
                "payer_total": refund.total,
                "payer_refund": refund.refund,
                "settlement_refund": refund.refund,
                "settlement_total": refund.total,
                "discount_refund": 0,
                "currency": "CNY",
            },
            "promotion_detail": [],
        }
    )
    return doc


def build_envelope(
    event_type: str,
    resource: dict[str, Any],
    apiv3_key: str,
    *,
    notification_id: str,
    create_time: float,
    nonce: str | None = None,
) -> bytes:
    """The compact APIv3 envelope (§6.2), key order as on the wire."""
    original_type = "refund" if event_type.startswith("REFUND.") else "transaction"
    resource_nonce = nonce or generate_nonce(12)
    ciphertext = aes_gcm_seal(
        apiv3_key,
        nonce=resource_nonce,
        associated_data=original_type,
        plaintext=compact_json(resource),
    )
    return compact_json(
        {
            "id": notification_id,
            "create_time": format_rfc3339(create_time),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": SUMMARIES.get(event_type, event_type),
            "resource": {
                "original_type": original_type,
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": ciphertext,
                "associated_data": original_type,
                "nonce": resource_nonce,
            },
        }
    )


def v2_payment_xml(order: Order, *, apiv2_key: str, nonce: str | None = None) -> bytes:
    """The signed APIv2 payment notification (§9.3), in the order's sign type."""
    sign_type = SignType(order.sign_type or "MD5")
    params: dict[str, str] = {
        "appid": order.appid,
        "bank_type": "OTHERS",
        "cash_fee": str(order.total),
        "fee_type": order.currency,
        "is_subscribe": "N",
        "mch_id": order.mchid,
        "nonce_str": nonce or generate_nonce(32),
        "openid": order.openid,
        "out_trade_no": order.out_trade_no,
        "result_code": "SUCCESS",
        "return_code": "SUCCESS",
        "time_end": format_v2_time(order.success_time or order.created_at),
        "total_fee": str(order.total),
        "trade_type": order.trade_type,
        "transaction_id": order.transaction_id,
    }
    if order.attach:
        params["attach"] = order.attach
    if sign_type is SignType.HMAC_SHA256:
        params["sign_type"] = sign_type.value
    params["sign"] = sign_v2(params, apiv2_key, sign_type)
    return build_xml(params)


def _refund_plaintext(refund: Refund, order: Order) -> bytes:
    status = {"SUCCESS": "SUCCESS", "ABNORMAL": "CHANGE", "CLOSED": "REFUNDCLOSE"}[refund.status]
    fields = {
        "out_refund_no": refund.out_refund_no,
        "out_trade_no": order.out_trade_no,
        "refund_account": "REFUND_SOURCE_UNSETTLED_FUNDS",
        "refund_fee": str(refund.refund),
        "refund_id": refund.refund_id,
        "refund_recv_accout": "支付用户零钱",
        "refund_request_source": "API",
        "refund_status": status,
        "settlement_refund_fee": str(refund.refund),
        "settlement_total_fee": str(refund.total),
        "success_time": (
            _v2_success_time(refund.success_time) if refund.success_time is not None else ""
        ),
        "total_fee": str(refund.total),
        "transaction_id": order.transaction_id,
    }
    lines = [f"<{key}><![CDATA[{value}]]></{key}>" for key, value in sorted(fields.items())]
    return ("<root>\n" + "\n".join(lines) + "\n</root>").encode("utf-8")


def _v2_success_time(timestamp: float) -> str:
    text = format_v2_time(timestamp)
    return f"{text[0:4]}-{text[4:6]}-{text[6:8]} {text[8:10]}:{text[10:12]}:{text[12:14]}"


def v2_refund_xml(refund: Refund, order: Order, *, appid: str, apiv2_key: str) -> bytes:
    """The APIv2 refund notification (§9.4): no ``sign``; ``req_info`` is encrypted."""
    return build_xml(
        {
            "return_code": "SUCCESS",
            "appid": appid,
            "mch_id": order.mchid,
            "nonce_str": generate_nonce(32),
            "req_info": encrypt_req_info(_refund_plaintext(refund, order), apiv2_key),
        }
    )
