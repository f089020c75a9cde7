"""One sink's delivery loop inside a worker: claim due deliveries, deliver, record.

Per poll: ask the breaker how much may be claimed, take tokens from the rate limiter,
lease at most ``concurrency - in flight`` deliveries, start each as a task. Meanwhile
the attempts finished since the last poll are written back in one transaction
(delivered, rescheduled with backoff, or dead-lettered) and reported to the breaker. Each attempt is bounded by the
sink's timeout, which is shorter than the lease, so a live worker never overruns it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random as _random
from collections.abc import Callable
from dataclasses import dataclass

from wxpaykit.dispatch.breaker import CircuitBreaker
from wxpaykit.dispatch.clock import Clock
from wxpaykit.dispatch.deliveries import AttemptRecord, ClaimedDelivery, DeliveryStore
from wxpaykit.dispatch.retry import RetryPolicy
from wxpaykit.dispatch.sinks.base import EventSink, SinkResult

__all__ = ["RateLimiter", "SinkDispatcher", "SinkLimits"]

logger = logging.getLogger("wxpaykit.dispatch")


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkLimits:
    """Per-worker limits of one sink."""

    concurrency: int
    rate_per_second: float | None
    timeout_seconds: float
    lease_ms: int
    batch_size: int


class RateLimiter:
    """A token bucket (burst = one second's worth) on the injected clock."""

    def __init__(self, rate_per_second: float | None, clock: Clock) -> None:
        self.rate = rate_per_second
        self.clock = clock
        self._tokens = rate_per_second or 0.0
        self._last_ms = clock.now_ms()

    def available(self) -> int | None:
        """Whole tokens available now (``None``: unlimited)."""
        if self.rate is None:
            return None
        now_ms = self.clock.now_ms()
        elapsed = max(0, now_ms - self._last_ms) / 1000
        self._tokens = min(max(self.rate, 1.0), self._tokens + elapsed * self.rate)
        self._last_ms = now_ms
        return int(self._tokens)

    def take(self, count: int) -> None:
        """Spend ``count`` tokens."""
        if self.rate is not None:
            self._tokens -= count


class SinkDispatcher:
    """Delivers one sink's events; several workers may run one each for the same sink."""

    def __init__(
        self,
        *,
        store: DeliveryStore,
        sink: EventSink,
        limits: SinkLimits,
        retry: RetryPolicy,
        breaker: CircuitBreaker,
        worker_id: str,
        clock: Clock,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self.store = store
        self.sink = sink
        self.limits = limits
        self.retry = retry
        self.breaker = breaker
        self.worker_id = worker_id
        self.clock = clock
        self.random = random
        self.rate_limiter = RateLimiter(limits.rate_per_second, clock)
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._tokens: dict[int, str] = {}
        self._finished: list[AttemptRecord] = []
        self._claims = itertools.count(1)
        #: Set whenever an attempt finishes or new events were fanned out.
        self.wakeup = asyncio.Event()
        #: The last claim saw that nothing else may be leased now (PostgreSQL): no
        #: need to claim again before the next wake-up or poll.
        self.nothing_more_due = False

    @property
    def in_flight(self) -> int:
        """Attempts running now."""
        return len(self._in_flight)

    async def poll(self) -> int:
        """Record finished attempts while claiming and starting new ones; returns how many started.

        The two run side by side (separate connections): a claim need not wait for
        the previous batch's bookkeeping, which is most of an event's time to
        delivery when events keep coming.
        """
        flushing = asyncio.create_task(self.flush()) if self._finished else None
        try:
            return await self._claim_and_start()
        finally:
            if flushing is not None:
                await flushing

    async def _claim_and_start(self) -> int:
        free = self.limits.concurrency - len(self._in_flight)
        if free <= 0:
            return 0
        now_ms = self.clock.now_ms()
        # While the breaker was closed, the claim checks it itself (PostgreSQL): one
        # round trip less between a commit and its delivery.
        checked_by_claim = self.breaker.may_skip_admit()
        cap = None if checked_by_claim else await self.breaker.admit(now_ms=now_ms)
        limit = min(free, self.limits.batch_size)
        if cap is not None:
            limit = min(limit, cap)
        tokens = self.rate_limiter.available()
        if tokens is not None:
            limit = min(limit, tokens)
        if limit <= 0:
            return 0
        token = f"{self.worker_id}:{next(self._claims)}"
        lease_ms = self.limits.lease_ms
        guarded = None
        if checked_by_claim:
            guarded = await self.store.claim_if_closed(
                self.sink.name, token=token, now_ms=now_ms, lease_ms=lease_ms, limit=limit
            )
        self.nothing_more_due = False
        if guarded is not None:
            claimed, seen = guarded
            self.breaker.observe(seen.state, seen.consecutive_failures)
            self.nothing_more_due = seen.nothing_more_due
        else:
            if checked_by_claim:  # this database cannot: ask the breaker after all
                cap = await self.breaker.admit(now_ms=now_ms)
                if cap is not None:
                    limit = min(limit, cap)
                if limit <= 0:
                    return 0
            claimed = await self.store.claim(
                self.sink.name, token=token, now_ms=now_ms, lease_ms=lease_ms, limit=limit
            )
        if cap == 1 and not claimed:
            await self.breaker.release_probe(now_ms=now_ms)
        self.rate_limiter.take(len(claimed))
        for delivery in claimed:
            self._tokens[delivery.delivery_id] = token
            self._in_flight[delivery.delivery_id] = asyncio.create_task(
                self._attempt(delivery),
                name=f"deliver {delivery.event.event_id} to {self.sink.name}",
            )
        return len(claimed)

    async def _attempt(self, delivery: ClaimedDelivery) -> None:
        started_ms = self.clock.now_ms()
        try:
            async with asyncio.timeout(self.limits.timeout_seconds):
                result = await self.sink.deliver(delivery.event)
        except TimeoutError:
            result = SinkResult.failed(f"no result within {self.limits.timeout_seconds} s")
        except Exception as exc:  # a sink bug must not kill the worker; it is retried
            logger.exception(
                "sink %s raised delivering %s", self.sink.name, delivery.event.event_id
            )
            result = SinkResult.failed(f"sink raised {type(exc).__name__}")
        finished_ms = self.clock.now_ms()
        next_at = None
        if not result.delivered:
            next_at = self.retry.next_attempt_at_ms(
                attempts=delivery.event.attempt,
                now_ms=finished_ms,
                window_started_at_ms=delivery.window_started_at_ms,
                permanent=result.permanent,
                retry_after_seconds=result.retry_after_seconds,
                random=self.random,
            )
            logger.warning(
                "event %s to %s: attempt %d failed (%s); %s",
                delivery.event.event_id,
                self.sink.name,
                delivery.event.attempt,
                result.error,
                "dead letter" if next_at is None else f"retry at {next_at}",
            )
        self._finished.append(
            AttemptRecord(
                claimed=delivery,
                result=result,
                started_at_ms=started_ms,
                duration_ms=max(0, finished_ms - started_ms),
                next_attempt_at_ms=next_at,
            )
        )
        self._in_flight.pop(delivery.delivery_id, None)
        self.wakeup.set()

    async def flush(self) -> int:
        """Write finished attempts back and tell the breaker; returns how many."""
        if not self._finished:
            return 0
        records, self._finished = self._finished, []
        tokens = {r.claimed.delivery_id: self._tokens.pop(r.claimed.delivery_id) for r in records}
        now_ms = self.clock.now_ms()
        try:
            await self.store.record(
                self.sink.name, records, token_by_id=tokens, worker=self.worker_id, now_ms=now_ms
            )
        except Exception:
            # Keep them for the next poll; the leases protect the rows meanwhile.
            self._finished[:0] = records
            self._tokens.update(tokens)
            raise
        await self.breaker.record([r.result for r in records], now_ms=now_ms)
        return len(records)

    async def drain(self, timeout_seconds: float) -> None:
        """Wait for attempts in flight (up to the timeout), then record them."""
        tasks = list(self._in_flight.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.flush()
