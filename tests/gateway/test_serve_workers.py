"""``wxpaykit serve --workers N`` on Linux: one ``SO_REUSEPORT`` socket per worker.

The gateway runs as a real process tree on SQLite. What is checked is what the
supervisor promises (cli/workers.py): each worker listens on its own socket, the
kernel spreads connections opened at once over the workers, a worker that dies is
replaced, and SIGTERM stops every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from wxpaykit.cli.main import app
from wxpaykit.cli.workers import bind_reuse_port
from wxpaykit.storage.ledger import SqlLedger
from wxpaykit.testing.gateway_kit import MerchantKit

from .conftest import free_port, wxpaykit_command
from .databases import migrate_all

STARTUP_SECONDS = 60.0
CONNECTIONS = 24


def children(pid: int) -> set[int]:
    """Living worker processes of ``pid`` (multiprocessing's resource tracker left out)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[1]) != pid or fields[0] == "Z":
            continue
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            if b"resource_tracker" not in (entry / "cmdline").read_bytes():
                found.add(int(entry.name))
    return found


def tcp_sockets(port: int, state: str) -> set[int]:
    """Inodes of IPv4 sockets on local ``port`` in ``state`` (0A listen, 01 established)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == state:
            inodes.add(int(fields[9]))
    return inodes


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def wait_for(condition: object, what: str, seconds: float = STARTUP_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.05)
    raise TimeoutError(what)


class Supervised:
    """``wxpaykit serve --workers 2`` on a fixed port, logging to a file."""

    def __init__(self, tmp_path: Path, kit: MerchantKit) -> None:
        url = f"sqlite:///{tmp_path / 'gateway.db'}"
        asyncio.run(_prepare(url, kit))
        config = tmp_path / "wxpaykit.toml"
        config.write_text(
            f'[gateway]\ndatabase_url = "{url}"\nlog_level = "info"\n\n'
            + kit.toml_entry(tmp_path / "secrets")
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / "serve.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
                wxpaykit_command(
                    "serve", "--config", str(config), "--port", str(self.port), "--workers", "2"
                ),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: the cleanup ends every process
            )

    def wait_until_serving(self) -> None:
        wait_for(self.serving, f"two workers did not start:\n{self.log()}")

    def kill_all(self) -> None:
        """SIGKILL the supervisor's whole process group (whatever state it is in)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def workers(self) -> set[int]:
        return children(self.process.pid) if self.process.poll() is None else set()

    def serving(self) -> bool:
        """Two workers, each with its listening socket, and an answer on /healthz."""
        workers = self.workers()
        listening = tcp_sockets(self.port, "0A")
        if len(workers) != 2 or len(listening) != 2:
            return False
        if not all(socket_inodes(pid) & listening for pid in workers):
            return False
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2.0).status_code == 200
        except httpx.TransportError:
            return False


async def _prepare(url: str, kit: MerchantKit) -> None:
    await migrate_all(url)
    async with SqlLedger.from_url(url) as ledger:
        await ledger.create_order(kit.order("spread-1"))


@pytest.fixture
def supervised(tmp_path: Path, kit: MerchantKit) -> Iterator[Supervised]:
    served = Supervised(tmp_path, kit)
    try:
        served.wait_until_serving()
        yield served
    finally:
        served.kill_all()


def test_each_worker_listens_on_its_own_socket_and_connections_are_spread(
    supervised: Supervised, kit: MerchantKit
) -> None:
    workers = supervised.workers()
    listening = tcp_sockets(supervised.port, "0A")
    assert len(listening) == 2
    # Each worker holds exactly one of the two listening sockets.
    assert sorted(len(socket_inodes(pid) & listening) for pid in workers) == [1, 1]

    # A burst of connections opened at once, all kept open: the first worker to wake
    # would take them all on a shared socket; here each worker gets some.
    clients = [httpx.Client(base_url=supervised.url, timeout=10.0) for _ in range(CONNECTIONS)]
    try:
        assert all(client.get("/healthz").status_code == 200 for client in clients)
        established = tcp_sockets(supervised.port, "01")
        held = {pid: len(socket_inodes(pid) & established) for pid in workers}
        assert sum(held.values()) == CONNECTIONS
        assert min(held.values()) >= 1, held

        notification = kit.payment("spread-1")
        answer = clients[0].post(
            f"/notify/v3/{kit.mchid}", content=notification.body, headers=notification.headers
        )
        assert answer.status_code == 204, answer.text
    finally:
        for client in clients:
            client.close()


def test_a_dead_worker_is_replaced_and_sigterm_stops_every_worker(
    supervised: Supervised,
) -> None:
    first = supervised.workers()
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    wait_for(
        lambda: victim not in supervised.workers() and supervised.serving(),
        f"the dead worker was not replaced:\n{supervised.log()}",
    )
    assert len(supervised.workers() - first) == 1

    workers = supervised.workers()
    supervised.process.terminate()
    assert supervised.process.wait(timeout=30) == 0
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    assert tcp_sockets(supervised.port, "0A") == set()


def test_a_port_in_use_fails_at_once_with_a_clear_message(tmp_path: Path, kit: MerchantKit) -> None:
    config = tmp_path / "wxpaykit.toml"
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    config.write_text(f'[gateway]\ndatabase_url = "{url}"\n\n' + kit.toml_entry(tmp_path / "s"))
    with socket.socket() as taken:  # a plain socket: no SO_REUSEPORT, so no sharing
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="in use"):
            bind_reuse_port("127.0.0.1", port).close()
        result = CliRunner().invoke(
            app, ["serve", "--config", str(config), "--port", str(port), "--workers", "2"]
        )
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.output


def test_workers_stop_when_their_supervisor_is_killed(supervised: Supervised) -> None:
    workers = supervised.workers()
    os.kill(supervised.process.pid, signal.SIGKILL)  # no chance to stop them itself
    supervised.process.wait(timeout=10)
    wait_for(
        lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers),
        "workers kept running after their supervisor died",
        seconds=30,
    )
    assert tcp_sockets(supervised.port, "0A") == set()


def test_a_crash_loop_stops_the_supervisor(supervised: Supervised) -> None:
    deadline = time.monotonic() + 60
    while supervised.process.poll() is None and time.monotonic() < deadline:
        for pid in supervised.workers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    assert supervised.process.poll() == 1, supervised.log()
    assert "gateway_workers_crash_loop" in supervised.log()
