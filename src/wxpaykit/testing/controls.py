"""What a test does to a running simulator besides HTTP: merchants and payments.

:class:`SimulatorControls` is shared by the in-process
(:class:`~wxpaykit.testing.in_process.InProcessSimulator`) and the served
(:class:`~wxpaykit.testing.served.ServedSimulator`) simulator: both reach the
:class:`~wxpaykit.simulator.service.Simulator` object directly, without signing
requests. :func:`kit_config` is the configuration the testing kit uses when the test
gives none.
"""

from __future__ import annotations

from wxpaykit.simulator.bundle import MerchantBundle
from wxpaykit.simulator.config import SimulatorConfig
from wxpaykit.simulator.merchants import Merchant
from wxpaykit.simulator.modes import MerchantMode
from wxpaykit.simulator.payer import find_order
from wxpaykit.simulator.service import Simulator
from wxpaykit.simulator.state import Order
from wxpaykit.testing.keys import shared_key_pool

__all__ = ["SimulatorControls", "kit_config"]


def kit_config(config: SimulatorConfig | None) -> SimulatorConfig:
    """``config``, or the kit's default: local defaults with keys from the shared pool.

    Pooled keys make a merchant cost milliseconds instead of up to a second of RSA key
    generation; a test that brings its own :class:`SimulatorConfig` gets fresh keys
    unless it sets ``key_source=shared_key_pool()`` itself.
    """
    return config if config is not None else SimulatorConfig(key_source=shared_key_pool())


class SimulatorControls:
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
