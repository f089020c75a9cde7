"""``raw_retention_days`` is applied by the gateway itself: raw requests older than it
are deleted at start (and hourly), their notifications stay; 0 keeps them all."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.storage import builders
from wxpaykit.gateway.settings import GatewaySettings
from wxpaykit.gateway.wiring import build_app
from wxpaykit.storage.base import RawRequest
from wxpaykit.storage.ledger import SqlLedger
from wxpaykit.storage.retention import DAY_MS
from wxpaykit.storage.schema import notifications, raw_requests
from wxpaykit.testing.gateway_kit import MerchantKit

from .databases import migrate_all

MCHID = "1900000109"


async def _ledger_with_old_and_new_raw_requests(url: str) -> dict[str, int]:
    """Two recorded payments: one received 40 days ago, one now; their raw request ids."""
    now_ms = int(time.time() * 1000)
    received = {"old": now_ms - 40 * DAY_MS, "new": now_ms}
    async with SqlLedger.from_url(url) as ledger:
        for name, at_ms in received.items():
            await ledger.create_order(builders.order(MCHID, name))
            notification = builders.payment(MCHID, name, notification_id=f"N-{name}")
            assert notification.raw is not None
            raw = RawRequest(headers=notification.raw.headers, body=b"{}", received_at_ms=at_ms)
            await ledger.record_notification(dataclasses.replace(notification, raw=raw))
    return received


async def _raw_and_notification_ids(url: str) -> tuple[set[str], set[str]]:
    async with SqlLedger.from_url(url) as ledger, ledger.engine.connect() as connection:
        kept = await connection.execute(
            select(notifications.c.notification_id).join(
                raw_requests, raw_requests.c.notification_pk == notifications.c.id
            )
        )
        everything = await connection.execute(select(notifications.c.notification_id))
        return {row[0] for row in kept}, {row[0] for row in everything}


async def _serve_briefly(settings: GatewaySettings, url: str, seconds: float) -> set[str]:
    """Run the gateway's lifespan until only "N-new" keeps a raw request, or ``seconds``."""
    app = build_app(settings)
    async with app.router.lifespan_context(app):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with_raw, _all = await _raw_and_notification_ids(url)
            if with_raw == {"N-new"}:
                break
            await asyncio.sleep(0.05)
    with_raw, _all = await _raw_and_notification_ids(url)
    return with_raw


@pytest.mark.parametrize(("days", "kept"), [(30, {"N-new"}), (0, {"N-old", "N-new"})])
async def test_the_gateway_applies_raw_retention_days(
    tmp_path: Path, days: int, kept: set[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    await migrate_all(url)
    await _ledger_with_old_and_new_raw_requests(url)
    settings = GatewaySettings(
        database_url=url,
        merchants=(MerchantKit().merchant_settings(),),
        raw_retention_days=days,
        log_level="error",
    )

    with_raw = await _serve_briefly(settings, url, seconds=3.0)

    assert with_raw == kept
    _with_raw, recorded = await _raw_and_notification_ids(url)
    assert recorded == {"N-old", "N-new"}  # the exactly-once guard is never purged
