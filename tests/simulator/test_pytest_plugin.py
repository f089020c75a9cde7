"""The pytest plugin: registered by entry point, light to import, fixtures usable."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import subprocess
import sys

import httpx

from wxpaykit.core.verification import verify_signature
from wxpaykit.simulator import MerchantBundle
from wxpaykit.testing.simulator import FakeClock, ServedSimulator, signed_headers


def test_plugin_is_registered_by_entry_point() -> None:
    plugins = {e.name: e.value for e in importlib.metadata.entry_points(group="pytest11")}
    assert plugins["wxpaykit"] == "wxpaykit.testing.pytest_plugin"


def test_plugin_import_loads_no_simulator() -> None:
    code = (
        "import sys, wxpaykit.testing.pytest_plugin;"
        "print(sorted(m for m in ('uvicorn', 'starlette', 'wxpaykit.simulator') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)  # noqa: S603
    assert out.stdout.strip() == "[]"


def test_fixtures_give_a_served_simulator_and_merchants(
    wxpaykit_simulator: ServedSimulator,
    wxpaykit_merchant: MerchantBundle,
    wxpaykit_public_key_merchant: MerchantBundle,
    wxpaykit_fake_clock: FakeClock,
) -> None:
    start = wxpaykit_fake_clock.now()
    assert wxpaykit_fake_clock.advance(5) == start + 5
    assert wxpaykit_simulator.tls_base_url.startswith("https://")
    for bundle in (wxpaykit_merchant, wxpaykit_public_key_merchant):
        body = json.dumps(
            {
                "appid": bundle.appid,
                "mchid": bundle.mchid,
                "description": "plugin",
                "out_trade_no": "PLUGIN_0001",
                "notify_url": "https://merchant.example/notify",
                "amount": {"total": 1},
            }
        ).encode()
        url = wxpaykit_simulator.base_url + "/v3/pay/transactions/native"
        response = httpx.post(
            url, content=body, headers=signed_headers(bundle, "POST", url, body), trust_env=False
        )
        assert response.status_code == 200
        verify_signature(
            response.headers, response.content, bundle.trusted_keys(), now=dt.datetime.now(dt.UTC)
        )
