"""The webhook HTTP client against real sockets: keep-alive, servers that close, odd answers.

Each test runs a small asyncio server on a free loopback port whose behaviour it
scripts byte for byte, and counts the connections it accepts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from wxpaykit.dispatch.sinks.base import OutgoingEvent
from wxpaykit.dispatch.sinks.http import HttpSink
from wxpaykit.dispatch.sinks.http_pool import WebhookClient
from wxpaykit.dispatch.webhooks import generate_webhook_secret
from wxpaykit.errors import ConfigurationError, TransportError

NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"
Writer = asyncio.StreamWriter
Handler = Callable[["Server", asyncio.StreamReader, Writer], Awaitable[None]]


@dataclass
class Server:
    """Connections accepted and request heads received."""

    port: int = 0
    connections: int = 0
    heads: list[bytes] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks?x=1"

    async def read_request(self, reader: asyncio.StreamReader) -> bytes | None:
        """One request (head and Content-Length body), or None when the client closed."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        self.heads.append(head)
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return await reader.readexactly(length)


@contextlib.asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[Server]:
    server = Server()

    async def accept(reader: asyncio.StreamReader, writer: Writer) -> None:
        server.connections += 1
        try:
            await handler(server, reader, writer)
        finally:
            writer.close()

    listener = await asyncio.start_server(accept, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield server


async def keep_alive(server: Server, reader: asyncio.StreamReader, writer: Writer) -> None:
    while await server.read_request(reader) is not None:
        writer.write(NO_CONTENT)
        await writer.drain()


async def test_requests_reuse_one_kept_alive_connection() -> None:
    async with serving(keep_alive) as server:
        client = WebhookClient(server.url, max_connections=4)
        for n in range(5):
            answer = await client.post(b'{"n": %d}' % n, [("webhook-id", f"evt_{n}")])
            assert answer.status_code == 204
        await client.close()
    assert server.connections == 1
    assert server.heads[0].startswith(b"POST /hooks?x=1 HTTP/1.1\r\n")
    assert f"host: 127.0.0.1:{server.port}\r\n".encode() in server.heads[0]
    assert b"webhook-id: evt_4\r\n" in server.heads[4]


async def test_a_connection_closed_by_the_server_while_idle_is_replaced() -> None:
    async def one_per_connection(
        server: Server, reader: asyncio.StreamReader, writer: Writer
    ) -> None:
        await server.read_request(reader)
        writer.write(NO_CONTENT)  # keep-alive promised, then the server changes its mind
        await writer.drain()

    async with serving(one_per_connection) as server:
        client = WebhookClient(server.url, max_connections=1)
        for _ in range(3):
            assert (await client.post(b"{}", [])).status_code == 204
            await asyncio.sleep(0.05)  # let the close arrive while the connection is idle
        await client.close()
    assert server.connections == 3


async def test_chunked_bodies_retry_after_and_connection_close_are_understood() -> None:
    async def chatty(server: Server, reader: asyncio.StreamReader, writer: Writer) -> None:
        await server.read_request(reader)
        writer.write(
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 7\r\n"
            b"transfer-encoding: chunked\r\n\r\n5\r\nbusy.\r\n0\r\n\r\n"
        )
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()

    async with serving(chatty) as server:
        client = WebhookClient(server.url, max_connections=1)
        busy = await client.post(b"{}", [])
        assert (busy.status_code, busy.retry_after) == (503, "7")
        assert (await client.post(b"{}", [])).status_code == 200
        assert (await client.post(b"{}", [])).status_code == 503  # on a new connection
        await client.close()
    assert server.connections == 2


async def test_no_answer_is_a_transport_error_and_the_sink_reports_a_failure() -> None:
    async def hang_up(server: Server, reader: asyncio.StreamReader, writer: Writer) -> None:
        await server.read_request(reader)

    async def mute(server: Server, reader: asyncio.StreamReader, writer: Writer) -> None:
        await server.read_request(reader)
        await reader.read()  # no answer; returns when the client gives up and closes

    async with serving(hang_up) as server:
        client = WebhookClient(server.url, max_connections=1)
        with pytest.raises(TransportError):
            await client.post(b"{}", [])
        await client.close()
    async with serving(mute) as server:
        sink = HttpSink(
            "shop", url=server.url, secrets=[generate_webhook_secret()], timeout_seconds=0.2
        )
        result = await sink.deliver(event())
        assert not result.delivered
        assert result.error == "no answer within 0.2 s"
        await sink.close()
    refused = HttpSink(
        "shop", url=f"http://127.0.0.1:{server.port}/", secrets=[generate_webhook_secret()]
    )
    result = await refused.deliver(event())  # nobody listens there any more
    assert not result.delivered
    assert result.error is not None
    assert result.error.startswith("cannot connect")


def test_unsendable_headers_and_urls_are_refused_up_front() -> None:
    with pytest.raises(ConfigurationError, match="invalid HTTP header"):
        HttpSink(
            "shop",
            url="http://127.0.0.1:1/",
            secrets=[generate_webhook_secret()],
            headers={"x-token": "a\r\nb"},
        )
    with pytest.raises(ConfigurationError, match="credentials"):
        WebhookClient("https://user:pw@example.com/hooks", max_connections=1)


def event() -> OutgoingEvent:
    return OutgoingEvent(
        event_id="evt_1",
        type="payment.succeeded",
        mchid="1900000109",
        aggregate_key="1900000109:order-1",
        seq=1,
        body=b"{}",
        attempt=1,
        created_at_ms=0,
    )
