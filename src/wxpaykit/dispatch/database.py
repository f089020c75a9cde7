"""What the dispatcher needs to know about its database.

Engines come from :func:`wxpaykit.storage.dialects.create_engine` (shared with the
ledger when the worker runs inside ``serve``). The claim strategy depends on the
server: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, MySQL 8.0.1+ and MariaDB 10.6+; a
conditional update on a lease everywhere else (SQLite, older MariaDB). Both are
correct; skip-locked only avoids contention.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from wxpaykit.storage.dialects import READ_ONLY

__all__ = [
    "DialectFeatures",
    "detect_features",
    "one_of",
    "one_of_parameter",
    "read_only",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class DialectFeatures:
    """What the connected server supports."""

    name: str
    skip_locked: bool
    #: MySQL/MariaDB: claim and fan out under READ COMMITTED to avoid gap locks.
    read_committed: bool


def detect_features(connection: AsyncConnection) -> DialectFeatures:
    """Inspect the dialect and server version of a live connection."""
    dialect = connection.dialect
    version = tuple(dialect.server_version_info or ())
    if dialect.name == "postgresql":
        return DialectFeatures(
            name="postgresql", skip_locked=version >= (9, 5), read_committed=False
        )
    if dialect.name in ("mysql", "mariadb"):
        is_mariadb = bool(getattr(dialect, "is_mariadb", False))
        needed = (10, 6) if is_mariadb else (8, 0, 1)
        return DialectFeatures(
            name="mariadb" if is_mariadb else "mysql",
            skip_locked=version[:3] >= needed,
            read_committed=True,
        )
    return DialectFeatures(name=dialect.name, skip_locked=False, read_committed=False)


@contextlib.asynccontextmanager
async def read_only(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for reads that need no transaction around them.

    On PostgreSQL it runs in autocommit mode: each statement is its own snapshot, as
    under READ COMMITTED anyway, without a ``BEGIN`` and a ``ROLLBACK`` round trip
    around it. On SQLite a deferred ``BEGIN``, not the write lock.
    """
    async with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
        else:
            connection = await connection.execution_options(**{READ_ONLY: True})
        yield connection


def one_of(column: ColumnElement[Any], values: Sequence[Any], dialect: str) -> ColumnElement[bool]:
    """``column IN (values)``; on PostgreSQL ``column = ANY(:values)``.

    One array parameter instead of one per value: the statement text does not change
    with the number of values, so asyncpg prepares it once instead of once per length
    (each preparation is a round trip), and SQLAlchemy does not render a cast per value.
    """
    if dialect == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(list(values))


def one_of_parameter(column: ColumnElement[Any], name: str, dialect: str) -> ColumnElement[bool]:
    """Like :func:`one_of`, for a statement built once: the values come in parameter ``name``."""
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=ARRAY(column.type)))
    return column.in_(bindparam(name, expanding=True))
