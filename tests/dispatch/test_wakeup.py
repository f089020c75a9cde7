"""PostgreSQL: a commit wakes a listening worker at once; without the listener, polling
still delivers, and a lost listening connection is opened again."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from tests.dispatch.conftest import TestDatabase, create_test_database, drop_test_database
from tests.dispatch.helpers import append, payment_event, settings, statuses
from tests.dispatch.receiver import Receiver, wait_until
from wxpaykit.dispatch.clock import SystemClock
from wxpaykit.dispatch.config import DispatchSettings
from wxpaykit.dispatch.history import show_event
from wxpaykit.dispatch.wakeup import CommitListener
from wxpaykit.dispatch.webhooks import generate_webhook_secret
from wxpaykit.dispatch.worker import Worker
from wxpaykit.storage.dialects import create_engine
from wxpaykit.storage.events import append_events

#: Far longer than any wait below: a delivery within the test's bounds was woken.
LONG_POLL_SECONDS = 60.0


def dispatch(
    receiver: Receiver, poll_interval_seconds: float, **worker: object
) -> DispatchSettings:
    sink = {
        "name": "shop",
        "type": "http",
        "url": receiver.url,
        "secrets": [generate_webhook_secret().render()],
    }
    return settings(sink, poll_interval_seconds=poll_interval_seconds, **worker)


def listener_of(worker: Worker) -> CommitListener:
    assert worker.listener is not None
    return worker.listener


async def terminate_backend(database: TestDatabase, pid: int | None) -> None:
    assert pid is not None
    async with database.engine.connect() as connection:
        await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


async def test_a_commit_elsewhere_wakes_the_worker_once_per_transaction(
    pg_db: TestDatabase, receiver: Receiver
) -> None:
    # The worker has its own engine: the commits come from other connections.
    engine = create_engine(pg_db.url, schema=pg_db.schema)
    worker = Worker(engine, dispatch(receiver, LONG_POLL_SECONDS))
    listener = listener_of(worker)
    try:
        async with worker.running():
            await wait_until(lambda: listener.listening, message="LISTEN")
            await asyncio.sleep(0.2)  # the first polls are over; the next is a minute away

            # Rolled back: no wake-up.
            async with pg_db.engine.connect() as connection, connection.begin() as transaction:
                await append_events(
                    connection, [payment_event("order-x")], now_ms=SystemClock().now_ms()
                )
                await transaction.rollback()
            before = listener.notifications

            batch = [payment_event(f"order-{n}") for n in range(3)]
            await append(pg_db, batch, now_ms=SystemClock().now_ms())
            await wait_until(lambda: len(receiver.delivered()) == 3, message="3 deliveries")
            assert listener.notifications == before + 1  # one per transaction, not per event
            assert before == 0  # the rolled-back transaction sent nothing
            # Recorded in one statement on PostgreSQL: delivered, with the attempt.
            await wait_until(
                lambda: _all_delivered(pg_db, len(batch)), message="the attempts recorded"
            )
    finally:
        await engine.dispose()
    assert {r.headers["webhook-id"] for r in receiver.delivered()} == {e.event_id for e in batch}
    detail = await show_event(pg_db.engine, batch[0].event_id)
    assert detail is not None
    assert [(a.attempt, a.worker, a.outcome, a.status_code, a.error) for a in detail.attempts] == [
        (1, worker.worker_id, "delivered", 200, None)
    ]


async def _all_delivered(database: TestDatabase, count: int) -> bool:
    found = await statuses(database)
    return len(found) == count and set(found.values()) == {"delivered"}


async def test_commits_in_another_schema_do_not_wake_the_worker(
    pg_db: TestDatabase, receiver: Receiver
) -> None:
    other = await create_test_database("postgresql", "")
    worker = Worker(pg_db.engine, dispatch(receiver, LONG_POLL_SECONDS))
    listener = listener_of(worker)
    try:
        async with worker.running():
            await wait_until(lambda: listener.listening, message="LISTEN")
            await append(other, [payment_event("order-elsewhere")], now_ms=1)
            await append(pg_db, [payment_event("order-here")], now_ms=2)
            await wait_until(lambda: len(receiver.delivered()) == 1, message="1 delivery")
            assert listener.notifications == 1
    finally:
        await drop_test_database(other)


async def test_without_its_listener_the_worker_delivers_by_polling(
    pg_db: TestDatabase, receiver: Receiver
) -> None:
    worker = Worker(pg_db.engine, dispatch(receiver, 0.05))
    listener = listener_of(worker)
    listener.retry_seconds = (LONG_POLL_SECONDS, LONG_POLL_SECONDS)
    async with worker.running():
        await wait_until(lambda: listener.listening, message="LISTEN")
        await terminate_backend(pg_db, listener.backend_pid)  # the LISTEN connection is lost
        await wait_until(lambda: not listener.listening, message="the listener noticing")

        await append(pg_db, [payment_event("order-1")], now_ms=SystemClock().now_ms())
        await wait_until(lambda: len(receiver.delivered()) == 1, message="a polled delivery")
        assert listener.notifications == 0
        assert listener.connections == 1  # not reconnected yet: polling did it

    disabled = Worker(pg_db.engine, dispatch(receiver, 0.05, listen=False))
    assert disabled.listener is None
    async with disabled.running():
        await append(pg_db, [payment_event("order-2")], now_ms=SystemClock().now_ms())
        await wait_until(lambda: len(receiver.delivered()) == 2, message="a polled delivery")


async def test_a_lost_listening_connection_is_opened_again(
    pg_db: TestDatabase, receiver: Receiver
) -> None:
    worker = Worker(pg_db.engine, dispatch(receiver, LONG_POLL_SECONDS))
    listener = listener_of(worker)
    listener.retry_seconds = (0.05, 0.05)
    async with worker.running():
        await wait_until(lambda: listener.listening, message="LISTEN")
        first_pid = listener.backend_pid
        await terminate_backend(pg_db, first_pid)
        await wait_until(lambda: listener.connections == 2, message="a new LISTEN")
        assert listener.listening
        assert listener.backend_pid != first_pid
        await asyncio.sleep(0.2)  # the wake-up on reconnecting has been served

        await append(pg_db, [payment_event("order-1")], now_ms=SystemClock().now_ms())
        await wait_until(lambda: len(receiver.delivered()) == 1, message="a woken delivery")
        assert listener.notifications == 1


async def test_other_databases_have_no_listener(
    sqlite_db: TestDatabase, receiver: Receiver
) -> None:
    assert Worker(sqlite_db.engine, dispatch(receiver, 0.05)).listener is None
