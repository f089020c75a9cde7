"""SQLite URLs the ledger refuses or takes."""

from __future__ import annotations

from pathlib import Path

import pytest

from wxpaykit.storage import dialects
from wxpaykit.storage.ledger import SqlLedger


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///:memory:",
        "sqlite+aiosqlite:///:memory:",
        "sqlite://",
        "sqlite:///file:ledger?mode=memory&uri=true",
    ],
)
def test_an_in_memory_sqlite_ledger_is_refused_by_name(url: str) -> None:
    with pytest.raises(ValueError, match="in-memory SQLite database cannot hold the ledger"):
        SqlLedger.from_url(url)


def test_a_sqlite_file_ledger_is_still_accepted(tmp_path: Path) -> None:
    engine = dialects.create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    assert engine.url.database == str(tmp_path / "ledger.db")
