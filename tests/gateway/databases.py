"""Fresh, migrated databases for multi-process gateway tests: SQLite, PostgreSQL, MariaDB.

Each call creates its own database (``gw_<random>``) on the shared server, so runs
never see each other's rows, and drops it afterwards. A server that does not answer
skips the test, or fails it when ``WXPAYKIT_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from wxpaykit.storage import migrate
from wxpaykit.storage.ledger import SqlLedger

from ..services import require_service

DATABASES = ("sqlite", "postgresql", "mariadb")
_SERVERS = {
    "postgresql": ("127.0.0.1", 5432, "postgresql+asyncpg://postgres@127.0.0.1:5432"),
    "mariadb": ("127.0.0.1", 3306, "mysql+asyncmy://root@127.0.0.1:3306"),
}
_ADMIN_DB = {"postgresql": "test", "mariadb": "test"}
REDIS_URL = "redis://127.0.0.1:6379/0"


async def migrate_all(url: str) -> None:
    """Bring ``url`` to the latest schema with the project's migrations, nothing else."""
    await migrate.upgrade(url)


@asynccontextmanager
async def fresh_database(kind: str, folder: Path) -> AsyncIterator[str]:
    """Create and migrate an empty database; yield its URL; drop it afterwards."""
    if kind == "sqlite":
        url = f"sqlite:///{folder / 'gateway.db'}"
        await migrate_all(url)
        yield url
        return
    host, port, base = _SERVERS[kind]
    require_service(kind, port, host)
    name = "gw_" + uuid.uuid4().hex[:12]
    admin = create_async_engine(f"{base}/{_ADMIN_DB[kind]}", isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f"CREATE DATABASE {name}"))
        url = f"{base}/{name}"
        await migrate_all(url)
        yield url
    finally:
        async with admin.connect() as connection:
            if kind == "postgresql":
                await connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            else:
                await connection.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        await admin.dispose()


@asynccontextmanager
async def open_ledger(url: str) -> AsyncIterator[SqlLedger]:
    """A ledger on ``url`` for seeding and inspection."""
    async with SqlLedger.from_url(url, pool_size=2, max_overflow=0) as ledger:
        yield ledger
