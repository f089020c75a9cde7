"""Client-side payment parameters (调起支付, protocol reference §7.2).

The front end needs a signature made with the merchant's API private key:

* JSAPI and mini-program: ``appId\\ntimeStamp\\nnonceStr\\npackage\\n`` where ``package``
  is ``prepay_id=<id>``; ``signType`` is ``RSA`` and is not signed.
* APP: ``appId\\ntimeStamp\\nnonceStr\\nprepayId\\n`` with the *bare* prepay id.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import rsa

from wxpaykit.core.signing import sign_message

__all__ = ["app_pay_params", "jsapi_pay_params"]


def _lines(*values: str) -> bytes:
    return "".join(f"{value}\n" for value in values).encode("utf-8")


def jsapi_pay_params(
    *,
    appid: str,
    prepay_id: str,
    private_key: rsa.RSAPrivateKey,
    timestamp: int,
    nonce: str,
) -> dict[str, str]:
    """Parameters for ``WeixinJSBridge.invoke('getBrandWCPayRequest')`` / ``wx.requestPayment``."""
    package = f"prepay_id={prepay_id}"
    signature = sign_message(_lines(appid, str(timestamp), nonce, package), private_key)
    return {
        "appId": appid,
        "timeStamp": str(timestamp),
        "nonceStr": nonce,
        "package": package,
        "signType": "RSA",
        "paySign": signature,
    }


def app_pay_params(
    *,
    appid: str,
    mchid: str,
    prepay_id: str,
    private_key: rsa.RSAPrivateKey,
    timestamp: int,
    nonce: str,
) -> dict[str, str]:
    """Parameters for the APP OpenSDK ``PayReq`` (``packageValue`` is ``Sign=WXPay``)."""
    signature = sign_message(_lines(appid, str(timestamp), nonce, prepay_id), private_key)
    return {
        "appId": appid,
        "partnerId": mchid,
        "prepayId": prepay_id,
        "packageValue": "Sign=WXPay",
        "nonceStr": nonce,
        "timeStamp": str(timestamp),
        "sign": signature,
    }
