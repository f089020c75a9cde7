"""How a simulator runs: :class:`SimulatorConfig`, one object with a default for each knob."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import httpx

from wxpaykit.simulator.clock import Clock, SystemClock
from wxpaykit.testing.keys import KeySource, generate_private_key

__all__ = ["SimulatorConfig"]


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
    #: Makes the RSA keys of the CA, the TLS listener and merchants. Fresh keys by
    #: default; the testing kit passes :func:`~wxpaykit.testing.keys.shared_key_pool`
    #: so that a test suite does not spend its time generating keys.
    key_source: KeySource = field(default=generate_private_key)
