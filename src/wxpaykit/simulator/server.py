"""Serving the simulator with uvicorn: the API port and the APIv2 mutual-TLS port.

The plain listener serves everything (APIv3 over HTTP, as a local stand-in for
``https://api.mch.weixin.qq.com``). The TLS listener serves the same app with
``ssl.CERT_REQUIRED`` and the simulator CA as the only trusted client issuer, so
``/secapi/pay/refund`` is reachable only with a merchant's ``apiclient_cert.pem``.
Its server certificate is issued by the same CA (``sim_ca.pem`` in every bundle).

Limitation: the ASGI scope does not expose the peer certificate, so the refund
endpoint knows that *a* simulator-issued merchant certificate was presented, not
that it is the certificate of the ``mch_id`` in the body.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import uvicorn
from cryptography.hazmat.primitives import serialization

from wxpaykit.simulator.app import SimulatorApp, create_app
from wxpaykit.simulator.faults import MutualTlsMarker
from wxpaykit.simulator.service import Simulator
from wxpaykit.testing.keys import private_key_pem

__all__ = ["SimulatorServer", "write_tls_files"]

_HOSTS = ("127.0.0.1", "localhost", "::1")


def write_tls_files(simulator: Simulator, directory: Path) -> tuple[Path, Path, Path]:
    """Write ``(server_cert, server_key, client_ca)`` PEM files for the TLS listener."""
    key = simulator.config.key_source()
    certificate = simulator.authority.issue_server_certificate(
        key.public_key(), now=simulator.clock.now(), hosts=_HOSTS
    )
    cert_path, key_path, ca_path = (directory / n for n in ("server.pem", "server.key", "ca.pem"))
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(private_key_pem(key))
    key_path.chmod(0o600)
    ca_path.write_bytes(simulator.authority.certificate_pem)
    return cert_path, key_path, ca_path


def _bound_port(server: uvicorn.Server) -> int:
    sockets = server.servers[0].sockets
    return int(sockets[0].getsockname()[1])


class SimulatorServer:
    """Runs a simulator on real sockets (``port=0`` picks a free port)."""

    def __init__(
        self,
        simulator: Simulator,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls_port: int | None = 0,
        log_level: str = "warning",
        on_started: Callable[[SimulatorServer], None] | None = None,
    ) -> None:
        self.simulator = simulator
        self.app: SimulatorApp = create_app(simulator)
        self.host = host
        self.port = port
        self.tls_port = tls_port
        self.log_level = log_level
        self.base_url = ""
        self.tls_base_url = ""
        self.started = threading.Event()
        self._on_started = on_started
        self._servers: list[uvicorn.Server] = []

    def _server(self, port: int, *, tls_dir: Path | None) -> uvicorn.Server:
        options: dict[str, object] = {}
        if tls_dir is not None:
            cert, key, ca = write_tls_files(self.simulator, tls_dir)
            options = {
                "ssl_certfile": str(cert),
                "ssl_keyfile": str(key),
                "ssl_ca_certs": str(ca),
                "ssl_cert_reqs": ssl.CERT_REQUIRED,
                "lifespan": "off",  # the plain listener runs the notification sender
            }
        config = uvicorn.Config(
            self.app if tls_dir is None else MutualTlsMarker(self.app),
            host=self.host,
            port=port,
            log_level=self.log_level,
            access_log=False,
            # Idle keep-alive clients must not hold a shutdown (tests stop servers often).
            timeout_graceful_shutdown=1,
            **options,  # type: ignore[arg-type]
        )
        return uvicorn.Server(config)

    async def serve(self) -> None:
        """Serve until :meth:`stop` (or a signal stops one listener)."""
        with tempfile.TemporaryDirectory(prefix="wxpaykit-sim-tls-") as tls_dir:
            self._servers = [self._server(self.port, tls_dir=None)]
            if self.tls_port is not None:
                self._servers.append(self._server(self.tls_port, tls_dir=Path(tls_dir)))
            tasks = [asyncio.create_task(s.serve()) for s in self._servers]
            while not all(s.started for s in self._servers):
                if any(t.done() for t in tasks):
                    break
                await asyncio.sleep(0.01)
            if all(s.started for s in self._servers):
                self.base_url = f"http://{self.host}:{_bound_port(self._servers[0])}"
                if len(self._servers) > 1:
                    self.tls_base_url = f"https://{self.host}:{_bound_port(self._servers[1])}"
                self.simulator.tls_base_url = self.tls_base_url
                self.started.set()
                if self._on_started is not None:
                    self._on_started(self)
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            self.stop()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.started.set()

    def stop(self) -> None:
        """Ask every listener to shut down."""
        for server in self._servers:
            server.should_exit = True

    @contextlib.contextmanager
    def in_thread(self, *, timeout_seconds: float = 30.0) -> Iterator[SimulatorServer]:
        """Serve from a background thread for the duration of the block."""
        thread = threading.Thread(target=asyncio.run, args=(self.serve(),), daemon=True)
        thread.start()
        if not self.started.wait(timeout_seconds) or not self.base_url:
            self.stop()
            thread.join(timeout_seconds)
            raise RuntimeError("the simulator server did not start")
        try:
            yield self
        finally:
            self.stop()
            thread.join(timeout_seconds)
