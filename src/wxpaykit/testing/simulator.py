"""Test WeChat Pay code without real money: the simulator as a test fixture.

Three ways in, from the lightest:

* **No HTTP.** :func:`new_merchant` makes a merchant's keys offline;
  :func:`build_notification` returns ``(headers, body)`` of a signed, encrypted APIv3
  notification for it, and :func:`build_v2_payment_notification` /
  :func:`build_v2_refund_notification` the APIv2 XML. Feed them to your handler.
* **In process.** ``async with running_simulator() as sim:`` gives an
  :class:`InProcessSimulator` whose ``http`` client talks to the simulator through
  ``httpx.ASGITransport``; pass a ``delivery_transport`` to receive notifications in
  process too, and a :class:`FakeClock` to drive retries without sleeping.
* **On a port.** ``with serve_simulator() as sim:`` runs uvicorn in a thread on a free
  port (plus the APIv2 mutual-TLS port) for code that needs a real URL.

:func:`signed_headers` signs a request the way an SDK does, for calling the
simulator without an SDK.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from wxpaykit.core.keys import MerchantCredentials
from wxpaykit.core.signing import build_authorization, generate_nonce, sign_response_headers
from wxpaykit.simulator.app import SimulatorApp, create_app
from wxpaykit.simulator.merchants import Merchant, MerchantBundle, MerchantMode, provision_merchant
from wxpaykit.simulator.notifications import (
    build_envelope,
    new_notification_id,
    refund_resource,
    transaction_resource,
    v2_payment_xml,
    v2_refund_xml,
)
from wxpaykit.simulator.payer import find_order
from wxpaykit.simulator.server import SimulatorServer
from wxpaykit.simulator.service import Simulator, SimulatorConfig
from wxpaykit.simulator.state import Order, Refund

__all__ = [
    "DEFAULT_BASE_URL",
    "FakeClock",
    "InProcessSimulator",
    "Merchant",
    "MerchantBundle",
    "MerchantMode",
    "ServedSimulator",
    "build_notification",
    "build_v2_payment_notification",
    "build_v2_refund_notification",
    "new_merchant",
    "payment_resource",
    "refund_resource_for",
    "running_simulator",
    "serve_simulator",
    "signed_headers",
]

#: The host in-process clients use; requests never leave the process.
DEFAULT_BASE_URL = "https://api.mch.weixin.qq.com"


class FakeClock:
    """A clock that moves only when told to (starts at the real time by default)."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start

    def now(self) -> float:
        """The current fake Unix time."""
        return self._now

    def advance(self, seconds: float) -> float:
        """Move forward; returns the new time."""
        self._now += seconds
        return self._now

    def set(self, timestamp: float) -> None:
        """Jump to ``timestamp``."""
        self._now = timestamp


def new_merchant(
    mode: MerchantMode | str = MerchantMode.CERTIFICATE,
    *,
    now: float | None = None,
    mchid: str | None = None,
) -> Merchant:
    """A merchant with fresh keys, made offline (no simulator, self-signed API cert)."""
    return provision_merchant(mode, now=time.time() if now is None else now, mchid=mchid)


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


def _now() -> float:
    return time.time()


def payment_resource(
    merchant: Merchant,
    *,
    out_trade_no: str,
    total: int,
    openid: str = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
    transaction_id: str = "4200000000202401010000000001",
    trade_type: str = "JSAPI",
    attach: str = "",
    success_time: float | None = None,
) -> dict[str, Any]:
    """A decrypted TRANSACTION.SUCCESS resource (§6.3) for ``merchant``."""
    paid_at = _now() if success_time is None else success_time
    order = Order(
        mchid=merchant.mchid,
        appid=merchant.appid,
        out_trade_no=out_trade_no,
        trade_type=trade_type,
        trade_state="SUCCESS",
        total=total,
        notify_url="",
        attach=attach,
        openid=openid,
        prepay_id="",
        code_token="",
        transaction_id=transaction_id,
        created_at=paid_at,
        expires_at=paid_at,
        success_time=paid_at,
    )
    return transaction_resource(order)


