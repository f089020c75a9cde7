"""PostgreSQL's driver path for groups decides exactly as the general path does.

The driver path (pg_groups.py) records the common group, all payments, in four round
trips; every other group, and every group it could not finish (an order changed after
it was read, a lost connection), must end up recorded by the general path with the
same outcomes, rows and events. Each scenario runs on two ledgers, one with the
driver path and one without, on merchants of their own, and the results must match.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from sqlalchemy import func, select, text, update

from tests.storage.builders import order, payment, refund
from tests.storage.conftest import FakeClock, Target
from wxpaykit.storage import dialects
from wxpaykit.storage.base import RecordOutcome, RecordResult
from wxpaykit.storage.events import EVENTS_CHANNEL, event_fanout, events
from wxpaykit.storage.ledger import SqlLedger
from wxpaykit.storage.schema import notifications, orders, raw_requests, refunds

pytestmark = pytest.mark.parametrize("target", ["postgresql"], indirect=True)

Scenario = Callable[[SqlLedger, str], Awaitable[list[Any]]]


async def snapshot(ledger: SqlLedger, mchid: str) -> dict[str, Any]:
    """What the merchant's rows say, with ids and times left out."""
    async with ledger.engine.connect() as connection:
        rows = await connection.execute(
            select(
                notifications.c.notification_id,
                notifications.c.outcome,
                notifications.c.duplicate_count,
            ).where(notifications.c.mchid == mchid)
        )
        # Keyed without the merchant (each run has its own): runs compare equal.
        recorded = {str(r[0]).removeprefix(f"{mchid}-"): (str(r[1]), int(r[2])) for r in rows}
        state = {
            str(r[0]): (str(r[1]), int(r[2]))
            for r in await connection.execute(
                select(orders.c.out_trade_no, orders.c.state, orders.c.version).where(
                    orders.c.mchid == mchid
                )
            )
        }
        kinds = Counter(
            str(r[0])
            for r in await connection.execute(select(events.c.type).where(events.c.mchid == mchid))
        )
        fanned = await connection.scalar(
            select(func.count())
            .select_from(event_fanout.join(events, event_fanout.c.event_seq == events.c.seq))
            .where(events.c.mchid == mchid)
        )
        raw = await connection.scalar(
            select(func.count())
            .select_from(
                raw_requests.join(
                    notifications, notifications.c.id == raw_requests.c.notification_pk
                )
            )
            .where(notifications.c.mchid == mchid)
        )
        refund_rows = {
            str(r[0]): (str(r[1]), bool(r[2]))
            for r in await connection.execute(
                select(refunds.c.out_refund_no, refunds.c.status, refunds.c.applied).where(
                    refunds.c.mchid == mchid
                )
            )
        }
    return {
        "notifications": recorded,
        "orders": state,
        "events": kinds,
        "fanout": fanned,
        "raw": raw,
        "refunds": refund_rows,
    }


def outcomes(results: list[RecordResult | Exception]) -> list[Any]:
    return [
        (r.outcome, len(r.event_ids), len(r.transitions)) if isinstance(r, RecordResult) else r
        for r in results
    ]


async def both_paths(
    target: Target, clock: FakeClock, scenario: Scenario
) -> tuple[SqlLedger, list[Any], list[Any]]:
    """Run ``scenario`` with and without the driver path; return the driver ledger and
    both runs' (outcomes, snapshot). The caller closes nothing: the ledgers are closed."""
    direct = SqlLedger.from_url(target.url, schema=target.schema, clock=clock)
    general = SqlLedger.from_url(target.url, schema=target.schema, clock=clock, driver_groups=False)
    runs = []
    try:
        for ledger in (direct, general):
            mchid = new_mchid()
            runs.append([await scenario(ledger, mchid), await snapshot(ledger, mchid)])
    finally:
        await general.aclose()
        await direct.aclose()
    return direct, runs[0], runs[1]


def new_mchid() -> str:
    return "19" + "".join(secrets.choice("0123456789") for _ in range(8))


def ids(mchid: str, *names: str) -> dict[str, str]:
    return {name: f"{mchid}-{name}" for name in names}


