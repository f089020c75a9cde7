"""Reading deliveries and replaying them (used by ``wxpaykit events`` and the admin API).

A replay puts deliveries back to ``pending``, due now, with a fresh retry window and
attempt count; the event, its id and its body are unchanged, so receivers that already
processed it recognise the duplicate. Deliveries leased by a worker right now are left
alone (replaying them would let two attempts overlap).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from wxpaykit.dispatch.database import read_only
from wxpaykit.storage.events import (
    DeliveryStatus,
    event_deliveries,
    event_delivery_attempts,
    events,
)

__all__ = ["AttemptView", "DeliveryView", "EventDetail", "list_deliveries", "replay", "show_event"]

_d = event_deliveries
_a = event_delivery_attempts


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryView:
    """One (event, sink) delivery."""

    delivery_id: int
    event_id: str
    event_type: str
    sink: str
    aggregate_key: str
    status: str
    attempts: int
    next_attempt_at_ms: int
    last_error: str | None
    replays: int
    created_at_ms: int
    delivered_at_ms: int | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptView:
    """One attempt of one delivery."""

    sink: str
    attempt: int
    worker: str
    started_at_ms: int
    duration_ms: int
    outcome: str
    status_code: int | None
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True, kw_only=True)
class EventDetail:
    """An event, its body and the history of its deliveries."""

    event_id: str
    type: str
    mchid: str
    aggregate_key: str
    created_at_ms: int
    body: str
    deliveries: tuple[DeliveryView, ...]
    attempts: tuple[AttemptView, ...]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (``body`` as the stored JSON text)."""
        return {
            "event_id": self.event_id,
            "type": self.type,
            "mchid": self.mchid,
            "aggregate_key": self.aggregate_key,
            "created_at_ms": self.created_at_ms,
            "body": self.body,
            "deliveries": [d.as_dict() for d in self.deliveries],
            "attempts": [a.as_dict() for a in self.attempts],
        }


_VIEW_COLUMNS = (
    _d.c.id,
    _d.c.event_id,
    events.c.type,
    _d.c.sink,
    _d.c.aggregate_key,
    _d.c.status,
    _d.c.attempts,
    _d.c.next_attempt_at_ms,
    _d.c.last_error,
    _d.c.replays,
    _d.c.created_at_ms,
    _d.c.delivered_at_ms,
)


def _view(row: Any) -> DeliveryView:
    return DeliveryView(
        delivery_id=row.id,
        event_id=row.event_id,
        event_type=row.type,
        sink=row.sink,
        aggregate_key=row.aggregate_key,
        status=row.status,
        attempts=row.attempts,
        next_attempt_at_ms=row.next_attempt_at_ms,
        last_error=row.last_error,
        replays=row.replays,
        created_at_ms=row.created_at_ms,
        delivered_at_ms=row.delivered_at_ms,
    )


def _filters(
    *, status: str | None, sink: str | None, since_ms: int | None, until_ms: int | None
) -> list[Any]:
    conditions: list[Any] = []
    if status is not None:
        conditions.append(_d.c.status == status)
    if sink is not None:
        conditions.append(_d.c.sink == sink)
    if since_ms is not None:
        conditions.append(_d.c.created_at_ms >= since_ms)
    if until_ms is not None:
        conditions.append(_d.c.created_at_ms < until_ms)
    return conditions


