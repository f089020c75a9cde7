"""Gateway fixtures: a merchant kit, a ledger, and an in-process app over httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from wxpaykit.gateway.app import create_app
from wxpaykit.gateway.metrics import GatewayMetrics
from wxpaykit.gateway.settings import GatewaySettings
from wxpaykit.testing.gateway_kit import MerchantKit

from ._memory_ledger import MemoryLedger

RowCounts = Callable[[], Awaitable[dict[str, int]]]


@pytest.fixture(scope="session")
def kit() -> MerchantKit:
    """The merchant every gateway test talks about (keys generated once per session)."""
    return MerchantKit()


@pytest.fixture
def ledger() -> MemoryLedger:
    """The ledger under test."""
    return MemoryLedger()


@pytest.fixture
def row_counts(ledger: MemoryLedger) -> RowCounts:
    """Count the rows of every ledger table."""

    async def count() -> dict[str, int]:
        return ledger.row_counts()

    return count


@pytest.fixture
def settings(kit: MerchantKit) -> GatewaySettings:
    """Gateway settings with the kit's merchant and a 4 KiB body limit."""
    return GatewaySettings(max_body_bytes=4096, merchants=(kit.merchant_settings(),))


@pytest.fixture
def metrics() -> GatewayMetrics:
    """A private metrics registry."""
    return GatewayMetrics()


@pytest.fixture
async def client(
    settings: GatewaySettings, ledger: MemoryLedger, metrics: GatewayMetrics
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the gateway in process."""
    app = create_app(settings, ledger, metrics=metrics)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield http
