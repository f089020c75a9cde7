"""The demo's gateway configuration: the simulator merchant's downloads laid out as files.

The TOML written here is an ordinary ``wxpaykit.toml``: key files under ``secrets/``,
the sample shop as an HTTP sink (``[[dispatch.sinks]]``) delivered by the gateway's
embedded worker, and an admin token for ``/admin``. ``wxpaykit serve -c`` runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wxpaykit.dispatch.webhooks import WebhookSecret
from wxpaykit.simulator.merchants import MerchantBundle

__all__ = ["DemoEndpoints", "DemoSecrets", "write_gateway_config"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoEndpoints:
    """Where each part of the demo listens."""

    database_url: str
    gateway_url: str
    simulator_url: str
    shop_webhook_url: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoSecrets:
    """Secrets generated for this run (written to files, never into the TOML text)."""

    api_token: str
    admin_token: str
    webhook_secret: WebhookSecret


def write_gateway_config(
    bundle: MerchantBundle, folder: Path, endpoints: DemoEndpoints, secrets: DemoSecrets
) -> Path:
    """Lay out the merchant's downloads and the run's secrets as files; write ``wxpaykit.toml``."""
    secrets_dir = folder / "secrets"
    secrets_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "apiv3.key": bundle.apiv3_key.encode(),
        "apiv2.key": bundle.apiv2_key.encode(),
        "apiclient_key.pem": bundle.apiclient_key_pem,
        "api_token": secrets.api_token.encode(),
        "admin_token": secrets.admin_token.encode(),
        "webhook_secret": secrets.webhook_secret.render().encode(),
        "pub_key.pem": bundle.public_key_pem,
    }
    for serial, pem in bundle.platform_certificates:
        files[f"wechatpay_{serial}.pem"] = pem
    for name, data in files.items():
        path = secrets_dir / name
        path.write_bytes(data)
        path.chmod(0o600)
    certificates = ", ".join(
        f'"secrets/wechatpay_{serial}.pem"' for serial, _ in bundle.platform_certificates
    )
    public_key = (
        f'platform_public_key_file = "secrets/pub_key.pem"\n'
        f'platform_public_key_id = "{bundle.public_key_id}"\n'
        if bundle.public_key_id
        else ""
    )
    config = folder / "wxpaykit.toml"
    config.write_text(
        f"""# Written by `wxpaykit demo`: a gateway for the simulator's merchant.
[gateway]
database_url = "{endpoints.database_url}"
public_url = "{endpoints.gateway_url}"
wechatpay_base_url = "{endpoints.simulator_url}"
api_token_file = "secrets/api_token"
admin_token_file = "secrets/admin_token"
embedded_worker = true
log_level = "warning"

[[merchants]]
mchid = "{bundle.mchid}"
appids = [{", ".join(f'"{a}"' for a in bundle.appids)}]
apiv3_key_file = "secrets/apiv3.key"
apiv2_key_file = "secrets/apiv2.key"
private_key_file = "secrets/apiclient_key.pem"
certificate_serial = "{bundle.merchant_serial_no}"
{public_key}platform_certificate_files = [{certificates}]

# The sample shop's webhook (Standard Webhooks signatures). An absolute secret path:
# `wxpaykit worker -c` resolves relative ones against its working directory.
[[dispatch.sinks]]
name = "shop"
type = "http"
url = "{endpoints.shop_webhook_url}"
secret_files = ["{secrets_dir / "webhook_secret"}"]
timeout_seconds = 5
concurrency = 16
# Short retries: the demo waits for every event, so a hiccup must not cost 15 s.
retry = {{ base_seconds = 0.2, cap_seconds = 2 }}
""",
        encoding="utf-8",
    )
    return config
