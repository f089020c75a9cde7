"""APIv3 endpoints: shapes, signatures, errors and idempotency (protocol reference §7, §11)."""

from __future__ import annotations

import base64
import datetime as dt
import json

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509 import load_pem_x509_certificate

from tests.simulator.conftest import NOTIFY_URL, native_order
from wxpaykit.core.certificates import decrypt_certificates
from wxpaykit.core.verification import verify_signature
from wxpaykit.simulator import MerchantBundle
from wxpaykit.testing.simulator import FakeClock, InProcessSimulator, signed_headers


def _now(clock: FakeClock) -> dt.datetime:
    return dt.datetime.fromtimestamp(clock.now(), dt.UTC)


def _verify_raw(response: httpx.Response, bundle: MerchantBundle) -> None:
    """Known-answer check with raw ``cryptography``: ts\\nnonce\\nbody\\n under the platform key."""
    serial = response.headers["Wechatpay-Serial"]
    pem = dict(bundle.platform_certificates)[serial]
    key = load_pem_x509_certificate(pem).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    message = (
        response.headers["Wechatpay-Timestamp"].encode()
        + b"\n"
        + response.headers["Wechatpay-Nonce"].encode()
        + b"\n"
        + response.content
        + b"\n"
    )
    key.verify(
        base64.b64decode(response.headers["Wechatpay-Signature"]),
        message,
        padding.PKCS1v15(),
        hashes.SHA256(),
    )


