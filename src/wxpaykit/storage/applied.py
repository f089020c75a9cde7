"""Shared pieces of the payment and refund appliers: their result, events, time parsing."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from wxpaykit.storage.base import AppliedTransition, RecordOutcome
from wxpaykit.storage.events import NewEvent

__all__ = ["Applied", "RetryTransaction", "aggregate_key", "make_event", "parse_time_ms"]


class RetryTransaction(Exception):
    """A row changed between our read and our conditional write: re-run the transaction.

    Raised only after the database refused a conditional write (rowcount 0), never on a
    guess; the re-run reads the committed state and classifies again.
    """


@dataclass(slots=True)
class Applied:
    """What an applier decided, before the events are appended and the row committed."""

    outcome: RecordOutcome
    transitions: list[AppliedTransition] = field(default_factory=list)
    events: list[NewEvent] = field(default_factory=list)


def aggregate_key(mchid: str, out_trade_no: str) -> str:
    """Events of one order (payment and refunds) share this key and are delivered in order."""
    return f"{mchid}:{out_trade_no}"


def make_event(
    event_type: str,
    *,
    mchid: str,
    out_trade_no: str,
    dedup_key: str,
    payload: dict[str, Any],
) -> NewEvent:
    """An outbox event for one order."""
    return NewEvent(
        type=event_type,
        mchid=mchid,
        aggregate_key=aggregate_key(mchid, out_trade_no),
        dedup_key=dedup_key,
        payload=payload,
    )


def parse_time_ms(value: str | None) -> int | None:
    """RFC 3339 (``2018-06-08T10:34:56+08:00``) to epoch ms; None if absent or unreadable."""
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:  # WeChat times are Beijing time when no offset is given
        moment = moment.replace(tzinfo=dt.timezone(dt.timedelta(hours=8)))
    return int(moment.timestamp() * 1000)
