"""Writes held until the event loop's turn is over: the transport, and uvicorn serving on it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from wxpaykit.cli.serve import uvicorn_options
from wxpaykit.gateway.batched_writes import (
    PROTOCOL,
    BatchedWritesProtocol,
    TurnBatchedTransport,
)
from wxpaykit.gateway.endpoints import read_asgi_body
from wxpaykit.gateway.settings import GatewaySettings


class RecordingTransport(asyncio.Transport):
    """Stands in for the socket's transport: records what reaches it, in order."""

    def __init__(self) -> None:
        super().__init__(extra={"peername": ("127.0.0.1", 4321)})
        self.calls: list[tuple[str, bytes]] = []
        self.closing = False
        self.reading = True

    def write(self, data: Any) -> None:
        self.calls.append(("write", bytes(data)))

    def write_eof(self) -> None:
        self.calls.append(("write_eof", b""))

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        self.closing = True
        self.calls.append(("close", b""))

    def abort(self) -> None:
        self.closing = True
        self.calls.append(("abort", b""))

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 7

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading


@pytest.fixture
def inner() -> RecordingTransport:
    return RecordingTransport()


async def test_writes_of_one_turn_leave_together_after_it(inner: RecordingTransport) -> None:
    batched = TurnBatchedTransport(inner, asyncio.get_running_loop())

    batched.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    batched.write(b"")  # nothing to send: nothing held
    batched.writelines([b"second ", bytearray(b"answer")])

    assert inner.calls == []  # held for the rest of this turn
    assert batched.get_write_buffer_size() == 7 + 27 + 13
    await asyncio.sleep(0)
    assert inner.calls == [("write", b"HTTP/1.1 204 No Content\r\n\r\nsecond answer")]
    assert batched.get_write_buffer_size() == 7

    batched.write(b"next turn")
    await asyncio.sleep(0)
    assert inner.calls[-1] == ("write", b"next turn")
    assert len(inner.calls) == 2


async def test_a_turn_without_writes_sends_nothing(inner: RecordingTransport) -> None:
    batched = TurnBatchedTransport(inner, asyncio.get_running_loop())
    batched.write(b"")
    await asyncio.sleep(0)
    batched.flush()
    assert inner.calls == []


async def test_close_writes_what_is_held_first(inner: RecordingTransport) -> None:
    batched = TurnBatchedTransport(inner, asyncio.get_running_loop())
    batched.write(b"last answer")

    batched.close()
    await asyncio.sleep(0)  # the scheduled flush finds nothing left to write

    assert inner.calls == [("write", b"last answer"), ("close", b"")]
    assert batched.is_closing()


async def test_write_eof_writes_what_is_held_first(inner: RecordingTransport) -> None:
    batched = TurnBatchedTransport(inner, asyncio.get_running_loop())
    batched.write(b"tail")

    assert batched.can_write_eof()
    batched.write_eof()

    assert inner.calls == [("write", b"tail"), ("write_eof", b"")]


async def test_abort_drops_what_is_held(inner: RecordingTransport) -> None:
    batched = TurnBatchedTransport(inner, asyncio.get_running_loop())
    batched.write(b"never sent")

    batched.abort()
    await asyncio.sleep(0)

    assert inner.calls == [("abort", b"")]


async def test_nothing_is_written_once_the_transport_is_closing(
    inner: RecordingTransport,
) -> None:
    batched = TurnBatchedTransport(inner, asyncio.get_running_loop())
    batched.write(b"too late")
    inner.closing = True  # the peer went away during the turn

    await asyncio.sleep(0)

    assert inner.calls == []


async def test_everything_else_reaches_the_wrapped_transport(inner: RecordingTransport) -> None:
    batched = TurnBatchedTransport(inner, asyncio.get_running_loop())

    batched.pause_reading()
    assert not inner.reading
    assert not batched.is_reading()
    batched.resume_reading()
    assert inner.reading
    assert batched.get_extra_info("peername") == ("127.0.0.1", 4321)
    assert batched.get_extra_info("sockname", "none") == "none"


# --- uvicorn serving on it ------------------------------------------------------------


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    """Echoes the body; ``/big`` answers 4 MiB; ``/stream`` answers in three turns."""
    assert scope["type"] == "http"
    body = await read_asgi_body(receive, "", 1 << 20)
    path = scope["path"]
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one,", b"two,", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})
        return
    answer = bytes(range(256)) * (16 * 1024) if path == "/big" else b"echo:" + body
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(answer)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": answer})


@contextlib.contextmanager
def _serving() -> Iterator[tuple[str, uvicorn.Server]]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        _app, http=PROTOCOL, log_level="warning", lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.005)
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


async def test_uvicorn_serves_keep_alive_concurrent_large_and_streamed_answers() -> None:
    with _serving() as (url, server):
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            for number in range(20):  # one kept-alive connection, one answer at a time
                response = await client.post("/echo", content=f"n{number}".encode())
                assert (response.status_code, response.content) == (200, f"echo:n{number}".encode())

            answers = await asyncio.gather(
                *(client.post("/echo", content=f"c{number}".encode()) for number in range(50))
            )
            assert [answer.content for answer in answers] == [
                f"echo:c{number}".encode() for number in range(50)
            ]

            big = await client.get("/big")  # far past the socket's write buffer
            assert big.content == bytes(range(256)) * (16 * 1024)

            streamed = await client.get("/stream")
            assert streamed.content == b"one,two,three"

            closing = await client.post("/echo", content=b"bye", headers={"Connection": "close"})
            assert closing.content == b"echo:bye"

        protocols = list(server.server_state.connections)
        assert all(isinstance(protocol, BatchedWritesProtocol) for protocol in protocols)


async def test_a_served_connection_writes_through_the_batched_transport() -> None:
    with _serving() as (url, server):
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            assert (await client.post("/echo", content=b"x")).content == b"echo:x"
            (protocol,) = server.server_state.connections
            assert isinstance(protocol, BatchedWritesProtocol)
            assert isinstance(protocol.transport, TurnBatchedTransport)


def test_serve_runs_the_gateway_on_the_batched_protocol() -> None:
    options = uvicorn_options(GatewaySettings(), host="127.0.0.1", port=8000)

    assert options["http"] == PROTOCOL
    # The gateway's own factory would open its database; any app shows the protocol.
    config = uvicorn.Config(**{**options, "app": _app, "factory": False})  # type: ignore[arg-type]
    config.load()
    assert config.http_protocol_class is BatchedWritesProtocol
