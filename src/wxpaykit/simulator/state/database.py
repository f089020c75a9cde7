"""The connection every store shares: one SQLite database behind a lock.

The store is synchronous stdlib ``sqlite3``: every call takes microseconds, and the
simulator may be driven from a test thread while uvicorn serves it from another, so
one re-entrant lock serialises all access (``check_same_thread=False``).

Rows keep their searchable keys in columns and everything else in a JSON ``doc``
(:func:`record_doc`, :func:`load_record`), so adding a field to a record needs no
migration.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["StateDatabase", "load_record", "record_doc"]

RecordT = TypeVar("RecordT")


def record_doc(record: Any, *, exclude: tuple[str, ...] = ("id",)) -> str:
    """The JSON ``doc`` column of a dataclass record (``exclude``: fields kept in columns)."""
    data = dataclasses.asdict(record)
    for key in exclude:
        data.pop(key, None)
    return json.dumps(data, ensure_ascii=False, sort_keys=True)


def load_record(kind: Callable[..., RecordT], row_id: Any, doc: str, **columns: Any) -> RecordT:
    """Rebuild a record from its row id, ``doc`` and the fields stored only in columns."""
    return kind(id=int(row_id), **json.loads(doc), **columns)


class StateDatabase:
    """An SQLite connection and the few statement shapes the stores are built from."""

    def __init__(self, path: str | Path = ":memory:", *, schema: str = "") -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        if self.path != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
        if schema:
            self._conn.executescript(schema)

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

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """Run one statement; returns the row id an INSERT created (else 0)."""
        with self._lock:
            cursor = self._conn.execute(sql, params)
            return int(cursor.lastrowid or 0)

    def _upsert(self, table: str, key_column: str, value_column: str, key: str, value: str) -> None:
        """Insert or replace the value of a one-key table (names are fixed identifiers)."""
        self._execute(
            f"INSERT INTO {table} ({key_column}, {value_column}) VALUES (?, ?)"  # noqa: S608 - fixed identifiers
            f" ON CONFLICT ({key_column}) DO UPDATE SET {value_column} = excluded.{value_column}",
            (key, value),
        )

    def _one(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        with self._lock:
            row: tuple[Any, ...] | None = self._conn.execute(sql, params).fetchone()
            return row

    def _all(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._conn.execute(sql, params).fetchall())
