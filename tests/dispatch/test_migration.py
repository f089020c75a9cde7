"""Migration 0002_dispatch creates exactly the tables and indexes the dispatcher queries,
and queues events recorded before it for delivery."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, select

from tests.dispatch.conftest import create_test_database, drop_test_database
from tests.dispatch.helpers import payment_event
from wxpaykit.storage import migrate
from wxpaykit.storage.events import event_fanout, events, render_envelope
from wxpaykit.storage.schema import metadata

DISPATCH = ["event_fanout", "event_deliveries", "event_delivery_attempts", "sink_breakers"]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mariadb"])
async def test_upgrade_creates_dispatch_tables_matching_the_models(
    kind: str, tmp_path: Path
) -> None:
    database = await create_test_database(kind, f"{tmp_path}/m.db", tables=False)
    try:
        await migrate.upgrade(database.url, schema=database.schema, revision="0001_ledger")
        old = payment_event("order-old")
        async with database.engine.begin() as connection:  # a row written before 0002
            await connection.execute(
                events.insert().values(
                    event_id=old.event_id,
                    type=old.type,
                    mchid=old.mchid,
                    aggregate_key=old.aggregate_key,
                    dedup_key=old.dedup_key,
                    payload=render_envelope(old, now_ms=5),
                    created_at_ms=5,
                )
            )
        await migrate.upgrade(database.url, schema=database.schema)
        async with database.engine.connect() as connection:
            columns = await connection.run_sync(
                lambda sync: {
                    table: {column["name"] for column in inspect(sync).get_columns(table)}
                    for table in DISPATCH
                }
            )
            indexes = await connection.run_sync(
                lambda sync: {
                    table: {
                        (index["name"], tuple(index["column_names"]))
                        for index in inspect(sync).get_indexes(table)
                        if not index["unique"]
                    }
                    for table in DISPATCH
                }
            )
            queued = (await connection.scalars(select(event_fanout.c.event_seq))).all()
            seqs = (await connection.scalars(select(events.c.seq))).all()
        for table in DISPATCH:
            assert columns[table] == {column.name for column in metadata.tables[table].columns}
            # the claim queries rely on these exact indexes (see wxpaykit.dispatch.claims)
            assert indexes[table] == {
                (index.name, tuple(column.name for column in index.columns))
                for index in metadata.tables[table].indexes
                if not index.unique
            }
        assert list(queued) == list(seqs)
    finally:
        await drop_test_database(database)
