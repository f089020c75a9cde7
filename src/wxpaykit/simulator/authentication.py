"""Checking a merchant's APIv3 request as the platform does (protocol reference §2, §11).

In order: ``Accept`` and ``User-Agent`` present (400 ``INVALID_REQUEST``); the
``Authorization`` header parsed by key, fields in any order; the merchant known; the
``serial_no`` equal to the merchant's API certificate; the timestamp within the
tolerance; and the SHA256withRSA signature over
``METHOD\\nraw-target\\nts\\nnonce\\nraw-body\\n``. Every signature failure is 401
``SIGN_ERROR`` with the platform's ``detail`` shape (§2.5).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.requests import Request

from wxpaykit.core.signing import AuthorizationFields, build_request_message, parse_authorization
from wxpaykit.errors import MalformedMessageError
from wxpaykit.simulator.merchants import Merchant
from wxpaykit.simulator.platform_errors import PlatformError
from wxpaykit.simulator.service import Simulator

__all__ = ["authenticate", "peek_mchid", "raw_target"]

_SIGN_ERROR_MESSAGE = "签名错误，请检查后再试"


def raw_target(request: Request) -> str:
    """The request-target exactly as sent: raw path, then ``?`` and the raw query."""
    raw_path: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
    # httpx's ASGITransport puts the query into raw_path; uvicorn keeps it apart.
    path, _, inline_query = raw_path.partition(b"?")
    query: bytes = request.scope.get("query_string", b"") or inline_query
    target = path.decode("latin-1")
    return f"{target}?{query.decode('latin-1')}" if query else target


def peek_mchid(request: Request) -> str:
    """The ``mchid`` an Authorization header claims, unverified ("" if none)."""
    try:
        return parse_authorization(request.headers.get("authorization", "")).mchid
    except MalformedMessageError:
        return ""


def _sign_error(message: str, detail: dict[str, Any] | None = None) -> PlatformError:
    return PlatformError(401, "SIGN_ERROR", message, detail=detail)


def _mismatch_detail(method: str, target: str, message: bytes) -> dict[str, Any]:
    # The platform echoes the four header lines and the first bytes of the body.
    position = -1
    for _ in range(4):
        position = message.index(b"\n", position + 1)
    truncated = message[: position + 1 + 8].decode("utf-8", "replace") + "\n"
    return {
        "detail": {"issue": "sign not match"},
        "field": "signature",
        "location": "authorization",
        "sign_information": {
            "method": method,
            "sign_message_length": len(message),
            "truncated_sign_message": truncated,
            "url": target.partition("?")[0],
        },
    }


def authenticate(simulator: Simulator, request: Request, body: bytes) -> Merchant:
    """Return the merchant whose valid signature the request carries, or raise."""
    if not request.headers.get("accept") or not request.headers.get("user-agent"):
        raise PlatformError(400, "INVALID_REQUEST", "Http头缺少Accept或User-Agent")
    header = request.headers.get("authorization", "")
    try:
        fields: AuthorizationFields = parse_authorization(header)
    except MalformedMessageError:
        raise _sign_error(
            "Http头Authorization值格式错误，请参考《微信支付商户REST API签名规则》"
        ) from None
    merchant = simulator.merchant(fields.mchid)
    if merchant is None:
        raise PlatformError(400, "MCH_NOT_EXISTS", "商户号不存在")
    try:
        serial_matches = int(fields.serial_no, 16) == merchant.api_certificate.serial_number
    except ValueError:
        serial_matches = False
    if not serial_matches:
        raise _sign_error("商户证书序列号有误。")
    if not fields.timestamp.isdigit():
        raise _sign_error("Http头Authorization中的timestamp格式错误")
    skew = abs(int(fields.timestamp) - int(simulator.clock.now()))
    if skew > simulator.config.timestamp_tolerance_seconds:
        raise _sign_error("签名时间戳已过期，请检查服务器时间")
    target = raw_target(request)
    message = build_request_message(
        request.method, target, fields.timestamp, fields.nonce_str, body
    )
    public_key = merchant.api_certificate.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):  # pragma: no cover - provisioning makes RSA
        raise _sign_error(_SIGN_ERROR_MESSAGE)
    try:
        signature = base64.b64decode(fields.signature, validate=True)
        public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except (binascii.Error, ValueError, InvalidSignature):
        raise _sign_error(
            _SIGN_ERROR_MESSAGE, _mismatch_detail(request.method, target, message)
        ) from None
    return merchant
