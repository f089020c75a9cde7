"""Fixtures for the simulator tests: a fake clock, an in-process notification receiver.

The receiver is a real ASGI app reached through ``httpx.ASGITransport``: it records
each request and answers from a script (default 204), so delivery tests need neither
sockets nor sleeps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from wxpaykit.simulator import MerchantBundle, SimulatorConfig
from wxpaykit.testing.keys import shared_key_pool
from wxpaykit.testing.simulator import FakeClock, InProcessSimulator, running_simulator

NOTIFY_URL = "https://merchant.example/notify"


async def read_body(receive: Receive) -> bytes:
    """The whole body of an ASGI request."""
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if not message.get("more_body"):
            return body


@dataclass
class ReceivedNotification:
    """One request the receiver got."""

    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Records notifications; answers ``statuses`` in turn, then ``default_status``."""

    statuses: list[int] = field(default_factory=list)
    default_status: int = 204
    reply_body: bytes = b""
    received: list[ReceivedNotification] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body = await read_body(receive)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.received.append(ReceivedNotification(headers=headers, body=body))
        status = self.statuses.pop(0) if self.statuses else self.default_status
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": self.reply_body})


def fake_clock_config(
    clock: FakeClock,
    notify_app: ASGIApp | None = None,
    *,
    time_scale: float = 1.0,
    data_path: str | Path = ":memory:",
) -> SimulatorConfig:
    """Pooled test keys, ``clock``, no background worker (the test calls ``run_due``).

    Notifications go in process to ``notify_app``, or over real HTTP without one.
    """
    return SimulatorConfig(
        key_source=shared_key_pool(),
        clock=clock,
        run_worker=False,
        time_scale=time_scale,
        data_path=data_path,
        delivery_transport=None if notify_app is None else httpx.ASGITransport(app=notify_app),
    )


@pytest.fixture
def fake_clock() -> FakeClock:
    """A clock tests move by hand."""
    return FakeClock()


@pytest.fixture
def receiver() -> Receiver:
    """The merchant's notify_url, in process."""
    return Receiver()


@pytest.fixture
async def sim(fake_clock: FakeClock, receiver: Receiver) -> AsyncIterator[InProcessSimulator]:
    """An in-process simulator on the fake clock, delivering to ``receiver``."""
    async with running_simulator(fake_clock_config(fake_clock, receiver)) as simulator:
        yield simulator


@pytest.fixture
def merchant(sim: InProcessSimulator) -> MerchantBundle:
    """A certificate-mode merchant."""
    return sim.create_merchant("certificate")


def native_order(
    bundle: MerchantBundle, out_trade_no: str = "ORDER_000001", total: int = 100
) -> dict[str, object]:
    """A Native prepay body."""
    return {
        "appid": bundle.appid,
        "mchid": bundle.mchid,
        "description": "测试商品",
        "out_trade_no": out_trade_no,
        "notify_url": NOTIFY_URL,
        "amount": {"total": total, "currency": "CNY"},
    }
