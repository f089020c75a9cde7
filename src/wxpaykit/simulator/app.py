"""The simulator as one ASGI application.

``create_app`` assembles the APIv3 and APIv2 endpoints, the ``/sim`` control API, the
payer and the fault-injection middleware around one :class:`Simulator`; its lifespan
runs the notification sender (unless the configuration turns it off, as tests with a
fake clock do).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from wxpaykit.simulator import admin, api_v2, api_v3, bills, payer
from wxpaykit.simulator.config import SimulatorConfig
from wxpaykit.simulator.faults import FaultInjection
from wxpaykit.simulator.service import Simulator

__all__ = ["SimulatorApp", "create_app"]


class SimulatorApp:
    """The ASGI app; ``simulator`` gives direct access to the state and scheduler."""

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator

        @contextlib.asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            worker = None
            if simulator.config.run_worker:
                worker = asyncio.create_task(simulator.run_worker(), name="wxpaykit-sim-delivery")
            try:
                yield
            finally:
                if worker is not None:
                    worker.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await worker

        self.starlette = Starlette(
            routes=[
                *api_v3.routes(),
                *bills.routes(),
                *api_v2.routes(),
                *admin.routes(),
                *payer.routes(),
            ],
            lifespan=lifespan,
        )
        self.starlette.state.simulator = simulator
        self._asgi = FaultInjection(self.starlette, simulator)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._asgi(scope, receive, send)


def create_app(
    simulator: Simulator | None = None, *, config: SimulatorConfig | None = None
) -> SimulatorApp:
    """The simulator app, over ``simulator`` or a new one made from ``config``."""
    return SimulatorApp(simulator or Simulator(config))
