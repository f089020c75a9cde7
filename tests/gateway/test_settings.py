"""Gateway settings: TOML, environment overrides, key files, secrets kept out of reprs."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from wxpaykit.cli.main import app
from wxpaykit.errors import ConfigurationError, KeyLoadError
from wxpaykit.gateway.settings import GatewaySettings, load_settings
from wxpaykit.testing.gateway_kit import MerchantKit


def _write_config(folder: Path, kit: MerchantKit, gateway: str = "") -> Path:
    path = folder / "wxpaykit.toml"
    path.write_text(f"[gateway]\n{gateway}\n{kit.toml_entry(folder / 'secrets')}")
    return path


def test_loads_merchant_keys_from_files(tmp_path: Path, kit: MerchantKit) -> None:
    path = _write_config(tmp_path, kit, 'database_url = "sqlite:///x.db"\nport = 9000')

    settings = load_settings(path)

    merchant = settings.merchant(kit.mchid)
    assert merchant is not None
    assert merchant.appids == {kit.appid}
    assert merchant.apiv2_key == kit.apiv2_key
    assert merchant.trusted_keys.knows(kit.public_key_id)
    assert merchant.trusted_keys.knows(kit.platform.serial_no)
    assert settings.port == 9000
    assert settings.merchant("1") is None


def test_environment_overrides_the_file(tmp_path: Path, kit: MerchantKit) -> None:
    path = _write_config(tmp_path, kit, "port = 9000")
    env = {
        "WXPAYKIT_CONFIG": str(path),
        "WXPAYKIT_PORT": "9100",
        "WXPAYKIT_REDIS_URL": "redis://127.0.0.1:6379/3",
        "WXPAYKIT_API_TOKEN": "token-from-env",
        f"WXPAYKIT_MERCHANT_{kit.mchid}_APIV3_KEY": "E" * 32,
    }

    settings = GatewaySettings.from_env(env)

    assert settings.port == 9100
    assert settings.redis_url == "redis://127.0.0.1:6379/3"
    assert settings.api_token == "token-from-env"
    merchant = settings.merchant(kit.mchid)
    assert merchant is not None
    assert merchant.apiv3_key.cipher is not None


def test_secrets_never_appear_in_repr(tmp_path: Path, kit: MerchantKit) -> None:
    path = _write_config(tmp_path, kit)
    settings = GatewaySettings.from_env(
        {"WXPAYKIT_CONFIG": str(path), "WXPAYKIT_API_TOKEN": "s3cr3t-token"}
    )

    text = repr(settings)

    assert kit.apiv3_key not in text
    assert kit.apiv2_key not in text
    assert "s3cr3t-token" not in text


def test_refuses_keys_written_inline(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[merchants]]\nmchid = "1900000001"\napiv3_key = "x"\n')

    with pytest.raises(ConfigurationError, match="never go in the TOML"):
        load_settings(path)


def test_names_the_missing_key_file(tmp_path: Path, kit: MerchantKit) -> None:
    path = _write_config(tmp_path, kit)
    (tmp_path / "secrets" / f"{kit.mchid}_pub_key.pem").unlink()

    with pytest.raises(KeyLoadError, match=r"pub_key\.pem"):
        load_settings(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[gateway]\nport = 1\nbogus = 2\n", "unknown"),
        ('[[merchants]]\nmchid = "abc"\n', "digits"),
        ('[[merchants]]\nmchid = "1900000001"\n', "APIv3 key"),
        ("[gateway]\nraw_retention_days = -1\n", "raw_retention_days must be 0"),
    ],
)
def test_refuses_unusable_configuration(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)

    with pytest.raises(ConfigurationError, match=message):
        load_settings(path)


def test_init_writes_a_starter_that_loads_once_its_secrets_exist(
    tmp_path: Path, kit: MerchantKit
) -> None:
    target = tmp_path / "wxpaykit.toml"
    result = CliRunner().invoke(app, ["init", str(target)])
    assert result.exit_code == 0, result.output
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    written = kit.write_files(tmp_path / "kit")
    (secrets / "apiv3.key").write_text(kit.apiv3_key)
    (secrets / "pub_key.pem").write_bytes(Path(written["platform_public_key_file"]).read_bytes())
    text = target.read_text().replace(
        "PUB_KEY_ID_0000000000000000000000000000000000", kit.public_key_id
    )
    target.write_text(text)

    settings = load_settings(target)

    assert settings.merchant("1900000001") is not None
    assert CliRunner().invoke(app, ["init", str(target)]).exit_code == 1
