"""Durable storage: one schema for SQLite, PostgreSQL and MySQL/MariaDB.

Every idempotency guarantee rests on unique constraints and conditional updates in the
database; Redis, where configured, only accelerates.
"""

from __future__ import annotations
