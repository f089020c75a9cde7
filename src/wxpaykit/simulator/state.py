"""The simulator's persistent state: one SQLite file (or ``:memory:``).

Merchants, orders, refunds, notification deliveries and their attempts, chaos and
fault settings, and bill files survive a restart, so pending deliveries resume where
they stopped. The store is synchronous stdlib ``sqlite3`` behind a lock: every call
takes microseconds, and the simulator may be driven from a test thread while uvicorn
serves it from another.

Rows keep their searchable keys in columns and everything else in a JSON ``doc``.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Attempt", "Delivery", "Fault", "Order", "Refund", "SimulatorState"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS merchants (mchid TEXT PRIMARY KEY, doc TEXT NOT NULL);
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
CREATE TABLE IF NOT EXISTS chaos (scope TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS faults (
    id INTEGER PRIMARY KEY,
    mchid TEXT NOT NULL,
    path TEXT NOT NULL,
    method TEXT NOT NULL,
    mode TEXT NOT NULL,
    remaining INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS bills (
    token TEXT PRIMARY KEY,
    mchid TEXT NOT NULL,
    gzip INTEGER NOT NULL,
    content BLOB NOT NULL
);
"""


@dataclass(kw_only=True)
class Order:
    """A payment order, shared by APIv3 and APIv2 (the platform has one order book).

    ``mchid`` is the merchant that placed it (``sp_mchid`` in partner mode, where
    ``sub_mchid`` is set). Amounts are fen; times are Unix seconds.
    """

    id: int = 0
    mchid: str
    sub_mchid: str = ""
    appid: str
    sub_appid: str = ""
    out_trade_no: str
    api: str = "v3"
    trade_type: str
    trade_state: str = "NOTPAY"
    description: str = ""
    total: int
    currency: str = "CNY"
    notify_url: str
    attach: str = ""
    openid: str = ""
    sub_openid: str = ""
    prepay_id: str
    code_token: str
    transaction_id: str
    created_at: float
    expires_at: float
    success_time: float | None = None
    fingerprint: str = ""
    refunded: int = 0
    refund_count: int = 0
    sign_type: str = ""
    scene_info: dict[str, Any] | None = None

    @property
    def is_partner(self) -> bool:
        """True for a service-provider (服务商) order."""
        return self.sub_mchid != ""


@dataclass(kw_only=True)
class Refund:
    """A refund of an order; ``status`` is PROCESSING until completed."""

    id: int = 0
    mchid: str
    sub_mchid: str = ""
    order_id: int
    out_refund_no: str
    refund_id: str
    api: str = "v3"
    status: str = "PROCESSING"
    refund: int
    total: int
    reason: str = ""
    notify_url: str = ""
    funds_account: str = ""
    created_at: float
    complete_at: float | None = None
    success_time: float | None = None
    fingerprint: str = ""


@dataclass(kw_only=True)
class Delivery:
    """One notification to send to a notify_url, retried until acknowledged.

    ``body`` is fixed when the notification is created (retries re-send the same
    bytes, freshly signed); ``marks`` lists the chaos applied to it.
    """

    id: int = 0
    mchid: str
    notification_id: str
    api: str
    event_type: str
    notify_url: str
    body: bytes = field(repr=False)
    status: str = "pending"
    attempts: int = 0
    next_at: float
    created_at: float
    marks: list[str] = field(default_factory=list)
    sign_type: str = ""


@dataclass(kw_only=True)
class Attempt:
    """One HTTP request made for a delivery, as shown by ``GET /sim/notifications``."""

    id: int = 0
    delivery_id: int
    number: int
    at: float
    status_code: int | None = None
    latency_ms: float | None = None
    response_body: str = ""
    error: str = ""
    chaos: str = ""
    forged: bool = False
    acked: bool = False
    serial: str = ""


@dataclass(kw_only=True)
class Fault:
    """Make the next ``remaining`` matching requests fail with ``mode``."""

    id: int = 0
    mchid: str = ""
    path: str
    method: str = ""
    mode: str
    remaining: int


def _doc(value: Any, *, exclude: tuple[str, ...] = ("id",)) -> str:
    data = dataclasses.asdict(value)
    for key in exclude:
        data.pop(key, None)
    return json.dumps(data, ensure_ascii=False, sort_keys=True)