def refund_resource_for(
    merchant: Merchant,
    *,
    out_trade_no: str,
    out_refund_no: str,
    refund: int,
    total: int,
    status: Literal["SUCCESS", "ABNORMAL", "CLOSED"] = "SUCCESS",
    transaction_id: str = "4200000000202401010000000001",
    refund_id: str = "50000000202401010000000000001",
) -> dict[str, Any]:
    """A decrypted REFUND.* resource (§6.4) for ``merchant``."""
    order, refund_row = _refund_rows(
        merchant, out_trade_no, out_refund_no, refund, total, status, transaction_id, refund_id
    )
    return refund_resource(refund_row, order)


def _refund_rows(
    merchant: Merchant,
    out_trade_no: str,
    out_refund_no: str,
    refund: int,
    total: int,
    status: str,
    transaction_id: str,
    refund_id: str,
) -> tuple[Order, Refund]:
    now = _now()
    order = Order(
        mchid=merchant.mchid,
        appid=merchant.appid,
        out_trade_no=out_trade_no,
        trade_type="JSAPI",
        trade_state="REFUND",
        total=total,
        notify_url="",
        prepay_id="",
        code_token="",
        transaction_id=transaction_id,
        created_at=now,
        expires_at=now,
        success_time=now,
    )
    row = Refund(
        mchid=merchant.mchid,
        order_id=0,
        out_refund_no=out_refund_no,
        refund_id=refund_id,
        status=status,
        refund=refund,
        total=total,
        created_at=now,
        success_time=now if status == "SUCCESS" else None,
    )
    return order, row


def build_notification(
    merchant: Merchant,
    event_type: str,
    resource: Mapping[str, Any],
    *,
    key: Literal["auto", "certificate", "public_key"] = "auto",
    timestamp: int | None = None,
    notification_id: str | None = None,
    probe: bool = False,
) -> tuple[dict[str, str], bytes]:
    """``(headers, body)`` of an APIv3 notification, exactly as the platform sends it.

    ``key="auto"`` signs with the public key in ``public_key`` mode and the newest
    platform certificate otherwise. ``probe=True`` replaces the signature with a
    ``WECHATPAY/SIGNTEST/`` probe (§3.4).
    """
    now = time.time() if timestamp is None else timestamp
    body = build_envelope(
        event_type,
        dict(resource),
        merchant.apiv3_key,
        notification_id=notification_id or new_notification_id(),
        create_time=now,
    )
    use_public_key = key == "public_key" or (
        key == "auto" and merchant.mode is MerchantMode.PUBLIC_KEY
    )
    if use_public_key:
        serial, private_key = merchant.public_key_signer()
    else:
        newest = merchant.newest_certificate(now)
        serial, private_key = newest.serial_no, newest.private_key
    headers = sign_response_headers(
        body=body,
        private_key=private_key,
        serial=serial,
        timestamp=int(now),
        nonce=generate_nonce(32),
    )
    if probe:
        headers["Wechatpay-Signature"] = "WECHATPAY/SIGNTEST/" + generate_nonce(300)
    headers["Content-Type"] = "application/json"
    return headers, body


def build_v2_payment_notification(
    merchant: Merchant,
    *,
    out_trade_no: str,
    total: int,
    sign_type: Literal["MD5", "HMAC-SHA256"] = "MD5",
    openid: str = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
    transaction_id: str = "4200000000202401010000000001",
) -> bytes:
    """The signed APIv2 payment notification XML (§9.3)."""
    now = _now()
    order = Order(
        mchid=merchant.mchid,
        appid=merchant.appid,
        out_trade_no=out_trade_no,
        api="v2",
        trade_type="JSAPI",
        trade_state="SUCCESS",
        total=total,
        notify_url="",
        openid=openid,
        prepay_id="",
        code_token="",
        transaction_id=transaction_id,
        created_at=now,
        expires_at=now,
        success_time=now,
        sign_type=sign_type,
    )
    return v2_payment_xml(order, apiv2_key=merchant.apiv2_key)


def build_v2_refund_notification(
    merchant: Merchant,
    *,
    out_trade_no: str,
    out_refund_no: str,
    refund: int,
    total: int,
    status: Literal["SUCCESS", "ABNORMAL", "CLOSED"] = "SUCCESS",
) -> bytes:
    """The APIv2 refund notification XML with encrypted ``req_info`` (§9.4)."""
    order, row = _refund_rows(
        merchant,
        out_trade_no,
        out_refund_no,
        refund,
        total,
        status,
        "4200000000202401010000000001",
        "50000000202401010000000000001",
    )
    return v2_refund_xml(row, order, appid=merchant.appid, apiv2_key=merchant.apiv2_key)


