"""APIv2: XML endpoints, MD5/HMAC signatures checked against wechatpy, mutual TLS (§9)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from wechatpy.crypto import WeChatRefundCrypto
from wechatpy.pay import WeChatPay as WeChatPayV2
from wechatpy.pay.utils import calculate_signature, calculate_signature_hmac

from tests.simulator.conftest import NOTIFY_URL, Receiver
from wxpaykit.core.v2 import build_xml, decrypt_req_info, parse_xml
from wxpaykit.simulator import MerchantBundle
from wxpaykit.testing.simulator import (
    InProcessSimulator,
    ServedSimulator,
    build_v2_payment_notification,
    build_v2_refund_notification,
    new_merchant,
    serve_simulator,
)


def _signed_xml(
    bundle: MerchantBundle, params: dict[str, str], *, hmac_sha256: bool = False
) -> bytes:
    """Sign with wechatpy's own functions, an implementation independent of ours."""
    full = {
        "appid": bundle.appid,
        "mch_id": bundle.mchid,
        "nonce_str": "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
        **params,
    }
    if hmac_sha256:
        full["sign_type"] = "HMAC-SHA256"
        full["sign"] = calculate_signature_hmac(full, bundle.apiv2_key)
    else:
        full["sign"] = calculate_signature(full, bundle.apiv2_key)
    return build_xml(full)


def _unified(bundle: MerchantBundle, out_trade_no: str = "V2ORDER0001") -> dict[str, str]:
    return {
        "body": "APIv2 测试",
        "out_trade_no": out_trade_no,
        "total_fee": "88",
        "spbill_create_ip": "127.0.0.1",
        "notify_url": NOTIFY_URL,
        "trade_type": "NATIVE",
        "product_id": "P1",
    }


def _check_wechatpy_sign(reply: dict[str, str], key: str, *, hmac_sha256: bool = False) -> None:
    unsigned = {k: v for k, v in reply.items() if k != "sign"}
    expected = (
        calculate_signature_hmac(unsigned, key)
        if hmac_sha256
        else calculate_signature(unsigned, key)
    )
    assert reply["sign"] == expected


async def _pay_v2_order_and_notify(sim: InProcessSimulator, merchant: MerchantBundle) -> None:
    """Place an APIv2 Native order, pay it, and make the notification's first attempt."""
    response = await sim.http.post(
        "/pay/unifiedorder", content=_signed_xml(merchant, _unified(merchant))
    )
    sim.pay(code_url=parse_xml(response.content)["code_url"])
    await sim.run_due()


@pytest.mark.parametrize("hmac_sha256", [False, True])
async def test_unifiedorder_and_orderquery(
    sim: InProcessSimulator, merchant: MerchantBundle, hmac_sha256: bool
) -> None:
    response = await sim.http.post(
        "/pay/unifiedorder",
        content=_signed_xml(merchant, _unified(merchant), hmac_sha256=hmac_sha256),
    )
    reply = parse_xml(response.content)
    assert (reply["return_code"], reply["result_code"]) == ("SUCCESS", "SUCCESS")
    assert reply["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")
    _check_wechatpy_sign(reply, merchant.apiv2_key, hmac_sha256=hmac_sha256)
    sim.pay(code_url=reply["code_url"])
    query = parse_xml(
        (
            await sim.http.post(
                "/pay/orderquery", content=_signed_xml(merchant, {"out_trade_no": "V2ORDER0001"})
            )
        ).content
    )
    assert (query["trade_state"], query["total_fee"]) == ("SUCCESS", "88")
    _check_wechatpy_sign(query, merchant.apiv2_key)
    v3_view = await sim.request(
        merchant, "GET", f"/v3/pay/transactions/out-trade-no/V2ORDER0001?mchid={merchant.mchid}"
    )
    assert v3_view.json()["trade_state"] == "SUCCESS"


async def test_bad_sign_and_business_errors(
    sim: InProcessSimulator, merchant: MerchantBundle
) -> None:
    signed = _signed_xml(merchant, _unified(merchant))
    # Tamper with the amount only: a bare replace of "88" could also hit the random mch_id.
    xml = signed.replace(b"<total_fee><![CDATA[88]]>", b"<total_fee><![CDATA[99]]>")
    assert xml != signed
    reply = parse_xml((await sim.http.post("/pay/unifiedorder", content=xml)).content)
    assert (reply["return_code"], reply["return_msg"]) == ("FAIL", "签名错误")
    missing = parse_xml(
        (
            await sim.http.post(
                "/pay/orderquery", content=_signed_xml(merchant, {"out_trade_no": "NOPE000001"})
            )
        ).content
    )
    assert (missing["result_code"], missing["err_code"]) == ("FAIL", "ORDERNOTEXIST")
    await sim.http.post("/pay/unifiedorder", content=_signed_xml(merchant, _unified(merchant)))
    changed = {**_unified(merchant), "total_fee": "89"}
    reentry = parse_xml(
        (await sim.http.post("/pay/unifiedorder", content=_signed_xml(merchant, changed))).content
    )
    assert reentry["err_code"] == "OUT_TRADE_NO_USED"
    closed = parse_xml(
        (
            await sim.http.post(
                "/pay/closeorder", content=_signed_xml(merchant, {"out_trade_no": "V2ORDER0001"})
            )
        ).content
    )
    assert closed["result_code"] == "SUCCESS"
    plain_refund = parse_xml(
        (
            await sim.http.post(
                "/secapi/pay/refund",
                content=_signed_xml(
                    merchant,
                    {
                        "out_trade_no": "V2ORDER0001",
                        "out_refund_no": "R1",
                        "total_fee": "88",
                        "refund_fee": "1",
                    },
                ),
            )
        ).content
    )
    assert plain_refund["return_code"] == "FAIL"
    unsafe = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "x">]><xml><a>&e;</a></xml>'
    assert (
        parse_xml((await sim.http.post("/pay/orderquery", content=unsafe)).content)["return_code"]
        == "FAIL"
    )