class SimulatorState:
    """All persistent state, in one SQLite database."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        if self.path != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run several statements atomically (and exclusively across threads)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _one(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        with self._lock:
            row: tuple[Any, ...] | None = self._conn.execute(sql, params).fetchone()
            return row

    def _all(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._conn.execute(sql, params).fetchall())

    # --- meta ---

    def get_meta(self, key: str) -> str | None:
        """A simulator-wide value (the TLS CA, counters)."""
        row = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Store a simulator-wide value."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def next_sequence(self, name: str) -> int:
        """A persistent counter (1, 2, 3, ...), used to mint unique ids."""
        with self.transaction():
            current = int(self.get_meta(f"seq:{name}") or "0") + 1
            self.set_meta(f"seq:{name}", str(current))
        return current

    # --- merchants ---

    def save_merchant(self, mchid: str, doc: dict[str, Any]) -> None:
        """Insert or replace a merchant document."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO merchants (mchid, doc) VALUES (?, ?)"
                " ON CONFLICT (mchid) DO UPDATE SET doc = excluded.doc",
                (mchid, json.dumps(doc)),
            )

    def load_merchant(self, mchid: str) -> dict[str, Any] | None:
        """A merchant document, or None."""
        row = self._one("SELECT doc FROM merchants WHERE mchid = ?", (mchid,))
        return None if row is None else dict(json.loads(row[0]))

    def merchant_ids(self) -> list[str]:
        """Every merchant id, in creation order."""
        return [str(row[0]) for row in self._all("SELECT mchid FROM merchants ORDER BY rowid")]

    # --- orders ---

    def insert_order(self, order: Order) -> Order:
        """Store a new order and return it with its id."""
        with self._lock:
            cursor = self._conn.execute(
                "INSERT INTO orders (mchid, sub_mchid, out_trade_no, transaction_id, prepay_id,"
                " code_token, doc) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    order.mchid,
                    order.sub_mchid,
                    order.out_trade_no,
                    order.transaction_id,
                    order.prepay_id,
                    order.code_token,
                    _doc(order),
                ),
            )
            order.id = int(cursor.lastrowid or 0)
        return order

    def update_order(self, order: Order) -> None:
        """Persist changes to an order."""
        with self._lock:
            self._conn.execute("UPDATE orders SET doc = ? WHERE id = ?", (_doc(order), order.id))

    def _order_where(self, where: str, params: tuple[Any, ...]) -> Order | None:
        row = self._one(f"SELECT id, doc FROM orders WHERE {where}", params)  # noqa: S608 - fixed fragments
        if row is None:
            return None
        return Order(id=int(row[0]), **json.loads(row[1]))

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
        rows = self._all("SELECT id, doc FROM orders WHERE mchid = ? ORDER BY id", (mchid,))
        return [Order(id=int(row[0]), **json.loads(row[1])) for row in rows]

    # --- refunds ---

    def insert_refund(self, refund: Refund) -> Refund:
        """Store a new refund and return it with its id."""
        with self._lock:
            cursor = self._conn.execute(
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
                    _doc(refund),
                ),
            )
            refund.id = int(cursor.lastrowid or 0)
        return refund

    def update_refund(self, refund: Refund) -> None:
        """Persist changes to a refund."""
        with self._lock:
            self._conn.execute(
                "UPDATE refunds SET status = ?, complete_at = ?, doc = ? WHERE id = ?",
                (refund.status, refund.complete_at, _doc(refund), refund.id),
            )

    def _refunds_where(self, where: str, params: tuple[Any, ...]) -> list[Refund]:
        rows = self._all(f"SELECT id, doc FROM refunds WHERE {where} ORDER BY id", params)  # noqa: S608
        return [Refund(id=int(row[0]), **json.loads(row[1])) for row in rows]

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

    # --- deliveries and attempts ---

    def insert_delivery(self, delivery: Delivery) -> Delivery:
        """Queue a notification for sending."""
        with self._lock:
            cursor = self._conn.execute(
                "INSERT INTO deliveries (mchid, status, next_at, doc, body) VALUES (?, ?, ?, ?, ?)",
                (
                    delivery.mchid,
                    delivery.status,
                    delivery.next_at,
                    _doc(delivery, exclude=("id", "body")),
                    delivery.body,
                ),
            )
            delivery.id = int(cursor.lastrowid or 0)
        return delivery

    def update_delivery(self, delivery: Delivery) -> None:
        """Persist a delivery's status, attempt count and next attempt time."""
        with self._lock:
            self._conn.execute(
                "UPDATE deliveries SET status = ?, next_at = ?, doc = ? WHERE id = ?",
                (
                    delivery.status,
                    delivery.next_at,
                    _doc(delivery, exclude=("id", "body")),
                    delivery.id,
                ),
            )

    def _deliveries(self, where: str, params: tuple[Any, ...]) -> list[Delivery]:
        rows = self._all(
            f"SELECT id, doc, body FROM deliveries WHERE {where} ORDER BY next_at, id",  # noqa: S608
            params,
        )
        return [Delivery(id=int(row[0]), body=bytes(row[2]), **json.loads(row[1])) for row in rows]

    def due_deliveries(self, now: float) -> list[Delivery]:
        """Pending deliveries whose next attempt is due, earliest first."""
        return self._deliveries("status = 'pending' AND next_at <= ?", (now,))

    def next_due_at(self) -> float | None:
        """When the earliest pending delivery or refund completion falls due."""
        row = self._one(
            "SELECT MIN(t) FROM (SELECT MIN(next_at) AS t FROM deliveries WHERE status = 'pending'"
            " UNION ALL SELECT MIN(complete_at) FROM refunds WHERE status = 'PROCESSING')",
            (),
        )
        return None if row is None or row[0] is None else float(row[0])

    def deliveries(self, mchid: str | None = None) -> list[Delivery]:
        """Every delivery (of one merchant), in creation order."""
        if mchid is None:
            found = self._deliveries("1 = 1", ())
        else:
            found = self._deliveries("mchid = ?", (mchid,))
        return sorted(found, key=lambda d: d.id)

    def delivery(self, delivery_id: int) -> Delivery | None:
        """One delivery by id."""
        found = self._deliveries("id = ?", (delivery_id,))
        return found[0] if found else None

    def insert_attempt(self, attempt: Attempt) -> Attempt:
        """Record one attempt."""
        with self._lock:
            cursor = self._conn.execute(
                "INSERT INTO attempts (delivery_id, doc) VALUES (?, ?)",
                (attempt.delivery_id, _doc(attempt)),
            )
            attempt.id = int(cursor.lastrowid or 0)
        return attempt

    def attempts_of(self, delivery_id: int) -> list[Attempt]:
        """The attempts made for one delivery, in order."""
        rows = self._all(
            "SELECT id, doc FROM attempts WHERE delivery_id = ? ORDER BY id", (delivery_id,)
        )
        return [Attempt(id=int(row[0]), **json.loads(row[1])) for row in rows]

    # --- chaos, faults, bills ---

    def save_chaos(self, scope: str, doc: dict[str, Any]) -> None:
        """Store chaos settings for a merchant id or ``*`` (global)."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO chaos (scope, doc) VALUES (?, ?)"
                " ON CONFLICT (scope) DO UPDATE SET doc = excluded.doc",
                (scope, json.dumps(doc)),
            )

    def load_chaos(self, scope: str) -> dict[str, Any] | None:
        """Chaos settings of a scope, or None."""
        row = self._one("SELECT doc FROM chaos WHERE scope = ?", (scope,))
        return None if row is None else dict(json.loads(row[0]))

    def delete_chaos(self, scope: str) -> None:
        """Turn chaos off for a scope."""
        with self._lock:
            self._conn.execute("DELETE FROM chaos WHERE scope = ?", (scope,))

    def add_fault(self, fault: Fault) -> Fault:
        """Arm a fault."""
        with self._lock:
            cursor = self._conn.execute(
                "INSERT INTO faults (mchid, path, method, mode, remaining) VALUES (?, ?, ?, ?, ?)",
                (fault.mchid, fault.path, fault.method, fault.mode, fault.remaining),
            )
            fault.id = int(cursor.lastrowid or 0)
        return fault

    def faults(self) -> list[Fault]:
        """Armed faults."""
        rows = self._all(
            "SELECT id, mchid, path, method, mode, remaining FROM faults WHERE remaining > 0"
            " ORDER BY id"
        )
        return [
            Fault(id=r[0], mchid=r[1], path=r[2], method=r[3], mode=r[4], remaining=r[5])
            for r in rows
        ]

    def take_fault(self, mchid: str, path: str, method: str) -> Fault | None:
        """Consume one use of the first fault matching this request, if any."""
        with self.transaction() as conn:
            for fault in self.faults():
                if fault.mchid and fault.mchid != mchid:
                    continue
                if fault.method and fault.method.upper() != method.upper():
                    continue
                if not path.startswith(fault.path):
                    continue
                conn.execute(
                    "UPDATE faults SET remaining = remaining - 1 WHERE id = ?", (fault.id,)
                )
                return fault
        return None

    def clear_faults(self) -> None:
        """Disarm every fault."""
        with self._lock:
            self._conn.execute("DELETE FROM faults")

    def save_bill(self, token: str, mchid: str, content: bytes, *, gzip: bool) -> None:
        """Store a bill file under its download token."""
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO bills (token, mchid, gzip, content) VALUES (?, ?, ?, ?)",
                (token, mchid, int(gzip), content),
            )

    def load_bill(self, token: str) -> tuple[str, bytes, bool] | None:
        """``(mchid, content, gzip)`` of a bill token, or None."""
        row = self._one("SELECT mchid, content, gzip FROM bills WHERE token = ?", (token,))
        return None if row is None else (str(row[0]), bytes(row[1]), bool(row[2]))
