"""Bring a database to the latest schema, and tell whether it is there (for ``/readyz``).

::

    import asyncio
    from wxpaykit.storage import migrate

    asyncio.run(migrate.upgrade("sqlite:///wxpaykit.db"))
    assert asyncio.run(migrate.is_current("sqlite:///wxpaykit.db"))

Several processes may start at once (three gateways, a dispatcher): the upgrade holds a
database-wide lock (PostgreSQL advisory lock, MySQL ``GET_LOCK``, SQLite's write lock),
so one migrates and the others then find nothing to do.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from wxpaykit.errors import StorageError
from wxpaykit.storage import dialects

__all__ = [
    "HEAD",
    "connection_is_current",
    "current_revisions",
    "head_revisions",
    "is_current",
    "upgrade",
]

HEAD = "head"
_LOCK_NAME = "wxpaykit_migrate"
# Any fixed 64-bit number identifies our advisory lock on PostgreSQL.
_PG_LOCK_KEY = 0x77787061796B6974  # "wxpaykit"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", "wxpaykit.storage:migrations")
    return config


@functools.cache
def head_revisions() -> frozenset[str]:
    """The latest revision(s) shipped with this version of wxpaykit."""
    return frozenset(ScriptDirectory.from_config(_config()).get_heads())


async def upgrade(url: str, *, schema: str | None = None, revision: str = HEAD) -> None:
    """Apply every migration up to ``revision`` (default: the latest). Idempotent."""
    engine = dialects.create_engine(url, pool_size=1, max_overflow=0, schema=schema)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_upgrade, revision)
            await connection.commit()
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        raise StorageError(f"migration failed: {dialects.describe(exc)}") from exc
    finally:
        await engine.dispose()


def _upgrade(connection: Connection, revision: str) -> None:
    with _migration_lock(connection):
        config = _config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


@contextlib.contextmanager
def _migration_lock(connection: Connection) -> Iterator[None]:
    name = connection.dialect.name
    if name == "postgresql":
        # Released at COMMIT, after the (transactional) DDL.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        yield
    elif name in ("mysql", "mariadb"):
        acquired = connection.scalar(text("SELECT GET_LOCK(:name, 120)"), {"name": _LOCK_NAME})
        if acquired != 1:
            raise StorageError("another process holds the migration lock for over 120 s")
        try:
            yield
        finally:
            connection.scalar(text("SELECT RELEASE_LOCK(:name)"), {"name": _LOCK_NAME})
    else:
        yield  # SQLite: the migration transaction itself holds the write lock


def connection_is_current(connection: Connection) -> bool:
    """True when the connected database is at the latest revision (for ``run_sync``)."""
    return frozenset(current_revisions(connection)) == head_revisions()


def current_revisions(connection: Connection) -> tuple[str, ...]:
    """Revisions recorded in ``alembic_version`` (empty for a fresh database)."""
    return tuple(MigrationContext.configure(connection).get_current_heads())


async def is_current(url: str, *, schema: str | None = None) -> bool:
    """True when the database answers and its schema is at the latest revision.

    An unreachable database is "not current" rather than an error: this is what a
    readiness probe needs.
    """
    engine = dialects.create_engine(url, pool_size=1, max_overflow=0, schema=schema)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(connection_is_current)
    except (SQLAlchemyError, OSError, TimeoutError):
        return False
    finally:
        await engine.dispose()
