"""SQLAlchemy Core tables shared by every dialect.

Times are stored as integer milliseconds since the epoch (``*_ms``): portable across
SQLite, PostgreSQL and MySQL without timezone surprises, and cheap to compare.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, MetaData

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
