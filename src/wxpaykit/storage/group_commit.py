"""Group commit: concurrent callers share one transaction, each keeps its own outcome.

Under load, a gateway process has many notifications in flight at once; giving each
its own transaction costs a BEGIN, a COMMIT (a WAL flush) and a pooled connection per
notification. :class:`GroupCommitter` queues concurrent submissions and hands them to
a batch function in groups of at most ``max_items``, with at most ``max_in_flight``
groups running at once. A lone caller is not delayed: when a slot is free its group
starts at the next turn of the event loop (``max_wait_ms`` can trade a little latency
for bigger groups).

A group is taken when its task first runs, not when the first caller submits: callers
woken by one event (a batch of Redis replies, say, resolves all their futures in one
callback) submit one after another in the same turn, and they all join one group
instead of the first one committing alone while the others wait for it.

The batch function decides how a group is committed; the committer only promises that
each caller's ``submit`` returns (or raises) exactly what the batch function reported
for its item, and only once the batch function has returned, i.e. after the commit
that made the item durable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["BatchFunction", "GroupCommitter"]

_I = TypeVar("_I")
_R = TypeVar("_R")

#: Receives the items of one group; returns one result or exception per item, in order.
BatchFunction = Callable[[Sequence[_I]], Awaitable[Sequence[_R | BaseException]]]


class GroupCommitter(Generic[_I, _R]):
    """Gathers concurrent :meth:`submit` calls into groups for one batch function."""

    def __init__(
        self,
        commit_batch: BatchFunction[_I, _R],
        *,
        max_items: int = 64,
        max_in_flight: int = 4,
        max_wait_ms: float = 0.0,
    ) -> None:
        if max_items < 1 or max_in_flight < 1 or max_wait_ms < 0:
            raise ValueError("max_items and max_in_flight must be >= 1, max_wait_ms >= 0")
        self._commit_batch = commit_batch
        self._max_items = max_items
        self._max_in_flight = max_in_flight
        self._max_wait = max_wait_ms / 1000
        self._queue: list[tuple[_I, asyncio.Future[_R]]] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self._gathering = False
        self._groups = 0
        self._items = 0

    @property
    def average_group_size(self) -> float:
        """Items per group so far (a metric: 1.0 means no batching happened)."""
        return self._items / self._groups if self._groups else 0.0

    async def submit(self, item: _I) -> _R:
        """Queue ``item``; return its result once its group's batch function returned."""
        future: asyncio.Future[_R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._start_groups()
        return await future

    async def drain(self) -> None:
        """Wait until every submitted item has been handled (used when closing)."""
        while self._in_flight or self._queue:
            self._start_groups()
            if self._in_flight:
                await asyncio.wait(set(self._in_flight))

    def _start_groups(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue and len(self._in_flight) < self._max_in_flight and not self._gathering:
            if len(self._queue) >= self._max_items:
                task = loop.create_task(self._run_group(self._take()))
            else:
                # The group is taken when the task runs (after the wait, if any), so it
                # holds whatever else was submitted meanwhile (see the module docstring).
                self._gathering = True
                task = loop.create_task(self._run_group(None))
            self._in_flight.add(task)
            task.add_done_callback(self._group_done)

    def _take(self) -> list[tuple[_I, asyncio.Future[_R]]]:
        group = self._queue[: self._max_items]
        del self._queue[: self._max_items]
        return group

    def _group_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if self._queue:
            self._start_groups()

    async def _run_group(self, taken: list[tuple[_I, asyncio.Future[_R]]] | None) -> None:
        if taken is None:
            try:
                if self._max_wait > 0:
                    await asyncio.sleep(self._max_wait)
            finally:
                self._gathering = False
            taken = self._take()
            self._start_groups()  # more than one group's worth may have arrived
        group = taken
        while group:
            await self._commit_group(group)
            # Whatever queued meanwhile goes next, in this task: a new task would start
            # two turns of a busy loop later (the done callback, then the task itself).
            group = self._take() if self._max_wait == 0 else []

    async def _commit_group(self, group: list[tuple[_I, asyncio.Future[_R]]]) -> None:
        self._groups += 1
        self._items += len(group)
        try:
            results = await self._commit_batch([item for item, _ in group])
            if len(results) != len(group):
                raise RuntimeError("the batch function returned a result count mismatch")
        except BaseException as exc:  # every caller of this group learns of it
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), result in zip(group, results, strict=True):
            if future.done():  # the caller was cancelled; its item was handled anyway
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