async def test_a_payment_group_goes_direct_and_decides_as_the_general_path(
    target: Target, clock: FakeClock
) -> None:
    async def scenario(ledger: SqlLedger, mchid: str) -> list[Any]:
        n = ids(mchid, "A", "B", "C", "D", "E")
        for name in ("A", "B", "C", "E"):
            await ledger.create_order(order(mchid, name))
        earlier = await ledger.record_notifications_batch(
            [payment(mchid, "E", notification_id=n["E"])]
        )
        twin = payment(mchid, "A", notification_id=n["A"])
        group = [
            twin,
            twin,  # recorded once; the copy counted
            payment(mchid, "B", notification_id=n["B"]),
            payment(mchid, "C", notification_id=n["C"], total=50),  # amount mismatch
            payment(mchid, "D", notification_id=n["D"]),  # no such order
            payment(mchid, "E", notification_id=n["E"]),  # recorded before: a duplicate
        ]
        return outcomes(earlier) + outcomes(await ledger.record_notifications_batch(group))

    direct, (got, rows), (expected, expected_rows) = await both_paths(target, clock, scenario)

    assert got == expected
    assert rows == expected_rows
    assert direct.direct_groups == (2, 0)
    assert rows["events"] == {
        "payment.succeeded": 3,
        "payment.amount_mismatch": 1,
        "payment.unmatched": 1,
    }
    assert rows["fanout"] == 5
    assert rows["raw"] == 5
    dup_counts = sorted(count for _outcome, count in rows["notifications"].values())
    assert dup_counts == [0, 0, 0, 1, 1]
    assert sorted(o for o, _ in rows["notifications"].values()) == sorted(
        ["applied", "applied", "applied", "anomaly", "unmatched"]
    )


async def test_a_group_of_two_merchants_reads_each_merchants_orders(
    target: Target, clock: FakeClock
) -> None:
    async def scenario(ledger: SqlLedger, mchid: str) -> list[Any]:
        other = mchid + "7"
        # The same order number at both merchants: each payment must find its own.
        await ledger.create_order(order(mchid, "SAME", total=100))
        await ledger.create_order(order(other, "SAME", total=300))
        return outcomes(
            await ledger.record_notifications_batch(
                [
                    payment(mchid, "SAME", notification_id=f"{mchid}-M1", total=100),
                    payment(other, "SAME", notification_id=f"{mchid}-M2", total=300),
                ]
            )
        )

    direct, (got, rows), (expected, expected_rows) = await both_paths(target, clock, scenario)

    assert got == expected
    assert rows == expected_rows
    assert [outcome for outcome, _events, _transitions in got] == [RecordOutcome.APPLIED] * 2
    assert direct.direct_groups == (1, 0)


async def test_groups_the_driver_declines_get_the_general_paths_outcomes(
    target: Target, clock: FakeClock
) -> None:
    async def scenario(ledger: SqlLedger, mchid: str) -> list[Any]:
        n = ids(mchid, "A1", "A2", "B", "R", "H", "HR")
        for name in ("A", "B", "H"):
            await ledger.create_order(order(mchid, name))
        results = []
        # Two notifications for one order, and a refund in the group.
        results += outcomes(
            await ledger.record_notifications_batch(
                [
                    payment(mchid, "A", notification_id=n["A1"]),
                    payment(mchid, "A", notification_id=n["A2"], trade_state="CLOSED"),
                ]
            )
        )
        results += outcomes(
            await ledger.record_notifications_batch(
                [
                    payment(mchid, "B", notification_id=n["B"]),
                    refund(mchid, "B", "B-R1", amount=30, notification_id=n["R"]),
                ]
            )
        )
        # A refund seen before its payment is held; the payment then releases it.
        results += outcomes(
            await ledger.record_notifications_batch(
                [refund(mchid, "H", "H-R1", amount=40, notification_id=n["HR"])]
            )
        )
        results += outcomes(
            await ledger.record_notifications_batch([payment(mchid, "H", notification_id=n["H"])])
        )
        return results

    direct, (got, rows), (expected, expected_rows) = await both_paths(target, clock, scenario)

    assert got == expected
    assert rows == expected_rows
    # Declined before writing: the two mixed groups and the refund alone. Rolled back
    # after reading: the payment that releases a held refund.
    assert direct.direct_groups == (0, 4)
    assert rows["refunds"] == {"B-R1": ("SUCCESS", True), "H-R1": ("SUCCESS", True)}


