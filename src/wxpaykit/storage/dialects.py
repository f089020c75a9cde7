"""The few things that differ between SQLite, PostgreSQL and MySQL/MariaDB.

* :func:`create_engine` - one async engine per URL with the settings exactly-once needs:
  SQLite in WAL mode with ``synchronous=FULL``, a busy timeout and ``BEGIN IMMEDIATE``
  for writes; MySQL/MariaDB at READ COMMITTED (PostgreSQL's default), so a re-read
  after a failed conditional update sees the latest committed row.
* :func:`insert_or_ignore` - insert a row unless a unique key already holds it.
* :func:`insert_many_or_ignore` - the same for many rows, in one statement where it can.
* :func:`insert_many` - many rows in one statement (per 1,000) where it can.
* :func:`for_claim` - ``FOR UPDATE SKIP LOCKED`` where the database has it.
* :func:`is_unique_violation`, :func:`is_retryable`, :func:`describe` - reading driver
  errors without leaking statement parameters.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, Table, event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

__all__ = [
    "READ_ONLY",
    "async_url",
    "create_engine",
    "describe",
    "for_claim",
    "insert_many",
    "insert_many_or_ignore",
    "insert_or_ignore",
    "is_retryable",
    "is_unique_violation",
]

#: Execution option: on SQLite, begin with a deferred ``BEGIN`` (readers do not queue
#: behind writers); every other transaction takes the write lock up front.
READ_ONLY = "wxpaykit_read_only"

_ASYNC_SCHEMES = {
    "sqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "mysql": "mysql+asyncmy",
    "mariadb": "mysql+asyncmy",
}

# PostgreSQL SQLSTATEs worth re-running the whole transaction for.
_PG_RETRYABLE = {"40001", "40P01", "55P03"}  # serialization, deadlock, lock not available
# MySQL/MariaDB: deadlock found, lock wait timeout.
_MYSQL_RETRYABLE = {1213, 1205}
_MYSQL_DUPLICATE = {1062, 1586}
# SQLite primary result codes: BUSY, LOCKED; extended codes: UNIQUE, PRIMARYKEY.
_SQLITE_RETRYABLE = {5, 6}
_SQLITE_DUPLICATE = {2067, 1555}

_StmtT = TypeVar("_StmtT", bound=Select[Any])


def async_url(url: str) -> str:
    """Map ``sqlite://``, ``postgresql://``, ``mysql://`` (and ``mariadb://``) to async drivers.

    A URL that already names a driver (``postgresql+asyncpg://``) is returned unchanged.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("database URL must look like scheme://..., e.g. sqlite:///wxpaykit.db")
    if "+" in scheme:
        return url
    try:
        return f"{_ASYNC_SCHEMES[scheme]}://{rest}"
    except KeyError:
        raise ValueError(
            f"unsupported database scheme {scheme!r}: use sqlite, postgresql or mysql"
        ) from None


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 10,
    schema: str | None = None,
    sqlite_busy_timeout_ms: int = 10_000,
    echo: bool = False,
) -> AsyncEngine:
    """An async engine configured for the ledger (see the module docstring).

    ``schema`` selects a PostgreSQL schema through ``search_path`` (tables, Alembic's
    version table and all queries go there); other dialects ignore it.
    """
    check_url(url)
    url = async_url(url)
    options: dict[str, Any] = {
        "echo": echo,
        # Statement parameters carry payloads; they never belong in errors or logs.
        "hide_parameters": True,
        "pool_size": pool_size,
        "max_overflow": max_overflow,
    }
    if url.startswith("sqlite"):
        engine = create_async_engine(url, **options)
        _configure_sqlite(engine, busy_timeout_ms=sqlite_busy_timeout_ms)
        return engine
    if url.startswith("mysql"):
        options["isolation_level"] = "READ COMMITTED"
        options["pool_recycle"] = 1800  # below the server's wait_timeout
    elif url.startswith("postgresql") and schema is not None:
        options["connect_args"] = {"server_settings": {"search_path": schema}}
    return create_async_engine(url, **options)


def check_url(url: str) -> None:
    """Raise :class:`ValueError`, with a readable message, for a URL the ledger cannot use."""
    url = async_url(url)
    if url.startswith("sqlite"):
        _refuse_memory_database(url)


def _refuse_memory_database(url: str) -> None:
    # SQLAlchemy gives an in-memory database one connection shared by every task (or
    # each connection a database of its own): the ledger's concurrent transactions
    # cannot work on it, so say so instead of SQLAlchemy's complaint about pool sizes.
    parsed = make_url(url)
    if parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory":
        raise ValueError(
            "an in-memory SQLite database cannot hold the ledger: use a file,"
            " e.g. sqlite:///wxpaykit.db (a temporary directory in tests)"
        )


def _configure_sqlite(engine: AsyncEngine, *, busy_timeout_ms: int) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module; we emit BEGIN ourselves.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: each commit fsyncs the WAL, so an acknowledged notification survives a
        # power cut. NORMAL in WAL mode is crash-safe for the process but may lose the
        # last commits on power loss, i.e. notifications already answered 204.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # IMMEDIATE takes the write lock at BEGIN: a transaction that read first and then
        # writes could otherwise fail with SQLITE_BUSY_SNAPSHOT instead of waiting.
        if connection.get_execution_options().get(READ_ONLY):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


