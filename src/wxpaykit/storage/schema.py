"""SQLAlchemy Core tables shared by every dialect.

Times are stored as integer milliseconds since the epoch (``*_ms``): portable across
SQLite, PostgreSQL and MySQL without timezone surprises, and cheap to compare. Amounts
are integer fen (分), as WeChat Pay sends them.

The ledger's tables (the outbox ``events`` lives in :mod:`wxpaykit.storage.events`):

``orders``
    One row per merchant order, unique on ``(mchid, out_trade_no)``. ``state`` is a
    ``trade_state``; ``version`` increases on every change and guards payment
    transitions; ``refunded_total``/``refund_count`` guard partial refunds;
    ``held_refunds`` counts successful refunds seen before the payment succeeded.
``refunds``
    One row per refund, unique on ``(mchid, out_refund_no)``. ``applied`` is true once
    the amount is counted in the order's ``refunded_total``.
``notifications``
    One row per notification ever accepted, unique on ``(mchid, notification_id)``: the
    exactly-once guard. ``outcome`` is a :class:`~wxpaykit.storage.base.RecordOutcome`.
``raw_requests``
    Headers and body exactly as received (the APIv3 body is still AES-GCM ciphertext),
    one per notification (``notification_pk``), deleted after the retention period by
    :mod:`wxpaykit.storage.retention`.
``inbound_dead_letters``
    Verified notifications whose processing raised, kept to be re-driven.
``seen_nonces``
    ``Wechatpay-Nonce`` values inside the replay window (when Redis is not used).

Key columns compare byte for byte on MySQL/MariaDB too: migrations create every table
with ``utf8mb4_bin``, so ``ORDER1`` and ``order1`` are two orders, as on the platform.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql

__all__ = [
    "MYSQL_TABLE_OPTIONS",
    "BigIntegerKey",
    "inbound_dead_letters",
    "metadata",
    "notifications",
    "orders",
    "raw_requests",
    "refunds",
    "seen_nonces",
]

#: Explicit constraint names so Alembic migrations are identical on every dialect.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: An auto-incrementing 64-bit key; SQLite only auto-increments INTEGER PRIMARY KEY.
BigIntegerKey = BigInteger().with_variant(Integer(), "sqlite")

#: Binary collation on MySQL/MariaDB: keys are case-sensitive, as on the platform.
MYSQL_TABLE_OPTIONS: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}

#: Raw bodies up to 16 MiB on MySQL (a plain BLOB stops at 64 KiB).
RawBody = LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb")

orders = Table(
    "orders",
    metadata,
    Column("id", BigIntegerKey, primary_key=True, autoincrement=True),
    Column("mchid", String(32), nullable=False),
    Column("out_trade_no", String(64), nullable=False),
    Column("appid", String(64), nullable=True),
    Column("description", String(256), nullable=False),
    Column("total", BigInteger, nullable=False),
    Column("currency", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("transaction_id", String(64), nullable=True),
    Column("success_time", String(40), nullable=True),
    Column("expires_at_ms", BigInteger, nullable=True),
    Column("refunded_total", BigInteger, nullable=False),
    Column("refund_count", Integer, nullable=False),
    Column("held_refunds", Integer, nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    UniqueConstraint("mchid", "out_trade_no"),
    **MYSQL_TABLE_OPTIONS,
)

refunds = Table(
    "refunds",
    metadata,
    Column("id", BigIntegerKey, primary_key=True, autoincrement=True),
    Column("mchid", String(32), nullable=False),
    Column("out_refund_no", String(64), nullable=False),
    Column("out_trade_no", String(64), nullable=False),
    Column("refund_id", String(64), nullable=True),
    Column("transaction_id", String(64), nullable=True),
    Column("status", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),
    # True once ``amount`` is counted in the order's refunded_total.
    Column("applied", Boolean, nullable=False),
    Column("success_time", String(40), nullable=True),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    UniqueConstraint("mchid", "out_refund_no"),
    Index("ix_refunds_mchid_out_trade_no", "mchid", "out_trade_no"),
    **MYSQL_TABLE_OPTIONS,
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", BigIntegerKey, primary_key=True, autoincrement=True),
    Column("mchid", String(32), nullable=False),
    Column("notification_id", String(128), nullable=False),
    Column("api_version", String(4), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("out_trade_no", String(64), nullable=True),
    Column("out_refund_no", String(64), nullable=True),
    # Final once committed (written in the same transaction as the row itself).
    Column("outcome", String(16), nullable=True),
    # Re-deliveries of this notification absorbed after the first one.
    Column("duplicate_count", Integer, nullable=False),
    Column("received_at_ms", BigInteger, nullable=False),
    UniqueConstraint("mchid", "notification_id"),
    Index("ix_notifications_mchid_out_trade_no", "mchid", "out_trade_no"),
    **MYSQL_TABLE_OPTIONS,
)

raw_requests = Table(
    "raw_requests",
    metadata,
    Column("id", BigIntegerKey, primary_key=True, autoincrement=True),
    # notifications.id, without a foreign key (migration 0004): the row is written in
    # its notification's transaction, and notification rows are never deleted.
    Column("notification_pk", BigInteger, nullable=False, unique=True),
    Column("headers", Text, nullable=False),  # JSON object, names as received
    Column("body", RawBody, nullable=False),
    Column("received_at_ms", BigInteger, nullable=False),
    Index("ix_raw_requests_received_at_ms", "received_at_ms"),
    **MYSQL_TABLE_OPTIONS,
)

inbound_dead_letters = Table(
    "inbound_dead_letters",
    metadata,
    Column("id", BigIntegerKey, primary_key=True, autoincrement=True),
    Column("mchid", String(32), nullable=False),
    Column("notification_id", String(128), nullable=False),
    # pending | resolved
    Column("status", String(16), nullable=False),
    # JSON of the VerifiedNotification (without openid), see storage.codec.
    Column("payload", Text, nullable=False),
    Column("error", String(1000), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("outcome", String(16), nullable=True),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    Column("resolved_at_ms", BigInteger, nullable=True),
    UniqueConstraint("mchid", "notification_id"),
    Index("ix_inbound_dead_letters_status_id", "status", "id"),
    **MYSQL_TABLE_OPTIONS,
)

seen_nonces = Table(
    "seen_nonces",
    metadata,
    Column("mchid", String(32), primary_key=True),
    Column("nonce", String(64), primary_key=True),
    Column("expires_at_ms", BigInteger, nullable=False),
    Index("ix_seen_nonces_expires_at_ms", "expires_at_ms"),
    **MYSQL_TABLE_OPTIONS,
)
