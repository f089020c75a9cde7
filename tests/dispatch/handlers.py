"""Handlers loaded by import path in the CallableSink tests."""

from __future__ import annotations

import threading

from wxpaykit.dispatch.events import EventEnvelope

received_sync: list[EventEnvelope] = []
received_async: list[EventEnvelope] = []
sync_threads: list[str] = []
failures_left = {"count": 0}


def on_event(event: EventEnvelope) -> None:
    """A plain function: runs in a worker thread."""
    sync_threads.append(threading.current_thread().name)
    received_sync.append(event)


async def on_event_async(event: EventEnvelope) -> None:
    """A coroutine function: awaited on the worker's loop."""
    if failures_left["count"] > 0:
        failures_left["count"] -= 1
        raise RuntimeError("shop database is down")
    received_async.append(event)


not_callable = 42


async def always_fails(event: EventEnvelope) -> None:
    """A handler whose every attempt fails (its deliveries become dead letters)."""
    raise RuntimeError("the shop refuses everything")
