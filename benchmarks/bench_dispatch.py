"""Dispatch benchmark: commit-to-receipt lag and throughput, against a naive baseline.

Needs PostgreSQL on 127.0.0.1:5432 (postgres/test). Run::

    uv run python benchmarks/bench_dispatch.py [--rate 1000] [--seconds 10] [--events 20000]
        [--parts all|lag|backlog]

Every part runs in its own process, all on this machine: the webhook receiver
(uvicorn, verifying every signature), the producer (commits events with
``append_events``), ``wxpaykit worker`` processes (the real CLI), and the naive
baseline. The schema comes from the migrations, in a throwaway PostgreSQL schema.

0. Warm-up (not measured): 4,000 events delivered, then ANALYZE, as autovacuum
   would have done on a database in service (without statistics PostgreSQL plans
   lookups by order as whole-table scans for the first minute of a new install).
1. Throughput: ``--events`` committed beforehand (4 per order, so ordering is at
   work), delivered by 1 then 2 worker processes (fan-out included); rate = events /
   (last receipt - first receipt).
2. Lag: the producer offers ``--rate`` events/s for ``--seconds`` (a transaction of
   ``rate/100`` events every 10 ms, spread over 4 connections so that a slow commit
   does not hold the schedule back) while one worker delivers; lag = receipt time at
   the receiver - time the producer's COMMIT returned. Offered and achieved commit
   rates are printed: a lag figure means nothing if the producer fell behind. Also
   printed: the worker's CPU per event over the run, and where the lag goes (commit
   -> fan-out, as the fan-out's clock read at its start -> first attempt start ->
   receipt; the worker's and receiver's clocks are the same machine's).
3. The naive baseline, same run, same receiver: one delivery per transaction, one
   POST at a time with httpx, polling every 10 ms; the same lag run, and 10 s from
   a backlog.

Targets (issue #6): lag p99 <= 50 ms at 1,000 events/s; >= 2,000 events/s with two
workers. The machine's load average is printed: other processes share the cores.
``--parts lag`` (or ``backlog``) runs only that part, without the naive baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select, text, update

from wxpaykit.dispatch.deliveries import DeliveryStore, SinkRoute
from wxpaykit.dispatch.webhooks import (
    WebhookSecret,
    generate_webhook_secret,
    sign_webhook,
    verify_webhook,
)
from wxpaykit.storage import migrate
from wxpaykit.storage.dialects import create_engine
from wxpaykit.storage.events import (
    DeliveryStatus,
    NewEvent,
    append_events,
    event_deliveries,
    event_delivery_attempts,
    events,
)

PG_URL = "postgresql://postgres:test@127.0.0.1:5432/test"
LAG_P99_TARGET_MS = 50.0
THROUGHPUT_TARGET = 2000.0


# --- receiver process ---------------------------------------------------------------


def run_receiver(port: int, secret: str) -> None:
    """A webhook receiver that verifies signatures and records receipt times (ns)."""
    import uvicorn

    secrets = [WebhookSecret.parse(secret)]
    received: dict[str, int] = {}
    invalid = 0

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal invalid
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        status, answer = 204, b""
        if scope["path"] == "/hooks":
            now_ns = time.time_ns()
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            try:
                event_id = verify_webhook(body, headers, secrets, now_seconds=now_ns // 10**9)
                received.setdefault(event_id, now_ns)
            except Exception:
                invalid += 1
                status = 400
        elif scope["path"] == "/count":
            status, answer = 200, json.dumps({"count": len(received), "invalid": invalid}).encode()
        elif scope["path"] == "/dump":
            status, answer = 200, json.dumps(received).encode()
        elif scope["path"] == "/reset":
            received.clear()
            invalid = 0
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": answer})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", access_log=False)


# --- producer process ---------------------------------------------------------------


def new_event(n: int, orders: int, run: str) -> NewEvent:
    """Event ``n`` of a run: ``orders`` orders take turns, so each has several events."""
    order = f"{run}-{n % orders}"
    return NewEvent(
        type="payment.succeeded",
        mchid="1900000109",
        aggregate_key=f"1900000109:{order}",
        dedup_key=f"{run}:{order}:{n}",
        payload={"out_trade_no": order, "total": n, "currency": "CNY", "trade_state": "SUCCESS"},
    )


def run_producer(schema: str, rate: int, seconds: float, out: str) -> None:
    """Commit ``rate``/s events for ``seconds``: a batch every 10 ms, 4 connections."""
    result = asyncio.run(_produce(schema, rate, seconds))
    Path(out).write_text(json.dumps(result), encoding="utf-8")


async def _produce(schema: str, rate: int, seconds: float) -> dict[str, Any]:
    tick_s, lanes = 0.01, 4
    per_tick = max(1, round(rate * tick_s))
    ticks = int(seconds / tick_s)
    engine = create_engine(PG_URL, schema=schema, pool_size=lanes)
    committed: dict[str, int] = {}
    run = uuid.uuid4().hex[:8]
    start = time.monotonic() + 0.05

    async def lane(index: int) -> None:
        for tick in range(index, ticks, lanes):
            delay = start + tick * tick_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            batch = [new_event(tick * per_tick + i, 2500, run) for i in range(per_tick)]
            async with engine.begin() as connection:
                await append_events(connection, batch, now_ms=time.time_ns() // 1_000_000)
            done = time.time_ns()
            committed.update((event.event_id, done) for event in batch)

    await asyncio.gather(*(lane(i) for i in range(lanes)))
    elapsed = time.monotonic() - start
    await engine.dispose()
    return {"committed": committed, "elapsed": elapsed, "offered": rate}


# --- naive baseline process ---------------------------------------------------------


def run_naive(schema: str, url: str, secret: str, seconds: float) -> None:
    """One delivery per transaction, one POST at a time, for ``seconds``."""
    asyncio.run(_naive(schema, url, [WebhookSecret.parse(secret)], seconds))


async def _naive(schema: str, url: str, secrets: list[WebhookSecret], seconds: float) -> None:
    engine = create_engine(PG_URL, schema=schema, pool_size=2)
    store = DeliveryStore(engine)
    route = [SinkRoute(name="naive", patterns=("*",))]
    d = event_deliveries
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            await store.fan_out(route, now_ms=time.time_ns() // 1_000_000, limit=1)
            async with engine.begin() as connection:
                row = (
                    await connection.execute(
                        select(d.c.id, events.c.event_id, events.c.payload)
                        .join(events, events.c.seq == d.c.event_seq)
                        .where(d.c.status == DeliveryStatus.PENDING)
                        .order_by(d.c.event_seq)
                        .limit(1)
                        .with_for_update(skip_locked=True)
                    )
                ).first()
                if row is None:
                    await asyncio.sleep(0.01)
                    continue
                body = row.payload.encode()
                now_s = int(time.time())
                headers = {
                    "webhook-id": row.event_id,
                    "webhook-timestamp": str(now_s),
                    "webhook-signature": sign_webhook(row.event_id, now_s, body, secrets),
                }
                await client.post(url, content=body, headers=headers)
                await connection.execute(
                    update(d).where(d.c.id == row.id).values(status=DeliveryStatus.DELIVERED)
                )
    await engine.dispose()


# --- the orchestrating process ------------------------------------------------------


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} CPUs"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


@dataclass
class Bench:
    schema: str
    hooks: str
    secret: str
    config: Path
    client: httpx.AsyncClient
    spawn: Any

    def process(self, target: Callable[..., None], *args: Any) -> Any:
        process = self.spawn.Process(target=target, args=args, daemon=True)
        process.start()
        return process

    def start_workers(self, count: int) -> list[subprocess.Popen[bytes]]:
        env = {**os.environ, "WXPAYKIT_DATABASE_SCHEMA": self.schema}
        command = [
            sys.executable,
            "-m",
            "wxpaykit.cli.main",
            "worker",
            "--config",
            str(self.config),
        ]
        return [
            subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)  # noqa: S603
            for _ in range(count)
        ]

    async def count(self) -> int:
        answer = (await self.client.get("/count")).json()
        if answer["invalid"]:
            raise RuntimeError(f"{answer['invalid']} webhooks failed verification")
        return int(answer["count"])

    async def receipts(self) -> dict[str, int]:
        return {k: int(v) for k, v in (await self.client.get("/dump")).json().items()}

    async def wait_for(self, count: int, limit_seconds: float) -> bool:
        deadline = time.monotonic() + limit_seconds
        while time.monotonic() < deadline:
            if await self.count() >= count:
                return True
            await asyncio.sleep(0.05)
        return False

    async def reset(self) -> None:
        await self.client.post("/reset")

    async def prefill(self, engine: Any, count: int) -> None:
        run = uuid.uuid4().hex[:8]
        for start in range(0, count, 1000):
            async with engine.begin() as connection:
                batch = range(start, min(count, start + 1000))
                await append_events(
                    connection,
                    [new_event(n, count // 4, run) for n in batch],
                    now_ms=time.time_ns() // 1_000_000,
                )


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        worker.wait(timeout=60)


async def lag_run(
    bench: Bench, engine: Any, *, label: str, rate: int, seconds: float, naive: bool
) -> tuple[float | None, bool]:
    """Produce at ``rate`` while delivering; print offered/achieved and lag percentiles."""
    await bench.reset()
    out = Path(tempfile.mkdtemp()) / "committed.json"
    workers: list[subprocess.Popen[bytes]] = []
    if naive:
        deliverer = bench.process(run_naive, bench.schema, bench.hooks, bench.secret, seconds + 15)
    else:
        workers = bench.start_workers(1)
        async with engine.begin() as connection:  # warm-up: the worker is up and delivering
            await append_events(connection, [new_event(-1, 1, "warm")], now_ms=0)
        if not await bench.wait_for(1, 60):
            raise RuntimeError("the worker delivered nothing within 60 s")
    await bench.client.post("/reset")
    cpu_at_start = sum(cpu_seconds(w.pid) for w in workers)
    producer = bench.process(run_producer, bench.schema, rate, seconds, str(out))
    await asyncio.to_thread(producer.join)
    result = json.loads(await asyncio.to_thread(out.read_text, encoding="utf-8"))
    committed: dict[str, int] = result["committed"]
    complete = await bench.wait_for(len(committed), 15)
    received = await bench.receipts()
    worker_cpu_s = sum(cpu_seconds(w.pid) for w in workers) - cpu_at_start
    if naive:
        deliverer.terminate()
    else:
        stop_workers(workers)
    achieved = len(committed) / result["elapsed"]
    lags = sorted((received[i] - t) / 1e6 for i, t in committed.items() if i in received)
    line = (
        f"{label:<22} offered {rate}/s achieved {achieved:.0f}/s,"
        f" received {len(lags)}/{len(committed)}"
    )
    if lags:
        line += (
            f"; lag ms p50 {percentile(lags, 0.5):.1f} p95 {percentile(lags, 0.95):.1f}"
            f" p99 {percentile(lags, 0.99):.1f} max {lags[-1]:.1f}"
        )
    if not naive:  # from the producer's start until every event arrived (or 15 s more)
        line += f"; worker CPU {worker_cpu_s * 1000 / max(1, len(committed)):.2f} ms/event"
    print(line, flush=True)
    if not naive and lags:
        await print_stages(engine, committed, received)
    sustained = achieved >= 0.95 * rate
    p99 = percentile(lags, 0.99) if lags and complete else None
    return p99, sustained


async def print_stages(engine: Any, committed: dict[str, int], received: dict[str, int]) -> None:
    """Where the lag goes: commit -> fan-out -> attempt start -> receipt (ms, p50/p99).

    Fan-out time is the fan-out cycle's clock reading (taken before it looks at the
    queue), attempt start the worker's clock when it began the first attempt.
    """
    d, a = event_deliveries, event_delivery_attempts
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                select(d.c.event_id, d.c.created_at_ms, func.min(a.c.started_at_ms))
                .join(a, a.c.delivery_id == d.c.id)
                .where(d.c.event_id.in_(list(committed)))
                .group_by(d.c.event_id, d.c.created_at_ms)
            )
        ).all()
    stages: dict[str, list[float]] = {
        "commit->fan-out": [],
        "fan-out->start": [],
        "start->receipt": [],
    }
    for event_id, fanned_ms, started_ms in rows:
        if event_id not in received:
            continue
        stages["commit->fan-out"].append(fanned_ms - committed[event_id] / 1e6)
        stages["fan-out->start"].append(started_ms - fanned_ms)
        stages["start->receipt"].append(received[event_id] / 1e6 - started_ms)
    parts = []
    for name, values in stages.items():
        values.sort()
        if values:
            parts.append(
                f"{name} p50 {percentile(values, 0.5):.1f} p99 {percentile(values, 0.99):.1f}"
            )
    print(f"{'':<22} stages (ms): " + "; ".join(parts), flush=True)
    # A tail from one bad second (another process took the cores) or from all of them?
    first_ns = min(committed.values())
    by_second: dict[int, list[float]] = {}
    for event_id, done_ns in committed.items():
        if event_id in received:
            lag_ms = (received[event_id] - done_ns) / 1e6
            by_second.setdefault((done_ns - first_ns) // 10**9, []).append(lag_ms)
    maxima = " ".join(f"{max(by_second[second]):.0f}" for second in sorted(by_second))
    print(f"{'':<22} max lag per second of the run (ms): {maxima}", flush=True)


async def backlog_run(bench: Bench, engine: Any, *, label: str, count: int, workers: int) -> float:
    """Deliver ``count`` committed events with ``workers`` workers; print events/s."""
    await bench.reset()
    await bench.prefill(engine, count)
    started = time.time_ns()
    running = bench.start_workers(workers)
    done = await bench.wait_for(count, 300)
    stop_workers(running)
    received = sorted((await bench.receipts()).values())
    if len(received) < 2:
        print(f"{label:<22} nothing delivered", flush=True)
        return 0.0
    first, last = received[0], received[-1]
    rate = (len(received) - 1) / ((last - first) / 1e9)
    print(
        f"{label:<22} {len(received)}/{count} delivered{'' if done else ' (timed out)'}"
        f" in {(last - first) / 1e9:.2f} s = {rate:.0f} events/s"
        f" (first receipt {(first - started) / 1e9:.1f} s after start)",
        flush=True,
    )
    return rate


async def naive_backlog_run(bench: Bench, engine: Any, *, seconds: float) -> float:
    await bench.reset()
    await bench.prefill(engine, 4000)
    process = bench.process(run_naive, bench.schema, bench.hooks, bench.secret, seconds)
    await asyncio.to_thread(process.join)
    received = sorted((await bench.receipts()).values())
    rate = (len(received) - 1) / ((received[-1] - received[0]) / 1e9) if len(received) > 1 else 0
    print(f"{'naive, backlog':<22} {len(received)} in {seconds:.0f} s = {rate:.0f} events/s")
    return rate


async def warm_up(bench: Bench, engine: Any) -> None:
    """Put the database in service: 4,000 events delivered, then ANALYZE.

    A database in service has statistics (autovacuum analyzes the outbox tables as
    they grow); without any, PostgreSQL plans every lookup by order as a scan of the
    whole table for the first minute or so of a new installation.
    """
    await bench.reset()
    await bench.prefill(engine, 4000)
    workers = bench.start_workers(1)
    delivered = await bench.wait_for(4000, 120)
    stop_workers(workers)
    if not delivered:
        raise RuntimeError("warm-up: the worker did not deliver 4,000 events in 120 s")
    async with engine.connect() as connection:
        await connection.execute(text("ANALYZE"))
        await connection.commit()


async def main(rate: int, seconds: float, total: int, parts: str = "all") -> int:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL)
    async with admin.begin() as connection:
        await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    await migrate.upgrade(PG_URL, schema=schema)
    engine = create_engine(PG_URL, schema=schema)
    spawn = multiprocessing.get_context("spawn")
    port = free_port()
    secret = generate_webhook_secret().render()
    receiver = spawn.Process(target=run_receiver, args=(port, secret), daemon=True)
    receiver.start()
    base = f"http://127.0.0.1:{port}"
    config = Path(tempfile.mkdtemp()) / "bench.toml"
    config.write_text(
        f"""