async def insert_or_ignore(
    connection: AsyncConnection, table: Table, values: Mapping[str, Any]
) -> tuple[Any, ...] | None:
    """Insert ``values`` unless a unique key already holds them.

    Returns the inserted row's primary key, or None when the key was taken. PostgreSQL
    and SQLite use ``ON CONFLICT DO NOTHING`` (it waits for a concurrent inserter of the
    same key, then skips). MySQL/MariaDB use a plain INSERT and translate the duplicate-key
    error, because ``INSERT IGNORE`` would also turn truncation and NULL errors into
    warnings and store altered data; InnoDB rolls back only the failed statement, so the
    caller's transaction goes on.
    """
    name = connection.dialect.name
    if name in ("postgresql", "sqlite"):
        result = await connection.execute(_insert(table, name, ignore=True), dict(values))
        if result.rowcount != 1:
            return None
    else:
        try:
            result = await connection.execute(_insert(table, name, ignore=False), dict(values))
        except IntegrityError as exc:
            if is_unique_violation(exc, name):
                return None
            raise
    key = result.inserted_primary_key
    return tuple(key) if key is not None else ()


async def insert_many_or_ignore(
    connection: AsyncConnection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    returning: Sequence[str],
) -> list[tuple[Any, ...]]:
    """Insert ``rows``, skipping those a unique key already holds (even within ``rows``).

    Returns the ``returning`` columns of the rows actually inserted. PostgreSQL and
    SQLite: ``INSERT … ON CONFLICT DO NOTHING RETURNING`` with many rows per statement
    (a round trip per batch of rows instead of per row); rows are inserted in the
    given order, so autoincrement keys follow it. MySQL/MariaDB have no ``RETURNING`` on
    INSERT (MySQL) or no conflict clause (both): one :func:`insert_or_ignore` per row,
    the returned values taken from the row and its new primary key.
    """
    name = connection.dialect.name
    inserted: list[tuple[Any, ...]] = []
    if name in ("postgresql", "sqlite"):
        statement = _insert(table, name, ignore=True, returning=tuple(returning))
        if len(rows) == 1:
            result = await connection.execute(statement, dict(rows[0]))
        else:
            # SQLAlchemy sends this as multi-row INSERTs ("insertmanyvalues"), each
            # compiled once and cached, the RETURNING rows gathered from all of them.
            result = await connection.execute(statement, [dict(row) for row in rows])
        inserted.extend(tuple(row) for row in result)
        return inserted
    key_names = [column.name for column in table.primary_key.columns]
    for row in rows:
        key = await insert_or_ignore(connection, table, row)
        if key is None:
            continue
        values = {**row, **dict(zip(key_names, key, strict=False))}
        inserted.append(tuple(values[column] for column in returning))
    return inserted


@functools.cache
def _insert(
    table: Table, dialect_name: str, *, ignore: bool, returning: tuple[str, ...] = ()
) -> Any:
    """An INSERT built once per (table, dialect, form): building one per call costs more
    CPU (clause coercion, cache key) than the database spends executing it. ``ignore``
    adds ``ON CONFLICT DO NOTHING`` (PostgreSQL and SQLite only)."""
    statement: Any
    if ignore:
        dialect_insert = pg_insert if dialect_name == "postgresql" else sqlite_insert
        statement = dialect_insert(table).on_conflict_do_nothing()
    else:
        statement = table.insert()
    if returning:
        statement = statement.returning(*(table.c[column] for column in returning))
    return statement


async def insert_many(
    connection: AsyncConnection, table: Table, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Insert ``rows`` with as few statements as the dialect allows.

    On PostgreSQL and SQLite the INSERT asks for the primary keys back: SQLAlchemy
    then sends multi-row INSERTs ("insertmanyvalues"). Without RETURNING, asyncpg
    runs one INSERT per row on the server (pipelined, but each one parsed, bound and
    executed: about 60 µs of server time per row).
    """
    if not rows:
        return
    name = connection.dialect.name
    keys = tuple(column.name for column in table.primary_key.columns)
    statement = _insert(
        table, name, ignore=False, returning=keys if name in ("postgresql", "sqlite") else ()
    )
    await connection.execute(statement, [dict(row) for row in rows])


def for_claim(statement: _StmtT, dialect_name: str) -> _StmtT:
    """Lock the selected rows for the caller, skipping rows another worker holds.

    SQLite has no row locks: its writers are serialised by ``BEGIN IMMEDIATE``, so the
    plain statement is already exclusive.
    """
    if dialect_name in ("postgresql", "mysql", "mariadb"):
        return statement.with_for_update(skip_locked=True)
    return statement


def _mysql_errno(orig: BaseException | None) -> int | None:
    args = getattr(orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def is_unique_violation(exc: DBAPIError, dialect_name: str) -> bool:
    """True when the driver reports a unique/primary key conflict."""
    orig = exc.orig
    if dialect_name == "postgresql":
        return getattr(orig, "sqlstate", None) == "23505"
    if dialect_name in ("mysql", "mariadb"):
        return _mysql_errno(orig) in _MYSQL_DUPLICATE
    return getattr(orig, "sqlite_errorcode", None) in _SQLITE_DUPLICATE


def is_retryable(exc: DBAPIError, dialect_name: str) -> bool:
    """True for failures where re-running the whole transaction is right.

    Deadlocks, serialization failures, lock timeouts and lost connections: nothing was
    committed (or, if a connection died during COMMIT, the re-run finds the notification
    already recorded and answers DUPLICATE - idempotency makes the retry safe).
    """
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    if dialect_name == "postgresql":
        return getattr(orig, "sqlstate", None) in _PG_RETRYABLE
    if dialect_name in ("mysql", "mariadb"):
        return _mysql_errno(orig) in _MYSQL_RETRYABLE
    code = getattr(orig, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _SQLITE_RETRYABLE


def describe(exc: BaseException) -> str:
    """A short, parameter-free description of a driver error for StorageError messages."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else ""
    return f"{type(orig).__name__}: {text[:200]}" if text else type(orig).__name__
