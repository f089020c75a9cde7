"""Ledger tables and the outbox ``events`` table.

Revision ID: 0001_ledger
Revises: (none)

Frozen DDL: this file never imports the live table definitions, so later edits to
``schema.py`` need a new revision. Every table is ``utf8mb4_bin`` on MySQL/MariaDB so
keys compare byte for byte (``ORDER1`` and ``order1`` are different orders).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001_ledger"
down_revision: str | None = None
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
        "orders",
        sa.Column("id", _key(), primary_key=True, autoincrement=True),
        sa.Column("mchid", sa.String(32), nullable=False),
        sa.Column("out_trade_no", sa.String(64), nullable=False),
        sa.Column("appid", sa.String(64), nullable=True),
        sa.Column("description", sa.String(256), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("transaction_id", sa.String(64), nullable=True),
        sa.Column("success_time", sa.String(40), nullable=True),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("refunded_total", sa.BigInteger(), nullable=False),
        sa.Column("refund_count", sa.Integer(), nullable=False),
        sa.Column("held_refunds", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        _pk("id", name="pk_orders"),
        sa.UniqueConstraint("mchid", "out_trade_no", name="uq_orders_mchid_out_trade_no"),
        **_MYSQL,
    )
    op.create_table(
        "refunds",
        sa.Column("id", _key(), primary_key=True, autoincrement=True),
        sa.Column("mchid", sa.String(32), nullable=False),
        sa.Column("out_refund_no", sa.String(64), nullable=False),
        sa.Column("out_trade_no", sa.String(64), nullable=False),
        sa.Column("refund_id", sa.String(64), nullable=True),
        sa.Column("transaction_id", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.Column("success_time", sa.String(40), nullable=True),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        _pk("id", name="pk_refunds"),
        sa.UniqueConstraint("mchid", "out_refund_no", name="uq_refunds_mchid_out_refund_no"),
        **_MYSQL,
    )
    op.create_index("ix_refunds_mchid_out_trade_no", "refunds", ["mchid", "out_trade_no"])
    op.create_table(
        "notifications",
        sa.Column("id", _key(), primary_key=True, autoincrement=True),
        sa.Column("mchid", sa.String(32), nullable=False),
        sa.Column("notification_id", sa.String(128), nullable=False),
        sa.Column("api_version", sa.String(4), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("out_trade_no", sa.String(64), nullable=True),
        sa.Column("out_refund_no", sa.String(64), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("duplicate_count", sa.Integer(), nullable=False),
        sa.Column("received_at_ms", sa.BigInteger(), nullable=False),
        _pk("id", name="pk_notifications"),
        sa.UniqueConstraint(
            "mchid", "notification_id", name="uq_notifications_mchid_notification_id"
        ),
        **_MYSQL,
    )
    op.create_index(
        "ix_notifications_mchid_out_trade_no", "notifications", ["mchid", "out_trade_no"]
    )
    op.create_table(
        "raw_requests",
        sa.Column("id", _key(), primary_key=True, autoincrement=True),
        sa.Column("notification_pk", sa.BigInteger(), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column(
            "body",
            sa.LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb"),
            nullable=False,
        ),
        sa.Column("received_at_ms", sa.BigInteger(), nullable=False),
        _pk("id", name="pk_raw_requests"),
        sa.ForeignKeyConstraint(
            ["notification_pk"],
            ["notifications.id"],
            name="fk_raw_requests_notification_pk_notifications",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("notification_pk", name="uq_raw_requests_notification_pk"),
        **_MYSQL,
    )
    op.create_index("ix_raw_requests_received_at_ms", "raw_requests", ["received_at_ms"])
    op.create_table(
        "inbound_dead_letters",
        sa.Column("id", _key(), primary_key=True, autoincrement=True),
        sa.Column("mchid", sa.String(32), nullable=False),
        sa.Column("notification_id", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("error", sa.String(1000), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("resolved_at_ms", sa.BigInteger(), nullable=True),
        _pk("id", name="pk_inbound_dead_letters"),
        sa.UniqueConstraint(
            "mchid", "notification_id", name="uq_inbound_dead_letters_mchid_notification_id"
        ),
        **_MYSQL,
    )
    op.create_index("ix_inbound_dead_letters_status_id", "inbound_dead_letters", ["status", "id"])
    op.create_table(
        "seen_nonces",
        sa.Column("mchid", sa.String(32), nullable=False),
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        _pk("mchid", "nonce", name="pk_seen_nonces"),
        **_MYSQL,
    )
    op.create_index("ix_seen_nonces_expires_at_ms", "seen_nonces", ["expires_at_ms"])
    # The outbox, as defined in wxpaykit.storage.events when this revision was written.
    op.create_table(
        "events",
        sa.Column("seq", _key(), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(40), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("mchid", sa.String(32), nullable=False),
        sa.Column("aggregate_key", sa.String(160), nullable=False),
        sa.Column("dedup_key", sa.String(190), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        _pk("seq", name="pk_events"),
        sa.UniqueConstraint("event_id", name="uq_events_event_id"),
        sa.UniqueConstraint("dedup_key", name="uq_events_dedup_key"),
        **_MYSQL,
    )
    op.create_index("ix_events_aggregate_key_seq", "events", ["aggregate_key", "seq"])


def downgrade() -> None:
    op.drop_table("events")
    op.drop_table("seen_nonces")
    op.drop_table("inbound_dead_letters")
    op.drop_table("raw_requests")
    op.drop_table("notifications")
    op.drop_table("refunds")
    op.drop_table("orders")
