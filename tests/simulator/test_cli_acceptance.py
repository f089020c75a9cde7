"""Done-when: from a shell, start the simulator, create a merchant, order, pay, get notified.

Every step of that path is a ``wxpaykit`` subprocess; the notify_url is a real HTTP
server on a free loopback port, and the notification it receives is verified with the
core. The inspection commands that follow (notifications, chaos) run in process through
typer's runner against the same served simulator, which saves a Python start-up each.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wxpaykit.cli.sim import app as sim_app
from wxpaykit.core.models import Transaction
from wxpaykit.core.notifications import parse_notification
from wxpaykit.simulator import MerchantBundle

CLI = [sys.executable, "-m", "wxpaykit.cli.main", "sim"]


class _Inbox(http.server.BaseHTTPRequestHandler):
    received: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.received.put((dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def inbox() -> Iterator[tuple[str, queue.Queue[tuple[dict[str, str], bytes]]]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Inbox)
    _Inbox.received = queue.Queue()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/notify", _Inbox.received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def sim_url(tmp_path: Path) -> Iterator[str]:
    process = subprocess.Popen(  # noqa: S603 - our own CLI
        [
            *CLI,
            "--port",
            "0",
            "--tls-port",
            "-1",
            "--data",
            str(tmp_path / "sim.db"),
            "--time-scale",
            "0.01",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None

    def pump() -> None:
        for line in process.stdout or []:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        first = lines.get(timeout=30)
        assert " API on http://127.0.0.1:" in first, first
        yield first.split(" API on ", 1)[1].split(" ", 1)[0]
    finally:
        process.terminate()
        process.wait(timeout=30)
        assert process.stderr is not None
        process.stderr.close()
        process.stdout.close()


def _run(*args: str) -> str:
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
    assert done.returncode == 0, done.stderr
    return done.stdout


def _run_in_process(*args: str) -> str:
    result = CliRunner().invoke(sim_app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_merchant_order_pay_and_notification_from_the_command_line(
    sim_url: str, inbox: tuple[str, queue.Queue[tuple[dict[str, str], bytes]]], tmp_path: Path
) -> None:
    notify_url, received = inbox
    bundle_dir = tmp_path / "merchant"
    created = _run(
        "merchant", "create", "--out", str(bundle_dir), "--mode", "certificate", "--url", sim_url
    )
    assert "mchid " in created
    assert {p.name for p in bundle_dir.iterdir()} >= {
        "apiclient_key.pem",
        "apiclient_cert.pem",
        "apiclient_cert.p12",
        "bundle.json",
        "sim_ca.pem",
    }
    order = json.loads(
        _run(
            "order",
            "create",
            "--bundle",
            str(bundle_dir),
            "--notify-url",
            notify_url,
            "--amount",
            "1",
        )
    )
    assert order["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")
    paid = _run("pay", "--code-url", order["code_url"], "--url", sim_url)
    assert "SUCCESS" in paid
    headers, body = received.get(timeout=20)
    bundle = MerchantBundle.read(bundle_dir)
    notification = parse_notification(
        headers,
        body,
        keys=bundle.trusted_keys(),
        apiv3_key=bundle.apiv3_key,
        now=dt.datetime.now(dt.UTC),
    )
    assert isinstance(notification.resource, Transaction)
    assert notification.resource.out_trade_no == order["out_trade_no"]
    listing = json.loads(_run_in_process("notifications", "--url", sim_url, "--json"))
    assert listing[0]["attempts"][0]["status"] == 204
    assert "chaos off" in _run_in_process("chaos", "off", "--url", sim_url)
    chaos = _run_in_process("chaos", "set", "probe_rate=0.5", "seed=9", "--url", sim_url)
    assert json.loads(chaos)["probe_rate"] == 0.5
