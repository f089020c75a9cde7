"""Fixtures for dispatch tests: real databases (unique schema per run), a real receiver."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.dispatch.receiver import Receiver
from tests.services import require_service
from wxpaykit.storage.dialects import create_engine
from wxpaykit.storage.events import (
    event_deliveries,
    event_delivery_attempts,
    event_fanout,
    events,
    sink_breakers,
)

DISPATCH_TABLES = [events, event_fanout, event_deliveries, event_delivery_attempts, sink_breakers]

POSTGRES_URL = "postgresql://postgres:test@127.0.0.1:5432/test"
MARIADB_SERVER_URL = "mysql://root@127.0.0.1:3306"


@dataclass(frozen=True, slots=True, kw_only=True)
class TestDatabase:
    """A freshly created, empty set of outbox tables."""

    __test__ = False  # not a test class

    kind: str
    url: str
    schema: str | None
    engine: AsyncEngine


async def create_test_database(kind: str, sqlite_path: str, *, tables: bool = True) -> TestDatabase:
    """Create the outbox tables in a unique schema/database (or a new SQLite file)."""
    name = f"wxd_{uuid.uuid4().hex[:12]}"
    schema: str | None = None
    if kind == "sqlite":
        url = f"sqlite:///{sqlite_path}"
    elif kind == "postgresql":
        require_service("PostgreSQL", 5432)
        url, schema = POSTGRES_URL, name
        admin = create_engine(url)
        async with admin.begin() as connection:
            await connection.execute(text(f'CREATE SCHEMA "{name}"'))
        await admin.dispose()
    elif kind == "mariadb":
        require_service("MariaDB", 3306)
        admin = create_engine(MARIADB_SERVER_URL + "/test")
        async with admin.begin() as connection:
            await connection.execute(text(f"CREATE DATABASE `{name}`"))
        await admin.dispose()
        url = f"{MARIADB_SERVER_URL}/{name}"
    else:  # pragma: no cover
        raise ValueError(kind)
    engine = create_engine(url, schema=schema, pool_size=20, max_overflow=20)
    if not tables:
        return TestDatabase(kind=kind, url=url, schema=schema, engine=engine)
    async with engine.begin() as connection:
        await connection.run_sync(
            lambda sync: DISPATCH_TABLES[0].metadata.create_all(sync, tables=DISPATCH_TABLES)
        )
    return TestDatabase(kind=kind, url=url, schema=schema, engine=engine)


async def drop_test_database(database: TestDatabase) -> None:
    """Dispose the engine and drop what was created."""
    await database.engine.dispose()
    if database.kind == "postgresql" and database.schema:
        admin = create_engine(POSTGRES_URL)
        async with admin.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA "{database.schema}" CASCADE'))
        await admin.dispose()
    elif database.kind == "mariadb":
        admin = create_engine(MARIADB_SERVER_URL + "/test")
        name = database.url.rsplit("/", 1)[1]
        async with admin.begin() as connection:
            await connection.execute(text(f"DROP DATABASE `{name}`"))
        await admin.dispose()


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[TestDatabase]:
    """Outbox tables in a temporary SQLite file."""
    database = await create_test_database("sqlite", f"{tmp_path}/outbox.db")
    yield database
    await drop_test_database(database)


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
async def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TestDatabase]:
    """Outbox tables on each supported database."""
    database = await create_test_database(str(request.param), f"{tmp_path}/outbox.db")
    yield database
    await drop_test_database(database)


@pytest.fixture
async def pg_db() -> AsyncIterator[TestDatabase]:
    """Outbox tables on PostgreSQL (what only PostgreSQL does: LISTEN, one-statement claims)."""
    database = await create_test_database("postgresql", "")
    yield database
    await drop_test_database(database)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP receiver on a free loopback port (uvicorn in a thread)."""
    with Receiver.serve() as running:
        yield running
