"""The simulator in the test's own event loop, reached through ``httpx.ASGITransport``.

``async with running_simulator() as sim:`` gives an :class:`InProcessSimulator`
whose ``http`` client talks to the simulator without sockets. Pass a
``SimulatorConfig`` with a ``delivery_transport`` to receive notifications in process
too, and with a :class:`~wxpaykit.testing.clock.FakeClock` (and ``run_worker=False``)
to drive retries with :meth:`InProcessSimulator.run_due` instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from wxpaykit.simulator.app import SimulatorApp, create_app
from wxpaykit.simulator.bundle import MerchantBundle
from wxpaykit.simulator.config import SimulatorConfig
from wxpaykit.simulator.service import Simulator
from wxpaykit.testing.controls import SimulatorControls, kit_config
from wxpaykit.testing.signed_requests import signed_headers

__all__ = ["DEFAULT_BASE_URL", "InProcessSimulator", "running_simulator"]

#: The host in-process clients use; requests never leave the process.
DEFAULT_BASE_URL = "https://api.mch.weixin.qq.com"


class InProcessSimulator(SimulatorControls):
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
    """Run a simulator in this event loop; notifications are sent if ``run_worker``.

    Without ``config``, the simulator's keys come from the shared test key pool
    (:func:`~wxpaykit.testing.controls.kit_config`).
    """
    simulator = Simulator(kit_config(config))
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
