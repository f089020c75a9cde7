"""Composition root for a deployed gateway: settings → SQL ledger → ASGI app.

Kept apart from :mod:`wxpaykit.gateway.app` so ``create_app`` depends only on the
ledger port; this module picks the concrete adapter (``SqlLedger``) from
``database_url``, schedules housekeeping, and wires readiness to the schema check.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from starlette.applications import Starlette

from wxpaykit.client.async_client import AsyncWeChatPay
from wxpaykit.gateway.app import create_app
from wxpaykit.gateway.logs import configure_logging
from wxpaykit.gateway.orders import order_routes
from wxpaykit.gateway.settings import GatewaySettings
from wxpaykit.storage.ledger import SqlLedger

__all__ = ["build_app", "build_clients", "open_ledger"]

_log = structlog.get_logger("wxpaykit.gateway")
#: How often expired nonces are deleted from the ledger's table.
NONCE_PURGE_SECONDS = 60.0


async def open_ledger(settings: GatewaySettings) -> SqlLedger:
    """The SQL ledger named by ``settings.database_url`` (migrations are run separately)."""
    return SqlLedger.from_url(settings.database_url)


def build_clients(settings: GatewaySettings) -> dict[str, AsyncWeChatPay]:
    """One SDK client per merchant that has its API private key (for prepay and auto keys)."""
    clients: dict[str, AsyncWeChatPay] = {}
    for merchant in settings.merchants:
        if merchant.credentials is None:
            continue
        trusted = merchant.trusted_keys
        clients[merchant.mchid] = AsyncWeChatPay(
            credentials=merchant.credentials,
            apiv3_key=merchant.apiv3_key,
            public_key=trusted.public_keys[0] if trusted.public_keys else None,
            platform_certificates=trusted.certificates,
            certificate_mode="on" if merchant.platform_keys == "auto" else "off",
            appid=min(merchant.appids, default=None),
            base_url=settings.wechatpay_base_url,
        )
    return clients


def build_app(settings: GatewaySettings, *, ledger: SqlLedger | None = None) -> Starlette:
    """The production app: JSON logs, SQL ledger, orders API, readiness, housekeeping.

    Merchants with ``platform_keys = "auto"`` verify notifications with the keys their
    client's key manager downloads at start-up and refreshes on its schedule.
    """
    configure_logging(settings.log_level)
    sql_ledger = ledger or SqlLedger.from_url(settings.database_url)
    clients = build_clients(settings)
    auto = {m.mchid for m in settings.merchants if m.platform_keys == "auto"}
    housekeeping: list[asyncio.Task[None]] = []

    async def ready_check() -> None:
        if not await sql_ledger.is_ready():
            raise RuntimeError("database unreachable or schema not at the latest migration")

    async def start_housekeeping() -> None:
        for mchid in auto:
            await clients[mchid].refresh_platform_keys()
            housekeeping.append(asyncio.create_task(_refresh_keys(clients[mchid], mchid)))
        housekeeping.append(asyncio.create_task(_purge_nonces(sql_ledger)))

    async def stop() -> None:
        for task in housekeeping:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for client in clients.values():
            await client.aclose()
        await sql_ledger.aclose()

    return create_app(
        settings,
        sql_ledger,
        ready_check=ready_check,
        extra_routes=order_routes(settings, sql_ledger, clients),
        platform_keys={mchid: clients[mchid].keys.trusted for mchid in auto},
        on_startup=[start_housekeeping],
        on_shutdown=[stop],
    )


async def _refresh_keys(client: AsyncWeChatPay, mchid: str) -> None:
    while True:
        await asyncio.sleep(client.keys.refresh_interval_seconds)
        try:
            await client.refresh_platform_keys()
        except Exception as exc:  # keep the keys we have; the next round tries again
            _log.warning("platform_key_refresh_failed", mchid=mchid, error=type(exc).__name__)


async def _purge_nonces(ledger: SqlLedger) -> None:
    while True:
        await asyncio.sleep(NONCE_PURGE_SECONDS)
        try:
            removed = await ledger.purge_expired_nonces()
        except Exception as exc:  # housekeeping must never take the gateway down
            _log.warning("nonce_purge_failed", error=type(exc).__name__)
        else:
            if removed:
                _log.debug("nonces_purged", removed=removed)
