"""``wxpaykit serve`` with the dispatch worker embedded: notification in, signed webhook out.

The gateway runs as a real process (``wxpaykit serve --worker``) on SQLite; the shop is
a real HTTP receiver on loopback. The worker polls only every 30 s here, so a webhook
arriving within seconds proves the gateway woke the worker after the commit.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sqlite3
import subprocess
import threading
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wxpaykit.demo.servers import ThreadedServer, bind_loopback
from wxpaykit.dispatch.config import parse_dispatch_settings
from wxpaykit.dispatch.webhooks import generate_webhook_secret
from wxpaykit.errors import ConfigurationError
from wxpaykit.gateway.settings import settings_from_document
from wxpaykit.gateway.starter import STARTER_CONFIG
from wxpaykit.storage.ledger import SqlLedger
from wxpaykit.testing.gateway_kit import MerchantKit

from .conftest import wxpaykit_command
from .databases import migrate_all

_RUNNING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")
STARTUP_SECONDS = 60.0
#: Far below the worker's 30 s poll: only the post-commit wake-up delivers this fast.
DELIVERY_SECONDS = 10.0
ADMIN_TOKEN = "admin-token-for-the-wiring-test"


@dataclass
class Receiver:
    """A shop endpoint that keeps every request as received (headers, raw body)."""

    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    def app(self) -> Starlette:
        """Answers 204 to every POST and records it."""

        async def receive(request: Request) -> Response:
            self.requests.append((dict(request.headers), await request.body()))
            self.arrived.set()
            return Response(status_code=204)

        return Starlette(routes=[Route("/hooks", receive, methods=["POST"])])


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    """The running receiver and its webhook URL."""
    shop = Receiver()
    with ThreadedServer(shop.app(), bind_loopback()) as server:
        yield shop, f"{server.url}/hooks"


def _config(tmp_path: Path, kit: MerchantKit, url: str, webhook_url: str, secret: str) -> Path:
    (tmp_path / "webhook_secret").write_text(secret, encoding="utf-8")
    (tmp_path / "admin_token").write_text(ADMIN_TOKEN, encoding="utf-8")
    config = tmp_path / "wxpaykit.toml"
    config.write_text(
        f"""[gateway]
database_url = "{url}"
admin_token_file = "admin_token"
log_level = "info"

{kit.toml_entry(tmp_path / "keys")}
[dispatch.worker]
poll_interval_seconds = 30

