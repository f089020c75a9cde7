"""APIv3 responses as the platform writes them (protocol reference §3, §7.8, §11).

Every 2xx carries ``Request-ID`` and the five ``Wechatpay-*`` headers, signed over the
exact bytes sent (``ts\\nnonce\\n\\n`` for a 204). Errors carry ``{code, message[,
detail]}`` and a ``Request-ID``; they are not signed (no SDK verifies them, §3.3).
"""

from __future__ import annotations

import secrets
from typing import Any

from starlette.responses import Response

from wxpaykit.core.signing import generate_nonce, sign_response_headers
from wxpaykit.simulator.clock import Clock
from wxpaykit.simulator.merchants import Merchant
from wxpaykit.simulator.notifications import compact_json
from wxpaykit.simulator.platform_errors import PlatformError

__all__ = ["JSON_CONTENT_TYPE", "error_response", "new_request_id", "signed_response"]

JSON_CONTENT_TYPE = "application/json; charset=utf-8"


def new_request_id(error_code: int = 0) -> str:
    """``08F5B8C2...-0``: 44 upper-hex characters, then the internal code (0 on success)."""
    return f"{secrets.token_hex(22).upper()}-{error_code}"


def _common_headers(request_id: str) -> dict[str, str]:
    return {
        "Request-ID": request_id,
        "Cache-Control": "no-cache, must-revalidate",
        "X-Content-Type-Options": "nosniff",
        "Content-Language": "zh-CN",
    }


def signed_response(
    merchant: Merchant,
    clock: Clock,
    *,
    document: Any = None,
    status: int = 200,
    request_serial: str = "",
    nonce: str | None = None,
) -> Response:
    """A signed 2xx; ``document`` None makes an empty body (use status 204).

    ``nonce`` is for known-answer tests; by default a fresh 32-character one.
    """
    body = b"" if document is None else compact_json(document)
    serial, key = merchant.response_signer(request_serial, clock.now())
    headers = _common_headers(new_request_id())
    headers.update(
        sign_response_headers(
            body=body,
            private_key=key,
            serial=serial,
            timestamp=int(clock.now()),
            nonce=nonce or generate_nonce(32),
        )
    )
    if body:
        headers["Content-Type"] = JSON_CONTENT_TYPE
    return Response(content=body, status_code=status, headers=headers)


def error_response(error: PlatformError) -> Response:
    """An unsigned error in the platform's shape."""
    headers = _common_headers(new_request_id(error.status * 1000 + 1))
    headers["Content-Type"] = JSON_CONTENT_TYPE
    return Response(content=compact_json(error.body()), status_code=error.status, headers=headers)
