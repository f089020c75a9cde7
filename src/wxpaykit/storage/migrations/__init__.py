"""Alembic environment of the wxpaykit schema, shipped inside the package.

Run it through :mod:`wxpaykit.storage.migrate` (``upgrade(url)``), which passes an open
connection; there is no ``alembic.ini``. Revisions: ``0001_ledger`` (ledger tables and the
outbox ``events`` table), ``0002_dispatch`` (delivery tracking, by the dispatcher), then
two changes to the write path: ``0003_fillfactor`` (room for HOT updates on PostgreSQL)
and ``0004_raw_requests_unlinked`` (no foreign key from raw requests to notifications).
"""

from __future__ import annotations
