"""Independent implementations accept what the simulator signs and encrypts.

``wechatpayv3`` (a community SDK with its own crypto) talks to the simulator over a real
socket: it downloads and decrypts the platform certificates, verifies every response,
and verifies + decrypts notifications. ``wechatpy`` recomputes APIv2 signatures.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from wechatpayv3 import WeChatPay, WeChatPayType

from tests.simulator.conftest import NOTIFY_URL, Receiver, fake_clock_config, native_order
from wxpaykit.simulator import MerchantBundle
from wxpaykit.testing.simulator import (
    FakeClock,
    ServedSimulator,
    build_notification,
    new_merchant,
    payment_resource,
    running_simulator,
    serve_simulator,
)


@pytest.fixture(scope="module")
def served() -> Iterator[ServedSimulator]:
    with serve_simulator(mutual_tls=False) as simulator:
        yield simulator


def _wechatpayv3(bundle: MerchantBundle, base_url: str, cert_dir: Path | None = None) -> Any:
    """A wechatpayv3 client pointed at the simulator (its gateway is a plain attribute)."""
    options: dict[str, Any] = {}
    if bundle.public_key_id:
        options = {
            "public_key": bundle.public_key_pem.decode(),
            "public_key_id": bundle.public_key_id,
        }
    else:
        # Seed its certificate directory so the constructor does not call the real platform.
        assert cert_dir is not None
        for serial, pem in bundle.platform_certificates:
            (cert_dir / f"{serial}.pem").write_bytes(pem)
        options = {"cert_dir": str(cert_dir)}
    client = WeChatPay(
        wechatpay_type=WeChatPayType.NATIVE,
        mchid=bundle.mchid,
        private_key=bundle.apiclient_key_pem.decode(),
        cert_serial_no=bundle.merchant_serial_no,
        appid=bundle.appid,
        apiv3_key=bundle.apiv3_key,
        notify_url=NOTIFY_URL,
        **options,
    )
    client._core._gate_way = base_url
    return client


def test_wechatpayv3_downloads_and_decrypts_certificates(
    served: ServedSimulator, tmp_path: Path
) -> None:
    bundle = served.create_merchant("certificate")
    client = _wechatpayv3(bundle, served.base_url, tmp_path)
    with served.client() as http:
        rotated = http.post(f"/sim/merchants/{bundle.mchid}/rotate-certificate").json()["serial_no"]
    client._core._update_certificates()
    serials = {f"{c.serial_number:X}" for c in client._core._certificates}
    assert serials == {bundle.platform_certificates[0][0], rotated}


def test_wechatpayv3_verifies_every_response(served: ServedSimulator, tmp_path: Path) -> None:
    bundle = served.create_merchant("certificate")
    client = _wechatpayv3(bundle, served.base_url, tmp_path)
    # Each call raises inside wechatpayv3 if the response signature does not verify.
    code, message = client.pay(
        description="互通测试", out_trade_no="INTEROP_0001", amount={"total": 1}
    )
    assert code == 200, message
    code_url = json.loads(message)["code_url"]
    code, message = client.query(out_trade_no="INTEROP_0001")
    assert (code, json.loads(message)["trade_state"]) == (200, "NOTPAY")
    served.pay(code_url=code_url)
    code, message = client.query(
        transaction_id=json.loads(client.query(out_trade_no="INTEROP_0001")[1])["transaction_id"]
    )
    assert json.loads(message)["trade_state"] == "SUCCESS"
    code, message = client.refund(
        out_refund_no="INTEROP_R1",
        amount={"refund": 1, "total": 1, "currency": "CNY"},
        out_trade_no="INTEROP_0001",
    )
    assert (code, json.loads(message)["status"]) == (200, "PROCESSING")
    code, _ = client.query_refund(out_refund_no="INTEROP_R1")
    assert code == 200
    client.pay(description="关单测试", out_trade_no="INTEROP_0002", amount={"total": 1})
    code, message = client.close(out_trade_no="INTEROP_0002")  # 204: signs ts\nnonce\n\n
    assert code == 204


def test_wechatpayv3_public_key_mode(served: ServedSimulator) -> None:
    bundle = served.create_merchant("public_key")
    client = _wechatpayv3(bundle, served.base_url)
    code, message = client.pay(
        description="公钥模式", out_trade_no="INTEROP_PK01", amount={"total": 1}
    )
    assert code == 200, message


@pytest.mark.parametrize("mode", ["certificate", "public_key", "migration"])
async def test_wechatpayv3_accepts_delivered_notifications(mode: str, tmp_path: Path) -> None:
    receiver = Receiver()
    clock = FakeClock()
    async with running_simulator(fake_clock_config(clock, receiver)) as sim:
        bundle = sim.create_merchant(mode)
        await sim.http.patch(f"/sim/merchants/{bundle.mchid}", json={"public_key_fraction": 1})
        prepay = await sim.request(
            bundle, "POST", "/v3/pay/transactions/native", json_body=native_order(bundle)
        )
        sim.pay(code_url=prepay.json()["code_url"])
        await sim.request(
            bundle,
            "POST",
            "/v3/refund/domestic/refunds",
            json_body={
                "out_trade_no": "ORDER_000001",
                "out_refund_no": "R1",
                "amount": {"refund": 100, "total": 100, "currency": "CNY"},
            },
        )
        clock.advance(10)
        await sim.run_due()
        await sim.run_due()
    if mode == "migration":
        bundle = MerchantBundle.from_json({**bundle.to_json(), "platform_certificates": []})
    client = _wechatpayv3(bundle, "http://unused.invalid", tmp_path)
    events = []
    for got in receiver.received:
        result = client.callback(got.headers, got.body)
        assert result is not None, "wechatpayv3 refused the notification"
        events.append((result["event_type"], result["resource"]["out_trade_no"]))
    assert events == [("TRANSACTION.SUCCESS", "ORDER_000001"), ("REFUND.SUCCESS", "ORDER_000001")]


def test_wechatpayv3_accepts_kit_built_notifications(tmp_path: Path) -> None:
    merchant = new_merchant("certificate")
    bundle = merchant.bundle()
    headers, body = build_notification(
        merchant,
        "TRANSACTION.SUCCESS",
        payment_resource(merchant, out_trade_no="KIT_0001", total=88),
    )
    client = _wechatpayv3(bundle, "http://unused.invalid", tmp_path)
    result = client.callback(headers, body)
    assert result["resource"]["amount"]["total"] == 88
    probe_headers, probe_body = build_notification(
        merchant,
        "TRANSACTION.SUCCESS",
        payment_resource(merchant, out_trade_no="KIT_0002", total=1),
        probe=True,
    )
    assert client.callback(probe_headers, probe_body) is None
