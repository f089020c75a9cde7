"""The orders API against the simulator: prepay through the SDK, payment back through
the simulator's notification sender, all in process (ASGI transports both ways)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from wxpaykit.client.async_client import AsyncWeChatPay
from wxpaykit.core.crypto import ApiV3Key
from wxpaykit.gateway.app import create_app
from wxpaykit.gateway.orders import order_routes
from wxpaykit.gateway.settings import GatewaySettings, MerchantSettings
from wxpaykit.simulator.service import SimulatorConfig
from wxpaykit.storage.ledger import SqlLedger
from wxpaykit.testing.simulator import (
    InProcessSimulator,
    MerchantBundle,
    MerchantMode,
    running_simulator,
)

TOKEN = "orders-api-test-token"


class _LateApp:
    """An ASGI app set after the simulator exists (the gateway needs its merchant first)."""

    app: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


@dataclass
class World:
    """Simulator, merchant, gateway client and ledger of one test."""

    sim: InProcessSimulator
    bundle: MerchantBundle
    gateway: httpx.AsyncClient
    ledger: SqlLedger


@pytest.fixture
async def world(ledger: SqlLedger) -> AsyncIterator[World]:
    """A simulator delivering to an in-process gateway whose orders API prepays there."""
    late = _LateApp()
    config = SimulatorConfig(delivery_transport=httpx.ASGITransport(app=late), run_worker=False)
    async with running_simulator(config) as sim:
        bundle = sim.create_merchant(MerchantMode.PUBLIC_KEY)
        settings = GatewaySettings(
            api_token=TOKEN,
            public_url="https://gateway.example.com",
            merchants=(
                MerchantSettings(
                    mchid=bundle.mchid,
                    appids=frozenset(bundle.appids),
                    apiv3_key=ApiV3Key(bundle.apiv3_key),
                    apiv2_key=bundle.apiv2_key,
                    trusted_keys=bundle.trusted_keys(),
                    credentials=bundle.credentials(),
                ),
            ),
        )
        trusted = bundle.trusted_keys()
        async with AsyncWeChatPay(
            credentials=bundle.credentials(),
            public_key=trusted.public_keys[0],
            certificate_mode="off",
            appid=bundle.appid,
            base_url=sim.base_url,
            transport=httpx.ASGITransport(app=sim.app),
        ) as sdk:
            app = create_app(
                settings,
                ledger,
                extra_routes=order_routes(settings, ledger, {bundle.mchid: sdk}),
            )
            late.app = app
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://gateway"
            ) as gateway:
                yield World(sim=sim, bundle=bundle, gateway=gateway, ledger=ledger)


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


async def test_native_order_is_created_paid_and_applied(world: World) -> None:
    created = await world.gateway.post(
        "/api/orders",
        json={"description": "coffee", "total": 1800, "trade_type": "NATIVE"},
        headers=_auth(),
    )
    assert created.status_code == 201, created.text
    order = created.json()
    assert order["code_url"].startswith("weixin://")
    unpaid = await world.gateway.get(f"/api/orders/{order['out_trade_no']}", headers=_auth())
    assert unpaid.json()["state"] == "NOTPAY"

    world.sim.pay(code_url=order["code_url"])
    await world.sim.run_due()  # the platform sends TRANSACTION.SUCCESS to the gateway

    paid = await world.gateway.get(f"/api/orders/{order['out_trade_no']}", headers=_auth())
    assert paid.status_code == 200
    assert paid.json()["state"] == "SUCCESS"
    assert paid.json()["total"] == 1800
    assert paid.json()["transaction_id"]


async def test_jsapi_order_returns_signed_front_end_parameters(world: World) -> None:
    created = await world.gateway.post(
        "/api/orders",
        json={
            "description": "tea",
            "total": 500,
            "trade_type": "JSAPI",
            "payer_openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
            "out_trade_no": "jsapi-order-0001",
        },
        headers=_auth(),
    )

    assert created.status_code == 201, created.text
    params = created.json()["pay_params"]
    assert params["package"] == f"prepay_id={created.json()['prepay_id']}"
    assert params["signType"] == "RSA"
    assert params["appId"] == world.bundle.appid


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "UNAUTHORIZED"),
        ({"Authorization": "Bearer wrong"}, 401, "UNAUTHORIZED"),
        ({"Authorization": f"Basic {TOKEN}"}, 401, "UNAUTHORIZED"),
    ],
)
async def test_api_requires_the_bearer_token(
    world: World, headers: dict[str, str], status: int, code: str
) -> None:
    for response in (
        await world.gateway.post(
            "/api/orders", json={"description": "x", "total": 1}, headers=headers
        ),
        await world.gateway.get("/api/orders/whatever", headers=headers),
    ):
        assert response.status_code == status
        assert response.json()["code"] == code


async def test_bad_order_and_unknown_order_get_specific_errors(world: World) -> None:
    bad = await world.gateway.post(
        "/api/orders", json={"description": "x", "total": 0}, headers=_auth()
    )
    missing = await world.gateway.get("/api/orders/no-such-order", headers=_auth())

    assert bad.status_code == 400
    assert bad.json()["code"] == "PARAM_ERROR"
    assert missing.status_code == 404
    assert missing.json()["code"] == "ORDER_NOT_EXIST"
