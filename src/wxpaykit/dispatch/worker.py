"""The worker: fan out new events, run every sink's loop, stop cleanly.

Run it alone (``wxpaykit worker``) or embedded in the gateway's process::

    worker = Worker(engine, settings)
    async with worker.running():      # e.g. inside the ASGI lifespan
        ...

Any number of workers may share one database: claims, leases and the breaker state
live there. On PostgreSQL a worker also listens for commits
(:mod:`wxpaykit.dispatch.wakeup`) and fans out at once; polling finds the rest. A
stopped worker finishes (or abandons, after the timeout) its attempts in flight;
abandoned leases expire and another worker delivers those events again. With
``delivered_retention_days`` set, it also deletes old delivered history
(:mod:`wxpaykit.dispatch.retention`) at start and then hourly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random as _random
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Mapping

from sqlalchemy.ext.asyncio import AsyncEngine

from wxpaykit.dispatch.breaker import CircuitBreaker
from wxpaykit.dispatch.clock import Clock, SystemClock
from wxpaykit.dispatch.config import DispatchSettings
from wxpaykit.dispatch.deliveries import DeliveryStore, SinkRoute
from wxpaykit.dispatch.dispatcher import SinkDispatcher, SinkLimits
from wxpaykit.dispatch.retention import purge_delivered
from wxpaykit.dispatch.sinks import EventSink, build_sink
from wxpaykit.dispatch.wakeup import CommitListener
from wxpaykit.storage.retention import DAY_MS

__all__ = ["Worker", "new_worker_id"]

logger = logging.getLogger("wxpaykit.dispatch")

#: Fan-out poll while the commit listener is connected (a notification wakes it at once).
LISTENING_POLL_SECONDS = 1.0
#: How often old delivered history is purged (when ``delivered_retention_days`` is set).
RETENTION_INTERVAL_SECONDS = 3600.0


def new_worker_id() -> str:
    """``host-pid-random``: unique per process start, at most 64 characters."""
    return f"{socket.gethostname()[:32]}-{os.getpid()}-{secrets.token_hex(3)}"


class Worker:
    """Delivers the outbox to the configured sinks until stopped."""

    def __init__(
        self,
        engine: AsyncEngine,
        settings: DispatchSettings,
        *,
        sinks: Mapping[str, EventSink] | None = None,
        clock: Clock | None = None,
        random: Callable[[], float] = _random.random,
        worker_id: str | None = None,
    ) -> None:
        """``sinks`` replaces the sink built from the configuration of the same name."""
        self.engine = engine
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.worker_id = worker_id or new_worker_id()
        self.store = DeliveryStore(engine)
        overrides = dict(sinks or {})
        unknown = set(overrides) - {config.name for config in settings.sinks}
        if unknown:
            raise ValueError(f"sink instances without configuration: {sorted(unknown)}")
        self.routes = [SinkRoute(name=c.name, patterns=c.event_types) for c in settings.sinks]
        self.dispatchers: dict[str, SinkDispatcher] = {}
        margin_ms = round(settings.worker.lease_margin_seconds * 1000)
        for config in settings.sinks:
            sink = overrides.get(config.name) or build_sink(config, clock=self.clock)
            lease_ms = round(config.timeout_seconds * 1000) + margin_ms
            self.dispatchers[config.name] = SinkDispatcher(
                store=self.store,
                sink=sink,
                limits=SinkLimits(
                    concurrency=config.concurrency,
                    rate_per_second=config.rate_per_second,
                    timeout_seconds=config.timeout_seconds,
                    lease_ms=lease_ms,
                    batch_size=settings.worker.batch_size,
                ),
                retry=config.retry.policy(),
                breaker=CircuitBreaker(
                    engine,
                    sink=config.name,
                    settings=config.breaker,
                    owner=self.worker_id,
                    probe_lease_ms=lease_ms,
                ),
                worker_id=self.worker_id,
                clock=self.clock,
                random=random,
            )
        self._stopping = asyncio.Event()
        self._fanout_wakeup = asyncio.Event()
        #: PostgreSQL: wakes the fan-out loop on every commit of events (None elsewhere).
        self.listener: CommitListener | None = None
        if settings.worker.listen and engine.dialect.name == "postgresql":
            self.listener = CommitListener(engine, self.notify)

    def stop(self) -> None:
        """Ask the loops to finish (attempts in flight are awaited by :meth:`run`)."""
        self._stopping.set()
        self._fanout_wakeup.set()
        for dispatcher in self.dispatchers.values():
            dispatcher.wakeup.set()

    def notify(self) -> None:
        """New events were committed (an in-process hint; polling finds them anyway)."""
        self._fanout_wakeup.set()

    async def fan_out_once(self) -> int:
        """Create deliveries for queued events; returns how many events were handled."""
        total = 0
        while True:
            count = await self.store.fan_out(
                self.routes, now_ms=self.clock.now_ms(), limit=self.settings.worker.batch_size
            )
            total += count
            if count < self.settings.worker.batch_size:
                break
        if total:
            for dispatcher in self.dispatchers.values():
                dispatcher.wakeup.set()
        return total

    async def _wait(self, event: asyncio.Event, seconds: float | None = None) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds or self.settings.worker.poll_interval_seconds):
                await event.wait()
        event.clear()

    async def _fan_out_loop(self) -> None:
        # While events keep coming, look again after a quarter of the poll interval:
        # that wait is most of an event's time to delivery. Idle, the full interval.
        # While the commit listener is connected every commit wakes this loop, so it
        # polls only as a safety net, once per LISTENING_POLL_SECONDS.
        interval = self.settings.worker.poll_interval_seconds
        busy_seconds = interval / 4
        listening_seconds = max(interval, LISTENING_POLL_SECONDS)
        while not self._stopping.is_set():
            found = 0
            try:
                found = await self.fan_out_once()
            except Exception:
                logger.exception("fan-out failed; retrying")
            if self.listener is not None and self.listener.listening:
                await self._wait(self._fanout_wakeup, listening_seconds)
            else:
                await self._wait(self._fanout_wakeup, busy_seconds if found else None)

    async def purge_delivered_once(self) -> int:
        """Delete deliveries delivered more than ``delivered_retention_days`` ago (0: none)."""
        days = self.settings.worker.delivered_retention_days
        if days <= 0:
            return 0
        cutoff = self.clock.now_ms() - int(days * DAY_MS)
        return await purge_delivered(self.engine, older_than_ms=cutoff)

    async def _retention_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                removed = await self.purge_delivered_once()
            except Exception:  # housekeeping; deliveries go on
                logger.exception("purging delivered history failed; trying again later")
            else:
                if removed:
                    logger.info("purged %d delivered deliveries", removed)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RETENTION_INTERVAL_SECONDS):
                    await self._stopping.wait()

    async def _sink_loop(self, dispatcher: SinkDispatcher) -> None:
        while not self._stopping.is_set():
            try:
                started = await dispatcher.poll()
            except Exception:
                logger.exception("sink %s: poll failed; retrying", dispatcher.sink.name)
                started = 0
            if (
                started == 0
                or dispatcher.nothing_more_due
                or dispatcher.in_flight >= dispatcher.limits.concurrency
            ):
                await self._wait(dispatcher.wakeup)
        await dispatcher.drain(dispatcher.limits.timeout_seconds)

    async def open(self) -> None:
        """Create missing breaker rows and connect every sink (best effort)."""
        now_ms = self.clock.now_ms()
        for dispatcher in self.dispatchers.values():
            await dispatcher.breaker.ensure_row(now_ms=now_ms)
            try:
                await dispatcher.sink.open()
            except Exception:
                # Not fatal: sinks connect again on the next attempt, failures are retried.
                logger.exception("sink %s: cannot connect yet", dispatcher.sink.name)

    async def close(self) -> None:
        """Close every sink."""
        for dispatcher in self.dispatchers.values():
            try:
                await dispatcher.sink.close()
            except Exception:
                logger.exception("closing sink %s failed", dispatcher.sink.name)

    async def run(self) -> None:
        """Run until :meth:`stop` (or cancellation)."""
        self._stopping.clear()
        await self.open()
        logger.info("worker %s delivering to %s", self.worker_id, ", ".join(self.dispatchers))
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._fan_out_loop(), name="fan-out")
                if self.settings.worker.delivered_retention_days > 0:
                    group.create_task(self._retention_loop(), name="retention")
                if self.listener is not None:
                    group.create_task(self.listener.run(self._stopping), name="commit listener")
                for name, dispatcher in self.dispatchers.items():
                    group.create_task(self._sink_loop(dispatcher), name=f"sink {name}")
        finally:
            await self.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Worker]:
        """Run in a background task for the duration of the block."""
        task = asyncio.create_task(self.run(), name=f"worker {self.worker_id}")
        try:
            yield self
        finally:
            self.stop()
            await task
