"""Notifications are served before routing, and still through the routes when mounted."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.routing import Mount

from wxpaykit.gateway.app import create_app
from wxpaykit.gateway.settings import GatewaySettings
from wxpaykit.storage.ledger import SqlLedger
from wxpaykit.testing.gateway_kit import MerchantKit

from .conftest import seed_orders


async def test_the_same_answers_directly_and_through_a_mount(
    settings: GatewaySettings, ledger: SqlLedger, kit: MerchantKit
) -> None:
    gateway = create_app(settings, ledger)
    outer = Starlette(routes=[Mount("/pay", app=gateway)])
    await seed_orders(ledger, kit, ["route-1", "route-2"])
    direct = kit.payment("route-1")
    mounted = kit.payment("route-2")
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://g") as a,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=outer), base_url="http://g") as b,
    ):
        first = await a.post(f"/notify/v3/{kit.mchid}", content=direct.body, headers=direct.headers)
        second = await b.post(
            f"/pay/notify/v3/{kit.mchid}", content=mounted.body, headers=mounted.headers
        )
        forged = await b.post(
            f"/pay/notify/v3/{kit.mchid}", content=mounted.body + b" ", headers=mounted.headers
        )
        wrong_method = await a.get(f"/notify/v3/{kit.mchid}")
        nested = await a.post(f"/notify/v3/{kit.mchid}/x", content=direct.body)

    for answer in (first, second):
        assert answer.status_code == 204
        assert answer.content == b""
        assert len(answer.headers["x-trace-id"]) == 16
    assert forged.status_code == 401
    assert forged.headers["content-type"].startswith("application/json")
    assert forged.json()["code"] == "SIGNATURE_MISMATCH"
    assert wrong_method.status_code == 405
    assert nested.status_code == 404
    for name in ("route-1", "route-2"):
        stored = await ledger.get_order(kit.mchid, name)
        assert stored is not None
        assert stored.state == "SUCCESS"


async def test_a_body_over_the_limit_is_refused_while_it_streams(
    settings: GatewaySettings, ledger: SqlLedger, kit: MerchantKit
) -> None:
    gateway = create_app(settings, ledger)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 1024  # no Content-Length: the limit is enforced on the stream

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gateway), base_url="http://g"
    ) as client:
        answer = await client.post(f"/notify/v3/{kit.mchid}", content=chunks())
    assert answer.status_code == 413
    assert answer.json()["code"] == "BODY_TOO_LARGE"


def test_the_server_entry_point_tunes_the_garbage_collector() -> None:
    # In a child process: freezing the test runner's own heap would be wrong.
    import subprocess
    import sys

    code = (
        "import gc; from wxpaykit.gateway.app import tune_garbage_collector, "
        "GC_YOUNG_THRESHOLD as T; before = gc.get_threshold()[0]; tune_garbage_collector(); "
        "print(before, gc.get_threshold()[0] == T, gc.get_freeze_count() > 1000)"
    )
    out = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out == ["700", "True", "True"]
