"""Persisted refunds, with the completion time the scheduler watches.

``status`` and ``complete_at`` are columns as well as fields, so the scheduler finds
PROCESSING refunds that are due without reading every document.
"""

from __future__ import annotations

from typing import Any

from wxpaykit.simulator.state.database import StateDatabase, load_record, record_doc
from wxpaykit.simulator.state.records import Refund

__all__ = ["REFUNDS_SCHEMA", "RefundStore"]

REFUNDS_SCHEMA = """
CREATE TABLE IF NOT EXISTS refunds (
    id INTEGER PRIMARY KEY,
    mchid TEXT NOT NULL,
    sub_mchid TEXT NOT NULL,
    out_refund_no TEXT NOT NULL,
    refund_id TEXT NOT NULL UNIQUE,
    order_id INTEGER NOT NULL,
    status TEXT NOT NULL,
    complete_at REAL,
    doc TEXT NOT NULL,
    UNIQUE (mchid, sub_mchid, out_refund_no)
);
"""


class RefundStore(StateDatabase):
    """The ``refunds`` table."""

    def insert_refund(self, refund: Refund) -> Refund:
        """Store a new refund and return it with its id."""
        refund.id = self._execute(
            "INSERT INTO refunds (mchid, sub_mchid, out_refund_no, refund_id, order_id, status,"
            " complete_at, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                refund.mchid,
                refund.sub_mchid,
                refund.out_refund_no,
                refund.refund_id,
                refund.order_id,
                refund.status,
                refund.complete_at,
                record_doc(refund),
            ),
        )
        return refund

    def update_refund(self, refund: Refund) -> None:
        """Persist changes to a refund."""
        self._execute(
            "UPDATE refunds SET status = ?, complete_at = ?, doc = ? WHERE id = ?",
            (refund.status, refund.complete_at, record_doc(refund), refund.id),
        )

    def _refunds_where(self, where: str, params: tuple[Any, ...]) -> list[Refund]:
        rows = self._all(f"SELECT id, doc FROM refunds WHERE {where} ORDER BY id", params)  # noqa: S608 - fixed fragments
        return [load_record(Refund, row[0], row[1]) for row in rows]

    def refund_by_out_refund_no(
        self, mchid: str, sub_mchid: str, out_refund_no: str
    ) -> Refund | None:
        """The refund a merchant numbered ``out_refund_no``."""
        found = self._refunds_where(
            "mchid = ? AND sub_mchid = ? AND out_refund_no = ?", (mchid, sub_mchid, out_refund_no)
        )
        return found[0] if found else None

    def refund_by_refund_id(self, refund_id: str) -> Refund | None:
        """The refund with this WeChat refund id."""
        found = self._refunds_where("refund_id = ?", (refund_id,))
        return found[0] if found else None

    def refunds_of_order(self, order_id: int) -> list[Refund]:
        """The refunds of one order, oldest first."""
        return self._refunds_where("order_id = ?", (order_id,))

    def due_refunds(self, now: float) -> list[Refund]:
        """PROCESSING refunds whose automatic completion time has come."""
        return self._refunds_where(
            "status = 'PROCESSING' AND complete_at IS NOT NULL AND complete_at <= ?", (now,)
        )
