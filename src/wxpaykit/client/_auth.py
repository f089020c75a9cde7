"""Request signing as an ``httpx.Auth``: the signature covers the final request.

httpx calls :meth:`WeChatPayAuth.auth_flow` with the request exactly as it will go on the
wire, so the canonical URL is its raw request target (percent-encoding and query
included) and the body is its content bytes (protocol reference §2.1). Signing here,
rather than before the request is built, is what guarantees the bytes signed are the
bytes sent. Every attempt of a retried call is signed afresh (new timestamp and nonce).
"""

from __future__ import annotations

from collections.abc import Callable, Generator

import httpx

from wxpaykit.core.keys import MerchantCredentials
from wxpaykit.core.signing import build_authorization, generate_nonce

__all__ = ["WeChatPayAuth"]


class WeChatPayAuth(httpx.Auth):
    """Adds ``Authorization: WECHATPAY2-SHA256-RSA2048 ...`` to each APIv3 request."""

    requires_request_body = True

    def __init__(
        self,
        credentials: MerchantCredentials,
        *,
        clock: Callable[[], float],
        nonce: Callable[[], str] = generate_nonce,
    ) -> None:
        self._credentials = credentials
        self._clock = clock
        self._nonce = nonce

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Sign ``request`` in place and send it once."""
        request.headers["Authorization"] = build_authorization(
            mchid=self._credentials.mchid,
            serial_no=self._credentials.serial_no,
            private_key=self._credentials.private_key,
            method=request.method,
            canonical_url=request.url.raw_path.decode("ascii"),
            body=request.content,
            timestamp=int(self._clock()),
            nonce=self._nonce(),
        )
        yield request
