"""A circuit breaker per sink, its state in the database so every worker shares it.

::

    closed ──(failure_threshold consecutive transient failures)──▶ open
    open ──(open period over; one worker wins the probe)──▶ half_open
    half_open ──(probe delivered)──▶ closed
    half_open ──(probe failed)──▶ open, for twice as long (up to max_open_seconds)

While open, no worker claims deliveries for the sink, so a dead endpoint costs one
probe per open period instead of every worker's time; its deliveries wait, their
attempt counts untouched. Permanent failures (4xx) do not count: the endpoint is up.
Every transition is a conditional update, so two workers cannot both take the probe.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from wxpaykit.dispatch.config import BreakerSettings
from wxpaykit.dispatch.database import read_only
from wxpaykit.dispatch.sinks.base import SinkResult
from wxpaykit.storage.events import sink_breakers

__all__ = ["BreakerState", "CircuitBreaker"]

_b = sink_breakers


class BreakerState(StrEnum):
    """The three breaker states."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """One sink's breaker, as seen by one worker."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        sink: str,
        settings: BreakerSettings,
        owner: str,
        probe_lease_ms: int,
    ) -> None:
        self.engine = engine
        self.sink = sink
        self.settings = settings
        self.owner = owner
        self.probe_lease_ms = probe_lease_ms
        self._probing = False
        self._seen_failures = 0
        # Closed when last read: the next claim may check the state itself.
        self._last_seen_closed = False

    async def ensure_row(self, *, now_ms: int) -> None:
        """Create the closed state row if this sink has none yet."""
        async with read_only(self.engine) as connection:
            existing = await connection.scalar(select(_b.c.sink).where(_b.c.sink == self.sink))
            if existing is not None:
                return
        try:
            async with self.engine.begin() as connection:
                await connection.execute(
                    _b.insert().values(
                        sink=self.sink,
                        state=BreakerState.CLOSED,
                        consecutive_failures=0,
                        trips=0,
                        updated_at_ms=now_ms,
                    )
                )
        except IntegrityError:
            pass  # another worker created it first

    async def state(self) -> BreakerState:
        """The shared state right now."""
        async with read_only(self.engine) as connection:
            value = await connection.scalar(select(_b.c.state).where(_b.c.sink == self.sink))
        return BreakerState(value or BreakerState.CLOSED)

    async def admit(self, *, now_ms: int) -> int | None:
        """How many deliveries this worker may claim: ``None`` no limit, ``0`` none, ``1`` a probe."""
        if not self.settings.enabled:
            return None
        if self._probing:
            return 0  # our probe is in flight; its result decides
        async with read_only(self.engine) as connection:
            row = (
                await connection.execute(
                    select(
                        _b.c.state,
                        _b.c.consecutive_failures,
                        _b.c.open_until_ms,
                        _b.c.probe_until_ms,
                    ).where(_b.c.sink == self.sink)
                )
            ).first()
        self.observe(row.state if row is not None else None, row.consecutive_failures if row else 0)
        if row is None or row.state == BreakerState.CLOSED:
            return None
        if row.state == BreakerState.OPEN and (row.open_until_ms or 0) > now_ms:
            return 0
        if row.state == BreakerState.HALF_OPEN and (row.probe_until_ms or 0) > now_ms:
            return 0  # another worker is probing
        # Open period over, or a probing worker vanished: try to become the prober.
        async with self.engine.begin() as connection:
            result = await connection.execute(
                update(_b)
                .where(
                    _b.c.sink == self.sink,
                    _b.c.state == row.state,
                    (_b.c.open_until_ms <= now_ms)
                    if row.state == BreakerState.OPEN
                    else (_b.c.probe_until_ms <= now_ms),
                )
                .values(
                    state=BreakerState.HALF_OPEN,
                    probe_owner=self.owner,
                    probe_until_ms=now_ms + self.probe_lease_ms,
                    updated_at_ms=now_ms,
                )
            )
        if result.rowcount == 1:
            self._probing = True
            return 1
        return 0

    def may_skip_admit(self) -> bool:
        """Whether a claim that checks the state itself may stand in for :meth:`admit`.

        True while the breaker was closed when last seen and we have no probe out
        (with the breaker disabled :meth:`admit` reads nothing anyway). The claim
        then leases nothing unless the shared state is still closed, and reports
        what it saw to :meth:`observe`.
        """
        return self.settings.enabled and self._last_seen_closed and not self._probing

    def observe(self, state: str | None, consecutive_failures: int | None) -> None:
        """The shared state as just read (``None``: no row, i.e. closed)."""
        closed = state is None or state == BreakerState.CLOSED
        self._last_seen_closed = closed
        if closed:
            self._seen_failures = consecutive_failures or 0

    async def release_probe(self, *, now_ms: int) -> None:
        """Our probe found nothing to deliver: back to open, due now, for the next poll."""
        self._probing = False
        async with self.engine.begin() as connection:
            await connection.execute(
                update(_b)
                .where(
                    _b.c.sink == self.sink,
                    _b.c.state == BreakerState.HALF_OPEN,
                    _b.c.probe_owner == self.owner,
                )
                .values(
                    state=BreakerState.OPEN,
                    open_until_ms=now_ms,
                    probe_owner=None,
                    probe_until_ms=None,
                    updated_at_ms=now_ms,
                )
            )

    async def record(self, results: Sequence[SinkResult], *, now_ms: int) -> None:
        """Update the shared state with attempt results, in completion order."""
        if not self.settings.enabled:
            return
        transient = [r for r in results if not r.delivered and not r.permanent]
        if self._probing:
            self._probing = False
            succeeded = any(r.delivered or r.permanent for r in results)
            await self._finish_probe(succeeded=succeeded, now_ms=now_ms)
            return
        # Failures after the last success in this batch are the consecutive ones.
        trailing = 0
        for r in reversed(results):
            if r.delivered or r.permanent:
                break
            trailing += 1
        reset = len(transient) < len(results)
        if not transient and (not reset or self._seen_failures == 0):
            return  # the common case: all delivered, nothing to write
        async with self.engine.begin() as connection:
            if reset:
                await connection.execute(
                    update(_b)
                    .where(_b.c.sink == self.sink, _b.c.state == BreakerState.CLOSED)
                    .where(_b.c.consecutive_failures != trailing)
                    .values(consecutive_failures=trailing, updated_at_ms=now_ms)
                )
            else:
                await connection.execute(
                    update(_b)
                    .where(_b.c.sink == self.sink, _b.c.state == BreakerState.CLOSED)
                    .values(
                        consecutive_failures=_b.c.consecutive_failures + trailing,
                        updated_at_ms=now_ms,
                    )
                )
            await connection.execute(
                update(_b)
                .where(
                    _b.c.sink == self.sink,
                    _b.c.state == BreakerState.CLOSED,
                    _b.c.consecutive_failures >= self.settings.failure_threshold,
                )
                .values(
                    state=BreakerState.OPEN,
                    open_until_ms=now_ms + round(self.settings.open_seconds * 1000),
                    trips=1,
                    updated_at_ms=now_ms,
                )
            )

    async def _finish_probe(self, *, succeeded: bool, now_ms: int) -> None:
        async with self.engine.begin() as connection:
            trips = await connection.scalar(select(_b.c.trips).where(_b.c.sink == self.sink)) or 0
            if succeeded:
                values: dict[str, object] = {
                    "state": BreakerState.CLOSED,
                    "consecutive_failures": 0,
                    "trips": 0,
                    "open_until_ms": None,
                }
            else:
                open_seconds = min(
                    self.settings.max_open_seconds, self.settings.open_seconds * 2**trips
                )
                values = {
                    "state": BreakerState.OPEN,
                    "open_until_ms": now_ms + round(open_seconds * 1000),
                    "trips": trips + 1,
                }
            await connection.execute(
                update(_b)
                .where(
                    _b.c.sink == self.sink,
                    _b.c.state == BreakerState.HALF_OPEN,
                    _b.c.probe_owner == self.owner,
                )
                .values(probe_owner=None, probe_until_ms=None, updated_at_ms=now_ms, **values)
            )