[[dispatch.sinks]]
name = "shop"
type = "http"
url = "{webhook_url}"
secret_files = ["webhook_secret"]
""",
        encoding="utf-8",
    )
    return config


async def _prepare(url: str, kit: MerchantKit) -> None:
    await migrate_all(url)
    async with SqlLedger.from_url(url) as ledger:
        await ledger.create_order(kit.order("wired-1"))


class Served:
    """``wxpaykit serve`` in a subprocess, logging to a file."""

    def __init__(self, config: Path, log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
                wxpaykit_command("serve", "--config", str(config), "--port", "0", "--worker"),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.url = f"http://127.0.0.1:{self._port()}"

    def log(self) -> str:
        """Everything the process wrote."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def _port(self) -> int:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited at start-up:\n{self.log()}")
            match = _RUNNING.search(self.log())
            if match:
                return int(match.group(1))
            time.sleep(0.05)
        raise TimeoutError(f"serve did not start:\n{self.log()}")

    def stop(self) -> int:
        """SIGTERM and wait: the lifespan stops the worker and closes the ledger."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                return self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
                raise
        return self.process.returncode


def test_a_notification_reaches_the_shop_as_a_signed_webhook(
    tmp_path: Path, kit: MerchantKit, receiver: tuple[Receiver, str]
) -> None:
    shop, webhook_url = receiver
    secret = generate_webhook_secret().render()
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    asyncio.run(_prepare(url, kit))
    served = Served(_config(tmp_path, kit, url, webhook_url, secret), tmp_path / "serve.log")
    try:
        notification = kit.payment("wired-1")
        answer = httpx.post(
            f"{served.url}/notify/v3/{kit.mchid}",
            content=notification.body,
            headers=notification.headers,
            timeout=10.0,
        )
        assert answer.status_code == 204, answer.text
        assert shop.arrived.wait(DELIVERY_SECONDS), served.log()

        admin = httpx.get(
            f"{served.url}/admin/events",
            params={"status": "delivered"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=10.0,
        )
        refused = httpx.get(f"{served.url}/admin/events", timeout=10.0)
    finally:
        exit_code = served.stop()

    log = served.log()
    # uvicorn re-raises SIGTERM after a clean shutdown, so -SIGTERM is a normal exit.
    assert exit_code in (0, -signal.SIGTERM), log
    assert "Application shutdown complete." in log
    assert "Traceback" not in log
    assert "delivering events in-process to: shop" in log
    with sqlite3.connect(tmp_path / "gateway.db") as database:
        stored = database.execute("SELECT event_id, type FROM events").fetchall()
    assert len(stored) == 1
    event_id, event_type = stored[0]
    assert event_type == "payment.succeeded"
    assert len(shop.requests) == 1
    headers, body = shop.requests[0]
    assert headers["webhook-id"] == event_id  # the stable id receivers deduplicate on
    event = Webhook(secret).verify(body, headers)  # an independent Standard Webhooks library
    assert event["id"] == event_id
    assert event["type"] == "payment.succeeded"
    assert event["data"]["out_trade_no"] == "wired-1"
    assert admin.status_code == 200, admin.text
    assert [row["event_id"] for row in admin.json()["deliveries"]] == [event_id]
    assert refused.status_code == 401


# --- the [dispatch] settings the gateway reads ---------------------------------------


def _document(sinks: bool, **gateway: object) -> dict[str, object]:
    document: dict[str, object] = {"gateway": dict(gateway)}
    if sinks:
        document["dispatch"] = {
            "sinks": [
                {
                    "name": "shop",
                    "type": "http",
                    "url": "http://127.0.0.1:9/hooks",
                    "secret_files": ["secrets/webhook"],
                }
            ]
        }
    return document


def test_the_worker_is_embedded_by_default_when_sinks_are_configured(tmp_path: Path) -> None:
    with_sinks = settings_from_document(_document(True), base_dir=tmp_path, env={})
    without = settings_from_document(_document(False), base_dir=tmp_path, env={})

    assert with_sinks.runs_embedded_worker
    assert not without.runs_embedded_worker
    sink = with_sinks.dispatch.sinks[0]
    assert sink.type == "http"
    assert list(sink.secret_files) == [tmp_path / "secrets" / "webhook"]  # next to the config


def test_the_environment_turns_the_embedded_worker_off(tmp_path: Path) -> None:
    settings = settings_from_document(
        _document(True), base_dir=tmp_path, env={"WXPAYKIT_EMBEDDED_WORKER": "false"}
    )

    assert not settings.runs_embedded_worker


@pytest.mark.parametrize(
    ("document", "env", "message"),
    [
        (_document(False, embedded_worker=True), {}, "needs at least one"),
        (_document(True), {"WXPAYKIT_EMBEDDED_WORKER": "maybe"}, "must be true or false"),
        (_document(True, embedded_worker="yes"), {}, "must be true or false"),
        (_document(True), {"WXPAYKIT_ADMIN_TOKEN": "short"}, "at least 16"),
        ({"dispatch": {"sinks": [{"name": "x", "type": "ftp"}]}}, {}, "invalid dispatch"),
    ],
)
def test_bad_dispatch_settings_are_refused(
    tmp_path: Path, document: dict[str, object], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        settings_from_document(document, base_dir=tmp_path, env=env)


def test_the_starter_config_documents_a_valid_webhook_sink() -> None:
    lines = STARTER_CONFIG.splitlines()
    start = lines.index("# [[dispatch.sinks]]")
    block = [line.removeprefix("# ") for line in lines[start:] if line.startswith("# ")]

    settings = parse_dispatch_settings(tomllib.loads("\n".join(block)).get("dispatch", {}))

    assert tomllib.loads(STARTER_CONFIG).get("dispatch") is None  # commented out as shipped
    assert [(sink.name, sink.type) for sink in settings.sinks] == [("shop", "http")]
