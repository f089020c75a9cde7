"""Persisted documents kept under a key: simulator-wide values, merchants, bill files.

Each is written whole and read back whole: the CA and id counters (``meta``), a
merchant's keys and settings (``merchants``, see
:meth:`~wxpaykit.simulator.merchants.Merchant.to_doc`) and the bill files handed out
by download token (``bills``).
"""

from __future__ import annotations

import json
from typing import Any

from wxpaykit.simulator.state.database import StateDatabase

__all__ = ["DOCUMENTS_SCHEMA", "DocumentStore"]

DOCUMENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS merchants (mchid TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bills (
    token TEXT PRIMARY KEY,
    mchid TEXT NOT NULL,
    gzip INTEGER NOT NULL,
    content BLOB NOT NULL
);
"""


class DocumentStore(StateDatabase):
    """The ``meta``, ``merchants`` and ``bills`` tables."""

    def get_meta(self, key: str) -> str | None:
        """A simulator-wide value (the TLS CA, counters)."""
        row = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Store a simulator-wide value."""
        self._upsert("meta", "key", "value", key, value)

    def next_sequence(self, name: str) -> int:
        """A persistent counter (1, 2, 3, ...), used to mint unique ids."""
        with self.transaction():
            current = int(self.get_meta(f"seq:{name}") or "0") + 1
            self.set_meta(f"seq:{name}", str(current))
        return current

    def save_merchant(self, mchid: str, doc: dict[str, Any]) -> None:
        """Insert or replace a merchant document."""
        self._upsert("merchants", "mchid", "doc", mchid, json.dumps(doc))

    def load_merchant(self, mchid: str) -> dict[str, Any] | None:
        """A merchant document, or None."""
        row = self._one("SELECT doc FROM merchants WHERE mchid = ?", (mchid,))
        return None if row is None else dict(json.loads(row[0]))

    def merchant_ids(self) -> list[str]:
        """Every merchant id, in creation order."""
        return [str(row[0]) for row in self._all("SELECT mchid FROM merchants ORDER BY rowid")]

    def save_bill(self, token: str, mchid: str, content: bytes, *, gzip: bool) -> None:
        """Store a bill file under its download token."""
        self._execute(
            "INSERT OR REPLACE INTO bills (token, mchid, gzip, content) VALUES (?, ?, ?, ?)",
            (token, mchid, int(gzip), content),
        )

    def load_bill(self, token: str) -> tuple[str, bytes, bool] | None:
        """``(mchid, content, gzip)`` of a bill token, or None."""
        row = self._one("SELECT mchid, content, gzip FROM bills WHERE token = ?", (token,))
        return None if row is None else (str(row[0]), bytes(row[1]), bool(row[2]))
