"""Real gateway processes: ``uvicorn --factory`` subprocesses on ports chosen at run time."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from wxpaykit.gateway.batched_writes import PROTOCOL

_RUNNING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")
#: Generous: six processes importing SQLAlchemy, Alembic and the SDK on two busy cores.
STARTUP_SECONDS = 120.0


@dataclass
class GatewayProcess:
    """One ``wxpaykit`` gateway in its own process, logging to a file."""

    config: Path
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    port: int = 0

    @property
    def url(self) -> str:
        """Base URL of the running gateway."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GatewayProcess:
        """Start and wait (poll with a deadline) until it serves /healthz."""
        env = {**os.environ, "WXPAYKIT_CONFIG": str(self.config), **self.extra_env}
        log = self.log_path.open("ab")
        offset = self.log_path.stat().st_size
        self.process = subprocess.Popen(  # noqa: S603 - our own gateway command
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "wxpaykit.gateway.app:app_from_env",
                "--http",  # as `wxpaykit serve` runs it: answers written once per turn
                PROTOCOL,
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-access-log",
                "--log-level",
                "info",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.port = self._wait_for_port(offset)
        self._wait_healthy()
        return self

    def _wait_for_port(self, offset: int) -> int:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited at start-up:\n{self.log_tail()}")
            with self.log_path.open("rb") as handle:
                handle.seek(offset)
                match = _RUNNING.search(handle.read().decode("utf-8", "replace"))
            if match:
                return int(match.group(1))
            time.sleep(0.05)
        raise TimeoutError(f"gateway did not start:\n{self.log_tail()}")

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"gateway not healthy:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flushing, like a power cut for the process."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """Graceful stop (SIGTERM), then SIGKILL if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 40) -> str:
        """The end of the process log, for failure messages."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])
