"""In-process handlers given by import path, sync and async."""

from __future__ import annotations

import threading

import pytest

from tests.dispatch import handlers
from tests.dispatch.conftest import TestDatabase
from tests.dispatch.helpers import append, deliveries, payment_event, settings
from tests.dispatch.receiver import wait_until
from wxpaykit.dispatch.clock import ManualClock
from wxpaykit.dispatch.events import EventType, PaymentData
from wxpaykit.dispatch.sinks.callable import CallableSink, load_handler
from wxpaykit.dispatch.worker import Worker
from wxpaykit.errors import ConfigurationError


async def test_sync_and_async_handlers_receive_typed_events(sqlite_db: TestDatabase) -> None:
    handlers.received_sync.clear()
    handlers.received_async.clear()
    ids = await append(sqlite_db, [payment_event("order-h1"), payment_event("order-h2")], now_ms=1)
    dispatch = settings(
        {"name": "sync", "type": "callable", "target": "tests.dispatch.handlers:on_event"},
        {"name": "async", "type": "callable", "target": "tests.dispatch.handlers:on_event_async"},
    )
    async with Worker(sqlite_db.engine, dispatch).running():
        await wait_until(
            lambda: len(handlers.received_sync) == 2 and len(handlers.received_async) == 2,
            message="both handlers",
        )
    for received in (handlers.received_sync, handlers.received_async):
        assert sorted(event.id for event in received) == sorted(ids)
        data = received[0].typed_data()
        assert isinstance(data, PaymentData)
        assert received[0].type == EventType.PAYMENT_SUCCEEDED
    assert threading.main_thread().name not in handlers.sync_threads  # sync handlers use threads


async def test_handler_exception_is_retried_with_the_same_event(sqlite_db: TestDatabase) -> None:
    handlers.received_async.clear()
    handlers.failures_left["count"] = 2
    clock = ManualClock(1_700_000_000_000)
    (event_id,) = await append(sqlite_db, [payment_event("order-h3")], now_ms=clock.now_ms())
    dispatch = settings(
        {
            "name": "async",
            "type": "callable",
            "target": "tests.dispatch.handlers:on_event_async",
            "retry": {"base_seconds": 1, "cap_seconds": 1},
        }
    )
    worker = Worker(sqlite_db.engine, dispatch, clock=clock)
    await worker.open()
    dispatcher = worker.dispatchers["async"]
    for _ in range(3):
        await worker.fan_out_once()
        await dispatcher.poll()
        await dispatcher.drain(5)
        clock.advance(2)
    (row,) = await deliveries(sqlite_db)
    assert (row.status, row.attempts) == ("delivered", 3)
    assert [event.id for event in handlers.received_async] == [event_id]


def test_bad_import_paths_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match=r"package\.module:function"):
        load_handler("no_colon_here")
    with pytest.raises(ConfigurationError, match="cannot import"):
        load_handler("tests.dispatch.does_not_exist:handler")
    with pytest.raises(ConfigurationError, match="no attribute"):
        load_handler("tests.dispatch.handlers:missing")
    with pytest.raises(ConfigurationError, match="not callable"):
        CallableSink("x", "tests.dispatch.handlers:not_callable")
