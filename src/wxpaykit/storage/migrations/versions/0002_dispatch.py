"""Dispatch tables: fan-out queue, deliveries per sink, attempts, circuit breakers.

Revision ID: 0002_dispatch
Revises: 0001_ledger

Frozen DDL, as defined in ``wxpaykit.storage.events`` when this revision was written.
Events recorded before this revision are queued for fan-out, so they are delivered
once a worker runs.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002_dispatch"
down_revision: str | None = "0001_ledger"
branch_labels: str | None = None
depends_on: str | None = None

_MYSQL: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def _pk(*columns: str, name: str) -> sa.PrimaryKeyConstraint:
    # MySQL/MariaDB name every primary key PRIMARY and warn about any other name.
    mysql_like = op.get_bind().dialect.name in ("mysql", "mariadb")
    return sa.PrimaryKeyConstraint(*columns, name=None if mysql_like else name)


def _key() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "event_fanout",
        sa.Column("event_seq", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("aggregate_key", sa.String(160), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        _pk("event_seq", name="pk_event_fanout"),
        **_MYSQL,
    )
    op.create_index(
        "ix_event_fanout_aggregate_key_event_seq", "event_fanout", ["aggregate_key", "event_seq"]
    )
    op.create_table(
        "event_deliveries",
        sa.Column("id", _key(), primary_key=True, autoincrement=True),
        sa.Column("event_seq", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.String(40), nullable=False),
        sa.Column("sink", sa.String(64), nullable=False),
        sa.Column("aggregate_key", sa.String(160), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("window_started_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("locked_by", sa.String(64), nullable=True),
        sa.Column("locked_until_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("replays", sa.Integer(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("delivered_at_ms", sa.BigInteger(), nullable=True),
        _pk("id", name="pk_event_deliveries"),
        sa.UniqueConstraint("event_id", "sink", name="uq_event_deliveries_event_id_sink"),
        **_MYSQL,
    )
    op.create_index(
        "ix_event_deliveries_sink_status_next_attempt_at_ms",
        "event_deliveries",
        ["sink", "status", "next_attempt_at_ms"],
    )
    op.create_index(
        "ix_event_deliveries_aggregate_key_sink_status_event_seq",
        "event_deliveries",
        ["aggregate_key", "sink", "status", "event_seq"],
    )
    op.create_table(
        "event_delivery_attempts",
        sa.Column("id", _key(), primary_key=True, autoincrement=True),
        sa.Column("delivery_id", sa.BigInteger(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(64), nullable=False),
        sa.Column("started_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(500), nullable=True),
        _pk("id", name="pk_event_delivery_attempts"),
        **_MYSQL,
    )
    op.create_index(
        "ix_event_delivery_attempts_delivery_id", "event_delivery_attempts", ["delivery_id"]
    )
    op.create_table(
        "sink_breakers",
        sa.Column("sink", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("trips", sa.Integer(), nullable=False),
        sa.Column("open_until_ms", sa.BigInteger(), nullable=True),
        sa.Column("probe_owner", sa.String(64), nullable=True),
        sa.Column("probe_until_ms", sa.BigInteger(), nullable=True),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        _pk("sink", name="pk_sink_breakers"),
        **_MYSQL,
    )
    # Events recorded before the dispatcher existed are delivered too.
    op.execute(
        "INSERT INTO event_fanout (event_seq, aggregate_key, created_at_ms) "
        "SELECT seq, aggregate_key, created_at_ms FROM events"
    )


def downgrade() -> None:
    op.drop_table("sink_breakers")
    op.drop_table("event_delivery_attempts")
    op.drop_table("event_deliveries")
    op.drop_table("event_fanout")
