"""The simulated platform's business rules: merchants, orders, payments, refunds.

HTTP edges (APIv3 JSON, APIv2 XML, the ``/sim`` control API) translate requests into
calls here, so an order placed through APIv2 can be queried through APIv3 as on the
real platform, and every state change that the platform announces queues a
notification for :class:`~wxpaykit.simulator.delivery.DeliveryEngine`.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sqlite3
import string
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from wxpaykit.simulator.authority import CertificateAuthority
from wxpaykit.simulator.chaos import ChaosSettings
from wxpaykit.simulator.clock import Clock, SystemClock, format_v2_time
from wxpaykit.simulator.delivery import DeliveryEngine
from wxpaykit.simulator.merchants import Merchant, MerchantMode, provision_merchant
from wxpaykit.simulator.notifications import (
    build_envelope,
    new_notification_id,
    refund_resource,
    transaction_resource,
    v2_payment_xml,
    v2_refund_xml,
)
from wxpaykit.simulator.platform_errors import PlatformError
from wxpaykit.simulator.state import Delivery, Order, Refund, SimulatorState

__all__ = ["OrderRequest", "Simulator", "SimulatorConfig"]

_MAX_REFUNDS_PER_ORDER = 50
_ORDER_VALID_SECONDS = 7 * 86400
_REENTRY_MISMATCH = "请求重入时，参数与首次请求时不一致"


@dataclass(kw_only=True)
class SimulatorConfig:
    """How a simulator runs. Every field has a default that suits local use."""

    #: SQLite file (created if missing) or ``:memory:``.
    data_path: str | Path = ":memory:"
    #: Multiplies platform delays: retry schedule, refund processing, migration days.
    time_scale: float = 1.0
    #: Real seconds a notify_url has to answer before the attempt counts as failed.
    ack_timeout_seconds: float = 5.0
    #: Platform seconds (× time_scale) before a refund completes on its own.
    refund_delay_seconds: float = 10.0
    #: Accept any http(s) notify_url; by default only https or http on loopback.
    allow_any_notify_url: bool = False
    #: Request timestamps further than this from the clock are refused (SIGN_ERROR).
    timestamp_tolerance_seconds: int = 300
    #: ``/secapi/pay/refund`` only on the mutual-TLS listener; turn off to test APIv2
    #: refunds in process, where there is no TLS at all.
    require_client_certificate: bool = True
    #: Seed of the migration ramp draws (chaos has its own seed).
    seed: int = 0
    clock: Clock = field(default_factory=SystemClock)
    #: Where notifications go: None means real HTTP; a transport (e.g. an
    #: ``httpx.ASGITransport``) delivers in-process.
    delivery_transport: httpx.AsyncBaseTransport | None = None
    #: Run the background sender in the app's lifespan (tests with a fake clock
    #: turn it off and call :meth:`Simulator.run_due`).
    run_worker: bool = True


@dataclass(kw_only=True)
class OrderRequest:
    """A prepay request, once validated (APIv3 or APIv2)."""

    mchid: str
    sub_mchid: str = ""
    appid: str
    sub_appid: str = ""
    out_trade_no: str
    trade_type: str
    description: str
    total: int
    currency: str = "CNY"
    notify_url: str
    attach: str = ""
    openid: str = ""
    sub_openid: str = ""
    time_expire: float | None = None
    scene_info: dict[str, object] | None = None
    api: str = "v3"
    sign_type: str = ""
    #: Digest of the request's parameters: equal digests are the same request.
    fingerprint: str


def _random_text(length: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


class Simulator:
    """One simulated WeChat Pay platform over one state database."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.clock = self.config.clock
        self.state = SimulatorState(self.config.data_path)
        self.authority = CertificateAuthority.load_or_create(self.state, now=self.clock.now())
        self._merchants: dict[str, Merchant] = {}
        self.delivery = DeliveryEngine(
            state=self.state,
            clock=self.clock,
            merchant=self.merchant,
            chaos=self.chaos_for,
            time_scale=self.config.time_scale,
            ack_timeout_seconds=self.config.ack_timeout_seconds,
            transport=self.config.delivery_transport,
            seed=self.config.seed,
        )
        #: Set by whoever runs the APIv2 mutual-TLS listener; shown in merchant bundles.
        self.tls_base_url = ""
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def time_scale(self) -> float:
        """The configured time scale."""
        return self.config.time_scale

    def close(self) -> None:
        """Close the database."""
        self.state.close()

    # --- merchants ---

    def create_merchant(
        self,
        mode: MerchantMode | str = MerchantMode.CERTIFICATE,
        *,
        mchid: str | None = None,
        appids: list[str] | None = None,
    ) -> Merchant:
        """Provision and store a merchant (the API certificate comes from the simulator CA)."""
        if mchid is not None and self.merchant(mchid) is not None:
            raise PlatformError(400, "INVALID_REQUEST", f"商户号 {mchid} 已存在")
        merchant = provision_merchant(
            mode, now=self.clock.now(), authority=self.authority, mchid=mchid, appids=appids
        )
        self.save_merchant(merchant)
        return merchant

    def save_merchant(self, merchant: Merchant) -> None:
        """Persist a merchant (after provisioning or a change of settings)."""
        self.state.save_merchant(merchant.mchid, merchant.to_doc())
        self._merchants[merchant.mchid] = merchant

    def merchant(self, mchid: str) -> Merchant | None:
        """A merchant by id, or None."""
        cached = self._merchants.get(mchid)
        if cached is not None:
            return cached
        doc = self.state.load_merchant(mchid)
        if doc is None:
            return None
        merchant = Merchant.from_doc(doc)
        self._merchants[mchid] = merchant
        return merchant

    def rotate_certificate(self, merchant: Merchant) -> str:
        """Add a new platform certificate overlapping the current ones; returns its serial."""
        if merchant.mode is MerchantMode.PUBLIC_KEY:
            raise PlatformError(
                400, "INVALID_REQUEST", "public-key merchants have no platform certificate"
            )
        entry = merchant.add_platform_certificate(self.clock.now())
        self.save_merchant(merchant)
        return entry.serial_no

    def chaos_for(self, mchid: str) -> ChaosSettings:
        """Chaos of a merchant, else the global settings, else none."""
        doc = self.state.load_chaos(mchid) or self.state.load_chaos("*")
        return ChaosSettings.from_json(doc) if doc else ChaosSettings()

    # --- ids ---

    def _date(self) -> str:
        return format_v2_time(self.clock.now())[:8]

    def _transaction_id(self) -> str:
        return f"420000{self._date()}{self.state.next_sequence('transaction'):014d}"

    def _refund_id(self) -> str:
        return f"500000{self._date()}{self.state.next_sequence('refund'):015d}"

    def _prepay_id(self) -> str:
        return f"wx{format_v2_time(self.clock.now())}{secrets.token_hex(10)}"

    # --- orders ---

    def create_order(self, request: OrderRequest) -> Order:
        """Place an order, or return the same one for an identical re-submission (§7.1)."""
        existing = self.state.order_by_out_trade_no(
            request.mchid, request.sub_mchid, request.out_trade_no
        )
        if existing is not None:
            return self._reentered(existing, request)
        now = self.clock.now()
        order = Order(
            mchid=request.mchid,
            sub_mchid=request.sub_mchid,
            appid=request.appid,
            sub_appid=request.sub_appid,
            out_trade_no=request.out_trade_no,
            api=request.api,
            trade_type=request.trade_type,
            description=request.description,
            total=request.total,
            currency=request.currency,
            notify_url=request.notify_url,
            attach=request.attach,
            openid=request.openid,
            sub_openid=request.sub_openid,
            prepay_id=self._prepay_id(),
            code_token=_random_text(10),
            transaction_id=self._transaction_id(),
            created_at=now,
            expires_at=request.time_expire or now + _ORDER_VALID_SECONDS,
            fingerprint=request.fingerprint,
            sign_type=request.sign_type,
            scene_info=dict(request.scene_info) if request.scene_info else None,
        )
        try:
            return self.state.insert_order(order)
        except sqlite3.IntegrityError:
            # A concurrent identical request won the race: answer as a re-submission.
            raced = self.state.order_by_out_trade_no(
                request.mchid, request.sub_mchid, request.out_trade_no
            )
            if raced is None:
                raise
            return self._reentered(raced, request)

    @staticmethod
    def _reentered(existing: Order, request: OrderRequest) -> Order:
        if existing.trade_state in ("SUCCESS", "REFUND"):
            raise PlatformError(400, "ORDERPAID", "该订单已支付", v2_code="ORDERPAID")
        if existing.trade_state == "CLOSED":
            raise PlatformError(400, "ORDER_CLOSED", "订单已关闭", v2_code="ORDERCLOSED")
        if existing.fingerprint != request.fingerprint:
            raise PlatformError(
                400, "INVALID_REQUEST", _REENTRY_MISMATCH, v2_code="OUT_TRADE_NO_USED"
            )
        return existing

    def close_order(self, order: Order) -> Order:
        """Close an unpaid order; closing a closed one again is fine (§7.4)."""
        if order.trade_state in ("SUCCESS", "REFUND"):
            raise PlatformError(400, "ORDERPAID", "订单已支付", v2_code="ORDERPAID")
        if order.trade_state != "CLOSED":
            order.trade_state = "CLOSED"
            self.state.update_order(order)
        return order

    def pay(self, order: Order, *, success: bool = True, openid: str | None = None) -> Order:
        """The payer pays (or fails to pay) an order; success queues TRANSACTION.SUCCESS."""
        if order.trade_state in ("SUCCESS", "REFUND"):
            raise PlatformError(400, "ORDERPAID", "该订单已支付", v2_code="ORDERPAID")
        if order.trade_state == "CLOSED":
            raise PlatformError(400, "ORDER_CLOSED", "订单已关闭", v2_code="ORDERCLOSED")
        now = self.clock.now()
        if now > order.expires_at:
            order.trade_state = "CLOSED"
            self.state.update_order(order)
            raise PlatformError(400, "ORDER_CLOSED", "订单已过期关闭", v2_code="ORDERCLOSED")
        if not success:
            order.trade_state = "PAYERROR"
            self.state.update_order(order)
            return order
        order.trade_state = "SUCCESS"
        order.success_time = now
        if openid:
            order.openid = openid
        elif not order.openid:
            order.openid = "o" + _random_text(27)
        self.state.update_order(order)
        self._notify_payment(order)
        return order

    def _notify_payment(self, order: Order) -> None:
        merchant = self.merchant(order.mchid)
        if merchant is None:
            return
        now = self.clock.now()
        nid = new_notification_id()
        if order.api == "v2":
            body = v2_payment_xml(order, apiv2_key=merchant.apiv2_key)
        else:
            body = build_envelope(
                "TRANSACTION.SUCCESS",
                transaction_resource(order),
                merchant.apiv3_key,
                notification_id=nid,
                create_time=now,
            )
        self._enqueue(
            order.mchid,
            nid,
            order.api,
            "TRANSACTION.SUCCESS",
            order.notify_url,
            body,
            order.sign_type,
        )

    def _enqueue(
        self,
        mchid: str,
        nid: str,
        api: str,
        event_type: str,
        url: str,
        body: bytes,
        sign_type: str = "",
    ) -> None:
        now = self.clock.now()
        self.delivery.enqueue(
            Delivery(
                mchid=mchid,
                notification_id=nid,
                api=api,
                event_type=event_type,
                notify_url=url,
                body=body,
                next_at=now,
                created_at=now,
                sign_type=sign_type,
            )
        )
        self.wake()

    # --- refunds ---

    def create_refund(
        self,
        order: Order,
        *,
        out_refund_no: str,
        refund: int,
        total: int,
        reason: str = "",
        notify_url: str = "",
        funds_account: str = "",
        api: str = "v3",
        fingerprint: str = "",
    ) -> Refund:
        """Accept a refund (PROCESSING); the same ``out_refund_no`` returns the same refund."""
        existing = self.state.refund_by_out_refund_no(order.mchid, order.sub_mchid, out_refund_no)
        if existing is not None:
            if existing.order_id != order.id or existing.fingerprint != fingerprint:
                raise PlatformError(400, "INVALID_REQUEST", _REENTRY_MISMATCH)
            return existing
        if order.trade_state not in ("SUCCESS", "REFUND"):
            raise PlatformError(
                400,
                "INVALID_REQUEST",
                "订单状态不正确，未支付的订单不能退款",
                v2_code="ORDERNOTPAID",
            )
        if total != order.total:
            raise PlatformError(
                400,
                "INVALID_REQUEST",
                "订单金额或退款金额与之前请求不一致，请核实后再试",
                v2_code="INVALID_REQUEST",
            )
        if order.refund_count >= _MAX_REFUNDS_PER_ORDER:
            raise PlatformError(
                403, "RULE_LIMIT", "一笔订单最多可以部分退款50次", v2_code="INVALID_REQUEST"
            )
        if refund < 1 or order.refunded + refund > order.total:
            raise PlatformError(
                400, "INVALID_REQUEST", "申请退款金额超过订单可退金额", v2_code="INVALID_REQUEST"
            )
        merchant = self.merchant(order.mchid)
        now = self.clock.now()
        auto = merchant is None or merchant.refund_auto_complete
        created = self.state.insert_refund(
            Refund(
                mchid=order.mchid,
                sub_mchid=order.sub_mchid,
                order_id=order.id,
                out_refund_no=out_refund_no,
                refund_id=self._refund_id(),
                api=api,
                refund=refund,
                total=total,
                reason=reason,
                notify_url=notify_url,
                funds_account=funds_account,
                created_at=now,
                complete_at=now + self.config.refund_delay_seconds * self.time_scale
                if auto
                else None,
                fingerprint=fingerprint,
            )
        )
        order.refund_count += 1
        order.refunded += refund
        self.state.update_order(order)
        self.wake()
        return created

    def complete_refund(self, refund: Refund, outcome: str = "SUCCESS") -> Refund:
        """Finish a PROCESSING (or ABNORMAL) refund and queue its REFUND.* notification."""
        if outcome not in ("SUCCESS", "ABNORMAL", "CLOSED"):
            raise PlatformError(400, "PARAM_ERROR", "outcome must be SUCCESS, ABNORMAL or CLOSED")
        if refund.status not in ("PROCESSING", "ABNORMAL"):
            raise PlatformError(400, "INVALID_REQUEST", f"退款已是终态 {refund.status}")
        order = self.state.order_by_id(refund.order_id)
        if order is None:
            raise PlatformError(404, "ORDER_NOT_EXIST", "订单不存在")
        now = self.clock.now()
        refund.status = outcome
        refund.complete_at = None
        if outcome == "SUCCESS":
            refund.success_time = now
            if order.trade_state == "SUCCESS":
                order.trade_state = "REFUND"
        elif outcome == "CLOSED":
            order.refunded -= refund.refund
        self.state.update_refund(refund)
        self.state.update_order(order)
        self._notify_refund(refund, order)
        return refund

    def _notify_refund(self, refund: Refund, order: Order) -> None:
        merchant = self.merchant(order.mchid)
        url = refund.notify_url or order.notify_url
        if merchant is None or not url:
            return
        nid = new_notification_id()
        event_type = f"REFUND.{refund.status}"
        if refund.api == "v2":
            body = v2_refund_xml(refund, order, appid=order.appid, apiv2_key=merchant.apiv2_key)
        else:
            body = build_envelope(
                event_type,
                refund_resource(refund, order),
                merchant.apiv3_key,
                notification_id=nid,
                create_time=self.clock.now(),
            )
        self._enqueue(order.mchid, nid, refund.api, event_type, url, body)

    # --- the scheduler ---

    async def run_due(self) -> int:
        """Complete due refunds, then make every due delivery attempt; returns deliveries handled."""
        for refund in self.state.due_refunds(self.clock.now()):
            with contextlib.suppress(PlatformError):
                self.complete_refund(refund, "SUCCESS")
        return await self.delivery.run_due()

    def wake(self) -> None:
        """Tell the background worker that something is due (from any thread)."""
        if self._loop is not None and self._wake is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run_worker(self, *, poll_seconds: float = 1.0) -> None:
        """Send notifications as they fall due, until cancelled."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        try:
            while True:
                await self.run_due()
                next_at = self.state.next_due_at()
                delay = poll_seconds
                if next_at is not None:
                    delay = max(0.0, min(poll_seconds, next_at - self.clock.now()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
                self._wake.clear()
        finally:
            self._loop = None
            self._wake = None
