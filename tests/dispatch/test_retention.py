"""Delivered history older than the retention period is deleted with its attempts;
events, pending deliveries and dead letters stay."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import func, select
from typer.testing import CliRunner

from tests.dispatch.conftest import TestDatabase
from tests.dispatch.helpers import append, deliveries, payment_event, settings
from tests.dispatch.receiver import wait_until
from wxpaykit.cli.main import app as cli
from wxpaykit.dispatch.clock import ManualClock
from wxpaykit.dispatch.config import DispatchSettings
from wxpaykit.dispatch.history import replay
from wxpaykit.dispatch.retention import purge_delivered
from wxpaykit.dispatch.worker import Worker
from wxpaykit.storage.events import event_delivery_attempts, events

DAY_MS = 24 * 3600 * 1000
START_MS = 1_700_000_000_000


def _dispatch(retention_days: float = 0) -> DispatchSettings:
    return settings(
        {"name": "ok", "type": "callable", "target": "tests.dispatch.handlers:on_event_async"},
        {
            "name": "bad",
            "type": "callable",
            "target": "tests.dispatch.handlers:always_fails",
            "retry": {"max_attempts": 1},
        },
        delivered_retention_days=retention_days,
    )


async def _deliver(database: TestDatabase, clock: ManualClock, names: list[str]) -> None:
    """Append one event per name at the clock's time and run every sink until settled."""
    await append(database, [payment_event(name) for name in names], now_ms=clock.now_ms())
    worker = Worker(database.engine, _dispatch(), clock=clock)
    await worker.open()
    await worker.fan_out_once()
    for dispatcher in worker.dispatchers.values():
        await dispatcher.poll()
        await dispatcher.drain(5)
    await worker.close()


async def _attempt_delivery_ids(database: TestDatabase) -> set[int]:
    async with database.engine.connect() as connection:
        rows = await connection.scalars(select(event_delivery_attempts.c.delivery_id))
        return set(rows.all())


async def _event_count(database: TestDatabase) -> int:
    async with database.engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(events)) or 0)


async def test_purge_keeps_recent_pending_and_dead_deliveries_and_every_event(
    any_db: TestDatabase,
) -> None:
    clock = ManualClock(START_MS)
    await _deliver(any_db, clock, ["old-1", "old-2", "old-3"])
    clock.advance(40 * 24 * 3600)
    await _deliver(any_db, clock, ["new-1"])
    before = await deliveries(any_db)
    assert sorted((row.sink, row.status) for row in before) == sorted(
        [("ok", "delivered")] * 4 + [("bad", "dead")] * 4
    )
    # One old delivered delivery is replayed (pending again): it must stay.
    replayed = next(row for row in before if row.sink == "ok" and row.event_seq == 1)
    assert await replay(any_db.engine, now_ms=clock.now_ms(), event_id=replayed.event_id, sink="ok")

    removed = await purge_delivered(any_db.engine, older_than_ms=clock.now_ms() - 30 * DAY_MS)

    after = await deliveries(any_db)
    gone = {row.id for row in before} - {row.id for row in after}
    assert removed == len(gone) == 2  # old-2 and old-3 on "ok"
    assert all(row.sink == "ok" and row.status == "delivered" for row in before if row.id in gone)
    assert all(row.delivered_at_ms < START_MS + DAY_MS for row in before if row.id in gone)
    assert sorted((row.sink, row.status) for row in after) == sorted(
        [("ok", "pending"), ("ok", "delivered")] + [("bad", "dead")] * 4
    )
    attempted = await _attempt_delivery_ids(any_db)
    assert attempted.isdisjoint(gone)  # their attempts went with them
    assert {row.id for row in after} <= attempted  # everyone else's stayed
    assert await _event_count(any_db) == 4
    # Nothing more is old enough: a second purge finds nothing.
    assert await purge_delivered(any_db.engine, older_than_ms=clock.now_ms() - 30 * DAY_MS) == 0


async def test_a_worker_with_retention_purges_at_start_and_one_without_keeps_all(
    sqlite_db: TestDatabase,
) -> None:
    clock = ManualClock(START_MS)
    await _deliver(sqlite_db, clock, ["old-1", "old-2"])
    clock.advance(40 * 24 * 3600)

    keeping = Worker(sqlite_db.engine, _dispatch(0), clock=clock)
    assert await keeping.purge_delivered_once() == 0
    assert len(await deliveries(sqlite_db)) == 4

    async def only_dead_left() -> bool:
        return {row.status for row in await deliveries(sqlite_db)} == {"dead"}

    async with Worker(sqlite_db.engine, _dispatch(30), clock=clock).running():
        await wait_until(only_dead_left, message="the start-up purge")
    assert len(await deliveries(sqlite_db)) == 2


async def test_cli_purges_delivered_history(sqlite_db: TestDatabase, tmp_path: Path) -> None:
    clock = ManualClock(START_MS)  # 2023: far older than 30 days
    await _deliver(sqlite_db, clock, ["old-1"])
    base = ["--database-url", sqlite_db.url, "--config", str(tmp_path / "absent.toml")]
    runner = CliRunner()

    kept = await asyncio.to_thread(
        lambda: runner.invoke(cli, ["events", "purge", "--older-than-days", "100000", *base])
    )
    purged = await asyncio.to_thread(
        lambda: runner.invoke(cli, ["events", "purge", "--older-than-days", "30", *base])
    )

    assert kept.exit_code == 0, kept.output
    assert "deleted 0 delivered deliveries" in kept.output
    assert purged.exit_code == 0, purged.output
    assert "deleted 1 delivered deliveries" in purged.output
    assert [row.status for row in await deliveries(sqlite_db)] == ["dead"]
