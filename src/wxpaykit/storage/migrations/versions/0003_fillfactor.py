"""PostgreSQL: leave room in the pages of ``orders``, ``refunds`` and ``notifications``
for updates.

Revision ID: 0003_fillfactor
Revises: 0002_dispatch

The three tables are written once and then updated a few times: an order when it is
paid (and refunded), a refund when it succeeds or fails, a notification when copies of
it add to ``duplicate_count``. None of those updates touches an indexed column, so
PostgreSQL can keep the new row version on the same page without new index entries
(a HOT update), but only when the page has room; at the default fillfactor of 100 a
page is filled to the brim on insert, and every such update then also inserts into
each of the table's indexes. At 80 the first updates of a row stay on its page.

Only pages written after this revision are filled to 80 % (``VACUUM FULL`` rewrites
old ones, and is not needed for correctness). SQLite and MySQL/MariaDB update rows in
place and have no such setting: nothing to do there.
"""

from __future__ import annotations

from alembic import op

revision = "0003_fillfactor"
down_revision: str | None = "0002_dispatch"
branch_labels: str | None = None
depends_on: str | None = None

_TABLES = ("orders", "refunds", "notifications")
FILLFACTOR = 80


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _TABLES:
        op.execute(f"ALTER TABLE {table} SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _TABLES:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
