"""Redis commands of concurrent requests, sent together on one kept connection.

Under load a gateway process has many requests at the same step at once; sending
each one's Redis command separately costs a pool checkout, a write and a read
(two system calls and a wake-up) per command. :class:`RedisBatcher` queues the
commands of one turn of the event loop and sends them as one write; each caller gets
its own reply, or its own error. Batches are pipelined: the next one is written
without waiting for the replies of the one before (Redis answers in order).

For ``redis://`` and ``unix://`` URLs the connection is an asyncio protocol of its own
with hiredis parsing the replies: a reply resolves its caller's future as soon as it
is parsed, in the callback that received the bytes. Measured on the benchmark
machine, redis-py's connection (a reader task, a stream reader and a timeout context
per reply) cost more CPU than Redis's own work on a small batch, and one more turn of
a busy loop before the caller ran again. Other URLs (TLS, and whatever else redis-py
supports) use a connection from the client's pool the same way, through redis-py.

Replies are the raw RESP values (no response callbacks): ``b"OK"``, integers, bytes;
an error reply raises :class:`redis.exceptions.ResponseError` (``NoScriptError`` for
``NOSCRIPT``) for its caller alone. No MULTI: the commands are not atomic together.
A reply that takes longer than the client's ``socket_timeout`` fails every command
still waiting (``TimeoutError``) and drops the connection; so does a lost connection
(``ConnectionError``): the callers fall back, the next command reconnects.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from redis.asyncio import Redis
    from redis.asyncio.connection import AbstractConnection

    from wxpaykit.gateway.redis_wire import Address, Pending, Pipe

__all__ = ["RedisBatcher", "listen"]


class RedisBatcher:
    """Auto-pipelining for a ``redis.asyncio.Redis`` client (no MULTI: not atomic)."""

    def __init__(self, redis: Redis, *, max_batch: int = 256) -> None:
        self._redis = redis
        self._max_batch = max_batch
        self._queue: list[Pending] = []
        self._flush_scheduled = False
        self._address = _lean(redis)
        self._pipe: Pipe | None = None
        self._connecting: asyncio.Task[None] | None = None
        # redis-py path (TLS...): one batch on the wire at a time, on a kept connection.
        self._connection: AbstractConnection | None = None
        self._sender: asyncio.Task[None] | None = None
        self._batches = 0
        self._commands = 0

    @property
    def average_batch(self) -> float:
        """Commands per write so far (a metric: 1.0 means no batching happened)."""
        return self._commands / self._batches if self._batches else 0.0

    async def execute(self, *args: Any) -> Any:
        """Queue one command (``"SET", key, value, ...``); return its reply."""
        return await self.send(*args)

    def send(self, *args: Any) -> asyncio.Future[Any]:
        """Queue one command; its reply (or error) arrives on the returned future.

        For a command nobody waits for (a mark written after the answer): no task or
        coroutine per command. The caller must retrieve the future's error.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((args, future))
        if not self._flush_scheduled:
            # Sent at the next turn, after every callback that is ready in this one
            # has had the chance to queue its command too.
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return future

    async def aclose(self) -> None:
        """Close the connection (replies still awaited fail with ``ConnectionError``)."""
        if self._connecting is not None:
            await asyncio.wait({self._connecting})
        if self._sender is not None:
            await asyncio.wait({self._sender})
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None
        await self._drop_connection(reusable=True)

    # --- sending --------------------------------------------------------------------

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._address is None:
            if self._sender is None and self._queue:
                self._sender = asyncio.get_running_loop().create_task(self._send_queued())
            return
        pipe = self._pipe
        if pipe is None or pipe.closed:
            self._pipe = None
            if self._connecting is None and self._queue:
                self._connecting = asyncio.get_running_loop().create_task(self._connect_pipe())
            return
        while self._queue:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            self._batches += 1
            self._commands += len(batch)
            pipe.send(batch)

    async def _connect_pipe(self) -> None:
        assert self._address is not None  # noqa: S101 - only called on the lean path
        from wxpaykit.gateway.redis_wire import Pipe

        try:
            self._pipe = await Pipe.open(self._address)
        except BaseException as exc:  # every queued caller learns of it
            queued, self._queue = self._queue, []
            for _args, future in queued:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._connecting = None
        if self._queue:
            self._flush()

    async def _send_queued(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                await self._send_through_pool(batch)
        finally:
            self._sender = None

    async def _send_through_pool(self, batch: list[Pending]) -> None:
        from redis.exceptions import ResponseError

        self._batches += 1
        self._commands += len(batch)
        try:
            connection = await self._connect_pooled()
            await connection.send_packed_command(
                connection.pack_commands([args for args, _future in batch]), check_health=False
            )
            for _args, future in batch:
                try:
                    reply = await connection.read_response()
                except ResponseError as exc:  # an error reply: this caller's alone
                    if not future.done():
                        future.set_exception(exc)
                    continue
                if not future.done():  # the caller may have been cancelled meanwhile
                    future.set_result(reply)
        except BaseException as exc:  # the connection failed: every caller left learns of it
            await self._drop_connection(reusable=False)
            for _args, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise

    async def _connect_pooled(self) -> AbstractConnection:
        if self._connection is None:
            pool = self._redis.connection_pool
            self._connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        return self._connection

    async def _drop_connection(self, *, reusable: bool) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if not reusable:  # mid-reply or broken: never hand it out again
            await connection.disconnect()
        await self._redis.connection_pool.release(connection)


async def listen(redis: Redis, channel: str, on_message: Callable[[bytes], None]) -> None:
    """Hand each message published on ``channel`` to ``on_message`` until the connection
    ends, then raise (``ConnectionError``, or Redis's error); cancel to stop.

    Like :class:`RedisBatcher`, ``redis://`` and ``unix://`` get a protocol of their own
    (a message is handed over in the callback that read it); other URLs use redis-py's
    ``PubSub``.
    """
    from wxpaykit.gateway.redis_wire import lean_address, listen_lean

    address = lean_address(redis)
    if address is None:
        await _listen_through_pool(redis, channel, on_message)
        return
    await listen_lean(address, channel, on_message)


async def _listen_through_pool(
    redis: Redis, channel: str, on_message: Callable[[bytes], None]
) -> None:
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(channel)
        while True:
            message: Any = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None and message.get("type") == "message":
                on_message(message["data"])


def _lean(redis: Redis) -> Address | None:
    from wxpaykit.gateway.redis_wire import lean_address

    return lean_address(redis)
