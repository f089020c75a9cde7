"""A real webhook receiver for tests: Starlette on uvicorn, in a thread, on a free port.

Tests steer it (answer status, hold requests, block until released) and read what
arrived. It records every request with its headers and exact body, and notices when
two requests for the same ``webhook-id`` were in progress at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One request as it arrived."""

    body: bytes
    headers: dict[str, str]
    received_ns: int
    status: int


@dataclass
class Receiver:
    """Steerable state shared between the test and the server thread."""

    port: int = 0
    #: Status to answer with (changed by tests at any time).
    status: int = 200
    #: Extra headers on non-2xx answers.
    failure_headers: dict[str, str] = field(default_factory=dict)
    #: Seconds each request takes before answering (to make overlaps observable).
    hold_seconds: float = 0.0
    #: While set, requests wait (without answering) until it is cleared.
    blocking: threading.Event = field(default_factory=threading.Event)
    requests: list[ReceivedRequest] = field(default_factory=list)
    overlaps: list[str] = field(default_factory=list)
    #: ``webhook-id`` of every request as it started (before any answer).
    arrivals: list[str] = field(default_factory=list)
    #: ``webhook-id`` of blocked requests whose sender went away.
    abandoned: list[str] = field(default_factory=list)
    _in_progress: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: Signalled when a request starts (useful with ``blocking``).
    started: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        """The webhook URL."""
        return f"http://127.0.0.1:{self.port}/hooks"

    def delivered(self) -> list[ReceivedRequest]:
        """Requests answered with 2xx, in arrival order."""
        with self._lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def all_requests(self) -> list[ReceivedRequest]:
        """Every request so far."""
        with self._lock:
            return list(self.requests)

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        message_id = request.headers.get("webhook-id", "")
        with self._lock:
            self._in_progress[message_id] = self._in_progress.get(message_id, 0) + 1
            if self._in_progress[message_id] > 1:
                self.overlaps.append(message_id)
        with self._lock:
            self.arrivals.append(message_id)
        self.started.set()
        try:
            while self.blocking.is_set():
                if await request.is_disconnected():
                    with self._lock:
                        self.abandoned.append(message_id)
                    return Response(status_code=499)  # the sender is gone: not delivered
                await asyncio.sleep(0.01)
            if self.hold_seconds:
                await asyncio.sleep(self.hold_seconds)
            status = self.status
            with self._lock:
                self.requests.append(
                    ReceivedRequest(body, dict(request.headers), time.time_ns(), status)
                )
            headers = self.failure_headers if status >= 300 else {}
            return Response(status_code=status, headers=headers)
        finally:
            with self._lock:
                self._in_progress[message_id] -= 1

    @classmethod
    @contextlib.contextmanager
    def serve(cls) -> Iterator[Receiver]:
        """Start on a free port; stop on exit."""
        receiver = cls()
        app = Starlette(routes=[Route("/hooks", receiver._handle, methods=["POST"])])
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        receiver.port = sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline:  # pragma: no cover
                raise RuntimeError("receiver did not start")
            time.sleep(0.005)
        try:
            yield receiver
        finally:
            receiver.blocking.clear()
            server.should_exit = True
            thread.join(timeout=10)
            sock.close()


async def wait_until(
    predicate: Callable[[], bool] | Callable[[], Awaitable[bool]],
    *,
    timeout_seconds: float = 10.0,
    message: str = "condition",
) -> None:
    """Poll ``predicate`` every 10 ms until it holds; fail after the deadline."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        outcome = predicate()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        await asyncio.sleep(0.01)
