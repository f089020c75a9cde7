"""Calling the simulator (or anything APIv3) without an SDK: sign a request by hand.

:func:`signed_headers` builds the headers an SDK sends (protocol reference §2), for
tests and scripts that use a plain HTTP client. It needs only the core, so the CLI's
``wxpaykit sim order create`` uses it too.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from wxpaykit.core.keys import MerchantCredentials
from wxpaykit.core.signing import build_authorization, generate_nonce
from wxpaykit.simulator.bundle import MerchantBundle

__all__ = ["signed_headers"]


def signed_headers(
    credentials: MerchantCredentials | MerchantBundle,
    method: str,
    url: str,
    body: bytes = b"",
    *,
    timestamp: int | None = None,
    nonce: str | None = None,
    wechatpay_serial: str | None = None,
) -> dict[str, str]:
    """Headers of an APIv3 request signed like an SDK signs it (§2).

    ``url`` may be absolute or a request-target; the signed URL is its raw path and
    query. Sends ``Accept``, ``User-Agent``, ``Content-Type`` (with a body) and
    ``Wechatpay-Serial`` when given.
    """
    creds = credentials.credentials() if isinstance(credentials, MerchantBundle) else credentials
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = {
        "Accept": "application/json",
        "User-Agent": "wxpaykit-testing/1",
        "Authorization": build_authorization(
            mchid=creds.mchid,
            serial_no=creds.serial_no,
            private_key=creds.private_key,
            method=method,
            canonical_url=target,
            body=body,
            timestamp=int(time.time()) if timestamp is None else timestamp,
            nonce=nonce or generate_nonce(32),
        ),
    }
    if body:
        headers["Content-Type"] = "application/json"
    if wechatpay_serial:
        headers["Wechatpay-Serial"] = wechatpay_serial
    return headers
