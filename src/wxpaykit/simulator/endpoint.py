"""The shared shape of an APIv3 endpoint: authenticate, run, answer signed or refused.

Handlers receive a :class:`V3Call` (the verified merchant, the raw body, helpers to
read JSON and query parameters) and return a document (200), ``None`` (204) or a
ready :class:`~starlette.responses.Response`. A :class:`PlatformError` anywhere becomes
the platform's error body. The body is parsed only after the signature is verified.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from wxpaykit.simulator.authentication import authenticate
from wxpaykit.simulator.merchants import Merchant
from wxpaykit.simulator.platform_errors import PlatformError, param_error
from wxpaykit.simulator.responses import error_response, signed_response
from wxpaykit.simulator.service import Simulator

__all__ = ["V3Call", "V3Handler", "simulator_of", "v3_endpoint"]

logger = logging.getLogger("wxpaykit.simulator")


def simulator_of(request: Request) -> Simulator:
    """The simulator serving this request."""
    simulator: Simulator = request.app.state.simulator
    return simulator


@dataclass(frozen=True, kw_only=True)
class V3Call:
    """One authenticated APIv3 request."""

    simulator: Simulator
    merchant: Merchant
    request: Request
    body: bytes

    def json(self) -> dict[str, Any]:
        """The body as a JSON object (400 PARAM_ERROR otherwise)."""
        try:
            document = json.loads(self.body)
        except ValueError:
            raise PlatformError(400, "PARAM_ERROR", "请求体不是合法的JSON") from None
        if not isinstance(document, dict):
            raise PlatformError(400, "PARAM_ERROR", "请求体必须是JSON对象")
        return document

    def fingerprint(self) -> str:
        """Digest of the parsed body: equal for the same parameters in any key order."""
        canonical = json.dumps(
            self.json(), sort_keys=True, ensure_ascii=False, separators=(",", ":")
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def query(self, name: str, *, required: bool = True) -> str:
        """A query parameter (400 PARAM_ERROR when required and absent)."""
        value = self.request.query_params.get(name, "")
        if required and not value:
            raise param_error(name, f"{name} 为必填参数", location="query")
        return value

    def path(self, name: str) -> str:
        """A path parameter, percent-decoded."""
        return str(self.request.path_params[name])

    @property
    def base_url(self) -> str:
        """Where the client reached the simulator (for pay-page links)."""
        return str(self.request.base_url).rstrip("/")


V3Handler = Callable[[V3Call], Awaitable[Any]]


def v3_endpoint(
    handler: V3Handler, *, status: int = 200
) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler with authentication, signing and error mapping."""

    async def endpoint(request: Request) -> Response:
        simulator = simulator_of(request)
        body = await request.body()
        try:
            merchant = authenticate(simulator, request, body)
            result = await handler(
                V3Call(simulator=simulator, merchant=merchant, request=request, body=body)
            )
        except PlatformError as error:
            logger.info("refused %s %s: %s", request.method, request.url.path, error.code)
            return error_response(error)
        if isinstance(result, Response):
            return result
        return signed_response(
            merchant,
            simulator.clock,
            document=result,
            status=204 if result is None else status,
            request_serial=request.headers.get("wechatpay-serial", "").strip(),
        )

    return endpoint
