"""``wxpaykit db``: the command line over the migrations (SQLite, end to end)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from wxpaykit.cli.main import app
from wxpaykit.storage import migrate


def test_db_upgrade_then_current(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    runner = CliRunner()

    before = runner.invoke(app, ["db", "current", "--database-url", url])
    upgraded = runner.invoke(app, ["db", "upgrade", "--database-url", url])
    after = runner.invoke(app, ["db", "current", "--database-url", url])
    purged = runner.invoke(app, ["db", "purge-raw", "--database-url", url])

    assert before.exit_code == 1, before.output
    assert "not current" in before.output
    assert upgraded.exit_code == 0, upgraded.output
    (head,) = migrate.head_revisions()
    assert f"schema is at {head}" in upgraded.output
    assert after.exit_code == 0, after.output
    assert purged.exit_code == 0, purged.output
    assert "deleted 0 raw request(s)" in purged.output


def test_db_rejects_an_unknown_scheme() -> None:
    result = CliRunner().invoke(app, ["db", "upgrade", "--database-url", "oracle://x/y"])
    assert result.exit_code == 1
    assert "unsupported database scheme" in result.output
