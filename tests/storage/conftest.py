"""One contract suite, three databases: SQLite (temp file), PostgreSQL, MariaDB/MySQL.

Each run migrates a fresh, uniquely named PostgreSQL schema and MariaDB database (dropped
at the end) and a SQLite file; tests then isolate themselves with a random ``mchid``.
A database service that is down skips its tests, or fails them when
``WXPAYKIT_REQUIRE_SERVICES=1`` (CI).

Redis is not involved here: it is the gateway's optional accelerator for the nonce
guard, never the source of truth, and is tested with the gateway.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.services import require_service, service_answers
from wxpaykit.storage import migrate
from wxpaykit.storage.ledger import SqlLedger

PG_ADMIN_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
MYSQL_SERVER_URL = "mysql+asyncmy://root@127.0.0.1:3306"
BACKENDS = ("sqlite", "postgresql", "mysql")


@dataclass(frozen=True, slots=True)
class Target:
    """Where a test's ledger lives: a URL plus (PostgreSQL) a schema."""

    backend: str
    url: str
    schema: str | None = None


class FakeClock:
    """Milliseconds since the epoch, moved by the test."""

    def __init__(self, now_ms: int = 1_700_000_000_000) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms


def _require(backend: str) -> None:
    port = {"postgresql": 5432, "mysql": 3306}.get(backend)
    if port is not None:
        require_service(backend, port)


def unique_name(prefix: str) -> str:
    """A database/schema name no other run uses."""
    return f"{prefix}_{secrets.token_hex(5)}"


async def create_empty(backend: str, base: Path) -> Target:
    """A new, empty database (or schema) for ``backend``."""
    if backend == "sqlite":
        return Target("sqlite", f"sqlite+aiosqlite:///{base / (unique_name('ledger') + '.db')}")
    if backend == "postgresql":
        schema = unique_name("wxpk_test")
        engine = create_async_engine(PG_ADMIN_URL)
        async with engine.begin() as connection:
            await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        await engine.dispose()
        return Target("postgresql", PG_ADMIN_URL, schema)
    database = unique_name("wxpk_test")
    engine = create_async_engine(MYSQL_SERVER_URL)
    async with engine.begin() as connection:
        await connection.execute(
            text(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        )
    await engine.dispose()
    return Target("mysql", f"{MYSQL_SERVER_URL}/{database}")


async def drop(target: Target) -> None:
    """Remove what :func:`create_empty` made (SQLite files go with tmp_path)."""
    if target.backend == "postgresql":
        engine = create_async_engine(PG_ADMIN_URL)
        async with engine.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA IF EXISTS "{target.schema}" CASCADE'))
        await engine.dispose()
    elif target.backend == "mysql":
        engine = create_async_engine(MYSQL_SERVER_URL)
        database = target.url.rsplit("/", 1)[1]
        async with engine.begin() as connection:
            await connection.execute(text(f"DROP DATABASE IF EXISTS `{database}`"))
        await engine.dispose()


async def prepare(target: Target) -> None:
    """Migrate ``target`` to head (0001_ledger, then the dispatcher's revisions)."""
    await migrate.upgrade(target.url, schema=target.schema)


@pytest.fixture(scope="session")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Target]]:
    """One migrated database per reachable backend, for the whole run."""
    base = tmp_path_factory.mktemp("ledger")
    targets: dict[str, Target] = {}
    for backend in BACKENDS:
        if backend != "sqlite" and not service_answers(5432 if backend == "postgresql" else 3306):
            continue
        target = asyncio.run(create_empty(backend, base))
        asyncio.run(prepare(target))
        targets[backend] = target
    yield targets
    for target in targets.values():
        asyncio.run(drop(target))


@pytest.fixture(params=BACKENDS)
def target(request: pytest.FixtureRequest, migrated: dict[str, Target]) -> Target:
    """The migrated database of one backend (tests run once per backend)."""
    backend: str = request.param
    _require(backend)
    return migrated[backend]


@pytest.fixture
async def fresh_target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Target]:
    """A new empty database of the backend named by ``target``'s parameter, dropped after."""
    backend: str = request.param
    _require(backend)
    made = await create_empty(backend, tmp_path)
    try:
        yield made
    finally:
        await drop(made)


@pytest.fixture
def clock() -> FakeClock:
    """The ledger's clock."""
    return FakeClock()


@pytest.fixture
async def ledger(target: Target, clock: FakeClock) -> AsyncIterator[SqlLedger]:
    """A ledger with a pool of 10 connections on the migrated database."""
    sql_ledger = SqlLedger.from_url(target.url, schema=target.schema, clock=clock, pool_size=10)
    try:
        yield sql_ledger
    finally:
        await sql_ledger.aclose()


@pytest.fixture
def mchid() -> str:
    """A merchant id of its own for each test: isolation inside the shared database."""
    return "19" + "".join(secrets.choice("0123456789") for _ in range(8))
