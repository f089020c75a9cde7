"""Ledger throughput per database, against the floor of one durable write, in one run.

For each reachable database (SQLite file, PostgreSQL, MariaDB), in a throwaway schema:

(a) floor: one INSERT of a notification-sized row and COMMIT per notification, through the
    same engine settings (the least any durable recorder must do);
(b) ``SqlLedger.record_notification``: ORDERS orders x 3 copies (one applied, two
    DUPLICATE, shuffled as WeChat re-sends them), which inserts the notification and raw
    request, applies the order transition and appends the outbox event in one transaction.

Both run with CONCURRENCY tasks over a pool of that size. Prints records/s and latency
percentiles side by side. Usage::

    uv run python benchmarks/bench_ledger.py [--orders 500] [--concurrency 32] [--db sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table

from wxpaykit.storage.base import RecordOutcome
from wxpaykit.storage.ledger import SqlLedger

# The storage test helpers create and drop throwaway databases; reuse them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.storage.builders import order, payment
from tests.storage.conftest import Target, create_empty, drop, prepare

_floor_metadata = MetaData()
floor_rows = Table(
    "bench_floor",
    _floor_metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("mchid", String(32), nullable=False),
    Column("notification_id", String(128), nullable=False, unique=True),
    Column("body", String(400), nullable=False),
    Column("received_at_ms", BigInteger, nullable=False),
)


async def _timed(
    jobs: list[Callable[[], Awaitable[object]]], concurrency: int
) -> tuple[float, list[float]]:
    queue = list(reversed(jobs))
    latencies: list[float] = []

    async def worker() -> None:
        while queue:
            job = queue.pop()
            started = time.perf_counter()
            await job()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


def _line(label: str, count: int, elapsed: float, latencies: list[float]) -> str:
    cuts = statistics.quantiles(latencies, n=100)
    return (
        f"  {label:<34} {count / elapsed:9.0f} rec/s   "
        f"p50 {cuts[49] * 1000:6.1f} ms   p99 {cuts[98] * 1000:6.1f} ms"
    )


async def bench(target: Target, orders: int, concurrency: int) -> None:
    await prepare(target)
    ledger = SqlLedger.from_url(
        target.url, schema=target.schema, pool_size=concurrency, max_overflow=0
    )
    mchid = "1900000109"
    try:
        async with ledger.engine.begin() as connection:
            await connection.run_sync(_floor_metadata.create_all)
        for i in range(orders):
            await ledger.create_order(order(mchid, f"B{i}"))
        notifications = [payment(mchid, f"B{i}", notification_id=f"N{i}") for i in range(orders)]
        copies = [n for n in notifications for _ in range(3)]
        random.Random(7).shuffle(copies)

        async def floor_write(i: int) -> None:
            async with ledger.engine.begin() as connection:
                await connection.execute(
                    floor_rows.insert().values(
                        mchid=mchid, notification_id=f"F{i}", body="x" * 300, received_at_ms=i
                    )
                )

        floor_jobs: list[Callable[[], Awaitable[object]]] = [
            lambda i=i: floor_write(i) for i in range(len(copies))
        ]
        ledger_jobs: list[Callable[[], Awaitable[object]]] = [
            lambda n=n: ledger.record_notification(n) for n in copies
        ]
        floor_elapsed, floor_lat = await _timed(floor_jobs, concurrency)
        ledger_elapsed, ledger_lat = await _timed(ledger_jobs, concurrency)
        stats = await ledger.stats(mchid=mchid)
        applied = stats.notifications_by_outcome.get(RecordOutcome.APPLIED.value, 0)
        print(f"{target.backend}: {len(copies)} notifications, concurrency {concurrency}")
        print(_line("(a) floor: INSERT + COMMIT", len(copies), floor_elapsed, floor_lat))
        print(_line("(b) SqlLedger.record_notification", len(copies), ledger_elapsed, ledger_lat))
        print(
            f"  applied {applied} (expected {orders}), duplicates absorbed "
            f"{stats.duplicates_absorbed}, events {stats.events}, retries {ledger.retries}"
        )
        if applied != orders or stats.events != orders:
            sys.exit("exactly-once violated")
    finally:
        await ledger.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "mysql"], action="append")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for backend in args.db or ["sqlite", "postgresql", "mysql"]:
            try:
                target = await create_empty(backend, Path(folder))
            except OSError as exc:
                print(f"{backend}: skipped ({exc})")
                continue
            try:
                await bench(target, args.orders, args.concurrency)
            finally:
                await drop(target)


if __name__ == "__main__":
    asyncio.run(main())
