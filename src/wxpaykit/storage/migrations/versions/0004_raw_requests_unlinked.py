"""Drop the foreign key from ``raw_requests`` to ``notifications``.

Revision ID: 0004_raw_requests_unlinked
Revises: 0003_fillfactor

The key guarded nothing the ledger can get wrong: a raw request is inserted in the
same statement (PostgreSQL) or transaction (every dialect) as its notification row,
from the id that insert returned, and notification rows are never deleted (they are
the exactly-once guard), so its ``ON DELETE CASCADE`` never fired. It cost every
recorded notification a referential check: on PostgreSQL a trigger that looks the
parent row up and locks it, measured at about 8 % of the database's CPU per recorded
notification (groups of 6, three paired runs: 112/100, 109/104 and 113/101 µs).
``uq_raw_requests_notification_pk`` stays: still one raw request per notification.

SQLite cannot drop a constraint in place; Alembic's batch mode copies the table.
"""

from __future__ import annotations

from alembic import op

revision = "0004_raw_requests_unlinked"
down_revision: str | None = "0003_fillfactor"
branch_labels: str | None = None
depends_on: str | None = None

_FOREIGN_KEY = "fk_raw_requests_notification_pk_notifications"


def upgrade() -> None:
    with op.batch_alter_table("raw_requests") as batch:
        batch.drop_constraint(_FOREIGN_KEY, type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("raw_requests") as batch:
        batch.create_foreign_key(
            _FOREIGN_KEY, "notifications", ["notification_pk"], ["id"], ondelete="CASCADE"
        )
