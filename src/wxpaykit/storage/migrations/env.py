"""Alembic runtime: migrate the connection handed over by :mod:`wxpaykit.storage.migrate`."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError(
        "run wxpaykit migrations with wxpaykit.storage.migrate.upgrade(url) "
        "or `wxpaykit db upgrade`, which provide the connection"
    )

context.configure(
    connection=connection,
    target_metadata=None,
    # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