async def list_deliveries(
    engine: AsyncEngine,
    *,
    status: str | None = None,
    sink: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[DeliveryView]:
    """Newest first; page with ``before_id`` (the last ``delivery_id`` seen)."""
    conditions = _filters(status=status, sink=sink, since_ms=since_ms, until_ms=until_ms)
    if before_id is not None:
        conditions.append(_d.c.id < before_id)
    query = (
        select(*_VIEW_COLUMNS)
        .join(events, events.c.seq == _d.c.event_seq)
        .where(*conditions)
        .order_by(_d.c.id.desc())
        .limit(max(1, min(limit, 1000)))
    )
    async with read_only(engine) as connection:
        return [_view(row) for row in (await connection.execute(query)).all()]


async def show_event(engine: AsyncEngine, event_id: str) -> EventDetail | None:
    """The event with every delivery and attempt, or ``None``."""
    async with read_only(engine) as connection:
        event = (
            await connection.execute(select(events).where(events.c.event_id == event_id))
        ).first()
        if event is None:
            return None
        delivery_rows = (
            await connection.execute(
                select(*_VIEW_COLUMNS)
                .join(events, events.c.seq == _d.c.event_seq)
                .where(_d.c.event_id == event_id)
                .order_by(_d.c.sink)
            )
        ).all()
        attempt_rows = (
            await connection.execute(
                select(_d.c.sink, _a)
                .join(_d, _d.c.id == _a.c.delivery_id)
                .where(_d.c.event_id == event_id)
                .order_by(_a.c.started_at_ms, _a.c.id)
            )
        ).all()
    return EventDetail(
        event_id=event.event_id,
        type=event.type,
        mchid=event.mchid,
        aggregate_key=event.aggregate_key,
        created_at_ms=event.created_at_ms,
        body=event.payload,
        deliveries=tuple(_view(row) for row in delivery_rows),
        attempts=tuple(
            AttemptView(
                sink=row.sink,
                attempt=row.attempt,
                worker=row.worker,
                started_at_ms=row.started_at_ms,
                duration_ms=row.duration_ms,
                outcome=row.outcome,
                status_code=row.status_code,
                error=row.error,
            )
            for row in attempt_rows
        ),
    )


async def replay(
    engine: AsyncEngine,
    *,
    now_ms: int,
    event_id: str | None = None,
    sink: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    statuses: Sequence[str] = (DeliveryStatus.DEAD,),
) -> int:
    """Make matching deliveries due now; returns how many.

    With ``event_id`` every delivery of that event (on ``sink`` if given) is replayed
    whatever its status ("send it again"); otherwise only deliveries in ``statuses``
    (dead letters by default) on ``sink`` and/or created in ``[since_ms, until_ms)``.
    """
    if event_id is None and sink is None and since_ms is None and until_ms is None:
        raise ValueError("replay needs an event id, a sink or a time range")
    if event_id is not None:
        conditions = [_d.c.event_id == event_id]
        if sink is not None:
            conditions.append(_d.c.sink == sink)
    else:
        conditions = [
            _d.c.status.in_(list(statuses)),
            *_filters(status=None, sink=sink, since_ms=since_ms, until_ms=until_ms),
        ]
    not_leased = or_(_d.c.locked_until_ms.is_(None), _d.c.locked_until_ms <= now_ms)
    async with engine.begin() as connection:
        orders = (
            await connection.execute(
                select(_d.c.sink, _d.c.aggregate_key).distinct().where(*conditions, not_leased)
            )
        ).all()
        result = await connection.execute(
            update(_d)
            .where(*conditions, not_leased)
            .values(
                status=DeliveryStatus.PENDING,
                attempts=0,
                next_attempt_at_ms=now_ms,
                window_started_at_ms=now_ms,
                locked_by=None,
                locked_until_ms=None,
                replays=_d.c.replays + 1,
                updated_at_ms=now_ms,
            )
        )
        if orders:
            # Later events of these orders that were never attempted may wait for the
            # retry time of an event replayed now (see DeliveryStore.record).
            await connection.execute(
                update(_d)
                .where(
                    _d.c.sink == bindparam("b_sink"),
                    _d.c.aggregate_key == bindparam("b_key"),
                    _d.c.status == DeliveryStatus.PENDING,
                    _d.c.attempts == 0,
                    _d.c.next_attempt_at_ms > now_ms,
                )
                .values(next_attempt_at_ms=now_ms),
                [{"b_sink": row.sink, "b_key": row.aggregate_key} for row in orders],
            )
    return int(result.rowcount)
