"""The simulated platform: one :class:`Simulator` over one state database.

HTTP edges (APIv3 JSON, APIv2 XML, the ``/sim`` control API) translate requests into
calls on the simulator, so an order placed through APIv2 can be queried through
APIv3 as on the real platform. The simulator wires its parts together and runs the
scheduler; the rules live in the parts:

* merchants: :mod:`.merchants` (provisioned here, kept in the state and a cache);
* orders and payments: :class:`~wxpaykit.simulator.order_book.OrderBook`;
* refunds: :class:`~wxpaykit.simulator.refund_book.RefundBook`;
* notifications: :class:`~wxpaykit.simulator.notifier.Notifier` queues them,
  :class:`~wxpaykit.simulator.delivery.DeliveryEngine` sends them.
"""

from __future__ import annotations

import asyncio
import contextlib

from wxpaykit.simulator.authority import CertificateAuthority
from wxpaykit.simulator.chaos import ChaosSettings
from wxpaykit.simulator.config import SimulatorConfig
from wxpaykit.simulator.delivery import DeliveryEngine
from wxpaykit.simulator.merchants import Merchant, MerchantMode, provision_merchant
from wxpaykit.simulator.notifier import Notifier
from wxpaykit.simulator.order_book import OrderBook, OrderRequest
from wxpaykit.simulator.platform_errors import PlatformError
from wxpaykit.simulator.refund_book import RefundBook
from wxpaykit.simulator.state import Order, Refund, SimulatorState

__all__ = ["OrderRequest", "Simulator", "SimulatorConfig"]


class Simulator:
    """One simulated WeChat Pay platform over one state database."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.clock = self.config.clock
        self.state = SimulatorState(self.config.data_path)
        self.authority = CertificateAuthority.load_or_create(
            self.state, now=self.clock.now(), key_source=self.config.key_source
        )
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
        notifier = Notifier(
            clock=self.clock, merchant=self.merchant, delivery=self.delivery, wake=self.wake
        )
        self.orders = OrderBook(state=self.state, clock=self.clock, notifier=notifier)
        self.refunds = RefundBook(
            state=self.state,
            clock=self.clock,
            merchant=self.merchant,
            notifier=notifier,
            wake=self.wake,
            delay_seconds=self.config.refund_delay_seconds * self.config.time_scale,
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
            mode,
            now=self.clock.now(),
            authority=self.authority,
            mchid=mchid,
            appids=appids,
            key_source=self.config.key_source,
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
        entry = merchant.add_platform_certificate(
            self.clock.now(), key_source=self.config.key_source
        )
        self.save_merchant(merchant)
        return entry.serial_no

    def chaos_for(self, mchid: str) -> ChaosSettings:
        """Chaos of a merchant, else the global settings, else none."""
        doc = self.state.load_chaos(mchid) or self.state.load_chaos("*")
        return ChaosSettings.from_json(doc) if doc else ChaosSettings()

    # --- orders and refunds (the rules are in OrderBook and RefundBook) ---

    def create_order(self, request: OrderRequest) -> Order:
        """Place an order, or return the same one for an identical re-submission (§7.1)."""
        return self.orders.create(request)

    def close_order(self, order: Order) -> Order:
        """Close an unpaid order; closing a closed one again is fine (§7.4)."""
        return self.orders.close(order)

    def pay(self, order: Order, *, success: bool = True, openid: str | None = None) -> Order:
        """The payer pays (or fails to pay) an order; success queues TRANSACTION.SUCCESS."""
        return self.orders.pay(order, success=success, openid=openid)

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
        return self.refunds.create(
            order,
            out_refund_no=out_refund_no,
            refund=refund,
            total=total,
            reason=reason,
            notify_url=notify_url,
            funds_account=funds_account,
            api=api,
            fingerprint=fingerprint,
        )

    def complete_refund(self, refund: Refund, outcome: str = "SUCCESS") -> Refund:
        """Finish a PROCESSING (or ABNORMAL) refund and queue its REFUND.* notification."""
        return self.refunds.complete(refund, outcome)

    # --- the scheduler ---

    async def run_due(self) -> int:
        """Complete due refunds, then make every due delivery attempt; returns deliveries handled."""
        self.refunds.complete_due()
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