async def test_v2_payment_notification_verifies_in_wechatpy(
    sim: InProcessSimulator, merchant: MerchantBundle, receiver: Receiver
) -> None:
    receiver.reply_body = b"<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>"
    receiver.default_status = 200
    await _pay_v2_order_and_notify(sim, merchant)
    [got] = receiver.received
    wechatpy = WeChatPayV2(appid=merchant.appid, api_key=merchant.apiv2_key, mch_id=merchant.mchid)
    result = wechatpy.parse_payment_result(got.body)
    assert (result["out_trade_no"], result["total_fee"]) == ("V2ORDER0001", 88)
    [delivery] = (await sim.http.get("/sim/notifications")).json()["notifications"]
    assert delivery["status"] == "delivered"


async def test_v2_notification_needs_success_xml_ack(
    sim: InProcessSimulator, merchant: MerchantBundle, receiver: Receiver
) -> None:
    receiver.default_status = 200
    receiver.reply_body = b"success"
    await _pay_v2_order_and_notify(sim, merchant)
    [delivery] = (await sim.http.get("/sim/notifications")).json()["notifications"]
    assert delivery["status"] == "pending"


def test_kit_v2_notifications_agree_with_wechatpy() -> None:
    merchant = new_merchant()
    xml = build_v2_payment_notification(merchant, out_trade_no="KIT_V2_0001", total=5)
    params = parse_xml(xml)
    _check_wechatpy_sign(params, merchant.apiv2_key)
    hmac_params = parse_xml(
        build_v2_payment_notification(
            merchant, out_trade_no="KIT_V2_0002", total=5, sign_type="HMAC-SHA256"
        )
    )
    _check_wechatpy_sign(hmac_params, merchant.apiv2_key, hmac_sha256=True)
    refund_xml = build_v2_refund_notification(
        merchant, out_trade_no="KIT_V2_0001", out_refund_no="R1", refund=5, total=5
    )
    outer = parse_xml(refund_xml)
    assert "sign" not in outer
    ours = decrypt_req_info(outer["req_info"], merchant.apiv2_key)
    theirs = WeChatRefundCrypto(merchant.apiv2_key).decrypt_message(
        refund_xml, merchant.appid, merchant.mchid
    )
    assert ours["refund_status"] == theirs["refund_status"] == "SUCCESS"
    assert ours["out_refund_no"] == theirs["out_refund_no"] == "R1"


@pytest.fixture(scope="module")
def served_tls() -> Iterator[ServedSimulator]:
    with serve_simulator(mutual_tls=True) as simulator:
        yield simulator


def test_mutual_tls_refund_with_wechatpy(served_tls: ServedSimulator, tmp_path: Path) -> None:
    bundle = served_tls.create_merchant()
    bundle.write(tmp_path)
    assert served_tls.tls_base_url.startswith("https://127.0.0.1:")
    client = WeChatPayV2(
        appid=bundle.appid,
        api_key=bundle.apiv2_key,
        mch_id=bundle.mchid,
        mch_cert=str(tmp_path / "apiclient_cert.pem"),
        mch_key=str(tmp_path / "apiclient_key.pem"),
    )
    client.API_BASE_URL = served_tls.tls_base_url + "/"
    client._http.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
    client._http.verify = str(tmp_path / "sim_ca.pem")
    with client._http:
        created = client.order.create(
            trade_type="NATIVE",
            body="mTLS",
            total_fee=10,
            notify_url=NOTIFY_URL,
            client_ip="127.0.0.1",
            out_trade_no="V2TLS00001",
            product_id="P1",
        )
        served_tls.pay(code_url=created["code_url"])
        refund = client.refund.apply(
            total_fee=10, refund_fee=4, out_refund_no="TLSR1", out_trade_no="V2TLS00001"
        )
        assert refund["refund_fee"] == "4"
        queried = client.refund.query(out_refund_no="TLSR1")
        assert queried["refund_status_0"] == "PROCESSING"


def test_mutual_tls_refuses_a_client_without_certificate(
    served_tls: ServedSimulator, tmp_path: Path
) -> None:
    bundle = served_tls.create_merchant()
    bundle.write(tmp_path)
    context = ssl.create_default_context(cafile=str(tmp_path / "sim_ca.pem"))
    with (
        httpx.Client(verify=context, trust_env=False) as client,
        pytest.raises(httpx.TransportError),
    ):
        client.post(served_tls.tls_base_url + "/secapi/pay/refund", content=b"<xml></xml>")
    foreign = new_merchant()  # self-signed, not issued by the simulator CA
    foreign.bundle().write(tmp_path / "foreign")
    context.load_cert_chain(
        str(tmp_path / "foreign" / "apiclient_cert.pem"),
        str(tmp_path / "foreign" / "apiclient_key.pem"),
    )
    with (
        httpx.Client(verify=context, trust_env=False) as client,
        pytest.raises(httpx.TransportError),
    ):
        client.post(served_tls.tls_base_url + "/secapi/pay/refund", content=b"<xml></xml>")