@pytest.fixture
async def own_ledger(target: Target, clock: FakeClock) -> AsyncIterator[SqlLedger]:
    """A ledger of its own (a pool no other test has used), closed after the test."""
    ledger = SqlLedger.from_url(target.url, schema=target.schema, clock=clock)
    try:
        yield ledger
    finally:
        await ledger.aclose()


async def test_an_order_changed_after_the_read_sends_the_group_to_the_general_path(
    own_ledger: SqlLedger, mchid: str
) -> None:
    ledger = own_ledger
    await ledger.create_order(order(mchid, "X"))
    await ledger.create_order(order(mchid, "Y"))
    async with ledger.engine.connect() as other:
        blocker = await other.scalar(text("SELECT pg_backend_pid()"))
        # Another writer holds the order changed but uncommitted: the group reads the
        # old version, and its compare-and-set waits for the lock, then misses.
        await other.execute(
            update(orders)
            .where(orders.c.mchid == mchid, orders.c.out_trade_no == "X")
            .values(version=orders.c.version + 1)
        )
        task = asyncio.create_task(
            ledger.record_notifications_batch([payment(mchid, "X"), payment(mchid, "Y")])
        )
        async with ledger.engine.connect() as watcher:
            for _ in range(500):
                waiting = await watcher.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE CAST(:blocker AS INTEGER) = ANY(pg_blocking_pids(pid))"
                    ),
                    {"blocker": blocker},
                )
                # pg_stat_activity is read once per transaction: end it to look again.
                await watcher.rollback()
                if waiting:
                    break
                await asyncio.sleep(0.01)
            assert waiting, "the driver path's compare-and-set never waited"
        await other.commit()
        results = await task

    assert [r.outcome.value for r in results if isinstance(r, RecordResult)] == [
        "applied",
        "applied",
    ]
    assert ledger.direct_groups == (0, 1)
    rows = await snapshot(ledger, mchid)
    assert rows["orders"] == {"X": ("SUCCESS", 2), "Y": ("SUCCESS", 1)}
    assert rows["events"] == {"payment.succeeded": 2}


async def test_dispatch_workers_are_woken_only_when_events_were_inserted(
    own_ledger: SqlLedger, mchid: str, target: Target
) -> None:
    heard: list[str] = []
    listener = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
    await listener.add_listener(EVENTS_CHANNEL, lambda *args: heard.append(args[3]))
    try:
        await own_ledger.create_order(order(mchid, "W"))
        first = payment(mchid, "W")
        await own_ledger.record_notifications_batch([first])
        await _wait_for(lambda: len(heard) == 1)
        # Only copies: nothing inserted, no wake-up.
        await own_ledger.record_notifications_batch([first, first])
        await asyncio.sleep(0.3)
    finally:
        await listener.close()
    assert heard == [target.schema]
    assert own_ledger.direct_groups == (2, 0)


async def test_a_lost_connection_is_dropped_and_the_group_still_recorded(
    own_ledger: SqlLedger, mchid: str
) -> None:
    ledger = own_ledger
    admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
    try:
        started = await admin.fetchval("SELECT now()")
        for name in ("K1", "K2", "K3"):
            await ledger.create_order(order(mchid, name))
        await ledger.record_notifications_batch([payment(mchid, "K1")])
        # The connection the driver path kept for the next group: the only one of this
        # (fresh) ledger whose last statement recorded notifications.
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE backend_start >= $1 AND pid <> pg_backend_pid()"
            " AND query LIKE '%INSERT INTO notifications%'",
            started,
        )
        assert killed == 1
    finally:
        await admin.close()

    second = await ledger.record_notifications_batch([payment(mchid, "K2")])
    third = await ledger.record_notifications_batch([payment(mchid, "K3")])

    assert [r.outcome.value for r in second + third if isinstance(r, RecordResult)] == [
        "applied",
        "applied",
    ]
    assert ledger.direct_groups == (2, 1)  # K1 and K3 direct; K2 recorded by the general path
    assert (await snapshot(ledger, mchid))["events"] == {"payment.succeeded": 3}


