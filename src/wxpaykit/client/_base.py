"""Everything the two APIv3 clients share, without I/O: build, sign, retry, verify, parse.

The flows here yield :mod:`actions <._flow>`; ``WeChatPay`` and ``AsyncWeChatPay`` only
perform them. Order of a call:

1. make sure platform keys are loaded (start / scheduled refresh, single flight);
2. encode the body once; those bytes are signed (``httpx.Auth``) and sent on every attempt;
3. on a transport error, timeout, 5xx, 429 or a retryable code, wait per
   :class:`RetryPolicy` and try again (optionally on the backup domain);
4. verify the signature of every 2xx answer over its raw bytes, timestamp window
   included; an unknown serial refreshes the certificates once and verifies again;
5. only then parse into the call's typed result.
"""

from __future__ import annotations

import datetime as dt
import logging
import platform
import time
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any, BinaryIO, Required, TypedDict, TypeVar

import httpx

from wxpaykit.api.bills import BillDigest, BillInfo, download_target
from wxpaykit.api.call import ApiCall, ApiResponse, CallContext, encode_json_body
from wxpaykit.client._auth import WeChatPayAuth
from wxpaykit.client._errors import api_error, transport_error
from wxpaykit.client._flow import Flow, Send, SingleFlight, Sleep, Stream
from wxpaykit.client._refresh import KeyRefresh
from wxpaykit.client.key_cache import CertificateCache
from wxpaykit.client.keys import CertificateMode, PlatformKeyManager, SensitiveEncryptor
from wxpaykit.client.retry import RetryPolicy
from wxpaykit.core.crypto import ApiV3Key
from wxpaykit.core.keys import MerchantCredentials, PlatformCertificate, WeChatPayPublicKey
from wxpaykit.core.signing import generate_nonce
from wxpaykit.core.verification import DEFAULT_TOLERANCE_SECONDS, verify_signature
from wxpaykit.errors import UnknownSerialError, WxPayKitError

__all__ = ["BACKUP_BASE_URL", "DEFAULT_BASE_URL", "BaseClient", "ClientOptions"]

logger = logging.getLogger("wxpaykit.client")

T = TypeVar("T")

DEFAULT_BASE_URL = "https://api.mch.weixin.qq.com"
BACKUP_BASE_URL = "https://api2.mch.weixin.qq.com"


def _user_agent() -> str:
    try:
        own = version("wxpaykit")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        own = "0"
    return (
        f"wxpaykit/{own} httpx/{httpx.__version__} "
        f"({platform.system()}/{platform.release()}) Python/{platform.python_version()}"
    )


class ClientOptions(TypedDict, total=False):
    """Keyword arguments shared by ``WeChatPay`` and ``AsyncWeChatPay``.

    ``credentials`` is required. Keys: ``public_key`` (public-key mode), and/or
    ``apiv3_key`` (certificate mode: download, decrypt, notifications). ``appid`` is
    the default ``appid``/``sp_appid``. ``clock``/``monotonic`` are injectable for tests.
    """

    credentials: Required[MerchantCredentials]
    apiv3_key: ApiV3Key | str | bytes | None
    public_key: WeChatPayPublicKey | None
    platform_certificates: Iterable[PlatformCertificate]
    certificate_mode: CertificateMode
    certificate_cache: CertificateCache | None
    refresh_interval_seconds: float
    min_download_interval_seconds: float
    key_manager: PlatformKeyManager | None
    appid: str | None
    base_url: str
    backup_base_url: str
    retry: RetryPolicy
    tolerance_seconds: int
    user_agent: str
    clock: Callable[[], float]
    monotonic: Callable[[], float]


