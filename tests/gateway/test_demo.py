"""Acceptance: ``wxpaykit demo --once`` pays orders with chaos on and proves exactly once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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
