"""Build APIv3 notifications as WeChat Pay sends them: sealed resource, signed raw body.

Used by tests, the benchmark and the doctor's examples. The body is the compact JSON
with WeChat's key order (protocol reference §6.2) and the headers are the five
``Wechatpay-*`` headers over exactly those bytes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from wxpaykit.core.crypto import ApiV3Key, aes_gcm_seal
from wxpaykit.core.signing import generate_nonce, sign_response_headers

__all__ = [
    "SealedNotification",
    "sample_refund",
    "sample_transaction",
    "seal_notification",
]

_SUMMARIES = {
    "TRANSACTION.SUCCESS": "支付成功",
    "REFUND.SUCCESS": "退款成功",
    "REFUND.ABNORMAL": "退款异常",
    "REFUND.CLOSED": "退款关闭",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class SealedNotification:
    """A notification ready to POST: the headers and the exact body bytes."""

    headers: dict[str, str]
    body: bytes = field(repr=False)


def sample_transaction(**overrides: Any) -> dict[str, Any]:
    """The decrypted resource of a successful JSAPI payment (the V6 plaintext's fields)."""
    resource: dict[str, Any] = {
        "mchid": "1900007291",
        "appid": "wxd678efh567hg6787",
        "out_trade_no": "1217752501201407033233368018",
        "transaction_id": "4200000985202103031441826014",
        "trade_type": "JSAPI",
        "trade_state": "SUCCESS",
        "trade_state_desc": "支付成功",
        "bank_type": "OTHERS",
        "attach": "",
        "success_time": "2021-03-03T14:41:56+08:00",
        "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
        "amount": {"total": 100, "payer_total": 100, "currency": "CNY", "payer_currency": "CNY"},
    }
    resource.update(overrides)
    return resource


def sample_refund(**overrides: Any) -> dict[str, Any]:
    """The decrypted resource of a successful refund (protocol reference §6.4)."""
    resource: dict[str, Any] = {
        "mchid": "1900007291",
        "transaction_id": "4200000985202103031441826014",
        "out_trade_no": "1217752501201407033233368018",
        "refund_id": "50000000382019052709732678859",
        "out_refund_no": "1217752501201407033233368018",
        "refund_status": "SUCCESS",
        "success_time": "2021-03-04T10:00:00+08:00",
        "user_received_account": "招商银行信用卡0403",
        "amount": {"total": 100, "refund": 100, "payer_total": 100, "payer_refund": 100},
    }
    resource.update(overrides)
    return resource


def seal_notification(
    resource: Mapping[str, Any] | bytes,
    *,
    apiv3_key: ApiV3Key | bytes | str,
    signing_key: rsa.RSAPrivateKey,
    serial: str,
    timestamp: int,
    event_type: str = "TRANSACTION.SUCCESS",
    original_type: str | None = None,
    associated_data: str | None = None,
    notification_id: str | None = None,
    create_time: str = "2021-03-03T14:41:57+08:00",
    resource_nonce: str | None = None,
    header_nonce: str | None = None,
) -> SealedNotification:
    """Encrypt ``resource`` under the APIv3 key and sign the envelope like WeChat Pay.

    ``original_type`` and ``associated_data`` default from ``event_type``
    (``transaction`` for ``TRANSACTION.*``, ``refund`` for ``REFUND.*``).
    """
    kind = event_type.split(".", 1)[0].lower()
    original = kind if original_type is None else original_type
    aad = kind if associated_data is None else associated_data
    plaintext = (
        resource
        if isinstance(resource, bytes)
        else json.dumps(resource, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    )
    nonce = resource_nonce or generate_nonce(12)
    envelope = {
        "id": notification_id or str(uuid.uuid4()),
        "create_time": create_time,
        "resource_type": "encrypt-resource",
        "event_type": event_type,
        "summary": _SUMMARIES.get(event_type, ""),
        "resource": {
            "original_type": original,
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": aes_gcm_seal(
                apiv3_key, nonce=nonce, associated_data=aad, plaintext=plaintext
            ),
            "associated_data": aad,
            "nonce": nonce,
        },
    }
    body = json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    headers = sign_response_headers(
        body=body,
        private_key=signing_key,
        serial=serial,
        timestamp=timestamp,
        nonce=header_nonce or generate_nonce(),
    )
    return SealedNotification(headers=headers, body=body)
