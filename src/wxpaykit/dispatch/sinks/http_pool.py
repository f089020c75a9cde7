"""A small HTTP/1.1 client for webhooks: one URL, keep-alive connections, POST only.

Why not httpx, which the SDK uses: on a two-core machine httpx/httpcore spent 1-3 ms
of CPU per request (more with many connections in the pool), which capped a worker
at a few hundred webhooks per second; this client, with the h11 parser httpx itself
uses underneath, spends about 0.15 ms. It does only what a webhook sender needs:

* HTTP/1.1 over TCP or TLS (certifi's CA bundle, like httpx), no proxies, no
  redirects (a redirect would resend a signed body elsewhere);
* up to ``max_connections`` kept-alive connections, each carrying one request at a
  time; a connection the server closed while idle is replaced and the request sent
  again once, on a new connection (webhooks are delivered at least once anyway);
* the status and ``Retry-After`` of the answer; its body is read and discarded.

Time limits belong to the caller (``asyncio.timeout``); a connection interrupted in
the middle of an exchange is closed, never reused.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11

from wxpaykit.errors import ConfigurationError, TransportError

__all__ = ["HttpAnswer", "WebhookClient", "check_headers"]

_READ_SIZE = 65536


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """What a webhook receiver answered."""

    status_code: int
    retry_after: str | None


class _StaleConnection(Exception):
    """A reused connection failed before any byte of an answer arrived."""


def check_headers(headers: Sequence[tuple[str, str]]) -> None:
    """Refuse header names or values that cannot be sent (e.g. a line break)."""
    try:
        h11.Request(method="POST", target="/", headers=[("host", "x"), *headers])
    except h11.LocalProtocolError as exc:
        raise ConfigurationError(f"invalid HTTP header: {exc}") from None


def _default_ssl_context() -> ssl.SSLContext:
    try:
        import certifi
    except ImportError:  # pragma: no cover - certifi comes with httpx
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.protocol = h11.Connection(our_role=h11.CLIENT)

    def usable(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()


class WebhookClient:
    """POST to one URL over a pool of keep-alive connections."""

    def __init__(
        self, url: str, *, max_connections: int, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError("a webhook URL must be http:// or https:// with a host")
        if parts.username is not None or parts.password is not None:
            raise ConfigurationError("a webhook URL must not carry credentials")
        self._tls = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        default_port = self._port == (443 if self._tls else 80)
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._host_header = host if default_port else f"{host}:{self._port}"
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._ssl_context = ssl_context
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._closed = False

    async def post(self, body: bytes, headers: Sequence[tuple[str, str]]) -> HttpAnswer:
        """Send ``body``; raises :class:`TransportError` when no answer arrived."""
        if self._closed:
            raise TransportError("the webhook client is closed")
        request = h11.Request(
            method="POST",
            target=self._target,
            headers=[
                ("host", self._host_header),
                ("content-length", str(len(body))),
                *headers,
            ],
        )
        async with self._slots:
            connection = self._idle_connection()
            if connection is not None:
                try:
                    return await self._exchange(connection, request, body, reused=True)
                except _StaleConnection:
                    pass  # closed by the server while idle: send once more, on a new one
            connection = await self._connect()
            return await self._exchange(connection, request, body, reused=False)

    async def close(self) -> None:
        """Close idle connections; those in use close when their exchange ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _idle_connection(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if connection.usable():
                return connection
            connection.close()
        return None

    async def _connect(self) -> _Connection:
        context: ssl.SSLContext | None = None
        if self._tls:
            context = self._ssl_context or _default_ssl_context()
            self._ssl_context = context
        try:
            reader, writer = await asyncio.open_connection(
                self._host,
                self._port,
                ssl=context,
                server_hostname=self._host if context is not None else None,
                limit=_READ_SIZE,
            )
        except OSError as exc:
            raise TransportError(f"cannot connect: {type(exc).__name__}: {exc}") from None
        return _Connection(reader, writer)

    async def _exchange(
        self, connection: _Connection, request: h11.Request, body: bytes, *, reused: bool
    ) -> HttpAnswer:
        protocol = connection.protocol
        answered = False
        try:
            # One write, one system call: the head, the body and the (empty) trailer.
            connection.writer.write(
                b"".join(
                    protocol.send(part) or b""
                    for part in (request, h11.Data(data=body), h11.EndOfMessage())
                )
            )
            await connection.writer.drain()
            answer: HttpAnswer | None = None
            while True:
                event = protocol.next_event()
                if event is h11.NEED_DATA:
                    data = await connection.reader.read(_READ_SIZE)
                    if data:
                        answered = True
                    protocol.receive_data(data)  # b"" tells h11 the server closed
                elif isinstance(event, h11.Response):
                    answer = HttpAnswer(event.status_code, _header(event.headers, b"retry-after"))
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise h11.RemoteProtocolError("connection closed before the answer")
                # InformationalResponse (1xx) and Data (the body) are skipped.
        except (OSError, h11.ProtocolError) as exc:
            connection.close()
            if reused and not answered:
                raise _StaleConnection from exc
            raise TransportError(f"{type(exc).__name__}: {exc}"[:300]) from None
        except BaseException:
            connection.close()  # cancelled or timed out mid-exchange: unusable
            raise
        if answer is None:  # pragma: no cover - h11 emits Response before EndOfMessage
            connection.close()
            raise TransportError("no answer")
        if protocol.our_state is h11.DONE and protocol.their_state is h11.DONE:
            protocol.start_next_cycle()
            if not self._closed:
                self._idle.append(connection)
                return answer
        connection.close()
        return answer


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None
