"""Migrations: upgrade an empty database, tell current from not current, match the models."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, func, inspect, select, text
from sqlalchemy.engine import Connection

from tests.storage import builders
from tests.storage.conftest import BACKENDS, Target
from wxpaykit.errors import StorageError
from wxpaykit.storage import migrate
from wxpaykit.storage.dialects import create_engine
from wxpaykit.storage.events import events
from wxpaykit.storage.ledger import SqlLedger
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


async def _tables_and_rows(target: Target) -> tuple[set[str], dict[str, int], list[object]]:
    """The tables there, the row counts of the ledger's core tables, and raw_requests'
    foreign keys (0004 dropped the one to notifications; undoing it puts it back)."""
    engine = create_engine(target.url, schema=target.schema)
    try:
        async with engine.connect() as connection:
            names = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
            counts: dict[str, int] = {
                table: int(
                    await connection.scalar(
                        select(func.count()).select_from(metadata.tables[table])
                    )
                    or 0
                )
                for table in ("orders", "notifications", "raw_requests", "events")
                if table in names
            }
            keys: list[object] = []
            if "raw_requests" in names:
                keys = await connection.run_sync(
                    lambda sync: [
                        key["referred_table"]
                        for key in inspect(sync).get_foreign_keys("raw_requests")
                    ]
                )
            return names, counts, keys
    finally:
        await engine.dispose()


@pytest.mark.parametrize("fresh_target", BACKENDS, indirect=True)
async def test_downgrade_one_revision_at_a_time_keeps_the_ledger_then_upgrades_again(
    fresh_target: Target,
) -> None:
    url, schema = fresh_target.url, fresh_target.schema
    await migrate.upgrade(url, schema=schema)
    async with SqlLedger.from_url(url, schema=schema) as ledger:
        await ledger.create_order(builders.order("1900000109", "ROLLBACK-1"))
        await ledger.record_notification(builders.payment("1900000109", "ROLLBACK-1"))
    _names, at_head, keys_at_head = await _tables_and_rows(fresh_target)
    assert at_head == {"orders": 1, "notifications": 1, "raw_requests": 1, "events": 1}
    assert keys_at_head == []

    older = migrate.revisions()[:-1]
    for revision in reversed(older):
        await migrate.downgrade(url, revision=revision, schema=schema)
        assert await migrate.applied_revisions(url, schema=schema) == (revision,)
        names, counts, keys = await _tables_and_rows(fresh_target)
        assert counts == at_head, revision  # undoing a revision keeps the ledger's rows
        assert keys == ["notifications"], revision  # the 0004 key is back, and holds
        if revision == "0001_ledger":
            assert "event_deliveries" not in names

    await migrate.downgrade(url, revision=migrate.BASE, schema=schema)
    names, _counts, _keys = await _tables_and_rows(fresh_target)
    assert names & LEDGER_TABLES == set()
    assert await migrate.applied_revisions(url, schema=schema) == ()

    await migrate.upgrade(url, schema=schema)
    assert await migrate.is_current(url, schema=schema)
    engine = create_engine(url, schema=schema)
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(_diff) == []
    finally:
        await engine.dispose()


@pytest.mark.parametrize("fresh_target", ["sqlite"], indirect=True)
async def test_downgrade_to_a_later_revision_or_of_an_empty_database_changes_nothing(
    fresh_target: Target,
) -> None:
    url = fresh_target.url
    await migrate.downgrade(url, revision=migrate.BASE)  # nothing applied: nothing to do
    assert await migrate.applied_revisions(url) == ()

    first, *_rest, head = migrate.revisions()
    await migrate.upgrade(url, revision=first)
    await migrate.downgrade(url, revision=head)  # "down" to a newer revision: no-op
    assert await migrate.applied_revisions(url) == (first,)


@pytest.mark.parametrize("fresh_target", ["sqlite"], indirect=True)
async def test_downgrading_a_database_a_newer_release_migrated_is_a_storage_error(
    fresh_target: Target,
) -> None:
    url = fresh_target.url
    await migrate.upgrade(url)
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE alembic_version SET version_num = '0099_newer'"))
    finally:
        await engine.dispose()

    with pytest.raises(StorageError, match="0099_newer"):
        await migrate.downgrade(url, revision=migrate.revisions()[0])
    assert await migrate.applied_revisions(url) == ("0099_newer",)


async def test_downgrade_refuses_an_unknown_revision() -> None:
    with pytest.raises(ValueError, match="unknown revision 'nope'"):
        await migrate.downgrade("sqlite:///unused.db", revision="nope")


async def test_applied_revisions_of_an_unreachable_database_is_a_storage_error() -> None:
    with pytest.raises(StorageError, match="reading the schema revision failed"):
        await migrate.applied_revisions("postgresql+asyncpg://postgres@127.0.0.1:1/test")


def test_revisions_run_oldest_first_from_the_first_to_the_head() -> None:
    shipped = migrate.revisions()
    assert shipped[0] == "0001_ledger"
    assert frozenset(shipped[-1:]) == migrate.head_revisions()
    assert list(shipped) == sorted(shipped)  # the numbering follows the chain
