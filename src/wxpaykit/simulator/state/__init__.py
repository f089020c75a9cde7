"""The simulator's persistent state: one SQLite file (or ``:memory:``).

Merchants, orders, refunds, notification deliveries and their attempts, chaos and
fault settings, and bill files survive a restart, so pending deliveries resume where
they stopped. :class:`SimulatorState` is every store over one connection:

* :mod:`.orders` and :mod:`.refunds`: the order book;
* :mod:`.deliveries`: notifications to send and the attempts made;
* :mod:`.controls`: chaos settings and armed faults;
* :mod:`.documents`: simulator-wide values, merchants and bill files.

The records themselves are in :mod:`.records`; :mod:`.database` holds the connection.
"""

from __future__ import annotations

from pathlib import Path

from wxpaykit.simulator.state.controls import CONTROLS_SCHEMA, ControlStore
from wxpaykit.simulator.state.deliveries import DELIVERIES_SCHEMA, DeliveryStore
from wxpaykit.simulator.state.documents import DOCUMENTS_SCHEMA, DocumentStore
from wxpaykit.simulator.state.orders import ORDERS_SCHEMA, OrderStore
from wxpaykit.simulator.state.records import Attempt, Delivery, Fault, Order, Refund
from wxpaykit.simulator.state.refunds import REFUNDS_SCHEMA, RefundStore

__all__ = ["Attempt", "Delivery", "Fault", "Order", "Refund", "SimulatorState"]

_SCHEMA = DOCUMENTS_SCHEMA + ORDERS_SCHEMA + REFUNDS_SCHEMA + DELIVERIES_SCHEMA + CONTROLS_SCHEMA


class SimulatorState(OrderStore, RefundStore, DeliveryStore, ControlStore, DocumentStore):
    """All persistent state, in one SQLite database."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        super().__init__(path, schema=_SCHEMA)

    def next_due_at(self) -> float | None:
        """When the earliest pending delivery or refund completion falls due."""
        row = self._one(
            "SELECT MIN(t) FROM (SELECT MIN(next_at) AS t FROM deliveries WHERE status = 'pending'"
            " UNION ALL SELECT MIN(complete_at) FROM refunds WHERE status = 'PROCESSING')",
            (),
        )
        return None if row is None or row[0] is None else float(row[0])
