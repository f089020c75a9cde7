"""Fan-out routes each event to the sinks whose patterns match it, whichever way it runs
(one statement with LIKE patterns on PostgreSQL, or reading the events first)."""

from __future__ import annotations

import fnmatch

import pytest

from tests.dispatch.conftest import TestDatabase
from tests.dispatch.helpers import append, deliveries, payment_event
from wxpaykit.dispatch.deliveries import DeliveryStore, SinkRoute
from wxpaykit.dispatch.fanout import FanOutStatements, like_pattern

TYPES = ["payment.succeeded", "payment.closed", "refund.succeeded", "refund.abnormal", "x_y%z"]


@pytest.mark.parametrize(
    ("pattern", "like"),
    [
        ("payment.*", "payment.%"),
        ("*", "%"),
        ("refund.?ucceeded", "refund._ucceeded"),
        ("x_y%z", "x\\_y\\%z"),
        ("a\\b", "a\\\\b"),
        ("[pr]efund.*", None),
    ],
)
def test_like_patterns_say_what_fnmatch_says(pattern: str, like: str | None) -> None:
    assert like_pattern(pattern) == like


@pytest.mark.parametrize(
    "routes",
    [
        # LIKE-able: one statement on PostgreSQL; a sink matched by two patterns
        # still gets one delivery per event.
        (
            SinkRoute(name="shop", patterns=("payment.*", "payment.succeeded")),
            SinkRoute(name="refunds", patterns=("refund.?ucceeded",)),
            SinkRoute(name="all", patterns=("*",)),
            SinkRoute(name="odd", patterns=("x_y%z",)),
        ),
        # A character class: read the events and route them here, on every database.
        (
            SinkRoute(name="shop", patterns=("[pr]*.succeeded",)),
            SinkRoute(name="odd", patterns=("x?y*",)),
        ),
    ],
)
async def test_each_event_gets_one_delivery_per_matching_sink(
    any_db: TestDatabase, routes: tuple[SinkRoute, ...]
) -> None:
    new_events = [payment_event(f"order-{n}", event_type) for n, event_type in enumerate(TYPES)]
    await append(any_db, new_events, now_ms=1_000)
    store = DeliveryStore(any_db.engine)

    assert await store.fan_out(routes, now_ms=2_000, limit=3) == 3  # limit respected
    assert await store.fan_out(routes, now_ms=2_000, limit=100) == len(TYPES) - 3
    assert await store.fan_out(routes, now_ms=2_000, limit=100) == 0

    expected = sorted(
        (event.event_id, route.name)
        for event in new_events
        for route in routes
        if any(fnmatch.fnmatchcase(event.type, p) for p in route.patterns)
    )
    rows = await deliveries(any_db)
    assert sorted((row.event_id, row.sink) for row in rows) == expected
    assert {(row.status, row.attempts, row.next_attempt_at_ms) for row in rows} == {
        ("pending", 0, 2_000)
    }
    by_id = {event.event_id: event.aggregate_key for event in new_events}
    assert all(row.aggregate_key == by_id[row.event_id] for row in rows)
    character_class = any("[" in p for route in routes for p in route.patterns)
    one_statement = FanOutStatements(any_db.kind, skip_locked=True).routed_parameters(routes)
    assert (one_statement is not None) == (any_db.kind == "postgresql" and not character_class)
