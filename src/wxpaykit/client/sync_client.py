"""``WeChatPay``: the synchronous APIv3 client (thread-safe; share one per process).

It performs the actions of the shared flows with ``httpx.Client``, ``threading.Lock``
and ``time.sleep``; all logic lives in :mod:`._base`. Its twin is ``AsyncWeChatPay``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, BinaryIO, TypeVar, Unpack

import httpx

from wxpaykit.api.bills import BillInfo
from wxpaykit.api.call import ApiCall, ApiResponse
from wxpaykit.client._base import BaseClient, ClientOptions, collect_into, write_to
from wxpaykit.client._drivers import SyncDriver
from wxpaykit.client.keys import SensitiveEncryptor
from wxpaykit.client.namespaces import Bills, Certificates, Partner, Refunds, Sync, Transactions
from wxpaykit.client.notifications import notification_flow
from wxpaykit.core.keys import PlatformCertificate
from wxpaykit.core.notifications import Notification

__all__ = ["DEFAULT_TIMEOUT", "WeChatPay"]

T = TypeVar("T")

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class WeChatPay(BaseClient, SyncDriver):
    """WeChat Pay APIv3 client: typed calls, signed requests, verified answers, retries.

    Send any endpoint value with :meth:`call`, or use the namespaces
    (``transactions``, ``refunds``, ``bills``, ``certificates``, ``partner``). Options
    are those of :class:`~wxpaykit.client._base.ClientOptions`; ``transport`` or
    ``http_client`` replace the HTTP layer (tests), ``sleep`` the retry wait.
    """

    def __init__(
        self,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        http_client: httpx.Client | None = None,
        sleep: Callable[[float], None] | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        self._init_base(**options)
        http = http_client or httpx.Client(timeout=timeout, transport=transport)
        self._init_driver(http=http, sleep=sleep)
        self.transactions: Transactions[Sync] = Transactions(self.call)
        self.refunds: Refunds[Sync] = Refunds(self.call)
        self.bills: Bills[Sync] = Bills(self.call)
        self.certificates: Certificates[Sync] = Certificates(self.call)
        self.partner: Partner[Sync] = Partner(self.call)

    def call(self, call: ApiCall[T]) -> T:
        """Send one endpoint value and return its typed, verified result."""
        return self._run(self._call_flow(call))

    def request(
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
        return self._run(self._call_flow(raw))

    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """Verify, decrypt and parse a notification (see :mod:`.notifications`)."""
        return self._run(notification_flow(self, headers, body))

    def sensitive_encryptor(self) -> SensitiveEncryptor:
        """The encryptor for sensitive fields; send its ``serial`` as ``wechatpay_serial``."""
        return self._run(self._encryptor_flow())

    def refresh_platform_keys(self) -> list[PlatformCertificate]:
        """Download the platform certificates now; returns those trusted afterwards."""
        return self._run(self._refresh_now_flow())

    def download_bill(self, info: BillInfo, *, gzip: bool = True) -> bytes:
        """The whole (decompressed) bill, checked against ``hash_value``."""
        buffer = bytearray()
        self._run(self._bill_flow(info, collect_into(buffer), gzip=gzip))
        return bytes(buffer)

    def stream_bill(self, info: BillInfo, sink: BinaryIO, *, gzip: bool = True) -> int:
        """Stream the decompressed bill into ``sink``; returns its size in bytes.

        Raises :class:`~wxpaykit.errors.VerificationError` after writing when the
        content does not match ``hash_value``: discard ``sink`` then.
        """
        return self._run(self._bill_flow(info, write_to(sink), gzip=gzip))

    def close(self) -> None:
        """Close the HTTP connections."""
        self._close_driver()

    def __enter__(self) -> WeChatPay:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
