"""Connecting the dispatcher to its database, and what that database can do.

The claim strategy depends on the server: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL,
MySQL 8 and MariaDB 10.6+; a conditional update on a lease everywhere else (SQLite,
older MariaDB). Both are correct; skip-locked only avoids contention.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from wxpaykit.errors import ConfigurationError

__all__ = ["DialectFeatures", "async_database_url", "create_dispatch_engine", "detect_features"]

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "mysql": "mysql+asyncmy",
    "mariadb": "mysql+asyncmy",
}


def async_database_url(url: str) -> str:
    """Map ``sqlite://``, ``postgresql://``, ``mysql://`` URLs to their async drivers."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if "+" in parsed.drivername:
        return parsed.render_as_string(hide_password=False)
    driver = _DRIVERS.get(backend)
    if driver is None:
        raise ConfigurationError(f"unsupported database URL scheme {backend!r}")
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def create_dispatch_engine(url: str, **engine_options: Any) -> AsyncEngine:
    """An async engine for the outbox tables, tuned per dialect.

    SQLite gets WAL journaling and a busy timeout, so several worker processes can
    share one file: writers queue on the database lock instead of failing.
    """
    async_url = async_database_url(url)
    if async_url.startswith("sqlite"):
        options: dict[str, Any] = {"connect_args": {"timeout": 30}}
        options.update(engine_options)
        engine = create_async_engine(async_url, **options)

        @event.listens_for(engine.sync_engine, "connect")
        def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    options = {"pool_pre_ping": True}
    options.update(engine_options)
    return create_async_engine(async_url, **options)


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
    version = dialect.server_version_info or ()
    if dialect.name == "postgresql":
        return DialectFeatures(name="postgresql", skip_locked=version >= (9, 5), read_committed=False)
    if dialect.name in ("mysql", "mariadb"):
        is_mariadb = bool(getattr(dialect, "is_mariadb", False))
        needed = (10, 6) if is_mariadb else (8, 0, 1)
        return DialectFeatures(
            name="mariadb" if is_mariadb else "mysql",
            skip_locked=tuple(version[:3]) >= needed,
            read_committed=True,
        )
    return DialectFeatures(name=dialect.name, skip_locked=False, read_committed=False)
