"""Composition of the gateway: ``create_app(settings, ledger, ...)`` and the ASGI factory.

``create_app`` receives a ready ledger (any :class:`~wxpaykit.storage.base.Ledger`), so
tests and embedders choose storage; :func:`app_from_env` is the ``uvicorn --factory``
entry point that reads :meth:`GatewaySettings.from_env`, opens the SQL ledger named by
``database_url`` and closes it in the lifespan::

    uvicorn --factory wxpaykit.gateway.app:app_from_env --port 8000
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import Receive, Scope, Send

from wxpaykit.core.verification import TrustedKeys
from wxpaykit.gateway.committed_feed import CommittedFeed, feed_channel
from wxpaykit.gateway.endpoints import NotificationEndpoints, healthz
from wxpaykit.gateway.intake import Clock, NotificationIntake, utc_now
from wxpaykit.gateway.metrics import GatewayMetrics
from wxpaykit.gateway.nonce import (
    LedgerNonceGuard,
    NonceGuard,
    RedisNonceGuard,
    fail_fast_redis,
)
from wxpaykit.gateway.settings import GatewaySettings
from wxpaykit.storage.base import Ledger

__all__ = ["ReadyCheck", "app_from_env", "create_app", "warm_up_or_log"]

#: Raises (any exception, with a human message) when the gateway must not take traffic.
ReadyCheck = Callable[[], Awaitable[None]]
Hook = Callable[[], Awaitable[None]]
_log = structlog.get_logger("wxpaykit.gateway")


class GatewayApp(Starlette):
    """Starlette, with ``POST /notify/...`` served before routing and middleware.

    Every notification takes that path, so it skips the router and the request and
    response objects (:meth:`NotificationEndpoints.dispatch`); the same handlers stay
    registered as routes, which serve the request when the app is mounted under a
    prefix. Middleware added to the app does not see notifications.
    """

    notifications: NotificationEndpoints | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.notifications is not None and await self.notifications.dispatch(
            scope, receive, send
        ):
            return
        await super().__call__(scope, receive, send)


def create_app(
    settings: GatewaySettings,
    ledger: Ledger,
    *,
    nonce_guard: NonceGuard | None = None,
    metrics: GatewayMetrics | None = None,
    clock: Clock = utc_now,
    ready_check: ReadyCheck | None = None,
    extra_routes: list[Route] | None = None,
    platform_keys: Mapping[str, TrustedKeys] | None = None,
    on_startup: list[Hook] | None = None,
    on_shutdown: list[Hook] | None = None,
    admin_engine: AsyncEngine | None = None,
) -> Starlette:
    """Build the ASGI app around ``ledger``.

    Without ``nonce_guard``, a Redis guard is opened when ``settings.redis_url`` is set
    (and closed with the app), else nonces go to the ledger. With ``admin_engine`` (the
    database holding the outbox) and ``settings.admin_token``, the dispatch admin API
    (list, show and replay deliveries) is mounted at ``/admin``.
    """
    metrics = metrics or GatewayMetrics()
    ledger_guard = LedgerNonceGuard(ledger, tolerance_seconds=settings.tolerance_seconds)
    intake = NotificationIntake(
        settings, ledger, nonce_guard or ledger_guard, clock=clock, platform_keys=platform_keys
    )
    endpoints = NotificationEndpoints(intake=intake, metrics=metrics)

    async def readyz(request: Request) -> Response:
        if ready_check is not None:
            try:
                await ready_check()
            except Exception as exc:
                return JSONResponse(
                    {"status": "unavailable", "reason": f"{type(exc).__name__}: {exc}"[:200]},
                    status_code=503,
                )
        return JSONResponse({"status": "ready"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        redis: Any = None
        guard: RedisNonceGuard | None = None
        feed: CommittedFeed | None = None
        if nonce_guard is None and settings.redis_url:
            # Fail fast: a dead or hung Redis sends claims to the ledger at once.
            redis = fail_fast_redis(settings.redis_url)
            guard = RedisNonceGuard(
                redis,
                ledger_guard,
                tolerance_seconds=settings.tolerance_seconds,
                key_prefix=settings.key_prefix,
            )
            intake.nonce_guard = guard
            # Other processes' commits join this one's set (committed_feed.py).
            feed = CommittedFeed(
                redis,
                guard.batcher,
                intake.committed,
                channel=feed_channel(guard.key_prefix, settings.database_url),
            )
            intake.committed_feed = feed
            await warm_up_or_log("redis", guard.warm_up)
        for hook in on_startup or ():
            await hook()
        try:
            # Duplicate counts are written while serving and once more before the
            # shutdown hooks (which may close the ledger) run.
            async with contextlib.AsyncExitStack() as serving:
                if feed is not None:
                    await serving.enter_async_context(feed.running())
                await serving.enter_async_context(intake.duplicates.running())
                yield
        finally:
            await intake.drain()  # nonce marks, before Redis closes
            for hook in on_shutdown or ():
                await hook()
            if guard is not None:
                await guard.batcher.aclose()
            if redis is not None:
                await redis.aclose()

    routes: list[BaseRoute] = [
        Route("/notify/v3/{mchid}", endpoints.notify_v3, methods=["POST"]),
        Route("/notify/v2/{mchid}", endpoints.notify_v2, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", endpoints.metrics_endpoint, methods=["GET"]),
        *(extra_routes or []),
    ]
    if admin_engine is not None and settings.admin_token:
        from wxpaykit.dispatch.admin import admin_router

        routes.append(Mount("/admin", app=admin_router(admin_engine, token=settings.admin_token)))
    app = GatewayApp(routes=routes, lifespan=lifespan)
    app.notifications = endpoints
    app.state.settings = settings
    app.state.ledger = ledger
    app.state.metrics = metrics
    app.state.intake = intake
    return app


#: How long start-up waits for a warm-up (a host that drops packets would otherwise
#: hold it for the driver's connect timeout: a minute for asyncpg).
WARM_UP_SECONDS = 5.0


async def warm_up_or_log(
    what: str, warm: Hook, *, timeout_seconds: float = WARM_UP_SECONDS
) -> None:
    """Open connections before the first request needs them; a failure or a timeout is
    only logged (the request path copes with a down service on its own, and /readyz
    reports it)."""
    try:
        async with asyncio.timeout(timeout_seconds):
            await warm()
    except Exception as exc:
        _log.warning("warm_up_failed", what=what, error=type(exc).__name__)


def app_from_env() -> Starlette:
    """ASGI factory for ``uvicorn --factory``: settings from the environment, SQL ledger."""
    from wxpaykit.gateway.wiring import build_app

    app = build_app(GatewaySettings.from_env())
    tune_garbage_collector()
    return app


#: Allocations between young-generation collections (CPython's default is 700).
GC_YOUNG_THRESHOLD = 50_000


def tune_garbage_collector() -> None:
    """Keep full garbage collections off the notification path (gateway processes only).

    A full collection walks every tracked object: the modules, SQLAlchemy's and
    pydantic's structures, the caches. Under load that pause lands on requests in
    flight; measured with ``bench_gateway.py``, it was the gateway's p99 (45-69 ms,
    36-46 ms with this). Objects alive after start-up are frozen (never scanned again;
    still freed by reference counting), and young collections run less often.
    Called by :func:`app_from_env`, the server entry point; never on import, never in
    an embedder's process.
    """
    import gc

    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)