[gateway]
database_url = "{PG_URL}"
[[dispatch.sinks]]
name = "shop"
type = "http"
url = "{base}/hooks"
secrets = ["{secret}"]
concurrency = 64
""",
        encoding="utf-8",
    )
    verdicts: list[str] = []
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            for _ in range(200):
                try:
                    await client.get("/count")
                    break
                except httpx.HTTPError:
                    await asyncio.sleep(0.05)
            bench = Bench(schema, f"{base}/hooks", secret, config, client, spawn)
            print(
                f"PostgreSQL; {load_average()}; worker: default settings, sink concurrency 64\n",
                flush=True,
            )
            await warm_up(bench, engine)
            if parts in ("all", "backlog"):
                one = await backlog_run(
                    bench, engine, label="wxpaykit, 1 worker", count=total, workers=1
                )
                two = await backlog_run(
                    bench, engine, label="wxpaykit, 2 workers", count=total, workers=2
                )
            if parts in ("all", "lag"):
                p99, sustained = await lag_run(
                    bench,
                    engine,
                    label="wxpaykit, 1 worker",
                    rate=rate,
                    seconds=seconds,
                    naive=False,
                )
            if parts == "all":
                # The naive baseline last: it leaves its backlog behind.
                await lag_run(bench, engine, label="naive", rate=rate, seconds=seconds, naive=True)
                await naive_backlog_run(bench, engine, seconds=10)
            print(f"\n{load_average()}")
            if parts in ("all", "lag"):
                ok_lag = p99 is not None and p99 <= LAG_P99_TARGET_MS and sustained
                verdicts.append(
                    f"{'PASS' if ok_lag else 'FAIL'} lag p99 <= {LAG_P99_TARGET_MS:.0f} ms"
                    f" at {rate}/s (p99 {'n/a' if p99 is None else f'{p99:.1f} ms'}"
                    f"{'' if sustained else ', producer fell behind'})"
                )
            if parts in ("all", "backlog"):
                verdicts.append(
                    f"{'PASS' if two >= THROUGHPUT_TARGET else 'FAIL'} >= {THROUGHPUT_TARGET:.0f}"
                    f" events/s with 2 workers ({two:.0f}; 1 worker {one:.0f})"
                )
            print("\n".join(verdicts))
    finally:
        receiver.terminate()
        await engine.dispose()
        async with admin.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()
    return 0 if all(v.startswith("PASS") for v in verdicts) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=1000, help="offered events/s (lag run)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the lag run")
    parser.add_argument("--events", type=int, default=20000, help="backlog size")
    parser.add_argument(
        "--parts",
        choices=("all", "lag", "backlog"),
        default="all",
        help="run only the lag or the backlog part (no naive baseline); default all",
    )
    arguments = parser.parse_args()
    sys.exit(
        asyncio.run(main(arguments.rate, arguments.seconds, arguments.events, arguments.parts))
    )
