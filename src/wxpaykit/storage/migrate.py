"""Bring a database to the latest schema, and tell whether it is there (for ``/readyz``).

::

    import asyncio
    from wxpaykit.storage import migrate

    asyncio.run(migrate.upgrade("sqlite:///wxpaykit.db"))
    assert asyncio.run(migrate.is_current("sqlite:///wxpaykit.db"))

To roll back a release, :func:`downgrade` undoes migrations down to a named revision
(``"base"``: every table dropped, data with them).

Several processes may start at once (three gateways, a dispatcher): the upgrade holds a
database-wide lock (PostgreSQL advisory lock, MySQL ``GET_LOCK``, SQLite's write lock),
so one migrates and the others then find nothing to do.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from wxpaykit.errors import StorageError
from wxpaykit.storage import dialects

__all__ = [
    "BASE",
    "HEAD",
    "applied_revisions",
    "connection_is_current",
    "current_revisions",
    "downgrade",
    "head_revisions",
    "is_current",
    "revisions",
    "upgrade",
]

HEAD = "head"
#: The revision before the first: downgrading to it drops every wxpaykit table.
BASE = "base"
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


@functools.cache
def revisions() -> tuple[str, ...]:
    """Every shipped revision, oldest first."""
    script = ScriptDirectory.from_config(_config())
    return tuple(reversed([rev.revision for rev in script.walk_revisions()]))


async def upgrade(url: str, *, schema: str | None = None, revision: str = HEAD) -> None:
    """Apply every migration up to ``revision`` (default: the latest). Idempotent."""
    await _migrate(url, schema, command.upgrade, revision)


async def downgrade(url: str, *, revision: str, schema: str | None = None) -> None:
    """Undo every migration after ``revision`` (a revision id, or :data:`BASE`).

    Meant for rolling a release back: run it with the *newer* wxpaykit (the older one
    does not know how to undo what it never shipped), then install the older one.
    Undoing a revision drops what it added (``0002_dispatch``: the delivery tables, and
    the delivery history in them; ``0001_ledger``: everything). Already at or below
    ``revision``: nothing happens. An unknown revision is a :class:`ValueError`.
    """
    if revision != BASE and revision not in revisions():
        known = ", ".join((BASE, *revisions()))
        raise ValueError(f"unknown revision {revision[:64]!r}; known: {known}")
    await _migrate(url, schema, _downgrade_to, revision)


def _downgrade_to(config: Config, revision: str) -> None:
    connection: Connection = config.attributes["connection"]
    current = current_revisions(connection)
    if not current:
        return  # nothing was ever applied
    order = (BASE, *revisions())
    if all(rev in order and order.index(rev) <= order.index(revision) for rev in current):
        return  # Alembic would refuse a "downgrade" that moves up; there is nothing to undo
    # A revision this release does not ship (a newer one migrated the database) is left
    # to Alembic, whose "can't locate revision" becomes a StorageError below.
    command.downgrade(config, revision)


async def _migrate(
    url: str, schema: str | None, step: Callable[[Config, str], None], revision: str
) -> None:
    engine = dialects.create_engine(url, pool_size=1, max_overflow=0, schema=schema)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_locked, step, revision)
            await connection.commit()
    except (SQLAlchemyError, OSError, TimeoutError, CommandError) as exc:
        raise StorageError(f"migration failed: {dialects.describe(exc)}") from exc
    finally:
        await engine.dispose()


def _run_locked(connection: Connection, step: Callable[[Config, str], None], revision: str) -> None:
    with _migration_lock(connection):
        config = _config()
        config.attributes["connection"] = connection
        step(config, revision)


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


async def applied_revisions(url: str, *, schema: str | None = None) -> tuple[str, ...]:
    """The revisions the database records (empty when none is applied)."""
    engine = dialects.create_engine(url, pool_size=1, max_overflow=0, schema=schema)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(current_revisions)
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        raise StorageError(f"reading the schema revision failed: {dialects.describe(exc)}") from exc
    finally:
        await engine.dispose()


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
