"""A faithful local WeChat Pay: signs, encrypts, notifies and retries like the platform.

Start it with ``wxpaykit sim`` or in-process with :func:`create_app`; see
``docs/simulator.md`` and :mod:`wxpaykit.testing.simulator` for the testing kit.
"""

from __future__ import annotations

from wxpaykit.simulator.app import SimulatorApp, create_app
from wxpaykit.simulator.bundle import MerchantBundle
from wxpaykit.simulator.chaos import ChaosSettings
from wxpaykit.simulator.config import SimulatorConfig
from wxpaykit.simulator.merchants import Merchant
from wxpaykit.simulator.modes import MerchantMode
from wxpaykit.simulator.service import Simulator

__all__ = [
    "ChaosSettings",
    "Merchant",
    "MerchantBundle",
    "MerchantMode",
    "Simulator",
    "SimulatorApp",
    "SimulatorConfig",
    "create_app",
]
