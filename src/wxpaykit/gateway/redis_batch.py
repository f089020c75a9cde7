"""Redis commands of concurrent requests, sent together on one kept connection.

Under load a gateway process has many requests at the same step at once; sending
each one's Redis command separately costs a pool checkout, a write and a read
(two system calls and a wake-up) per command. :class:`RedisBatcher` queues the
commands and sends them as one write on a connection it keeps: a lone command goes
out at the next turn of the loop, and whatever arrives while a batch is on the wire
goes out as the next batch as soon as its replies are in (the way group commit
gathers transactions). Each caller gets its own reply, or its own error.

It writes the packed commands and reads the replies itself rather than through a
redis-py ``Pipeline``: measured on the benchmark machine, the pipeline object, its
pool checkout and its per-command wrappers cost more CPU than the Redis work of a
small batch. Replies are the raw RESP values (no response callbacks): ``b"OK"``,
integers, bytes. No MULTI: the commands are not atomic together.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.connection import AbstractConnection

__all__ = ["RedisBatcher"]

_Pending = tuple[tuple[Any, ...], "asyncio.Future[Any]"]


class RedisBatcher:
    """Auto-pipelining for a ``redis.asyncio.Redis`` client (no MULTI: not atomic)."""

    def __init__(self, redis: Redis, *, max_batch: int = 256) -> None:
        self._redis = redis
        self._max_batch = max_batch
        self._queue: list[_Pending] = []
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
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((args, future))
        if self._sender is None:
            # A task starts at the next turn, after every task that is ready in this
            # one has had the chance to queue its command too.
            self._sender = loop.create_task(self._send_queued())
        return await future

    async def aclose(self) -> None:
        """Give the kept connection back to the client's pool."""
        if self._sender is not None:
            await asyncio.wait({self._sender})
        await self._drop_connection(reusable=True)

    async def _send_queued(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                await self._send(batch)
        finally:
            self._sender = None

    async def _send(self, batch: list[_Pending]) -> None:
        from redis.exceptions import ResponseError

        self._batches += 1
        self._commands += len(batch)
        try:
            connection = await self._connect()
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

    async def _connect(self) -> AbstractConnection:
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
