"""The simulator on real loopback sockets, served by uvicorn from a background thread.

``with serve_simulator() as sim:`` is for code that needs a real URL (an SDK with
its own transport, a subprocess, a browser): ``sim.base_url`` serves everything,
``sim.tls_base_url`` the APIv2 mutual-TLS endpoints.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx

from wxpaykit.simulator.config import SimulatorConfig
from wxpaykit.simulator.server import SimulatorServer
from wxpaykit.simulator.service import Simulator
from wxpaykit.testing.controls import SimulatorControls, kit_config

__all__ = ["ServedSimulator", "serve_simulator"]


class ServedSimulator(SimulatorControls):
    """A simulator on real sockets; see :func:`serve_simulator`."""

    def __init__(self, server: SimulatorServer) -> None:
        self.server = server
        self.simulator = server.simulator
        self.base_url = server.base_url
        self.tls_base_url = server.tls_base_url

    def client(self, **kwargs: Any) -> httpx.Client:
        """A plain httpx client with ``base_url`` set (sign requests with ``signed_headers``)."""
        return httpx.Client(base_url=self.base_url, trust_env=False, **kwargs)


@contextlib.contextmanager
def serve_simulator(
    config: SimulatorConfig | None = None, *, mutual_tls: bool = True
) -> Iterator[ServedSimulator]:
    """Serve a simulator from a background thread on free loopback ports.

    Without ``config``, the simulator's keys come from the shared test key pool
    (:func:`~wxpaykit.testing.controls.kit_config`).
    """
    simulator = Simulator(kit_config(config))
    server = SimulatorServer(simulator, tls_port=0 if mutual_tls else None)
    try:
        with server.in_thread():
            yield ServedSimulator(server)
    finally:
        simulator.close()