class _Controls:
    """What both in-process and served simulators offer besides HTTP."""

    simulator: Simulator
    base_url: str
    tls_base_url: str = ""

    def create_merchant(
        self, mode: MerchantMode | str = MerchantMode.CERTIFICATE, *, mchid: str | None = None
    ) -> MerchantBundle:
        """Provision a merchant and return the bundle the merchant would download."""
        merchant = self.simulator.create_merchant(mode, mchid=mchid)
        return self.bundle(merchant.mchid)

    def bundle(self, mchid: str) -> MerchantBundle:
        """The bundle of an existing merchant."""
        merchant = self.merchant(mchid)
        return merchant.bundle(
            authority_pem=self.simulator.authority.certificate_pem,
            api_base_url=self.base_url,
            tls_base_url=self.tls_base_url,
        )

    def merchant(self, mchid: str) -> Merchant:
        """The platform-side merchant (platform private keys included)."""
        merchant = self.simulator.merchant(mchid)
        if merchant is None:
            raise KeyError(mchid)
        return merchant

    def pay(
        self,
        *,
        prepay_id: str = "",
        code_url: str = "",
        mchid: str = "",
        out_trade_no: str = "",
        success: bool = True,
    ) -> Order:
        """Pay (or fail) an order named by prepay_id, code_url or mchid + out_trade_no."""
        query = {
            "prepay_id": prepay_id,
            "code_url": code_url,
            "mchid": mchid,
            "out_trade_no": out_trade_no,
        }
        order = find_order(self.simulator, {k: v for k, v in query.items() if v})
        return self.simulator.pay(order, success=success)


class InProcessSimulator(_Controls):
    """A simulator reached through ``httpx.ASGITransport``; see :func:`running_simulator`."""

    def __init__(self, app: SimulatorApp, http: httpx.AsyncClient, base_url: str) -> None:
        self.app = app
        self.simulator = app.simulator
        self.http = http
        self.base_url = base_url

    async def request(
        self,
        bundle: MerchantBundle,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        wechatpay_serial: str | None = None,
    ) -> httpx.Response:
        """A signed APIv3 request as ``bundle``'s merchant."""
        body = b"" if json_body is None else json.dumps(json_body).encode("utf-8")
        url = self.base_url + path
        headers = signed_headers(
            bundle,
            method,
            url,
            body,
            timestamp=int(self.simulator.clock.now()),
            wechatpay_serial=wechatpay_serial,
        )
        return await self.http.request(method, url, content=body, headers=headers)

    async def run_due(self) -> int:
        """Complete due refunds and make due delivery attempts (use with a fake clock)."""
        return await self.simulator.run_due()


@contextlib.asynccontextmanager
async def running_simulator(
    config: SimulatorConfig | None = None, *, base_url: str = DEFAULT_BASE_URL
) -> AsyncIterator[InProcessSimulator]:
    """Run a simulator in this event loop; notifications are sent if ``run_worker``."""
    simulator = Simulator(config)
    app = create_app(simulator)
    worker = asyncio.create_task(simulator.run_worker()) if simulator.config.run_worker else None
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=base_url
        ) as http:
            yield InProcessSimulator(app, http, base_url)
    finally:
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        simulator.close()


class ServedSimulator(_Controls):
    """A simulator on real sockets; see :func:`serve_simulator`."""

    def __init__(self, server: SimulatorServer) -> None:
        self.server = server
        self.simulator = server.simulator
        self.base_url = server.base_url
        self.tls_base_url = server.tls_base_url

    def client(self, **kwargs: Any) -> httpx.Client:
        """A plain httpx client with ``base_url`` set (sign requests with :func:`signed_headers`)."""
        return httpx.Client(base_url=self.base_url, trust_env=False, **kwargs)


@contextlib.contextmanager
def serve_simulator(
    config: SimulatorConfig | None = None, *, mutual_tls: bool = True
) -> Iterator[ServedSimulator]:
    """Serve a simulator from a background thread on free loopback ports."""
    simulator = Simulator(config)
    server = SimulatorServer(simulator, tls_port=0 if mutual_tls else None)
    try:
        with server.in_thread():
            yield ServedSimulator(server)
    finally:
        simulator.close()
