"""A driver failure is a StorageError and leaves nothing committed (real failures only)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from tests.storage.builders import order, payment
from tests.storage.conftest import BACKENDS, Target, prepare
from wxpaykit.errors import StorageError
from wxpaykit.storage.ledger import SqlLedger
from wxpaykit.storage.schema import notifications, raw_requests


@pytest.mark.parametrize("fresh_target", BACKENDS, indirect=True)
async def test_failure_mid_transaction_rolls_everything_back(fresh_target: Target) -> None:
    await prepare(fresh_target)
    async with SqlLedger.from_url(fresh_target.url, schema=fresh_target.schema) as ledger:
        await ledger.create_order(order("1900000109", "T1"))
        # The outbox disappears: the notification row, raw request and order update
        # written before append_events must all be rolled back.
        async with ledger.engine.begin() as connection:
            await connection.execute(text("DROP TABLE events"))

        with pytest.raises(StorageError, match="record_notification failed") as raised:
            await ledger.record_notification(payment("1900000109", "T1"))

        assert raised.value.__cause__ is not None
        assert "parameters" not in str(raised.value)
        stored = await ledger.get_order("1900000109", "T1")
        assert stored is not None
        assert (stored.state, stored.transaction_id) == ("NOTPAY", None)
        async with ledger.engine.connect() as connection:
            assert await connection.scalar(select(func.count()).select_from(notifications)) == 0
            assert await connection.scalar(select(func.count()).select_from(raw_requests)) == 0


async def test_unreachable_postgresql_is_a_storage_error() -> None:
    # Port 1 on loopback refuses connections: a real driver failure, no mock.
    async with SqlLedger.from_url("postgresql+asyncpg://postgres@127.0.0.1:1/test") as ledger:
        with pytest.raises(StorageError, match="record_notification failed"):
            await ledger.record_notification(payment("1900000109", "T1"))
        assert not await ledger.is_ready()


async def test_corrupt_sqlite_file_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    path.write_bytes(b"this is not an SQLite database" * 100)
    async with SqlLedger.from_url(f"sqlite+aiosqlite:///{path}") as ledger:
        with pytest.raises(StorageError, match="claim_nonce failed"):
            await ledger.claim_nonce("1900000109", "nonce", expires_at_ms=1)
