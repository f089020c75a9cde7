"""APIv2 ``sign``: MD5 or HMAC-SHA256 over sorted parameters (protocol reference §9.1, §9.5).

The message is built in two steps so tests can compare each with the documentation:

1. :func:`build_sign_string`: drop ``sign`` and empty values, sort the keys, join raw
   ``key=value`` pairs with ``&`` (no URL-encoding) → ``stringA``.
2. ``stringA + "&key=" + api_key`` is hashed: ``MD5(message)`` or
   ``HMAC-SHA256(key=api_key, message)``, written as upper-case hex.

``sign_type`` is an ordinary parameter and is therefore itself signed when present.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from enum import StrEnum

from wxpaykit.errors import (
    MalformedMessageError,
    SignatureMismatchError,
    UnsupportedSignatureTypeError,
)

__all__ = [
    "SignType",
    "app_pay_params_v2",
    "build_sign_string",
    "jsapi_pay_params_v2",
    "sign_v2",
    "verify_v2",
]


class SignType(StrEnum):
    """The APIv2 signature algorithms; the wire value is the ``sign_type`` parameter."""

    MD5 = "MD5"
    HMAC_SHA256 = "HMAC-SHA256"


def build_sign_string(params: Mapping[str, str]) -> str:
    """Return ``stringA``: ``k1=v1&k2=v2...`` over every non-empty parameter except ``sign``.

    Keys are sorted in ASCII byte order. Python orders ``str`` by code point, which is
    the same order as their UTF-8 bytes, so a plain ``sorted`` is exact. Values are
    joined raw: no URL-encoding, no trimming.
    """
    signed_keys = sorted(key for key, value in params.items() if key != "sign" and value != "")
    return "&".join(f"{key}={params[key]}" for key in signed_keys)


def sign_v2(params: Mapping[str, str], api_key: str, sign_type: SignType) -> str:
    """Return the upper-case hex ``sign`` of ``params`` under the 32-character APIv2 key.

    The parameters are signed as given: for HMAC-SHA256 the platform also expects
    ``sign_type=HMAC-SHA256`` among them, which the caller adds.
    """
    _require_api_key(api_key)
    return _digest(build_sign_string(params), api_key, sign_type)


def verify_v2(
    params: Mapping[str, str],
    api_key: str,
    *,
    sign_type: SignType | None = None,
    try_both: bool = False,
) -> SignType:
    """Check ``params["sign"]`` and return the algorithm that matched.

    ``sign_type`` is the algorithm the merchant chose for the order. When it is
    ``None`` the message's own ``sign_type`` parameter decides, defaulting to MD5 as
    the platform does for orders placed without one. ``try_both`` also accepts an MD5
    signature where HMAC-SHA256 is expected: merchants report occasional MD5-signed
    notifications for HMAC orders (§9.1, community reports), and a caller who sees
    them can opt in here.

    Raises:
        MalformedMessageError: ``sign`` is absent or empty.
        UnsupportedSignatureTypeError: the message names an algorithm other than
            ``MD5`` or ``HMAC-SHA256`` (only when ``sign_type`` is ``None``).
        SignatureMismatchError: no accepted algorithm reproduces ``sign``.
    """
    _require_api_key(api_key)
    received_sign = params.get("sign", "")
    if received_sign == "":
        raise MalformedMessageError("the APIv2 message has no sign")
    expected_type = sign_type if sign_type is not None else _declared_sign_type(params)
    candidates = [expected_type]
    if try_both and expected_type is SignType.HMAC_SHA256:
        candidates.append(SignType.MD5)
    sign_string = build_sign_string(params)
    # surrogatepass: compare_digest refuses non-ASCII str, and a caller-supplied
    # mapping may hold anything; bytes compare safely and simply fail to match.
    received = received_sign.encode("utf-8", "surrogatepass")
    for candidate in candidates:
        expected = _digest(sign_string, api_key, candidate).encode("ascii")
        if hmac.compare_digest(expected, received):
            return candidate
    raise SignatureMismatchError(f"the APIv2 sign does not match ({expected_type.value})")


def jsapi_pay_params_v2(
    appid: str,
    prepay_id: str,
    *,
    api_key: str,
    sign_type: SignType,
    timestamp: int,
    nonce_str: str,
) -> dict[str, str]:
    """Return the JSAPI / mini-program ``requestPayment`` parameters, ``paySign`` included.

    The five camelCase keys are signed with the §9.1 algorithm (§9.5); ``timestamp`` is
    in seconds since the epoch.
    """
    params = {
        "appId": appid,
        "timeStamp": str(timestamp),
        "nonceStr": nonce_str,
        "package": f"prepay_id={prepay_id}",
        "signType": sign_type.value,
    }
    params["paySign"] = sign_v2(params, api_key, sign_type)
    return params


def app_pay_params_v2(
    appid: str,
    mch_id: str,
    prepay_id: str,
    *,
    api_key: str,
    sign_type: SignType,
    timestamp: int,
    nonce_str: str,
) -> dict[str, str]:
    """Return the APP ``PayReq`` parameters with ``sign`` over the six lower-case keys (§9.5).

    ``timestamp`` is in seconds since the epoch; ``package`` is the fixed ``Sign=WXPay``.
    """
    params = {
        "appid": appid,
        "partnerid": mch_id,
        "prepayid": prepay_id,
        "package": "Sign=WXPay",
        "noncestr": nonce_str,
        "timestamp": str(timestamp),
    }
    params["sign"] = sign_v2(params, api_key, sign_type)
    return params


def _declared_sign_type(params: Mapping[str, str]) -> SignType:
    declared = params.get("sign_type") or SignType.MD5.value
    try:
        return SignType(declared)
    except ValueError:
        raise UnsupportedSignatureTypeError("unsupported APIv2 sign_type") from None


def _digest(sign_string: str, api_key: str, sign_type: SignType) -> str:
    # As in wechatpy's format_url: no leading "&" when nothing else is signed.
    message = f"{sign_string}&key={api_key}" if sign_string else f"key={api_key}"
    message_bytes = message.encode("utf-8")
    if sign_type is SignType.MD5:
        # MD5 is the platform's choice for APIv2, not ours (§9.1).
        return hashlib.md5(message_bytes).hexdigest().upper()  # noqa: S324
    return hmac.new(api_key.encode("utf-8"), message_bytes, hashlib.sha256).hexdigest().upper()


def _require_api_key(api_key: str) -> None:
    if not api_key:
        raise ValueError("the APIv2 key must not be empty")