async def test_native_prepay_is_signed_over_exact_bytes(
    sim: InProcessSimulator, merchant: MerchantBundle, fake_clock: FakeClock
) -> None:
    response = await sim.request(
        merchant, "POST", "/v3/pay/transactions/native", json_body=native_order(merchant)
    )
    assert response.status_code == 200
    assert response.json()["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert response.headers["Wechatpay-Signature-Type"] == "WECHATPAY2-SHA256-RSA2048"
    assert response.headers["Request-ID"].endswith("-0")
    assert response.headers["Wechatpay-Timestamp"] == str(int(fake_clock.now()))
    verify_signature(
        response.headers, response.content, merchant.trusted_keys(), now=_now(fake_clock)
    )
    _verify_raw(response, merchant)


async def test_prepay_shapes_for_every_trade_type(
    sim: InProcessSimulator, merchant: MerchantBundle
) -> None:
    jsapi = {**native_order(merchant, "ORDER_JSAPI1"), "payer": {"openid": "o-user"}}
    app = native_order(merchant, "ORDER_APP001")
    h5 = {
        **native_order(merchant, "ORDER_H50001"),
        "scene_info": {"payer_client_ip": "127.0.0.1", "h5_info": {"type": "Wap"}},
    }
    assert (
        "prepay_id"
        in (
            await sim.request(merchant, "POST", "/v3/pay/transactions/jsapi", json_body=jsapi)
        ).json()
    )
    assert (
        (await sim.request(merchant, "POST", "/v3/pay/transactions/app", json_body=app))
        .json()["prepay_id"]
        .startswith("wx")
    )
    h5_url = (await sim.request(merchant, "POST", "/v3/pay/transactions/h5", json_body=h5)).json()[
        "h5_url"
    ]
    assert "/sim/cashier?prepay_id=wx" in h5_url
    page = await sim.http.get(h5_url)
    assert page.status_code == 200
    assert "立即支付" in page.text


async def test_jsapi_without_openid_is_param_error(
    sim: InProcessSimulator, merchant: MerchantBundle
) -> None:
    response = await sim.request(
        merchant, "POST", "/v3/pay/transactions/jsapi", json_body=native_order(merchant)
    )
    assert response.status_code == 400
    assert response.json()["code"] == "PARAM_ERROR"
    assert response.json()["detail"]["field"] == "/payer/openid"
    assert "Wechatpay-Signature" not in response.headers


async def test_same_out_trade_no_same_params_returns_same_prepay(
    sim: InProcessSimulator, merchant: MerchantBundle
) -> None:
    body = {**native_order(merchant), "payer": {"openid": "o-user"}}
    first = await sim.request(merchant, "POST", "/v3/pay/transactions/jsapi", json_body=body)
    reordered = dict(reversed(list(body.items())))
    second = await sim.request(merchant, "POST", "/v3/pay/transactions/jsapi", json_body=reordered)
    assert first.json() == second.json()
    changed = {**body, "amount": {"total": 101, "currency": "CNY"}}
    third = await sim.request(merchant, "POST", "/v3/pay/transactions/jsapi", json_body=changed)
    assert third.status_code == 400
    assert third.json() == {
        "code": "INVALID_REQUEST",
        "message": "请求重入时，参数与首次请求时不一致",
    }


async def test_zero_amount_and_foreign_appid_are_refused(
    sim: InProcessSimulator, merchant: MerchantBundle
) -> None:
    zero = native_order(merchant, total=0)
    response = await sim.request(merchant, "POST", "/v3/pay/transactions/native", json_body=zero)
    assert response.status_code == 400
    assert response.json()["detail"]["field"] == "/amount/total"
    foreign = {**native_order(merchant), "appid": "wx0000000000000000"}
    response = await sim.request(merchant, "POST", "/v3/pay/transactions/native", json_body=foreign)
    assert response.json()["code"] == "APPID_MCHID_NOT_MATCH"


async def test_notify_url_rules(sim: InProcessSimulator, merchant: MerchantBundle) -> None:
    for url in ("http://merchant.example/notify", "https://merchant.example/notify?x=1", "notify"):
        body = {**native_order(merchant), "notify_url": url}
        response = await sim.request(
            merchant, "POST", "/v3/pay/transactions/native", json_body=body
        )
        assert response.status_code == 400, url
        assert response.json()["detail"]["field"] == "/notify_url"
    local = {**native_order(merchant), "notify_url": "http://127.0.0.1:9/notify"}
    response = await sim.request(merchant, "POST", "/v3/pay/transactions/native", json_body=local)
    assert response.status_code == 200


def _authorization_reordered(headers: dict[str, str]) -> dict[str, str]:
    scheme, _, params = headers["Authorization"].partition(" ")
    fields = params.split(",")
    headers = dict(headers)
    headers["Authorization"] = f"{scheme} {','.join(reversed(fields))}"
    return headers


async def test_authorization_fields_in_any_order(
    sim: InProcessSimulator, merchant: MerchantBundle
) -> None:
    body = json.dumps(native_order(merchant)).encode()
    url = sim.base_url + "/v3/pay/transactions/native"
    headers = _authorization_reordered(
        signed_headers(merchant, "POST", url, body, timestamp=int(sim.simulator.clock.now()))
    )
    response = await sim.http.post(url, content=body, headers=headers)
    assert response.status_code == 200


async def test_signature_mismatch_has_platform_shape(
    sim: InProcessSimulator, merchant: MerchantBundle
) -> None:
    body = json.dumps(native_order(merchant)).encode()
    url = sim.base_url + "/v3/pay/transactions/native"
    headers = signed_headers(merchant, "POST", url, body, timestamp=int(sim.simulator.clock.now()))
    tampered = body.replace(b'"total": 100', b'"total": 999')  # only the amount changes
    assert tampered != body
    response = await sim.http.post(url, content=tampered, headers=headers)
    assert response.status_code == 401
    error = response.json()
    assert error["code"] == "SIGN_ERROR"
    assert error["message"] == "签名错误，请检查后再试"
    info = error["detail"]["sign_information"]
    assert info["method"] == "POST"
    assert info["url"] == "/v3/pay/transactions/native"
    assert info["truncated_sign_message"].startswith("POST\n/v3/pay/transactions/native\n")
    assert info["truncated_sign_message"].endswith('{"appid"\n')
    assert error["detail"]["detail"] == {"issue": "sign not match"}
    assert error["detail"]["field"] == "signature"
    assert error["detail"]["location"] == "authorization"


async def test_wrong_serial_and_stale_timestamp(
    sim: InProcessSimulator, merchant: MerchantBundle
) -> None:
    url = sim.base_url + "/v3/certificates"
    now = int(sim.simulator.clock.now())
    headers = signed_headers(merchant, "GET", url, timestamp=now)
    headers["Authorization"] = headers["Authorization"].replace(
        merchant.merchant_serial_no, "1234ABCD"
    )
    response = await sim.http.get(url, headers=headers)
    assert (response.status_code, response.json()["message"]) == (401, "商户证书序列号有误。")
    stale = signed_headers(merchant, "GET", url, timestamp=now - 301)
    assert (await sim.http.get(url, headers=stale)).json()["code"] == "SIGN_ERROR"
    assert (
        await sim.http.get(url, headers=signed_headers(merchant, "GET", url, timestamp=now - 299))
    ).status_code == 200


async def test_missing_accept_or_user_agent_is_invalid_request(
    sim: InProcessSimulator, merchant: MerchantBundle
) -> None:
    url = sim.base_url + "/v3/certificates"
    for header in ("Accept", "User-Agent"):
        headers = signed_headers(merchant, "GET", url, timestamp=int(sim.simulator.clock.now()))
        headers[header] = ""
        response = await sim.http.get(url, headers=headers)
        assert response.status_code == 400
        assert response.json() == {
            "code": "INVALID_REQUEST",
            "message": "Http头缺少Accept或User-Agent",
        }


async def test_query_and_close(
    sim: InProcessSimulator, merchant: MerchantBundle, fake_clock: FakeClock
) -> None:
    await sim.request(
        merchant, "POST", "/v3/pay/transactions/native", json_body=native_order(merchant)
    )
    path = f"/v3/pay/transactions/out-trade-no/ORDER_000001?mchid={merchant.mchid}"
    query = await sim.request(merchant, "GET", path)
    assert query.json()["trade_state"] == "NOTPAY"
    verify_signature(query.headers, query.content, merchant.trusted_keys(), now=_now(fake_clock))
    missing = await sim.request(merchant, "GET", "/v3/pay/transactions/out-trade-no/ORDER_000001")
    assert (missing.status_code, missing.json()["code"]) == (400, "PARAM_ERROR")
    unknown = await sim.request(
        merchant, "GET", f"/v3/pay/transactions/out-trade-no/NOPE_0001?mchid={merchant.mchid}"
    )
    assert (unknown.status_code, unknown.json()["code"]) == (404, "ORDER_NOT_EXIST")
    close = await sim.request(
        merchant,
        "POST",
        "/v3/pay/transactions/out-trade-no/ORDER_000001/close",
        json_body={"mchid": merchant.mchid},
    )
    assert close.status_code == 204
    assert close.content == b""
    verify_signature(close.headers, b"", merchant.trusted_keys(), now=_now(fake_clock))
    _verify_raw(close, merchant)
    assert (await sim.request(merchant, "GET", path)).json()["trade_state"] == "CLOSED"
    again = await sim.request(
        merchant, "POST", "/v3/pay/transactions/native", json_body=native_order(merchant)
    )
    assert again.json()["code"] == "ORDER_CLOSED"


async def test_paid_order_query_by_transaction_id(
    sim: InProcessSimulator, merchant: MerchantBundle
) -> None:
    prepay = await sim.request(
        merchant, "POST", "/v3/pay/transactions/native", json_body=native_order(merchant)
    )
    order = sim.pay(code_url=prepay.json()["code_url"])
    response = await sim.request(
        merchant, "GET", f"/v3/pay/transactions/id/{order.transaction_id}?mchid={merchant.mchid}"
    )
    body = response.json()
    assert body["trade_state"] == "SUCCESS"
    assert body["transaction_id"] == order.transaction_id
    assert body["amount"] == {
        "total": 100,
        "payer_total": 100,
        "currency": "CNY",
        "payer_currency": "CNY",
    }
    assert body["success_time"].endswith("+08:00")
    close = await sim.request(
        merchant,
        "POST",
        "/v3/pay/transactions/out-trade-no/ORDER_000001/close",
        json_body={"mchid": merchant.mchid},
    )
    assert close.json()["code"] == "ORDERPAID"


async def test_certificates_download_decrypts(
    sim: InProcessSimulator, merchant: MerchantBundle, fake_clock: FakeClock
) -> None:
    response = await sim.request(merchant, "GET", "/v3/certificates?algorithm_type=RSA")
    entry = response.json()["data"][0]
    assert entry["encrypt_certificate"]["associated_data"] == "certificate"
    assert len(entry["encrypt_certificate"]["nonce"]) == 12
    certificates = decrypt_certificates(response.content, merchant.apiv3_key, now=_now(fake_clock))
    assert [c.serial_no for c in certificates] == [
        serial for serial, _ in merchant.platform_certificates
    ]


async def test_public_key_merchant_has_no_certificates(
    sim: InProcessSimulator, fake_clock: FakeClock
) -> None:
    bundle = sim.create_merchant("public_key")
    response = await sim.request(bundle, "GET", "/v3/certificates")
    assert response.status_code == 404
    assert response.json()["code"] == "RESOURCE_NOT_EXISTS"
    prepay = await sim.request(
        bundle, "POST", "/v3/pay/transactions/native", json_body=native_order(bundle)
    )
    assert prepay.headers["Wechatpay-Serial"] == bundle.public_key_id
    verify_signature(prepay.headers, prepay.content, bundle.trusted_keys(), now=_now(fake_clock))


async def test_migration_response_key_follows_request_serial(
    sim: InProcessSimulator, fake_clock: FakeClock
) -> None:
    bundle = sim.create_merchant("migration")
    plain = await sim.request(bundle, "GET", "/v3/certificates")
    assert plain.headers["Wechatpay-Serial"] == bundle.platform_certificates[0][0]
    with_key = await sim.request(
        bundle, "GET", "/v3/certificates", wechatpay_serial=bundle.public_key_id
    )
    assert with_key.headers["Wechatpay-Serial"] == bundle.public_key_id
    for response in (plain, with_key):
        verify_signature(
            response.headers, response.content, bundle.trusted_keys(), now=_now(fake_clock)
        )


async def test_rotation_adds_overlapping_certificate(
    sim: InProcessSimulator, merchant: MerchantBundle, fake_clock: FakeClock
) -> None:
    fake_clock.advance(5)
    rotated = await sim.http.post(f"/sim/merchants/{merchant.mchid}/rotate-certificate")
    assert rotated.status_code == 201
    new_serial = rotated.json()["serial_no"]
    response = await sim.request(merchant, "GET", "/v3/certificates")
    certificates = decrypt_certificates(response.content, merchant.apiv3_key, now=_now(fake_clock))
    assert {c.serial_no for c in certificates} == {merchant.platform_certificates[0][0], new_serial}
    assert response.headers["Wechatpay-Serial"] == new_serial


async def test_partner_prepay_query_and_close(
    sim: InProcessSimulator, merchant: MerchantBundle
) -> None:
    body = {
        "sp_appid": merchant.appid,
        "sp_mchid": merchant.mchid,
        "sub_mchid": "1900000109",
        "description": "服务商订单",
        "out_trade_no": "PARTNER_0001",
        "notify_url": NOTIFY_URL,
        "amount": {"total": 1},
        "payer": {"sp_openid": "o-sp-user"},
    }
    prepay = await sim.request(
        merchant, "POST", "/v3/pay/partner/transactions/jsapi", json_body=body
    )
    assert "prepay_id" in prepay.json()
    query = await sim.request(
        merchant,
        "GET",
        f"/v3/pay/partner/transactions/out-trade-no/PARTNER_0001?sp_mchid={merchant.mchid}&sub_mchid=1900000109",
    )
    assert query.json()["sub_mchid"] == "1900000109"
    assert query.json()["sp_mchid"] == merchant.mchid
    direct = await sim.request(
        merchant, "GET", f"/v3/pay/transactions/out-trade-no/PARTNER_0001?mchid={merchant.mchid}"
    )
    assert direct.status_code == 404
    close = await sim.request(
        merchant,
        "POST",
        "/v3/pay/partner/transactions/out-trade-no/PARTNER_0001/close",
        json_body={"sp_mchid": merchant.mchid, "sub_mchid": "1900000109"},
    )
    assert close.status_code == 204
