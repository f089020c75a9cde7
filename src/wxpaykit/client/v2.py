"""The APIv2 (legacy XML) client: unifiedorder, orderquery, closeorder, refund, refundquery.

Same shape as the APIv3 clients: each endpoint is a :class:`V2Call` value, the I/O-free
:class:`V2Base` signs (MD5 or HMAC-SHA256, protocol reference §9.1), sends, retries and
verifies the answer's ``sign`` before reading it, and the two classes
:class:`WeChatPayV2` / :class:`AsyncWeChatPayV2` only perform I/O.

``secapi/pay/refund`` needs mutual TLS with the merchant's client certificate
(``apiclient_cert.p12``, see :func:`wxpaykit.core.keys.load_client_certificate_p12`);
without one the refund fails before anything is sent, with a
:class:`~wxpaykit.errors.ConfigurationError` that says so.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Required, TypedDict, TypeVar, Unpack

import httpx
from pydantic import ValidationError

from wxpaykit.api.call import ResponseModel, describe_validation
from wxpaykit.client._drivers import AsyncDriver, SyncDriver
from wxpaykit.client._errors import transport_error
from wxpaykit.client._flow import Flow, Send, Sleep
from wxpaykit.client.retry import RetryPolicy
from wxpaykit.core.keys import ClientCertificate
from wxpaykit.core.signing import generate_nonce
from wxpaykit.core.v2 import SignType, build_xml, parse_xml, sign_v2, verify_v2
from wxpaykit.errors import (
    ApiError,
    BadRequestError,
    ConfigurationError,
    MalformedMessageError,
    NotFoundError,
    PlatformServerError,
    RateLimitedError,
    UnauthorizedError,
    WxPayKitError,
)

__all__ = [
    "AsyncWeChatPayV2",
    "V2Call",
    "V2Options",
    "V2Result",
    "WeChatPayV2",
    "closeorder",
    "orderquery",
    "refund",
    "refundquery",
    "unifiedorder",
]

T = TypeVar("T")
M = TypeVar("M", bound=ResponseModel)

_ERRORS: dict[str, type[ApiError]] = {
    "SYSTEMERROR": PlatformServerError,
    "BANKERROR": PlatformServerError,
    "FREQUENCY_LIMITED": RateLimitedError,
    "SIGNERROR": UnauthorizedError,
    "PARAM_ERROR": BadRequestError,
    "ORDERNOTEXIST": NotFoundError,
    "REFUNDNOTEXIST": NotFoundError,
}


class V2Result(ResponseModel):
    """A successful APIv2 answer; every field is kept (``model_extra``), strings as sent."""

    return_code: str
    result_code: str | None = None
    appid: str | None = None
    mch_id: str | None = None
    prepay_id: str | None = None
    code_url: str | None = None
    mweb_url: str | None = None
    trade_type: str | None = None
    trade_state: str | None = None
    transaction_id: str | None = None
    out_trade_no: str | None = None
    out_refund_no: str | None = None
    refund_id: str | None = None
    total_fee: int | None = None
    refund_fee: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class V2Call(Generic[T]):
    """One APIv2 request: ``endpoint`` path, its business parameters, and the parser."""

    endpoint: str
    params: Mapping[str, str]
    parse: Callable[[dict[str, str]], T] = field(repr=False)
    mutual_tls: bool = False


def _parse_result(params: dict[str, str]) -> V2Result:
    try:
        return V2Result.model_validate(params)
    except ValidationError as exc:
        raise MalformedMessageError(describe_validation(exc, "APIv2 answer")) from None


def _clean(params: Mapping[str, str | int | None]) -> dict[str, str]:
    return {key: str(value) for key, value in params.items() if value is not None and value != ""}


def unifiedorder(
    *,
    body: str,
    out_trade_no: str,
    total_fee: int,
    spbill_create_ip: str,
    notify_url: str,
    trade_type: str,
    openid: str | None = None,
    product_id: str | None = None,
    **extra: str | int,
) -> V2Call[V2Result]:
    """``pay/unifiedorder``: ``prepay_id`` (and ``code_url``/``mweb_url``); fee in fen."""
    if total_fee < 1:
        raise ValueError("total_fee is in fen and must be at least 1")
    if trade_type == "JSAPI" and not openid:
        raise ValueError("JSAPI needs openid")
    params = _clean(
        {
            "body": body,
            "out_trade_no": out_trade_no,
            "total_fee": total_fee,
            "spbill_create_ip": spbill_create_ip,
            "notify_url": notify_url,
            "trade_type": trade_type,
            "openid": openid,
            "product_id": product_id,
            **extra,
        }
    )
    return V2Call(endpoint="/pay/unifiedorder", params=params, parse=_parse_result)


def orderquery(
    *, out_trade_no: str | None = None, transaction_id: str | None = None
) -> V2Call[V2Result]:
    """``pay/orderquery`` by ``transaction_id`` or ``out_trade_no``: ``trade_state``."""
    if not (out_trade_no or transaction_id):
        raise ValueError("orderquery needs out_trade_no or transaction_id")
    params = _clean({"out_trade_no": out_trade_no, "transaction_id": transaction_id})
    return V2Call(endpoint="/pay/orderquery", params=params, parse=_parse_result)


def closeorder(*, out_trade_no: str) -> V2Call[V2Result]:
    """``pay/closeorder``."""
    return V2Call(
        endpoint="/pay/closeorder", params={"out_trade_no": out_trade_no}, parse=_parse_result
    )


def refund(
    *,
    out_refund_no: str,
    total_fee: int,
    refund_fee: int,
    out_trade_no: str | None = None,
    transaction_id: str | None = None,
    refund_desc: str | None = None,
    notify_url: str | None = None,
) -> V2Call[V2Result]:
    """``secapi/pay/refund`` over mutual TLS; retries keep ``out_refund_no``."""
    if not (out_trade_no or transaction_id):
        raise ValueError("refund needs out_trade_no or transaction_id")
    if not 1 <= refund_fee <= total_fee:
        raise ValueError("refund_fee must be between 1 and total_fee (fen)")
    params = _clean(
        {
            "out_refund_no": out_refund_no,
            "total_fee": total_fee,
            "refund_fee": refund_fee,
            "out_trade_no": out_trade_no,
            "transaction_id": transaction_id,
            "refund_desc": refund_desc,
            "notify_url": notify_url,
        }
    )
    return V2Call(
        endpoint="/secapi/pay/refund", params=params, parse=_parse_result, mutual_tls=True
    )


def refundquery(
    *,
    out_refund_no: str | None = None,
    refund_id: str | None = None,
    out_trade_no: str | None = None,
    transaction_id: str | None = None,
) -> V2Call[V2Result]:
    """``pay/refundquery`` by any one identifier; ``refund_status_$n`` fields in extras."""
    params = _clean(
        {
            "out_refund_no": out_refund_no,
            "refund_id": refund_id,
            "out_trade_no": out_trade_no,
            "transaction_id": transaction_id,
        }
    )
    if not params:
        raise ValueError("refundquery needs one identifier")
    return V2Call(endpoint="/pay/refundquery", params=params, parse=_parse_result)


def mutual_tls_context(
    certificate: ClientCertificate, *, verify: ssl.SSLContext | str | bool = True
) -> ssl.SSLContext:
    """An SSL context presenting the client certificate (``verify``: CA file or bool).

    ``ssl`` loads certificate chains only from files, so the pair goes through a
    private temporary file (mode 0600) that is removed at once.
    """
    if isinstance(verify, ssl.SSLContext):
        context = verify
    elif isinstance(verify, str):
        context = ssl.create_default_context(cafile=verify)
    else:
        context = ssl.create_default_context()
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    cert_pem, key_pem = certificate.pem_pair()
    fd, path = tempfile.mkstemp(suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(cert_pem + key_pem)
        context.load_cert_chain(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return context


class V2Options(TypedDict, total=False):
    """Keyword arguments shared by both APIv2 clients (``api_key``: the 32-char v2 key)."""

    appid: Required[str]
    mch_id: Required[str]
    api_key: Required[str]
    sign_type: SignType
    client_certificate: ClientCertificate | None
    base_url: str
    mutual_tls_base_url: str | None
    retry: RetryPolicy | None
    monotonic: Callable[[], float]


class V2Base:
    """Signing, retrying and verifying APIv2 calls, without I/O."""

    def _init_v2(
        self,
        *,
        appid: str,
        mch_id: str,
        api_key: str,
        sign_type: SignType = SignType.HMAC_SHA256,
        client_certificate: ClientCertificate | None = None,
        base_url: str = "https://api.mch.weixin.qq.com",
        mutual_tls_base_url: str | None = None,
        retry: RetryPolicy | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if len(api_key) != 32:
            raise ConfigurationError("the APIv2 key must be 32 characters")
        self.appid = appid
        self.mch_id = mch_id
        self._api_key = api_key
        self.sign_type = SignType(sign_type)
        self.client_certificate = client_certificate
        self.base_url = base_url.rstrip("/")
        # The same host in production; a separate listener in the simulator.
        self.mutual_tls_base_url = (mutual_tls_base_url or base_url).rstrip("/")
        self.retry = retry or RetryPolicy()
        self._monotonic = monotonic

    def _require_certificate(self) -> ClientCertificate:
        if self.client_certificate is None:
            raise ConfigurationError(
                "this endpoint needs mutual TLS: pass client_certificate"
                " (load_client_certificate_p12(apiclient_cert.p12, password=mch_id))"
            )
        return self.client_certificate

    def _signed_body(self, call: V2Call[Any]) -> bytes:
        params = {
            "appid": self.appid,
            "mch_id": self.mch_id,
            **call.params,
            "nonce_str": generate_nonce(),
            "sign_type": self.sign_type.value,
        }
        params["sign"] = sign_v2(params, self._api_key, self.sign_type)
        return build_xml(params)

    def _v2_flow(self, call: V2Call[T]) -> Flow[T]:
        if call.mutual_tls:
            self._require_certificate()
        start = self._monotonic()
        attempt = 0
        while True:
            attempt += 1
            # A fresh nonce and sign per attempt; the business parameters never change.
            request = httpx.Request(
                "POST",
                (self.mutual_tls_base_url if call.mutual_tls else self.base_url) + call.endpoint,
                content=self._signed_body(call),
                headers={"Content-Type": "text/xml; charset=utf-8"},
            )
            cause: httpx.TransportError | None = None
            try:
                response: httpx.Response = yield Send(request, mtls=call.mutual_tls)
            except httpx.TransportError as exc:
                cause = exc
                error: WxPayKitError = transport_error(exc, method="POST", path=call.endpoint)
            else:
                try:
                    return call.parse(self._checked(response))
                except ApiError as exc:
                    error = exc
            delay = self.retry.next_delay(attempt, error, elapsed_seconds=self._monotonic() - start)
            if delay is None:
                raise error from cause
            yield Sleep(delay)

    def _checked(self, response: httpx.Response) -> dict[str, str]:
        if not response.is_success:
            raise ApiError(
                status_code=response.status_code,
                code=f"HTTP_{response.status_code}",
                message="APIv2 endpoint answered with an HTTP error",
            )
        params = parse_xml(response.content)
        if params.get("return_code") != "SUCCESS":
            raise ApiError(
                status_code=response.status_code,
                code=params.get("return_code", "FAIL"),
                message=params.get("return_msg", "communication failure"),
            )
        # Verify before reading anything else (§9.1): the answer uses our algorithm.
        verify_v2(params, self._api_key, sign_type=self.sign_type)
        if params.get("result_code", "SUCCESS") != "SUCCESS":
            code = params.get("err_code", "FAIL")
            raise _ERRORS.get(code, ApiError)(
                status_code=response.status_code,
                code=code,
                message=params.get("err_code_des", ""),
            )
        return params


class WeChatPayV2(V2Base, SyncDriver):
    """Synchronous APIv2 client; ``verify`` is httpx's (CA file, context or bool)."""

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | str | bool = True,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
        **options: Unpack[V2Options],
    ) -> None:
        self._init_v2(**options)

        def mtls() -> httpx.Client:
            context = mutual_tls_context(self._require_certificate(), verify=verify)
            return httpx.Client(verify=context, timeout=timeout, transport=transport)

        http = httpx.Client(verify=verify, timeout=timeout, transport=transport)
        self._init_driver(http=http, sleep=sleep, mtls_http=mtls)

    def call(self, call: V2Call[T]) -> T:
        """Send one APIv2 call and return its verified result."""
        return self._run(self._v2_flow(call))

    def close(self) -> None:
        """Close the HTTP connections."""
        self._close_driver()

    def __enter__(self) -> WeChatPayV2:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncWeChatPayV2(V2Base, AsyncDriver):
    """Asyncio twin of :class:`WeChatPayV2`."""

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | str | bool = True,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        **options: Unpack[V2Options],
    ) -> None:
        self._init_v2(**options)

        def mtls() -> httpx.AsyncClient:
            context = mutual_tls_context(self._require_certificate(), verify=verify)
            return httpx.AsyncClient(verify=context, timeout=timeout, transport=transport)

        http = httpx.AsyncClient(verify=verify, timeout=timeout, transport=transport)
        self._init_driver(http=http, sleep=sleep, mtls_http=mtls)

    async def call(self, call: V2Call[T]) -> T:
        """Send one APIv2 call and return its verified result."""
        return await self._run(self._v2_flow(call))

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._close_driver()

    async def __aenter__(self) -> AsyncWeChatPayV2:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
