"""Composition root for a deployed gateway: settings → SQL ledger → ASGI app.

Kept apart from :mod:`wxpaykit.gateway.app` so ``create_app`` depends only on the
ledger port; this module picks the concrete adapter (``SqlLedger``) from
``database_url``, schedules housekeeping (expired nonces, and raw requests past
``raw_retention_days``), wires readiness to the schema check, and
runs the event dispatcher's worker in-process when asked (``embedded_worker``, by
default whenever ``[[dispatch.sinks]]`` are configured): it shares the ledger's
engine, starts and stops with the ASGI lifespan, and is woken after every commit
that appended events, so deliveries do not wait for the next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from starlette.applications import Starlette

from wxpaykit.client.async_client import AsyncWeChatPay
from wxpaykit.dispatch.worker import Worker
from wxpaykit.gateway.app import create_app, warm_up_or_log
from wxpaykit.gateway.logs import configure_logging
from wxpaykit.gateway.orders import order_routes
from wxpaykit.gateway.settings import GatewaySettings
from wxpaykit.storage.base import OrderRecord, RecordResult, VerifiedNotification
from wxpaykit.storage.ledger import SqlLedger
from wxpaykit.storage.retention import DAY_MS

__all__ = ["NotifyingLedger", "build_app", "build_clients", "build_worker", "open_ledger"]

_log = structlog.get_logger("wxpaykit.gateway")
#: How often expired nonces are deleted from the ledger's table.
NONCE_PURGE_SECONDS = 60.0
#: How often raw requests past ``raw_retention_days`` are deleted (and once at start).
RAW_PURGE_SECONDS = 3600.0


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


class NotifyingLedger:
    """The SQL ledger, calling ``on_events`` after each commit that appended events.

    The gateway records through this; the embedded worker's :meth:`Worker.notify` is the
    callback, so an event committed with a notification is fanned out at once instead
    of at the next poll. Everything else is the wrapped ledger's.
    """

    def __init__(self, ledger: SqlLedger, on_events: Callable[[], None]) -> None:
        self.inner = ledger
        self._on_events = on_events

    async def record_notification(self, notification: VerifiedNotification) -> RecordResult:
        """Record (one transaction, see :class:`~wxpaykit.storage.base.Ledger`), then notify."""
        result = await self.inner.record_notification(notification)
        if result.event_ids:  # APPLIED, ANOMALY, UNMATCHED: the commit is done
            self._on_events()
        return result

    async def count_duplicates(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Add copies acknowledged without recording to the duplicate counts."""
        await self.inner.count_duplicates(counts)

    async def record_failure(self, notification: VerifiedNotification, *, error: str) -> None:
        """Keep an inbound dead letter."""
        await self.inner.record_failure(notification, error=error)

    async def claim_nonce(self, mchid: str, nonce: str, *, expires_at_ms: int) -> bool:
        """Record a ``Wechatpay-Nonce``."""
        return await self.inner.claim_nonce(mchid, nonce, expires_at_ms=expires_at_ms)

    async def create_order(self, order: OrderRecord) -> OrderRecord:
        """Register an order."""
        return await self.inner.create_order(order)

    async def get_order(self, mchid: str, out_trade_no: str) -> OrderRecord | None:
        """The order, or None."""
        return await self.inner.get_order(mchid, out_trade_no)

    def __getattr__(self, name: str) -> Any:
        # Anything else the ledger offers (stats, housekeeping) is passed through.
        return getattr(self.inner, name)


def build_worker(settings: GatewaySettings, ledger: SqlLedger) -> Worker | None:
    """The in-process dispatch worker on the ledger's engine, or None when not embedded."""
    if not settings.runs_embedded_worker:
        return None
    return Worker(ledger.engine, settings.dispatch)


def build_app(settings: GatewaySettings, *, ledger: SqlLedger | None = None) -> Starlette:
    """The production app: JSON logs, SQL ledger, orders API, readiness, housekeeping.

    Merchants with ``platform_keys = "auto"`` verify notifications with the keys their
    client's key manager downloads at start-up and refreshes on its schedule. With an
    embedded worker (``app.state.worker``) events are delivered from this process; the
    dispatch admin API is mounted at ``/admin`` when ``admin_token`` is set.
    """
    configure_logging(settings.log_level)
    sql_ledger = ledger or SqlLedger.from_url(settings.database_url)
    clients = build_clients(settings)
    auto = {m.mchid for m in settings.merchants if m.platform_keys == "auto"}
    housekeeping: list[asyncio.Task[None]] = []
    worker = build_worker(settings, sql_ledger)
    worker_scope = contextlib.AsyncExitStack()

    async def ready_check() -> None:
        if not await sql_ledger.is_ready():
            raise RuntimeError("database unreachable or schema not at the latest migration")

    async def start_housekeeping() -> None:
        # Connections and prepared statements before the first notification needs them.
        await warm_up_or_log("database", sql_ledger.warm_up)
        for mchid in auto:
            await clients[mchid].refresh_platform_keys()
            housekeeping.append(asyncio.create_task(_refresh_keys(clients[mchid], mchid)))
        housekeeping.append(asyncio.create_task(_purge_nonces(sql_ledger)))
        if settings.raw_retention_days > 0:  # 0: kept forever
            retention_ms = settings.raw_retention_days * DAY_MS
            housekeeping.append(asyncio.create_task(_purge_raw_requests(sql_ledger, retention_ms)))
        if worker is not None:
            await worker_scope.enter_async_context(worker.running())
            _log.info("embedded_worker_started", sinks=sorted(worker.dispatchers))

    async def stop() -> None:
        # The worker first: its attempts in flight finish while the engine is still open.
        await worker_scope.aclose()
        for task in housekeeping:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for client in clients.values():
            await client.aclose()
        await sql_ledger.aclose()

    app = create_app(
        settings,
        sql_ledger if worker is None else NotifyingLedger(sql_ledger, worker.notify),
        ready_check=ready_check,
        extra_routes=order_routes(settings, sql_ledger, clients),
        platform_keys={mchid: clients[mchid].keys.trusted for mchid in auto},
        on_startup=[start_housekeeping],
        on_shutdown=[stop],
        admin_engine=sql_ledger.engine,
    )
    app.state.worker = worker
    return app


async def _refresh_keys(client: AsyncWeChatPay, mchid: str) -> None:
    while True:
        await asyncio.sleep(client.keys.refresh_interval_seconds)
        try:
            await client.refresh_platform_keys()
        except Exception as exc:  # keep the keys we have; the next round tries again
            _log.warning("platform_key_refresh_failed", mchid=mchid, error=type(exc).__name__)


async def _purge_raw_requests(ledger: SqlLedger, retention_ms: int) -> None:
    # At start too: the retention promise holds after a restart, not an hour later.
    # Every process does this; purges in small batches, so they only meet each other
    # on rows one of them is already deleting (and find nothing left to do).
    while True:
        try:
            removed = await ledger.purge_raw_requests(retention_ms=retention_ms)
        except Exception as exc:  # housekeeping must never take the gateway down
            _log.warning("raw_request_purge_failed", error=type(exc).__name__)
        else:
            if removed:
                _log.info("raw_requests_purged", removed=removed)
        await asyncio.sleep(RAW_PURGE_SECONDS)


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
