"""Client-side payment parameters (§7.2): known answers V3 (JSAPI) and V4 (APP)."""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from wxpaykit.core.payment_params import app_pay_params, jsapi_pay_params


def test_v3_jsapi_pay_sign_is_the_official_one(
    vectors: dict[str, Any], official_private_key: rsa.RSAPrivateKey
) -> None:
    v3 = vectors["V3"]
    params = jsapi_pay_params(
        appid=v3["appid"],
        prepay_id=v3["prepay_id"],
        private_key=official_private_key,
        timestamp=v3["timestamp"],
        nonce=v3["nonce"],
    )
    assert params == {
        "appId": "wx2421b1c4370ec43b",
        "timeStamp": "1554208460",
        "nonceStr": "593BEC0C930BF1AFEB40B4A08C8FB242",
        "package": "prepay_id=wx201410272009395522657a690389285100",
        "signType": "RSA",
        "paySign": v3["signature"],
    }


def test_v4_app_sign_is_the_official_one(
    vectors: dict[str, Any], official_private_key: rsa.RSAPrivateKey
) -> None:
    v4 = vectors["V4"]
    params = app_pay_params(
        appid=v4["appid"],
        mchid="1900007291",
        prepay_id=v4["prepay_id"],
        private_key=official_private_key,
        timestamp=v4["timestamp"],
        nonce=v4["nonce"],
    )
    assert params == {
        "appId": "wx2421b1c4370ec43b",
        "partnerId": "1900007291",
        "prepayId": "wx201410272009395522657a690389285100",
        "packageValue": "Sign=WXPay",
        "nonceStr": "593BEC0C930BF1AFEB40B4A08C8FB242",
        "timeStamp": "1554208460",
        "sign": v4["signature"],
    }


def test_signed_messages_differ_only_in_the_fourth_line(
    vectors: dict[str, Any], official_public_key: rsa.RSAPublicKey
) -> None:
    # JSAPI signs "prepay_id=<id>", APP the bare id (§10 pitfall 11).
    for vector in (vectors["V3"], vectors["V4"]):
        official_public_key.verify(
            base64.b64decode(vector["signature"]),
            vector["message"].encode(),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    assert vectors["V3"]["message"].replace("prepay_id=", "") == vectors["V4"]["message"]