class BaseClient(KeyRefresh):
    """The I/O-free half of the APIv3 clients (see the module docstring)."""

    def _init_base(
        self,
        *,
        credentials: MerchantCredentials,
        apiv3_key: ApiV3Key | str | bytes | None = None,
        public_key: WeChatPayPublicKey | None = None,
        platform_certificates: Iterable[PlatformCertificate] = (),
        certificate_mode: CertificateMode = "auto",
        certificate_cache: CertificateCache | None = None,
        refresh_interval_seconds: float = 12 * 3600.0,
        min_download_interval_seconds: float = 10.0,
        key_manager: PlatformKeyManager | None = None,
        appid: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        backup_base_url: str = BACKUP_BASE_URL,
        retry: RetryPolicy | None = None,
        tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
        user_agent: str | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.credentials = credentials
        self.appid = appid
        self.keys = key_manager or PlatformKeyManager(
            apiv3_key=apiv3_key,
            public_keys=[public_key] if public_key else [],
            certificates=platform_certificates,
            certificate_mode=certificate_mode,
            refresh_interval_seconds=refresh_interval_seconds,
            min_download_interval_seconds=min_download_interval_seconds,
            cache=certificate_cache,
            clock=clock,
        )
        self.base_url = base_url.rstrip("/")
        self.backup_base_url = backup_base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self._tolerance_seconds = tolerance_seconds
        self._user_agent = user_agent or _user_agent()
        self._clock = clock
        self._monotonic = monotonic
        self._auth = WeChatPayAuth(credentials, clock=clock)

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._clock(), dt.UTC)

    # --- building and sending ----------------------------------------------------------

    def _build_request(
        self, call: ApiCall[Any], base_url: str, content: bytes | None
    ) -> httpx.Request:
        headers = {"Accept": "application/json", "User-Agent": self._user_agent}
        if content is not None:
            headers["Content-Type"] = "application/json"
        serial = call.wechatpay_serial or self.keys.request_serial()
        if serial:
            headers["Wechatpay-Serial"] = serial
        url = base_url + call.target(self.credentials.mchid)
        return httpx.Request(call.method, url, headers=headers, content=content)

    def _send_flow(self, call: ApiCall[Any], content: bytes | None) -> Flow[httpx.Response]:
        """Send until a 2xx answer, a non-retryable error, or the policy gives up."""
        start = self._monotonic()
        base_url = self.base_url
        attempt = 0
        while True:
            attempt += 1
            request = self._build_request(call, base_url, content)
            cause: httpx.TransportError | None = None
            try:
                response: httpx.Response = yield Send(request, auth=self._auth)
            except httpx.TransportError as exc:
                cause = exc
                error: WxPayKitError = transport_error(exc, method=call.method, path=call.path)
            else:
                if response.is_success:
                    return response
                error = api_error(response.status_code, response.headers, response.content)
            delay = self.retry.next_delay(attempt, error, elapsed_seconds=self._monotonic() - start)
            if delay is None:
                raise error from cause
            if self.retry.failover and isinstance(cause, httpx.ConnectError):
                base_url = self.backup_base_url
            logger.warning(
                "retrying %s %s in %.3f s after attempt %d: %s",
                call.method,
                call.path,
                delay,
                attempt,
                error,
            )
            yield Sleep(delay)

    def _verified_flow(self, response: httpx.Response, *, signed: bool) -> Flow[ApiResponse]:
        """Verify a 2xx answer (unless unsigned); an unknown serial refreshes once."""
        if signed:
            seen = self.keys.generation
            try:
                self._verify(response)
            except UnknownSerialError as exc:
                if not (yield from self._refresh_for_serial_flow(seen, exc.serial)):
                    raise
                self._verify(response)
        return ApiResponse(
            status_code=response.status_code, headers=response.headers, content=response.content
        )

    def _verify(self, response: httpx.Response) -> None:
        verify_signature(
            response.headers,
            response.content,
            self.keys.trusted,
            now=self._now(),
            tolerance_seconds=self._tolerance_seconds,
        )

    # --- public operations, as flows -------------------------------------------------

    def _call_flow(self, call: ApiCall[T]) -> Flow[T]:
        yield from self._ensure_keys_flow()
        body = call.final_body(mchid=self.credentials.mchid, appid=self.appid)
        content = encode_json_body(body) if body is not None else None
        response = yield from self._send_flow(call, content)
        verified = yield from self._verified_flow(response, signed=call.signed_response)
        context = CallContext(
            mchid=self.credentials.mchid,
            private_key=self.credentials.private_key,
            request_body=body or {},
            timestamp=int(self._clock()),
            nonce=generate_nonce(),
        )
        return call.parse(verified, context)

    @staticmethod
    def _raw_call(
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None,
        params: Mapping[str, str] | None,
        wechatpay_serial: str | None,
    ) -> ApiCall[ApiResponse]:
        if not path.startswith("/v3/"):
            raise ValueError(f"APIv3 paths start with /v3/, got {path!r}")
        return ApiCall(
            method=method.upper(),
            path=path,
            query=tuple((params or {}).items()),
            body=json,
            wechatpay_serial=wechatpay_serial,
            parse=lambda response, context: response,
        )

    def _encryptor_flow(self) -> Flow[SensitiveEncryptor]:
        yield from self._ensure_keys_flow()
        return self.keys.encryptor()

    def _refresh_now_flow(self) -> Flow[list[PlatformCertificate]]:
        seen = self.keys.generation
        if self.keys.downloads_enabled:
            self.keys.postpone_refresh(0)
            yield SingleFlight(self._refresh_factory(seen, "scheduled", None))
        return self.keys.trusted.certificates

    def _bill_flow(
        self, info: BillInfo, write: Callable[[bytes], object], *, gzip: bool
    ) -> Flow[int]:
        """Stream the bill file to ``write`` and check ``hash_value``; returns its size.

        The file answer is unsigned (protocol reference §3.3): the SHA-1 is its proof.
        Bytes reach ``write`` before the final check, so a caller writing to disk must
        discard the file when :class:`VerificationError` is raised.
        """
        yield from self._ensure_keys_flow()
        call: ApiCall[None] = ApiCall(
            method="GET",
            path=download_target(info.download_url),
            signed_response=False,
            parse=lambda response, context: None,
        )
        digest = BillDigest(info, gzip=gzip)

        def on_chunk(chunk: bytes) -> None:
            data = digest.feed(chunk)
            if data:
                write(data)

        request = self._build_request(call, self.base_url, None)
        response: httpx.Response = yield Stream(request, on_chunk, auth=self._auth)
        if not response.is_success:
            raise api_error(response.status_code, response.headers, response.content)
        tail = digest.finish()
        if tail:
            write(tail)
        digest.verify()
        return digest.size


def collect_into(buffer: bytearray) -> Callable[[bytes], object]:
    """A ``write`` callable appending to ``buffer``."""
    return buffer.extend


def write_to(sink: BinaryIO) -> Callable[[bytes], object]:
    """A ``write`` callable for a binary file object."""
    return sink.write
