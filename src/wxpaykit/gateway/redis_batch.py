"""Redis commands issued in one event-loop turn, sent as one pipeline.

Under load a gateway process has many requests at the same step at once; sending
each one's Redis command separately costs a pool checkout, a write and a read
(two system calls and a wake-up) per command. :class:`RedisBatcher` queues the
commands awaited during one turn of the loop and sends them together at the start
of the next turn; each caller gets its own reply (or its own error). A lone command
is sent after one loop turn, so nothing waits on a timer.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisBatcher"]

_Pending = tuple[tuple[Any, ...], "asyncio.Future[Any]"]


class RedisBatcher:
    """Auto-pipelining for a ``redis.asyncio.Redis`` client (no MULTI: not atomic)."""

    def __init__(self, redis: Redis, *, max_batch: int = 256) -> None:
        self._redis = redis
        self._max_batch = max_batch
        self._queue: list[_Pending] = []
        self._sending: set[asyncio.Task[None]] = set()
        self._batches = 0
        self._commands = 0

    @property
    def average_batch(self) -> float:
        """Commands per pipeline so far (a metric: 1.0 means no batching happened)."""
        return self._commands / self._batches if self._batches else 0.0

    async def execute(self, *args: Any) -> Any:
        """Queue one command (``"SET", key, value, ...``); return its reply."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((args, future))
        if len(self._queue) == 1:
            # Callbacks scheduled now run in the next turn, after every task that is
            # ready in this one has had the chance to queue its command too.
            loop.call_soon(self._send_queued)
        return await future

    def _send_queued(self) -> None:
        while self._queue:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[_Pending]) -> None:
        self._batches += 1
        self._commands += len(batch)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for args, _future in batch:
                    pipe.execute_command(*args)
                replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # every caller of the batch learns of it
            for _args, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_args, future), reply in zip(batch, replies, strict=True):
            if future.done():  # the caller was cancelled meanwhile
                continue
            if isinstance(reply, BaseException):
                future.set_exception(reply)
            else:
                future.set_result(reply)
