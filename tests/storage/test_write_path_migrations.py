"""Migrations 0003 (fillfactor) and 0004 (no foreign key on raw requests): what they change,
on every backend, and that rows written before them are kept."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, select, text, update

from tests.storage.conftest import BACKENDS, Target
from wxpaykit.storage import migrate
from wxpaykit.storage.dialects import create_engine
from wxpaykit.storage.schema import notifications, orders, raw_requests


@pytest.mark.parametrize("fresh_target", BACKENDS, indirect=True)
async def test_raw_requests_lose_the_foreign_key_and_keep_their_rows(
    fresh_target: Target,
) -> None:
    url, schema = fresh_target.url, fresh_target.schema
    await migrate.upgrade(url, schema=schema, revision="0003_fillfactor")
    engine = create_engine(url, schema=schema)
    try:
        async with engine.begin() as connection:
            before = await connection.run_sync(
                lambda sync: inspect(sync).get_foreign_keys("raw_requests")
            )
            inserted = (
                await connection.execute(
                    notifications.insert().values(
                        mchid="1900000001",
                        notification_id="EV-before-0004",
                        api_version="v3",
                        event_type="TRANSACTION.SUCCESS",
                        kind="payment",
                        out_trade_no="order-1",
                        outcome="applied",
                        duplicate_count=0,
                        received_at_ms=5,
                    )
                )
            ).inserted_primary_key
            assert inserted is not None
            pk = inserted[0]
            await connection.execute(
                raw_requests.insert().values(
                    notification_pk=pk, headers="{}", body=b"\x00raw", received_at_ms=5
                )
            )
        await migrate.upgrade(url, schema=schema)
        async with engine.connect() as connection:
            after = await connection.run_sync(
                lambda sync: inspect(sync).get_foreign_keys("raw_requests")
            )
            kept = (await connection.execute(select(raw_requests))).one()
            unique = await connection.run_sync(
                lambda sync: inspect(sync).get_unique_constraints("raw_requests")
            )
    finally:
        await engine.dispose()

    assert [key["referred_table"] for key in before] == ["notifications"]
    assert after == []
    assert (kept.notification_pk, kept.body, kept.received_at_ms) == (pk, b"\x00raw", 5)
    # Still one raw request per notification.
    assert [tuple(u["column_names"]) for u in unique] == [("notification_pk",)]


@pytest.mark.parametrize("fresh_target", ["postgresql"], indirect=True)
async def test_postgresql_leaves_room_for_hot_updates(fresh_target: Target) -> None:
    url, schema = fresh_target.url, fresh_target.schema
    await migrate.upgrade(url, schema=schema, revision="0002_dispatch")
    engine = create_engine(url, schema=schema)
    query = text(
        "SELECT c.relname, c.reloptions FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = current_schema()"
        " AND c.relname IN ('orders', 'refunds', 'notifications')"
    )
    try:
        async with engine.connect() as connection:
            before = {row.relname: row.reloptions for row in await connection.execute(query)}
        await migrate.upgrade(url, schema=schema)
        async with engine.connect() as connection:
            after = {row.relname: row.reloptions for row in await connection.execute(query)}
    finally:
        await engine.dispose()

    assert before == {"orders": None, "refunds": None, "notifications": None}
    assert after == {name: ["fillfactor=80"] for name in ("orders", "refunds", "notifications")}


@pytest.mark.parametrize("fresh_target", ["postgresql"], indirect=True)
async def test_paying_an_order_on_a_full_page_is_a_hot_update(fresh_target: Target) -> None:
    """The point of 0003: the payment's update adds no index entries, even for an order
    whose page was filled by the orders inserted after it."""
    await migrate.upgrade(fresh_target.url, schema=fresh_target.schema)
    engine = create_engine(fresh_target.url, schema=fresh_target.schema)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                orders.insert(),
                [
                    {
                        "mchid": "1900000001",
                        "out_trade_no": f"order-{n:04d}",
                        "description": "test order",
                        "total": 100,
                        "currency": "CNY",
                        "state": "NOTPAY",
                        "refunded_total": 0,
                        "refund_count": 0,
                        "held_refunds": 0,
                        "version": 0,
                        "created_at_ms": 5,
                        "updated_at_ms": 5,
                    }
                    for n in range(500)  # several pages
                ],
            )
        async with engine.begin() as connection:
            await connection.execute(
                update(orders)
                .where(orders.c.out_trade_no == "order-0000")
                .values(state="SUCCESS", version=1, transaction_id="4200000001", updated_at_ms=6)
            )
            # This transaction's own counts (pg_stat_xact_*: no statistics collector delay).
            updated, hot = (
                await connection.execute(
                    text(
                        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables"
                        " WHERE schemaname = current_schema() AND relname = 'orders'"
                    )
                )
            ).one()
    finally:
        await engine.dispose()

    assert (updated, hot) == (1, 1)
