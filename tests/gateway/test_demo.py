"""Acceptance: ``wxpaykit demo --once`` pays orders with chaos on and proves exactly once.

The shop's journal (every webhook it verified) is checked here again, independently:
each event of the outbox reached the shop exactly once, under its stable id, with a
signature the ``standardwebhooks`` library accepts.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from wxpaykit.demo.scenario import SHOP_JOURNAL

pytestmark = pytest.mark.slow


def test_demo_once_reports_zero_double_applications(tmp_path: Path) -> None:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120", "TERM": "dumb"}
    result = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [
            sys.executable,
            "-c",
            "from wxpaykit.cli.main import main; main()",
            "demo",
            "--once",
            "--orders",
            "25",
            "--workdir",
            str(tmp_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.search(r"double applications\s+│\s+0\s", output), output
    assert re.search(r"orders applied \(SUCCESS\) in the ledger\s+│\s+25\s", output), output
    assert re.search(r"forged attempts acknowledged\s+│\s+0\s", output), output
    assert "exactly once: yes" in output
    assert (tmp_path / "gateway.db").exists()
    assert re.search(r"events lost\s+│\s+0\s", output), output
    assert "every event delivered to the shop: yes" in output

    with sqlite3.connect(tmp_path / "gateway.db") as database:
        emitted = dict(database.execute("SELECT event_id, type FROM events").fetchall())
    assert len(emitted) >= 25  # one payment.succeeded per order at least
    webhooks = [
        json.loads(line)
        for line in (tmp_path / SHOP_JOURNAL).read_text(encoding="utf-8").splitlines()
    ]
    # Delivery is at least once (a slow answer under load is retried under the same
    # id); the shop processes each id once and marks the others as duplicates.
    first = Counter(w["headers"]["webhook-id"] for w in webhooks if not w["duplicate"])
    assert first == Counter(emitted.keys())  # every event processed exactly once
    repeated = {w["headers"]["webhook-id"] for w in webhooks if w["duplicate"]}
    assert repeated <= set(emitted)
    verifier = Webhook((tmp_path / "secrets" / "webhook_secret").read_text(encoding="utf-8"))
    for webhook in webhooks:
        event = verifier.verify(webhook["body"], webhook["headers"])
        assert event["id"] == webhook["headers"]["webhook-id"]
        assert event["type"] == emitted[event["id"]]
