"""Alembic environment of the wxpaykit schema, shipped inside the package.

Run it through :mod:`wxpaykit.storage.migrate` (``upgrade(url)``), which passes an open
connection; there is no ``alembic.ini``. Revisions: ``0001_ledger`` (ledger tables and the
outbox ``events`` table), then ``0002_dispatch`` (delivery tracking, by the dispatcher).
"""

from __future__ import annotations
