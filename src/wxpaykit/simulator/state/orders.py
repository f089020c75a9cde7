"""Persisted orders, found by every key the platform accepts.

An order is looked up by the merchant's ``out_trade_no`` (unique per merchant and
sub-merchant), by WeChat's ``transaction_id``, by ``prepay_id`` (the payer's JSAPI/APP
path) or by the ``pr=`` token of a ``code_url`` (the Native and H5 pay page).
"""

from __future__ import annotations

from typing import Any

from wxpaykit.simulator.state.database import StateDatabase, load_record, record_doc
from wxpaykit.simulator.state.records import Order

__all__ = ["ORDERS_SCHEMA", "OrderStore"]

ORDERS_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY,
    mchid TEXT NOT NULL,
    sub_mchid TEXT NOT NULL,
    out_trade_no TEXT NOT NULL,
    transaction_id TEXT NOT NULL UNIQUE,
    prepay_id TEXT NOT NULL UNIQUE,
    code_token TEXT NOT NULL UNIQUE,
    doc TEXT NOT NULL,
    UNIQUE (mchid, sub_mchid, out_trade_no)
);
"""


class OrderStore(StateDatabase):
    """The ``orders`` table."""

    def insert_order(self, order: Order) -> Order:
        """Store a new order and return it with its id.

        Raises :class:`sqlite3.IntegrityError` when the merchant already has this
        ``out_trade_no`` (a concurrent re-submission).
        """
        order.id = self._execute(
            "INSERT INTO orders (mchid, sub_mchid, out_trade_no, transaction_id, prepay_id,"
            " code_token, doc) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                order.mchid,
                order.sub_mchid,
                order.out_trade_no,
                order.transaction_id,
                order.prepay_id,
                order.code_token,
                record_doc(order),
            ),
        )
        return order

    def update_order(self, order: Order) -> None:
        """Persist changes to an order."""
        self._execute("UPDATE orders SET doc = ? WHERE id = ?", (record_doc(order), order.id))

    def _orders_where(self, where: str, params: tuple[Any, ...]) -> list[Order]:
        rows = self._all(f"SELECT id, doc FROM orders WHERE {where} ORDER BY id", params)  # noqa: S608 - fixed fragments
        return [load_record(Order, row[0], row[1]) for row in rows]

    def _order_where(self, where: str, params: tuple[Any, ...]) -> Order | None:
        found = self._orders_where(where, params)
        return found[0] if found else None

    def order_by_out_trade_no(self, mchid: str, sub_mchid: str, out_trade_no: str) -> Order | None:
        """The order a merchant numbered ``out_trade_no``."""
        return self._order_where(
            "mchid = ? AND sub_mchid = ? AND out_trade_no = ?", (mchid, sub_mchid, out_trade_no)
        )

    def order_by_transaction_id(self, transaction_id: str) -> Order | None:
        """The order with this WeChat transaction id."""
        return self._order_where("transaction_id = ?", (transaction_id,))

    def order_by_prepay_id(self, prepay_id: str) -> Order | None:
        """The order with this prepay id."""
        return self._order_where("prepay_id = ?", (prepay_id,))

    def order_by_code_token(self, code_token: str) -> Order | None:
        """The order a ``code_url`` (``pr=`` token) points to."""
        return self._order_where("code_token = ?", (code_token,))

    def order_by_id(self, order_id: int) -> Order | None:
        """The order with this row id."""
        return self._order_where("id = ?", (order_id,))

    def orders_of(self, mchid: str) -> list[Order]:
        """Every order a merchant placed, oldest first."""
        return self._orders_where("mchid = ?", (mchid,))
