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


def test_db_downgrade_asks_first_then_rolls_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade", "--database-url", url]).exit_code == 0
    first, *_between, head = migrate.revisions()

    declined = runner.invoke(app, ["db", "downgrade", first, "--database-url", url], input="n\n")
    still = runner.invoke(app, ["db", "current", "--database-url", url])
    rolled = runner.invoke(app, ["db", "downgrade", first, "--database-url", url, "--yes"])
    behind = runner.invoke(app, ["db", "current", "--database-url", url])
    removed = runner.invoke(app, ["db", "downgrade", "base", "--database-url", url], input="y\n")

    assert declined.exit_code == 1, declined.output
    assert "nothing changed" in declined.output
    assert still.exit_code == 0, still.output  # the refusal left the schema at the head
    assert rolled.exit_code == 0, rolled.output
    assert f"schema is at {first}" in rolled.output
    assert behind.exit_code == 1
    assert removed.exit_code == 0, removed.output
    assert "no wxpaykit migration is applied" in removed.output
    assert head in declined.output  # the question names what would be undone


def test_db_downgrade_names_the_known_revisions_for_an_unknown_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    runner = CliRunner()
    unknown = runner.invoke(app, ["db", "downgrade", "0009_future", "--database-url", url])
    latest = runner.invoke(app, ["db", "downgrade", migrate.revisions()[-1], "--database-url", url])

    assert unknown.exit_code == 2
    assert "unknown revision '0009_future'" in unknown.output
    assert "0001_ledger" in unknown.output
    assert latest.exit_code == 0, latest.output
    assert "nothing to undo" in latest.output
    assert not (tmp_path / "ledger.db").exists()  # neither touched the database
