"""Persisted notification deliveries and the attempts made for them.

A delivery keeps its body bytes in a column of its own (retries re-send exactly the
bytes first built); ``status`` and ``next_at`` are columns so due deliveries are found
by index, which is what lets a restarted simulator resume pending deliveries.
"""

from __future__ import annotations

from typing import Any

from wxpaykit.simulator.state.database import StateDatabase, load_record, record_doc
from wxpaykit.simulator.state.records import Attempt, Delivery

__all__ = ["DELIVERIES_SCHEMA", "DeliveryStore"]

DELIVERIES_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY,
    mchid TEXT NOT NULL,
    status TEXT NOT NULL,
    next_at REAL NOT NULL,
    doc TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_at);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY,
    delivery_id INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_delivery ON attempts (delivery_id);
"""

_IN_COLUMNS = ("id", "body")


class DeliveryStore(StateDatabase):
    """The ``deliveries`` and ``attempts`` tables."""

    def insert_delivery(self, delivery: Delivery) -> Delivery:
        """Queue a notification for sending."""
        delivery.id = self._execute(
            "INSERT INTO deliveries (mchid, status, next_at, doc, body) VALUES (?, ?, ?, ?, ?)",
            (
                delivery.mchid,
                delivery.status,
                delivery.next_at,
                record_doc(delivery, exclude=_IN_COLUMNS),
                delivery.body,
            ),
        )
        return delivery

    def update_delivery(self, delivery: Delivery) -> None:
        """Persist a delivery's status, attempt count and next attempt time."""
        self._execute(
            "UPDATE deliveries SET status = ?, next_at = ?, doc = ? WHERE id = ?",
            (
                delivery.status,
                delivery.next_at,
                record_doc(delivery, exclude=_IN_COLUMNS),
                delivery.id,
            ),
        )

    def _deliveries(self, where: str, params: tuple[Any, ...], *, order: str) -> list[Delivery]:
        rows = self._all(
            f"SELECT id, doc, body FROM deliveries WHERE {where} ORDER BY {order}",  # noqa: S608 - fixed fragments
            params,
        )
        return [load_record(Delivery, row[0], row[1], body=bytes(row[2])) for row in rows]

    def due_deliveries(self, now: float) -> list[Delivery]:
        """Pending deliveries whose next attempt is due, earliest first."""
        return self._deliveries("status = 'pending' AND next_at <= ?", (now,), order="next_at, id")

    def deliveries(self, mchid: str | None = None) -> list[Delivery]:
        """Every delivery (of one merchant), in creation order."""
        if mchid is None:
            return self._deliveries("1 = 1", (), order="id")
        return self._deliveries("mchid = ?", (mchid,), order="id")

    def delivery(self, delivery_id: int) -> Delivery | None:
        """One delivery by id."""
        found = self._deliveries("id = ?", (delivery_id,), order="id")
        return found[0] if found else None

    def insert_attempt(self, attempt: Attempt) -> Attempt:
        """Record one attempt."""
        attempt.id = self._execute(
            "INSERT INTO attempts (delivery_id, doc) VALUES (?, ?)",
            (attempt.delivery_id, record_doc(attempt)),
        )
        return attempt

    def attempts_of(self, delivery_id: int) -> list[Attempt]:
        """The attempts made for one delivery, in order."""
        rows = self._all(
            "SELECT id, doc FROM attempts WHERE delivery_id = ? ORDER BY id", (delivery_id,)
        )
        return [load_record(Attempt, row[0], row[1]) for row in rows]
