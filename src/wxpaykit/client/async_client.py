"""``AsyncWeChatPay``: the asyncio APIv3 client (share one per event loop).

It performs the actions of the shared flows with ``httpx.AsyncClient``, ``asyncio.Lock``
and ``asyncio.sleep``; all logic lives in :mod:`._base`. Its twin is ``WeChatPay``;
method names match, results are awaited.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, BinaryIO, TypeVar, Unpack

import httpx

from wxpaykit.api.bills import BillInfo
from wxpaykit.api.call import ApiCall, ApiResponse
from wxpaykit.client._base import BaseClient, ClientOptions, collect_into, write_to
from wxpaykit.client._drivers import AsyncDriver
from wxpaykit.client.keys import SensitiveEncryptor
from wxpaykit.client.namespaces import Async, Bills, Certificates, Partner, Refunds, Transactions
from wxpaykit.client.notifications import notification_flow
from wxpaykit.client.sync_client import DEFAULT_TIMEOUT
from wxpaykit.core.keys import PlatformCertificate
from wxpaykit.core.notifications import Notification

__all__ = ["AsyncWeChatPay"]

T = TypeVar("T")


class AsyncWeChatPay(BaseClient, AsyncDriver):
    """Asyncio twin of :class:`~wxpaykit.client.sync_client.WeChatPay`."""

    def __init__(
        self,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        self._init_base(**options)
        http = http_client or httpx.AsyncClient(timeout=timeout, transport=transport)
        self._init_driver(http=http, sleep=sleep)
        self.transactions: Transactions[Async] = Transactions(self.call)
        self.refunds: Refunds[Async] = Refunds(self.call)
        self.bills: Bills[Async] = Bills(self.call)
        self.certificates: Certificates[Async] = Certificates(self.call)
        self.partner: Partner[Async] = Partner(self.call)

    async def call(self, call: ApiCall[T]) -> T:
        """Send one endpoint value and return its typed, verified result."""
        return await self._run(self._call_flow(call))

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        wechatpay_serial: str | None = None,
    ) -> ApiResponse:
        """Any other APIv3 path, with the same signing, retries and verification."""
        raw = self._raw_call(
            method, path, json=json, params=params, wechatpay_serial=wechatpay_serial
        )
        return await self._run(self._call_flow(raw))

    async def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """Verify, decrypt and parse a notification (see :mod:`.notifications`)."""
        return await self._run(notification_flow(self, headers, body))

    async def sensitive_encryptor(self) -> SensitiveEncryptor:
        """The encryptor for sensitive fields; send its ``serial`` as ``wechatpay_serial``."""
        return await self._run(self._encryptor_flow())

    async def refresh_platform_keys(self) -> list[PlatformCertificate]:
        """Download the platform certificates now; returns those trusted afterwards."""
        return await self._run(self._refresh_now_flow())

    async def download_bill(self, info: BillInfo, *, gzip: bool = True) -> bytes:
        """The whole (decompressed) bill, checked against ``hash_value``."""
        buffer = bytearray()
        await self._run(self._bill_flow(info, collect_into(buffer), gzip=gzip))
        return bytes(buffer)

    async def stream_bill(self, info: BillInfo, sink: BinaryIO, *, gzip: bool = True) -> int:
        """Stream the decompressed bill into ``sink`` (see ``WeChatPay.stream_bill``)."""
        return await self._run(self._bill_flow(info, write_to(sink), gzip=gzip))

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._close_driver()

    async def __aenter__(self) -> AsyncWeChatPay:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
