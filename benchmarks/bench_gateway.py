"""Gateway throughput and latency against a same-run baseline, on PostgreSQL.

    uv run --group bench python benchmarks/bench_gateway.py [--orders 5000] [--copies 3]

Both systems get the same pre-signed notifications (each order's notification sent
``copies`` times, every copy re-signed with a fresh nonce as WeChat Pay re-sends, in a
shuffled order so some copies race), from ``wrk`` with 32 connections and 2 threads
(a Lua script replays the request file; needs ``apt-get install wrk``). Each system
runs 2 uvicorn workers on its own fresh database:

* **wxpaykit**: ``wxpaykit.gateway.app:app_from_env`` (Redis nonces, SQL ledger);
* **baseline**: ``benchmarks/baseline_app.py`` (FastAPI + wechatpayv3 ``callback()`` +
  Redis ``SET NX`` on the notification id + SQLAlchemy).

Printed: acknowledged notifications per second, p50/p99 latency, non-2xx answers,
and, from each database, orders paid, events written and double applications.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from wxpaykit.storage import migrate
from wxpaykit.storage.base import OrderRecord
from wxpaykit.storage.ledger import SqlLedger
from wxpaykit.testing.gateway_kit import MerchantKit
from wxpaykit.testing.keys import generate_certificate

PG = "postgresql+asyncpg://postgres@127.0.0.1:5432"
REDIS = "redis://127.0.0.1:6379/0"
SEPARATOR = b"\0\0WXB\0\0"
ROOT = Path(__file__).resolve().parent.parent

WRK_SCRIPT = r"""
local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end
function init(args)
  local nthreads = tonumber(os.getenv("WXB_THREADS"))
  local f = assert(io.open(os.getenv("WXB_REQUESTS"), "rb"))
  local data = f:read("*a"); f:close()
  local sep = "\0\0WXB\0\0"
  reqs = {}
  local n, pos = 0, 1
  while true do
    local s, e = string.find(data, sep, pos, true)
    if not s then break end
    if n % nthreads == id then reqs[#reqs + 1] = string.sub(data, pos, s - 1) end
    n = n + 1; pos = e + 1
  end
  sent, real, ok, bad = 0, 0, 0, 0
  filler = wrk.format("GET", "/healthz")
end
function request()
  sent = sent + 1
  if sent <= #reqs then return reqs[sent] end
  return filler
end
function response(status, headers, body)
  if body and (string.find(body, '"status":"ok"', 1, true) or string.find(body, "Not Found", 1, true)) then
    return
  end
  real = real + 1
  if status >= 200 and status < 300 then ok = ok + 1 else bad = bad + 1 end
  if real == #reqs then
    -- wrk runs for its whole -d unless interrupted: tell the benchmark (it sends SIGINT,
    -- and wrk then reports the real elapsed time).
    local marker = assert(io.open(os.getenv("WXB_DONE") .. id, "w")); marker:close()
    wrk.thread:stop()
  end
end
function done(summary, latency, requests)
  local oks, bads = 0, 0
  for _, t in ipairs(threads) do oks = oks + t:get("ok"); bads = bads + t:get("bad") end
  io.write(string.format(
    'WXB {"duration_us":%d,"ok":%d,"bad":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,"socket_errors":%d}\n',
    summary.duration, oks, bads, latency:percentile(50), latency:percentile(99), latency.max,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


def free_port() -> int:
    """A free loopback port (the benchmark is the only user of the machine's ports here)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raw_request(path: str, headers: dict[str, str], body: bytes) -> bytes:
    """One HTTP/1.1 request exactly as wrk will send it."""
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def create_database(name: str) -> str:
    admin = create_async_engine(f"{PG}/test", isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f"CREATE DATABASE {name}"))
    await admin.dispose()
    return f"{PG}/{name}"


async def drop_database(name: str) -> None:
    admin = create_async_engine(f"{PG}/test", isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    await admin.dispose()


async def seed_ours(url: str, kit: MerchantKit, orders: Sequence[str]) -> None:
    await migrate.upgrade(url)
    async with SqlLedger.from_url(url) as ledger:
        for start in range(0, len(orders), 100):
            await asyncio.gather(
                *(
                    ledger.create_order(
                        OrderRecord(
                            mchid=kit.mchid,
                            out_trade_no=name,
                            appid=kit.appid,
                            description="bench",
                            total=100,
                            currency="CNY",
                            state="NOTPAY",
                        )
                    )
                    for name in orders[start : start + 100]
                )
            )


async def seed_baseline(url: str, orders: Sequence[str]) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.execute(
            text("CREATE TABLE bl_orders (out_trade_no VARCHAR(32) PRIMARY KEY, state VARCHAR(16))")
        )
        await connection.execute(
            text(
                "CREATE TABLE bl_events (id BIGSERIAL PRIMARY KEY, out_trade_no VARCHAR(32), payload TEXT)"
            )
        )
        await connection.execute(
            text("INSERT INTO bl_orders VALUES (:no, 'NOTPAY')"), [{"no": n} for n in orders]
        )
    await engine.dispose()


async def tally(url: str, ours: bool) -> dict[str, int]:
    """Orders paid, events written, and orders with more than one event (double applied)."""
    orders_table, events_table, key = (
        ("orders", "events", "aggregate_key")
        if ours
        else ("bl_orders", "bl_events", "out_trade_no")
    )
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        paid = await connection.scalar(
            text(f"SELECT count(*) FROM {orders_table} WHERE state = 'SUCCESS'")  # noqa: S608
        )
        events = await connection.scalar(text(f"SELECT count(*) FROM {events_table}"))  # noqa: S608
        doubles = await connection.scalar(
            text(
                f"SELECT count(*) FROM (SELECT {key} FROM {events_table} "  # noqa: S608
                f"GROUP BY {key} HAVING count(*) > 1) d"
            )
        )
    await engine.dispose()
    return {"paid": int(paid or 0), "events": int(events or 0), "doubles": int(doubles or 0)}


def start_server(
    argv: list[str], env: dict[str, str], port: int, log: Path
) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:
        process = subprocess.Popen(  # noqa: S603 - our own server commands
            argv, env={**os.environ, **env}, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-2000:]}")
        try:
            # Both apps answer something on /healthz (ours 200, the baseline 404).
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0)
            return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.terminate()
    raise TimeoutError(f"server did not start:\n{log.read_text()[-2000:]}")


def run_wrk(port: int, requests_file: Path, script: Path, connections: int) -> dict[str, Any]:
    """Replay the request file; interrupt wrk as soon as both threads got every answer."""
    done = requests_file.with_suffix(".done")
    wrk = subprocess.Popen(  # noqa: S603
        [  # noqa: S607 - wrk from PATH, checked with shutil.which
            "wrk",
            "-t2",
            f"-c{connections}",
            "-d600s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
        ],
        env={
            **os.environ,
            "WXB_REQUESTS": str(requests_file),
            "WXB_THREADS": "2",
            "WXB_DONE": str(done),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and wrk.poll() is None:
        if all(Path(f"{done}{thread}").exists() for thread in (0, 1)):
            wrk.send_signal(signal.SIGINT)
            break
        time.sleep(0.005)
    stdout, stderr = wrk.communicate(timeout=60)
    for line in stdout.splitlines():
        if line.startswith("WXB "):
            result: dict[str, Any] = json.loads(line[4:])
            return result
    raise RuntimeError(f"wrk printed no result:\n{stdout}\n{stderr}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=5000)
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is required: apt-get install -y wrk")

    folder = Path(tempfile.mkdtemp(prefix="wxpaykit-bench-"))
    kit = MerchantKit()
    merchant_cert = generate_certificate(kit.mchid, organization="Merchant")
    suffix = uuid.uuid4().hex[:8]
    orders = [f"bench{suffix}{i:06d}" for i in range(args.orders)]
    ours_db, base_db = f"bench_gw_{suffix}", f"bench_bl_{suffix}"
    ours_url = asyncio.run(create_database(ours_db))
    base_url = asyncio.run(create_database(base_db))
    try:
        asyncio.run(seed_ours(ours_url, kit, orders))
        asyncio.run(seed_baseline(base_url, orders))
        print(f"seeded {len(orders)} orders in two PostgreSQL databases; signing requests...")
        sealed = [
            kit.payment(name, notification_id=f"EV-{name}", use_public_key=True)
            for name in orders
            for _ in range(args.copies)
        ]
        random.Random(5).shuffle(sealed)
        files = {}
        for target, path in (("ours", f"/notify/v3/{kit.mchid}"), ("baseline", "/notify")):
            files[target] = folder / f"{target}.requests"
            files[target].write_bytes(
                b"".join(raw_request(path, s.headers, s.body) + SEPARATOR for s in sealed)
            )
        script = folder / "replay.lua"
        script.write_text(WRK_SCRIPT)
        config = folder / "wxpaykit.toml"
        config.write_text(
            f'[gateway]\ndatabase_url = "{ours_url}"\nredis_url = "{REDIS}"\nlog_level = "warning"\n\n'
            + kit.toml_entry(folder / "secrets", private_key=merchant_cert.private_key)
            + f'certificate_serial = "{merchant_cert.serial_no}"\n'
        )
        secrets_dir = folder / "secrets"
        results: dict[str, dict[str, Any]] = {}

        port = free_port()
        server = start_server(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "wxpaykit.gateway.app:app_from_env",
                "--workers",
                "2",
                "--port",
                str(port),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            {"WXPAYKIT_CONFIG": str(config)},
            port,
            folder / "ours.log",
        )
        try:
            results["wxpaykit"] = run_wrk(port, files["ours"], script, args.connections)
        finally:
            stop(server)
        results["wxpaykit"].update(asyncio.run(tally(ours_url, ours=True)))

        port = free_port()
        server = start_server(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--app-dir",
                "benchmarks",
                "baseline_app:app",
                "--workers",
                "2",
                "--port",
                str(port),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            {
                "BASELINE_MCHID": kit.mchid,
                "BASELINE_APPID": kit.appid,
                "BASELINE_PRIVATE_KEY_FILE": str(secrets_dir / f"{kit.mchid}_apiclient_key.pem"),
                "BASELINE_CERT_SERIAL": merchant_cert.serial_no,
                "BASELINE_APIV3_KEY_FILE": str(secrets_dir / f"{kit.mchid}_apiv3.key"),
                "BASELINE_PUBLIC_KEY_FILE": str(secrets_dir / f"{kit.mchid}_pub_key.pem"),
                "BASELINE_PUBLIC_KEY_ID": kit.public_key_id,
                "BASELINE_DATABASE_URL": base_url,
                "BASELINE_REDIS_URL": REDIS,
            },
            port,
            folder / "baseline.log",
        )
        try:
            results["baseline"] = run_wrk(port, files["baseline"], script, args.connections)
        finally:
            stop(server)
        results["baseline"].update(asyncio.run(tally(base_url, ours=False)))
    finally:
        asyncio.run(drop_database(ours_db))
        asyncio.run(drop_database(base_db))
        shutil.rmtree(folder, ignore_errors=True)
    report(results, args)


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    total = args.orders * args.copies
    print(
        f"\n{args.orders} orders x {args.copies} copies = {total} requests, wrk -t2 -c{args.connections},"
        " PostgreSQL, 2 uvicorn workers each\n"
    )
    print(f"{'':28}{'wxpaykit':>14}{'baseline':>14}")
    rows = []
    for name in ("wxpaykit", "baseline"):
        r = results[name]
        seconds = r["duration_us"] / 1e6
        rows.append(
            {
                "acknowledged/s": r["ok"] / seconds,
                "p50 ms": r["p50_us"] / 1000,
                "p99 ms": r["p99_us"] / 1000,
                "max ms": r["max_us"] / 1000,
                "acknowledged": r["ok"],
                "non-2xx answers": r["bad"],
                "socket errors": r["socket_errors"],
                "orders paid (db)": r["paid"],
                "events (db)": r["events"],
                "double applications (db)": r["doubles"],
            }
        )
    for key in rows[0]:
        ours, base = rows[0][key], rows[1][key]
        fmt = "{:>14.1f}" if isinstance(ours, float) else "{:>14d}"
        print(f"{key:28}" + fmt.format(ours) + fmt.format(base))
    ratio = rows[0]["acknowledged/s"] / max(rows[1]["acknowledged/s"], 1e-9)
    p99 = rows[0]["p99 ms"] / max(rows[1]["p99 ms"], 1e-9)
    print(f"\nthroughput ratio {ratio:.2f}x (target >= 3x); p99 ratio {p99:.2f} (target <= 0.33)")


if __name__ == "__main__":
    main()
