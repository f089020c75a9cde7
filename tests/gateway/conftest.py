"""Gateway fixtures: a merchant kit, a ledger, and an in-process app over httpx."""

from __future__ import annotations

import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import func, inspect, select

from tests.services import require_service
from wxpaykit.gateway.app import create_app
from wxpaykit.gateway.metrics import GatewayMetrics
from wxpaykit.gateway.settings import GatewaySettings
from wxpaykit.storage.ledger import SqlLedger
from wxpaykit.storage.schema import metadata
from wxpaykit.testing.gateway_kit import MerchantKit

from .databases import REDIS_URL, migrate_all

RowCounts = Callable[[], Awaitable[dict[str, int]]]


@pytest.fixture(scope="session")
def kit() -> MerchantKit:
    """The merchant every gateway test talks about (keys generated once per session)."""
    return MerchantKit()


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[SqlLedger]:
    """A migrated SQLite ledger in a temporary folder."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    await migrate_all(url)
    async with SqlLedger.from_url(url) as sql_ledger:
        yield sql_ledger


async def count_rows(ledger: SqlLedger) -> dict[str, int]:
    """Rows in every table of the schema (the whole ledger state)."""
    counts: dict[str, int] = {}
    async with ledger.engine.connect() as connection:
        existing = set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))
        for table in metadata.sorted_tables:
            if table.name not in existing:  # tables of migrations still being written
                continue
            counts[table.name] = int(
                await connection.scalar(select(func.count()).select_from(table)) or 0
            )
    return counts


async def seed_orders(ledger: SqlLedger, kit: MerchantKit, names: list[str]) -> None:
    """Register unpaid orders of 100 fen."""
    for name in names:
        await ledger.create_order(kit.order(name))


@pytest.fixture
def row_counts(ledger: SqlLedger) -> RowCounts:
    """Count the rows of every ledger table."""

    async def count() -> dict[str, int]:
        return await count_rows(ledger)

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
    settings: GatewaySettings, ledger: SqlLedger, metrics: GatewayMetrics
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the gateway in process."""
    app = create_app(settings, ledger, metrics=metrics)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield http


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    """A client of the real Redis (the test fails under CI when it is down)."""
    require_service("redis", 6379)
    client = Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


def wxpaykit_command(*arguments: str) -> list[str]:
    """The ``wxpaykit`` CLI with ``arguments``, run by this interpreter (for subprocesses)."""
    return [sys.executable, "-c", "from wxpaykit.cli.main import main; main()", *arguments]


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung server): the kernel
    completes the handshake on a listening socket nobody accepts from."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield int(server.getsockname()[1])
    finally:
        server.close()
