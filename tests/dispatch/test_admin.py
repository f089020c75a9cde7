"""The admin API (through httpx's ASGI transport) and the ``wxpaykit events`` CLI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.routing import Mount
from typer.testing import CliRunner, Result

from tests.dispatch.conftest import TestDatabase
from tests.dispatch.helpers import append, deliveries, payment_event, settings
from tests.dispatch.receiver import Receiver
from tests.dispatch.test_recovery import START_MS, http_sink, step
from wxpaykit.cli.main import app as cli
from wxpaykit.dispatch.admin import admin_router
from wxpaykit.dispatch.clock import ManualClock
from wxpaykit.dispatch.worker import Worker

TOKEN = "admin-token-0123456789"


async def make_dead_letter(database: TestDatabase, receiver: Receiver) -> tuple[str, ManualClock]:
    clock = ManualClock(START_MS)
    worker = Worker(
        database.engine,
        settings(http_sink(receiver, retry={"dead_letter_permanent": True})),
        clock=clock,
    )
    await worker.open()
    (event_id,) = await append(database, [payment_event("order-adm")], now_ms=clock.now_ms())
    receiver.status = 410
    await step(worker, worker.dispatchers["shop"])
    await worker.close()
    return event_id, clock


async def test_admin_api_lists_shows_and_replays(
    sqlite_db: TestDatabase, receiver: Receiver
) -> None:
    event_id, clock = await make_dead_letter(sqlite_db, receiver)
    app = Starlette(
        routes=[Mount("/admin", app=admin_router(sqlite_db.engine, token=TOKEN, clock=clock))]
    )
    transport = httpx.ASGITransport(app=app)
    headers = {"authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
        refused = await client.get("/admin/events", headers={"authorization": "Bearer wrong"})
        assert refused.status_code == 401
        assert refused.json()["code"] == "UNAUTHORIZED"

        listed = await client.get("/admin/events", params={"status": "dead"}, headers=headers)
        assert [d["event_id"] for d in listed.json()["deliveries"]] == [event_id]
        bad = await client.get("/admin/events", params={"status": "gone"}, headers=headers)
        assert (bad.status_code, bad.json()["code"]) == (400, "INVALID_REQUEST")

        shown = await client.get(f"/admin/events/{event_id}", headers=headers)
        assert json.loads(shown.json()["body"])["id"] == event_id
        assert shown.json()["attempts"][0]["status_code"] == 410
        missing = await client.get("/admin/events/evt_nope", headers=headers)
        assert missing.status_code == 404

        replayed = await client.post(f"/admin/events/{event_id}/replay", headers=headers)
        assert replayed.json() == {"replayed": 1}
        (row,) = await deliveries(sqlite_db)
        assert (row.status, row.event_id, row.replays) == ("pending", event_id, 1)

        none_left = await client.post("/admin/replay", json={"sink": "shop"}, headers=headers)
        assert none_left.json() == {"replayed": 0}  # only dead letters in bulk


async def test_cli_lists_shows_and_replays(
    sqlite_db: TestDatabase, receiver: Receiver, tmp_path: Path
) -> None:
    event_id, _ = await make_dead_letter(sqlite_db, receiver)
    runner = CliRunner()

    async def invoke(args: list[str]) -> Result:
        # The CLI runs its own event loop (asyncio.run): give it a thread.
        return await asyncio.to_thread(lambda: runner.invoke(cli, args))

    base = ["--database-url", sqlite_db.url, "--config", str(tmp_path / "absent.toml")]

    listed = await invoke(["events", "list", "--status", "dead", *base])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.output.splitlines()[0])["event_id"] == event_id

    shown = await invoke(["events", "show", event_id, *base])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["deliveries"][0]["status"] == "dead"
    assert (await invoke(["events", "show", "evt_nope", *base])).exit_code == 1

    assert (await invoke(["events", "replay", *base])).exit_code == 2
    replayed = await invoke(
        ["events", "replay", "--sink", "shop", "--since", "2000-01-01T00:00:00", *base]
    )
    assert replayed.exit_code == 0, replayed.output
    assert "1 deliveries scheduled" in replayed.output
    (row,) = await deliveries(sqlite_db)
    assert (row.status, row.event_id) == ("pending", event_id)

    schema = await invoke(["events", "schema"])
    assert json.loads(schema.output)["title"] == "wxpaykit event"
