"""A worker killed with SIGKILL mid-delivery: after its lease expires, a new worker
delivers the same event again, with the same id (at-least-once)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.dispatch.conftest import TestDatabase
from tests.dispatch.helpers import append, deliveries, payment_event
from tests.dispatch.receiver import Receiver, wait_until
from wxpaykit.dispatch.clock import SystemClock
from wxpaykit.dispatch.webhooks import generate_webhook_secret


def start_worker(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as stderr:
        return subprocess.Popen(  # noqa: S603 - our own CLI with test arguments
            [sys.executable, "-m", "wxpaykit.cli.main", "worker", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


async def test_sigkilled_worker_event_is_redelivered_with_same_id(
    sqlite_db: TestDatabase, receiver: Receiver, tmp_path: Path
) -> None:
    config = tmp_path / "wxpaykit.toml"
    config.write_text(
        f"""
[gateway]
database_url = "{sqlite_db.url}"

[dispatch.worker]
poll_interval_seconds = 0.02
lease_margin_seconds = 0.5

[[dispatch.sinks]]
name = "shop"
type = "http"
url = "{receiver.url}"
secrets = ["{generate_webhook_secret().render()}"]
timeout_seconds = 1.5
""",
        encoding="utf-8",
    )
    (event_id,) = await append(sqlite_db, [payment_event("order-k")], now_ms=SystemClock().now_ms())
    receiver.blocking.set()
    first = start_worker(config, tmp_path / "worker.log")
    try:
        await wait_until(
            lambda: receiver.arrivals == [event_id], timeout_seconds=20, message="first attempt"
        )
        os.kill(first.pid, signal.SIGKILL)
    finally:
        first.wait(timeout=10)
    assert first.returncode == -signal.SIGKILL
    (row,) = await deliveries(sqlite_db)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.locked_by is not None  # the dead worker's lease still stands

    # The receiver sees the dead sender's connection close: that attempt did not land.
    await wait_until(lambda: receiver.abandoned == [event_id], message="abandoned request")
    receiver.blocking.clear()
    second = start_worker(config, tmp_path / "worker.log")
    try:
        await wait_until(
            lambda: len(receiver.delivered()) == 1, timeout_seconds=20, message="redelivery"
        )
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=10)
    assert second.returncode == 0, (tmp_path / "worker.log").read_text()
    assert receiver.arrivals == [event_id, event_id]
    (delivered,) = receiver.delivered()
    assert delivered.headers["webhook-id"] == event_id
    (row,) = await deliveries(sqlite_db)
    assert (row.status, row.attempts, row.locked_by) == ("delivered", 2, None)
