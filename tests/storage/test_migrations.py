"""Migrations: upgrade an empty database, tell current from not current, match the models."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, inspect, text
from sqlalchemy.engine import Connection

from tests.storage.conftest import BACKENDS, Target
from wxpaykit.storage import migrate
from wxpaykit.storage.dialects import create_engine
from wxpaykit.storage.events import events
from wxpaykit.storage.schema import metadata

LEDGER_TABLES = {
    "orders",
    "refunds",
    "notifications",
    "raw_requests",
    "inbound_dead_letters",
    "seen_nonces",
    "events",
}


def _diff(connection: Connection) -> list[object]:
    """Differences between the 0001 tables as migrated and as modelled in Python."""
    ours = MetaData(naming_convention=metadata.naming_convention)
    for table in metadata.sorted_tables:
        if table.name in LEDGER_TABLES:
            table.to_metadata(ours)
    context = MigrationContext.configure(
        connection,
        opts={
            "include_name": lambda name, kind, _parent: kind != "table" or name in LEDGER_TABLES,
            "compare_type": True,
        },
    )
    return list(compare_metadata(context, ours))


@pytest.mark.parametrize("fresh_target", BACKENDS, indirect=True)
async def test_upgrade_creates_the_schema_and_is_current_after(fresh_target: Target) -> None:
    url, schema = fresh_target.url, fresh_target.schema
    assert not await migrate.is_current(url, schema=schema)

    await migrate.upgrade(url, schema=schema)
    await migrate.upgrade(url, schema=schema)  # idempotent

    assert await migrate.is_current(url, schema=schema)
    engine = create_engine(url, schema=schema)
    try:
        async with engine.connect() as connection:
            names = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
            assert names >= LEDGER_TABLES
            assert await connection.run_sync(migrate.current_revisions) != ()
            assert await connection.run_sync(_diff) == []
    finally:
        await engine.dispose()


@pytest.mark.parametrize("fresh_target", BACKENDS, indirect=True)
async def test_is_current_is_false_at_another_revision(fresh_target: Target) -> None:
    await migrate.upgrade(fresh_target.url, schema=fresh_target.schema)
    engine = create_engine(fresh_target.url, schema=fresh_target.schema)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE alembic_version SET version_num = '0000_old'"))
    finally:
        await engine.dispose()

    assert not await migrate.is_current(fresh_target.url, schema=fresh_target.schema)


def test_initial_revision_has_the_agreed_name() -> None:
    script = ScriptDirectory.from_config(migrate._config())
    base = script.get_revision("0001_ledger")
    assert base is not None
    assert base.down_revision is None
    assert migrate.head_revisions()
    assert events.name in LEDGER_TABLES


async def test_is_current_is_false_when_the_database_is_unreachable() -> None:
    assert not await migrate.is_current("postgresql+asyncpg://postgres@127.0.0.1:1/test")
