"""Test WeChat Pay code without real money: the simulator as a test fixture.

Three ways in, from the lightest:

* **No HTTP** (:mod:`.offline`). :func:`new_merchant` makes a merchant's keys
  offline; :func:`build_notification` returns ``(headers, body)`` of a signed,
  encrypted APIv3 notification for it, and :func:`build_v2_payment_notification` /
  :func:`build_v2_refund_notification` the APIv2 XML. Feed them to your handler.
* **In process** (:mod:`.in_process`). ``async with running_simulator() as sim:``
  gives an :class:`InProcessSimulator` whose ``http`` client talks to the simulator
  through ``httpx.ASGITransport``; pass a ``delivery_transport`` to receive
  notifications in process too, and a :class:`FakeClock` to drive retries without
  sleeping.
* **On a port** (:mod:`.served`). ``with serve_simulator() as sim:`` runs uvicorn in a
  thread on a free port (plus the APIv2 mutual-TLS port) for code that needs a real
  URL.

:func:`signed_headers` signs a request the way an SDK does, for calling the
simulator without an SDK. Unless a test passes its own ``SimulatorConfig``, the kit
draws RSA keys from a shared pool (:func:`~wxpaykit.testing.keys.shared_key_pool`)
instead of generating fresh ones, which is what makes a merchant cheap.

This module gathers the kit's names in one place; each lives in the module named above.
"""

from __future__ import annotations

from wxpaykit.simulator.bundle import MerchantBundle
from wxpaykit.simulator.merchants import Merchant
from wxpaykit.simulator.modes import MerchantMode
from wxpaykit.testing.clock import FakeClock
from wxpaykit.testing.in_process import DEFAULT_BASE_URL, InProcessSimulator, running_simulator
from wxpaykit.testing.offline import (
    build_notification,
    build_v2_payment_notification,
    build_v2_refund_notification,
    new_merchant,
    payment_resource,
    refund_resource_for,
)
from wxpaykit.testing.served import ServedSimulator, serve_simulator
from wxpaykit.testing.signed_requests import signed_headers

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