async def test_an_idle_ledger_gives_its_connection_back(own_ledger: SqlLedger, mchid: str) -> None:
    names = [f"I{i}" for i in range(12)]
    for name in names:
        await own_ledger.create_order(order(mchid, name))
    results = await asyncio.gather(
        *(own_ledger.record_notification(payment(mchid, name)) for name in names)
    )
    assert [r.outcome.value for r in results] == ["applied"] * 12
    groups, declined = own_ledger.direct_groups
    assert groups >= 1  # callers submitting in one turn share a group
    assert declined == 0
    pool = own_ledger.engine.pool
    # Kept for the next group (no checkout per group), then given back once idle.
    assert pool.checkedout() == 1  # type: ignore[attr-defined]
    await _wait_for(lambda: pool.checkedout() == 0)  # type: ignore[attr-defined]


async def _wait_for(condition: Callable[[], bool]) -> None:
    for _ in range(300):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in 3 s")


async def test_warm_up_prepares_the_group_statements_and_writes_nothing(
    own_ledger: SqlLedger, mchid: str
) -> None:
    await own_ledger.create_order(order(mchid, "WARM"))
    before = await snapshot(own_ledger, mchid)

    await own_ledger.warm_up()

    # The connection the next group takes (kept, as after a group) already has both
    # statements prepared on the server.
    kept = own_ledger._driver_groups._idle  # type: ignore[union-attr]
    assert len(kept) == 1
    _connection, driver = kept[0]
    assert driver is not None
    prepared = [
        row[0] for row in await driver.fetch("SELECT statement FROM pg_prepared_statements")
    ]
    assert any("INSERT INTO notifications" in statement for statement in prepared)
    assert any("LATERAL" in statement and "FROM orders" in statement for statement in prepared)
    assert await snapshot(own_ledger, mchid) == before  # empty arrays: nothing read or written
    await own_ledger.warm_up()  # a second call keeps the one connection
    assert len(kept) == 1

    await own_ledger.record_notifications_batch([payment(mchid, "WARM")])
    assert own_ledger.direct_groups == (1, 0)
    assert (await snapshot(own_ledger, mchid))["orders"] == {"WARM": ("SUCCESS", 1)}


async def test_the_kept_connection_plans_once_and_goes_back_to_the_pool_as_it_came(
    target: Target, clock: FakeClock, mchid: str
) -> None:
    # One pooled connection, so the one the driver path gives back is the one read after.
    ledger = SqlLedger(
        dialects.create_engine(target.url, pool_size=1, max_overflow=0, schema=target.schema),
        clock=clock,
    )
    try:
        names = [f"P{i}" for i in range(8)]
        for name in names:
            await ledger.create_order(order(mchid, name))
        for name in names:  # eight groups: past the five custom plans PostgreSQL tries first
            await ledger.record_notifications_batch([payment(mchid, name)])
        assert ledger.direct_groups == (8, 0)
        kept = ledger._driver_groups._idle  # type: ignore[union-attr]
        _connection, driver = kept[0]
        assert driver is not None
        prepared = await driver.fetch(
            "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
        )
        plans = [
            row
            for row in prepared
            if "CROSS JOIN LATERAL" in row["statement"]  # the order read
            or "INSERT INTO notifications (" in row["statement"]  # the record statement
        ]
        assert len(plans) == 2
        assert all(row["custom_plans"] == 0 and row["generic_plans"] == 8 for row in plans)

        pool = ledger.engine.pool
        await _wait_for(lambda: pool.checkedout() == 0)  # type: ignore[attr-defined]
        async with ledger.engine.connect() as pooled:
            mode = await pooled.scalar(text("SHOW plan_cache_mode"))
        assert mode == "auto"
    finally:
        await ledger.aclose()
