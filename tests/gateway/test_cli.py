"""``wxpaykit replay`` re-drives inbound dead letters; ``serve`` refuses a bad config or database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wxpaykit.cli.main import app
from wxpaykit.storage.base import PaymentFacts, VerifiedNotification
from wxpaykit.storage.ledger import SqlLedger
from wxpaykit.testing.gateway_kit import MerchantKit

from .databases import migrate_all


async def _prepare(url: str, kit: MerchantKit) -> None:
    await migrate_all(url)
    async with SqlLedger.from_url(url) as ledger:
        await ledger.create_order(kit.order("dead-1"))
        notification = VerifiedNotification(
            mchid=kit.mchid,
            notification_id="EV-dead-1",
            api_version="v3",
            event_type="TRANSACTION.SUCCESS",
            kind="payment",
            payment=PaymentFacts(
                out_trade_no="dead-1",
                transaction_id="4200000000000000000000000001",
                trade_state="SUCCESS",
                total=100,
                currency="CNY",
            ),
        )
        await ledger.record_failure(notification, error="RuntimeError: test")


async def _state(url: str, kit: MerchantKit) -> str | None:
    async with SqlLedger.from_url(url) as ledger:
        order = await ledger.get_order(kit.mchid, "dead-1")
        return order.state if order else None


def test_replay_redrives_dead_letters(
    tmp_path: Path, kit: MerchantKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WXPAYKIT_CONFIG", "restored-after-the-test")  # --config sets it
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    asyncio.run(_prepare(url, kit))
    config = tmp_path / "wxpaykit.toml"
    config.write_text(f'[gateway]\ndatabase_url = "{url}"\n\n' + kit.toml_entry(tmp_path / "s"))

    first = CliRunner().invoke(app, ["replay", "--config", str(config)])
    second = CliRunner().invoke(app, ["replay", "--config", str(config)])

    assert first.exit_code == 0, first.output
    assert "EV-dead-1: applied" in first.output
    assert "re-driven: 1, still failing: 0" in first.output
    assert "re-driven: 0, still failing: 0" in second.output
    assert asyncio.run(_state(url, kit)) == "SUCCESS"


def test_serve_refuses_an_unusable_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WXPAYKIT_CONFIG", "restored-after-the-test")
    config = tmp_path / "bad.toml"
    config.write_text('[[merchants]]\nmchid = "1900000001"\n')

    result = CliRunner().invoke(app, ["serve", "--config", str(config)])

    assert result.exit_code == 2
    assert "APIv3 key" in result.output


@pytest.mark.parametrize(
    ("database_url", "message"),
    [
        ("sqlite:///:memory:", "an in-memory SQLite database cannot hold the ledger"),
        ("oracle://db/ledger", "unsupported database scheme"),
    ],
)
def test_serve_refuses_a_database_it_cannot_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str, message: str
) -> None:
    monkeypatch.setenv("WXPAYKIT_CONFIG", "restored-after-the-test")
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[gateway]\ndatabase_url = "{database_url}"\n\n'
        + MerchantKit().toml_entry(tmp_path / "secrets")
    )

    result = CliRunner().invoke(app, ["serve", "--config", str(config)])

    assert result.exit_code == 2, result.output
    assert f"database_url: {message}" in result.output
    assert not list(tmp_path.glob("*.db"))  # refused before migrating anything
