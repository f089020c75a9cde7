"""A group's payments are decided from one read and written with one compare-and-set.

The bulk write (one statement on PostgreSQL, one per order elsewhere) must keep the
per-item guarantees: an order changed after the group read it is never overwritten,
and every item still gets the outcome the state machine gives it.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

from sqlalchemy import select, update

from tests.storage.builders import event_types, new_id, order, payment, refund
from wxpaykit.storage.applied import Applied
from wxpaykit.storage.base import RecordOutcome, RecordResult
from wxpaykit.storage.ledger import SqlLedger
from wxpaykit.storage.payments import PlannedWrite, classify_payment, read_orders, write_planned
from wxpaykit.storage.schema import notifications, orders, raw_requests


async def test_a_planned_write_misses_an_order_changed_since_it_was_read(
    ledger: SqlLedger, mchid: str
) -> None:
    for name in ("A", "B"):
        await ledger.create_order(order(mchid, name))
    async with ledger.engine.connect() as connection:
        rows = await read_orders(connection, {(mchid, "A"), (mchid, "B"), (mchid, "NONE")})
    assert rows[(mchid, "NONE")] is None
    plans = []
    for name in ("A", "B"):
        facts = payment(mchid, name).payment
        assert facts is not None
        decision = classify_payment(
            rows[(mchid, name)], mchid=mchid, notification_id=f"n-{name}", facts=facts, now_ms=1
        )
        assert isinstance(decision, PlannedWrite)
        plans.append(decision)
    # Someone else changes B after the read: its compare-and-set must not match.
    async with ledger.engine.begin() as connection:
        await connection.execute(
            update(orders)
            .where(orders.c.mchid == mchid, orders.c.out_trade_no == "B")
            .values(version=orders.c.version + 1)
        )

    async with ledger.engine.begin() as connection:
        written = await write_planned(connection, plans)

    assert written == {plans[0].order.id}
    paid_a, paid_b = await ledger.get_order(mchid, "A"), await ledger.get_order(mchid, "B")
    assert paid_a is not None
    assert paid_a.state == "SUCCESS"
    assert paid_b is not None
    assert paid_b.state == "NOTPAY"


async def test_classify_gives_final_answers_without_a_write(mchid: str) -> None:
    facts = payment(mchid, "GONE").payment
    assert facts is not None
    decision = classify_payment(None, mchid=mchid, notification_id="n", facts=facts, now_ms=1)
    assert isinstance(decision, Applied)
    assert decision.outcome is RecordOutcome.UNMATCHED


async def test_a_mixed_group_keeps_every_outcome(ledger: SqlLedger, mchid: str) -> None:
    for name in ("A", "B", "C", "D"):
        await ledger.create_order(order(mchid, name))
    await ledger.create_order(order(mchid, "PAID", state="SUCCESS"))
    batch = [
        payment(mchid, "A"),  # alone on its order: bulk
        payment(mchid, "B"),
        payment(mchid, "B", trade_state="CLOSED"),  # same order twice: one by one, in order
        payment(mchid, "C", total=999),  # amount mismatch: anomaly, never written
        refund(mchid, "D", "R-D", amount=10),  # refund before payment: held
        payment(mchid, "D"),  # pays D and releases the held refund: one by one
        payment(mchid, "PAID"),  # already paid: no change
        payment(mchid, "MISSING"),  # unknown order: unmatched
    ]

    # The group applies items in notification-id order: make it the list's order.
    prefix = new_id()
    batch = [
        dataclasses.replace(item, notification_id=f"{prefix}-{index:02d}")
        for index, item in enumerate(batch)
    ]

    results = await ledger.record_notifications_batch(batch)

    assert all(isinstance(result, RecordResult) for result in results)
    outcomes = [result.outcome for result in results if isinstance(result, RecordResult)]
    assert outcomes[0] is RecordOutcome.APPLIED
    assert outcomes[1] is RecordOutcome.APPLIED
    assert outcomes[2] is RecordOutcome.NO_CHANGE  # CLOSED after SUCCESS changes nothing
    assert outcomes[3] is RecordOutcome.ANOMALY
    assert outcomes[5] is RecordOutcome.APPLIED
    assert outcomes[6] is RecordOutcome.NO_CHANGE
    assert outcomes[7] is RecordOutcome.UNMATCHED
    assert ledger.batch_fallbacks == 0
    states = {}
    for name in ("A", "B", "C", "D"):
        stored = await ledger.get_order(mchid, name)
        assert stored is not None
        states[name] = (stored.state, stored.refunded_total)
    assert states == {
        "A": ("SUCCESS", 0),
        "B": ("SUCCESS", 0),
        "C": ("NOTPAY", 0),
        "D": ("REFUND", 10),  # paid, then the held refund counted
    }
    types = Counter(await event_types(ledger, mchid))
    assert types["payment.succeeded"] == 3
    assert types["payment.amount_mismatch"] == 1
    assert types["payment.unmatched"] == 1


async def test_a_group_keeps_one_raw_request_per_recorded_notification(
    ledger: SqlLedger, mchid: str
) -> None:
    for name in ("A", "B", "C"):
        await ledger.create_order(order(mchid, name))
    twin = payment(mchid, "A", body=b'{"first":"copy"}')
    later_twin = dataclasses.replace(
        twin,
        raw=dataclasses.replace(twin.raw, body=b'{"second":"copy"}') if twin.raw else None,
    )
    without_raw = dataclasses.replace(payment(mchid, "B"), raw=None)
    plain = payment(mchid, "C", body='{"签名":"原文"}'.encode())

    results = await ledger.record_notifications_batch([twin, later_twin, without_raw, plain])

    outcomes = [getattr(result, "outcome", None) for result in results]
    assert sorted(o.value for o in outcomes if o is not None) == [
        "applied",
        "applied",
        "applied",
        "duplicate",
    ]
    async with ledger.engine.connect() as connection:
        rows = await connection.execute(
            select(notifications.c.out_trade_no, raw_requests.c.headers, raw_requests.c.body)
            .join(notifications, notifications.c.id == raw_requests.c.notification_pk)
            .where(notifications.c.mchid == mchid)
        )
        stored = {str(row.out_trade_no): (json.loads(row.headers), bytes(row.body)) for row in rows}
    assert set(stored) == {"A", "C"}  # B came without its raw request
    assert stored["A"][1] in (b'{"first":"copy"}', b'{"second":"copy"}')
    assert twin.raw is not None
    kept = twin if stored["A"][1] == twin.raw.body else later_twin
    assert kept.raw is not None
    assert stored["A"][0] == dict(kept.raw.headers)  # headers and body of one request
    assert stored["C"][1] == '{"签名":"原文"}'.encode()
