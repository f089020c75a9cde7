"""Dispatch benchmark: commit-to-receipt lag and throughput, against a naive baseline.

Needs PostgreSQL on 127.0.0.1:5432 (postgres/test). Run::

    uv run python benchmarks/bench_dispatch.py [--seconds 5] [--rate 1000] [--events 20000]

1. Lag: events committed at ``--rate``/s (batches every 10 ms) while one
   ``wxpaykit worker`` process delivers them to a webhook receiver on loopback (its
   own process); lag = receipt time - commit time, p50/p99/max.
2. Throughput: ``--events`` events already committed, two worker processes.
3. Baseline, same run, same receiver: a naive dispatcher that claims, posts and marks
   one delivery per transaction.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, text, update

from wxpaykit.dispatch.deliveries import DeliveryStore, SinkRoute
from wxpaykit.dispatch.webhooks import generate_webhook_secret
from wxpaykit.storage.dialects import create_engine
from wxpaykit.storage.events import (
    DeliveryStatus,
    NewEvent,
    append_events,
    event_deliveries,
    event_delivery_attempts,
    event_fanout,
    events,
    sink_breakers,
)

PG_URL = "postgresql://postgres:test@127.0.0.1:5432/test"
TABLES = [events, event_fanout, event_deliveries, event_delivery_attempts, sink_breakers]


def run_receiver(port: int) -> None:
    """Child process: a Starlette webhook receiver recording receipt times."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    received: dict[str, int] = {}

    async def hook(request: Request) -> Response:
        await request.body()
        received.setdefault(request.headers["webhook-id"], time.time_ns())
        return Response(status_code=204)

    async def stats(_: Request) -> Response:
        return JSONResponse(received)

    async def reset(_: Request) -> Response:
        received.clear()
        return Response(status_code=204)

    app = Starlette(
        routes=[
            Route("/hooks", hook, methods=["POST"]),
            Route("/stats", stats),
            Route("/reset", reset, methods=["POST"]),
        ]
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", access_log=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def new_event(n: int) -> NewEvent:
    order = f"order-{n % 500}"
    return NewEvent(
        type="payment.succeeded",
        mchid="1900000109",
        aggregate_key=f"1900000109:{order}",
        dedup_key=f"{order}:{n}:{uuid.uuid4().hex}",
        payload={"out_trade_no": order, "total": n, "currency": "CNY", "trade_state": "SUCCESS"},
    )


def start_workers(count: int, config: Path, schema: str) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "WXPAYKIT_DATABASE_SCHEMA": schema}
    return [
        subprocess.Popen(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "wxpaykit.cli.main", "worker", "--config", str(config)],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        worker.wait(timeout=30)


async def receipts(client: httpx.AsyncClient) -> dict[str, int]:
    response = await client.get("/stats")
    return {key: int(value) for key, value in response.json().items()}


async def wait_for_count(
    client: httpx.AsyncClient, count: int, limit_seconds: float
) -> dict[str, int]:
    deadline = time.monotonic() + limit_seconds
    while True:
        got = await receipts(client)
        if len(got) >= count or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.05)


