"""Running ASGI apps on loopback ports from background threads (for the demo)."""

from __future__ import annotations

import asyncio
import socket
import threading
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp

__all__ = ["ThreadedServer", "bind_loopback"]


def bind_loopback() -> socket.socket:
    """A listening socket on a free loopback port (its port is known before serving)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock


class ThreadedServer:
    """``with ThreadedServer(app, sock):`` serves ``app`` on ``sock`` until the block ends."""

    def __init__(self, app: ASGIApp, sock: socket.socket, *, log_level: str = "warning") -> None:
        self.sock = sock
        self.server = uvicorn.Server(
            uvicorn.Config(app, log_level=log_level, access_log=False, timeout_graceful_shutdown=2)
        )
        self._thread = threading.Thread(target=self._run, daemon=True, name="demo-server")

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        host, port = self.sock.getsockname()[:2]
        return f"http://{host}:{port}"

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        for _ in range(600):  # up to 30 s, polling the started flag
            if self.server.started or not self._thread.is_alive():
                break
            threading.Event().wait(0.05)
        if not self.server.started:
            raise RuntimeError("the server did not start")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)
        self.sock.close()
