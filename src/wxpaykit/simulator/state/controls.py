"""Persisted misbehaviour switches: chaos settings and armed faults.

Both are set through the ``/sim`` control API (or the CLI) and survive a restart, so
a scenario set up before restarting the simulator keeps running after it.
"""

from __future__ import annotations

import json
from typing import Any

from wxpaykit.simulator.state.database import StateDatabase
from wxpaykit.simulator.state.records import Fault

__all__ = ["CONTROLS_SCHEMA", "ControlStore"]

CONTROLS_SCHEMA = """
CREATE TABLE IF NOT EXISTS chaos (scope TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS faults (
    id INTEGER PRIMARY KEY,
    mchid TEXT NOT NULL,
    path TEXT NOT NULL,
    method TEXT NOT NULL,
    mode TEXT NOT NULL,
    remaining INTEGER NOT NULL
);
"""


class ControlStore(StateDatabase):
    """The ``chaos`` and ``faults`` tables."""

    def save_chaos(self, scope: str, doc: dict[str, Any]) -> None:
        """Store chaos settings for a merchant id or ``*`` (global)."""
        self._upsert("chaos", "scope", "doc", scope, json.dumps(doc))

    def load_chaos(self, scope: str) -> dict[str, Any] | None:
        """Chaos settings of a scope, or None."""
        row = self._one("SELECT doc FROM chaos WHERE scope = ?", (scope,))
        return None if row is None else dict(json.loads(row[0]))

    def delete_chaos(self, scope: str) -> None:
        """Turn chaos off for a scope."""
        self._execute("DELETE FROM chaos WHERE scope = ?", (scope,))

    def add_fault(self, fault: Fault) -> Fault:
        """Arm a fault."""
        fault.id = self._execute(
            "INSERT INTO faults (mchid, path, method, mode, remaining) VALUES (?, ?, ?, ?, ?)",
            (fault.mchid, fault.path, fault.method, fault.mode, fault.remaining),
        )
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
        self._execute("DELETE FROM faults")
