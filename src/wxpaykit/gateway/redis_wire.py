"""The wire side of :mod:`wxpaykit.gateway.redis_batch`: asyncio protocols for a Redis
connection, with hiredis parsing the replies (imported only where Redis is used: the
``redis`` extra brings hiredis)."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import hiredis

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["Address", "Pipe", "Subscriber", "lean_address", "listen_lean"]

#: A queued command and the future its reply goes to.
Pending = tuple[tuple[Any, ...], "asyncio.Future[Any]"]
_DEFAULT_TIMEOUT = 5.0


class Address:
    """Where and how to connect, from the redis-py client's own settings."""

    __slots__ = ("db", "host", "password", "path", "port", "timeout", "username")

    def __init__(self, kwargs: dict[str, Any], *, path: str | None) -> None:
        self.path = path
        self.host = str(kwargs.get("host", "localhost"))
        self.port = int(kwargs.get("port", 6379))
        self.db = int(kwargs.get("db", 0) or 0)
        self.username: str | None = kwargs.get("username")
        self.password: str | None = kwargs.get("password")
        timeout = kwargs.get("socket_timeout")
        self.timeout = float(timeout) if timeout else _DEFAULT_TIMEOUT

    def login(self) -> list[tuple[Any, ...]]:
        """The AUTH command a new connection sends first, if credentials are set."""
        if self.password is None:
            return []
        user = () if self.username is None else (self.username,)
        return [("AUTH", *user, self.password)]

    async def connect(self, protocol: asyncio.Protocol) -> None:
        """Open a connection for ``protocol`` (TCP or a unix socket)."""
        loop = asyncio.get_running_loop()
        if self.path is not None:
            await loop.create_unix_connection(lambda: protocol, self.path)
        else:
            await loop.create_connection(lambda: protocol, self.host, self.port)


def lean_address(redis: Redis) -> Address | None:
    """The address for the lean protocol, or None when redis-py must connect (TLS...)."""
    from redis.asyncio.connection import Connection, UnixDomainSocketConnection

    pool = redis.connection_pool
    kwargs = dict(pool.connection_kwargs)
    if kwargs.get("credential_provider") is not None:
        return None
    if pool.connection_class is Connection:
        return Address(kwargs, path=None)
    if pool.connection_class is UnixDomainSocketConnection:
        return Address(kwargs, path=str(kwargs["path"]))
    return None


class _Connection(asyncio.Protocol):
    """A Redis connection's transport and reply parser (the part both protocols share)."""

    def __init__(self) -> None:
        self._reader = hiredis.Reader()
        self._transport: asyncio.Transport | None = None

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is not an asyncio.Transport subclass).
        self._transport = cast("asyncio.Transport", transport)


class Pipe(_Connection):
    """One Redis connection: commands written in order, replies matched in order."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._waiting: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self._timeout = timeout
        self._watchdog: asyncio.TimerHandle | None = None
        self._lost: Exception | None = None

    @classmethod
    async def open(cls, address: Address) -> Pipe:
        """Connect, authenticate and select the database, within the timeout."""
        loop = asyncio.get_running_loop()
        pipe = cls(address.timeout)
        async with asyncio.timeout(address.timeout):
            await address.connect(pipe)
            setup = address.login()
            if address.db:
                setup.append(("SELECT", address.db))
            if setup:
                futures = [loop.create_future() for _ in setup]
                pipe.send(list(zip(setup, futures, strict=True)))
                try:
                    await asyncio.gather(*futures)
                except BaseException:
                    pipe.close()
                    raise
        return pipe

    @property
    def closed(self) -> bool:
        return self._lost is not None or self._transport is None

    def send(self, batch: list[Pending]) -> None:
        assert self._transport is not None  # noqa: S101 - connected before use
        now = asyncio.get_running_loop().time()
        self._transport.write(b"".join(hiredis.pack_command(args) for args, _ in batch))
        self._waiting.extend((future, now) for _args, future in batch)
        if self._watchdog is None:
            self._arm(self._timeout)

    # --- asyncio.Protocol ---------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        waiting = self._waiting
        while waiting:
            reply = self._reader.gets()
            if reply is False:  # not a whole reply yet (no RESP value parses to False)
                return
            future = waiting.popleft()[0]
            if future.done():  # the caller was cancelled
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(_response_error(str(reply)))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError(f"the Redis connection was lost: {exc or 'closed'}"))

    # --- failures -----------------------------------------------------------------------

    def _arm(self, delay: float) -> None:
        self._watchdog = asyncio.get_running_loop().call_later(delay, self._check_overdue)

    def _check_overdue(self) -> None:
        self._watchdog = None
        if not self._waiting:
            return
        overdue = self._waiting[0][1] + self._timeout - asyncio.get_running_loop().time()
        if overdue > 0:
            self._arm(overdue)
            return
        self._fail(TimeoutError(f"Redis did not answer within {self._timeout:g} s"))
        if self._transport is not None:
            self._transport.abort()

    def _fail(self, error: Exception) -> None:
        if self._lost is None:
            self._lost = error
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self._waiting:
            future = self._waiting.popleft()[0]
            if not future.done():
                future.set_exception(error)


def _response_error(message: str) -> Exception:
    from redis.exceptions import NoScriptError, ResponseError

    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    return ResponseError(message)


class Subscriber(_Connection):
    """A subscribed connection: every ``message`` push goes to ``on_message``."""

    def __init__(self, on_message: Callable[[bytes], None], ended: asyncio.Future[None]) -> None:
        super().__init__()
        self._on_message = on_message
        self.ended = ended

    def write(self, data: bytes) -> None:
        assert self._transport is not None  # noqa: S101 - connected before use
        self._transport.write(data)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
                self._on_message(reply[2])
            elif isinstance(reply, hiredis.ReplyError) and not self.ended.done():
                self.ended.set_exception(_response_error(str(reply)))  # AUTH refused...
            # Anything else (+OK, the subscribe confirmation) needs no action.

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended.done():
            self.ended.set_result(None)


async def listen_lean(address: Address, channel: str, on_message: Callable[[bytes], None]) -> None:
    """:func:`~wxpaykit.gateway.redis_batch.listen` on a connection of its own: each
    message is handed over in the callback that read it. Subscribing needs no database
    (channels are server-wide), only the credentials."""
    subscriber = Subscriber(on_message, asyncio.get_running_loop().create_future())
    async with asyncio.timeout(address.timeout):
        await address.connect(subscriber)
    try:
        commands = [*address.login(), ("SUBSCRIBE", channel)]
        subscriber.write(b"".join(hiredis.pack_command(command) for command in commands))
        await subscriber.ended
        raise ConnectionError("the Redis subscription connection was closed")
    finally:
        subscriber.close()