async def produce(engine: Any, *, rate: int, seconds: float) -> dict[str, int]:
    """Commit events at ``rate``/s in 10 ms batches; event id -> commit time (ns)."""
    committed: dict[str, int] = {}
    per_batch = max(1, rate // 100)
    start = time.monotonic()
    n = 0
    tick = 0
    while time.monotonic() - start < seconds:
        batch = [new_event(n + i) for i in range(per_batch)]
        n += per_batch
        async with engine.begin() as connection:
            await append_events(connection, batch, now_ms=time.time_ns() // 1_000_000)
        now = time.time_ns()
        for event in batch:
            committed[event.event_id] = now
        tick += 1
        delay = start + tick * 0.01 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    return committed


def lag_figures(committed: dict[str, int], received: dict[str, int]) -> str:
    lags = sorted((received[i] - committed[i]) / 1e6 for i in committed if i in received)
    if not lags:
        return "nothing received"
    p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
    return (
        f"received {len(lags)}/{len(committed)}; lag ms p50 {statistics.median(lags):.1f}"
        f" p99 {p99:.1f} max {lags[-1]:.1f}"
    )


async def naive_dispatch(engine: Any, url: str, stop: asyncio.Event) -> int:
    """Baseline: one delivery per transaction, one POST at a time."""
    store = DeliveryStore(engine)
    delivered = 0
    async with httpx.AsyncClient() as client:
        while not stop.is_set():
            await store.fan_out([SinkRoute(name="naive", patterns=("*",))], now_ms=0, limit=1)
            async with engine.begin() as connection:
                row = (
                    await connection.execute(
                        select(event_deliveries.c.id, events.c.event_id, events.c.payload)
                        .join(events, events.c.seq == event_deliveries.c.event_seq)
                        .where(event_deliveries.c.status == DeliveryStatus.PENDING)
                        .order_by(event_deliveries.c.event_seq)
                        .limit(1)
                        .with_for_update(skip_locked=True)
                    )
                ).first()
                if row is None:
                    await asyncio.sleep(0.01)
                    continue
                await client.post(
                    url, content=row.payload.encode(), headers={"webhook-id": row.event_id}
                )
                await connection.execute(
                    update(event_deliveries)
                    .where(event_deliveries.c.id == row.id)
                    .values(status=DeliveryStatus.DELIVERED)
                )
                delivered += 1
    return delivered


async def reset_tables(engine: Any) -> None:
    async with engine.begin() as connection:
        for table in reversed(TABLES):
            await connection.execute(table.delete())


async def main(seconds: float, rate: int, total: int) -> None:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL)
    async with admin.begin() as connection:
        await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = create_engine(PG_URL, schema=schema, pool_size=10)
    async with engine.begin() as connection:
        await connection.run_sync(lambda sync: TABLES[0].metadata.create_all(sync, tables=TABLES))
    port = free_port()
    receiver = multiprocessing.Process(target=run_receiver, args=(port,), daemon=True)
    receiver.start()
    base = f"http://127.0.0.1:{port}"
    config = Path(tempfile.mkdtemp()) / "bench.toml"
    config.write_text(
        f"""
[gateway]
database_url = "{PG_URL}"
[dispatch.worker]
poll_interval_seconds = 0.005
batch_size = 200
[[dispatch.sinks]]
name = "shop"
type = "http"
url = "{base}/hooks"
secrets = ["{generate_webhook_secret().render()}"]
concurrency = 64
""",
        encoding="utf-8",
    )
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            for _ in range(100):
                try:
                    await client.get("/stats")
                    break
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
            print(f"PostgreSQL, {os.cpu_count()} CPUs, receiver in its own process\n")

            # 1. lag at a steady rate, one worker
            workers = start_workers(1, config, schema)
            await asyncio.sleep(4)  # imports and first poll
            committed = await produce(engine, rate=rate, seconds=seconds)
            got = await wait_for_count(client, len(committed), 60)
            stop_workers(workers)
            print(
                f"wxpaykit worker x1 @ {rate}/s for {seconds:.0f} s: {lag_figures(committed, got)}"
            )

            # 1b. baseline at the same rate
            await reset_tables(engine)
            await client.post("/reset")
            stop = asyncio.Event()
            naive = asyncio.create_task(naive_dispatch(engine, f"{base}/hooks", stop))
            committed = await produce(engine, rate=rate, seconds=seconds)
            got = await wait_for_count(client, len(committed), 2 * seconds)
            stop.set()
            await naive
            print(
                f"naive baseline     @ {rate}/s for {seconds:.0f} s: {lag_figures(committed, got)}"
            )

            # 2. throughput from a backlog, two workers
            await reset_tables(engine)
            await client.post("/reset")
            for start in range(0, total, 1000):
                async with engine.begin() as connection:
                    await append_events(
                        connection,
                        [new_event(n) for n in range(start, min(total, start + 1000))],
                        now_ms=time.time_ns() // 1_000_000,
                    )
            workers = start_workers(2, config, schema)
            first = await wait_for_count(client, 1, 30)
            began = min(first.values()) if first else time.time_ns()
            got = await wait_for_count(client, total, 120)
            stop_workers(workers)
            elapsed = (max(got.values()) - began) / 1e9
            print(
                f"wxpaykit worker x2 backlog {total}: {len(got)} delivered in {elapsed:.2f} s"
                f" = {len(got) / elapsed:.0f} events/s"
            )

            # 2b. baseline throughput over 10 s
            await reset_tables(engine)
            await client.post("/reset")
            for start in range(0, 5000, 1000):
                async with engine.begin() as connection:
                    await append_events(
                        connection, [new_event(n) for n in range(start, start + 1000)], now_ms=0
                    )
            stop = asyncio.Event()
            began_s = time.monotonic()
            naive = asyncio.create_task(naive_dispatch(engine, f"{base}/hooks", stop))
            await asyncio.sleep(10)
            stop.set()
            count = await naive
            rate_naive = count / (time.monotonic() - began_s)
            print(f"naive baseline backlog: {count} in 10 s = {rate_naive:.0f} events/s")
    finally:
        receiver.terminate()
        await engine.dispose()
        async with admin.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--events", type=int, default=20000)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.seconds, arguments.rate, arguments.events))
