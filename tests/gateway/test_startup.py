"""Start-up: connections are opened before the first notification, and a database that
is down at start-up does not keep the gateway from starting (it reports not ready)."""

from __future__ import annotations

import dataclasses
import hashlib
import time

import httpx
from redis.asyncio import Redis

from wxpaykit.gateway.app import create_app, warm_up_or_log
from wxpaykit.gateway.nonce import _CLAIM_SCRIPT, RedisNonceGuard
from wxpaykit.gateway.settings import GatewaySettings
from wxpaykit.gateway.wiring import build_app
from wxpaykit.storage.ledger import SqlLedger
from wxpaykit.testing.gateway_kit import MerchantKit

from .conftest import free_port
from .databases import REDIS_URL


async def test_a_gateway_whose_database_is_down_starts_and_reports_not_ready() -> None:
    kit = MerchantKit()
    settings = GatewaySettings(
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/test",
        merchants=(kit.merchant_settings(),),
        log_level="error",
    )
    app = build_app(settings)
    transport = httpx.ASGITransport(app=app)

    async with (
        app.router.lifespan_context(app),  # the warm-up fails, and is only logged
        httpx.AsyncClient(transport=transport, base_url="http://gateway") as client,
    ):
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        sealed = kit.payment("down-at-start")
        notified = await client.post(
            f"/notify/v3/{kit.mchid}", content=sealed.body, headers=sealed.headers
        )

    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    # Not acknowledged: WeChat Pay will send it again once the database is back.
    assert notified.status_code == 500
    assert notified.json()["code"] == "FAIL"


async def test_start_up_loads_the_claim_script_and_connects_to_redis(
    settings: GatewaySettings, ledger: SqlLedger, redis: Redis
) -> None:
    sha = hashlib.sha1(_CLAIM_SCRIPT.encode(), usedforsecurity=False).hexdigest()
    await redis.script_flush()  # as on a Redis that has just started
    app = create_app(dataclasses.replace(settings, redis_url=REDIS_URL), ledger)

    async with app.router.lifespan_context(app):
        guard = app.state.intake.nonce_guard
        assert isinstance(guard, RedisNonceGuard)
        # Loaded before the first claim (which would otherwise meet NOSCRIPT), and the
        # pipeline's connection is open (a PING went over it).
        assert await redis.script_exists(sha) == [True]
        assert guard.batcher.average_batch == 1.0


async def test_a_database_that_never_answers_holds_start_up_only_for_the_warm_up_timeout(
    silent_port: int,
) -> None:
    # The driver's connection waits for a server that never speaks (as behind a
    # firewall that drops packets), for up to a minute without the timeout.
    ledger = SqlLedger.from_url(f"postgresql+asyncpg://postgres@127.0.0.1:{silent_port}/test")
    started = time.monotonic()
    await warm_up_or_log("database", ledger.warm_up, timeout_seconds=0.3)
    waited = time.monotonic() - started
    await ledger.aclose()

    assert 0.3 <= waited < 5
