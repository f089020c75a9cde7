"""Calls through both clients against the fake platform: signing, verification, typing."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.client.conftest import APPID, MCHID, HarnessFactory
from tests.client.fake_platform import FakePlatform, json_body
from wxpaykit.api import refunds, transactions
from wxpaykit.api.transactions import H5Info, SceneInfo
from wxpaykit.core.crypto import rsa_oaep_decrypt
from wxpaykit.core.models import TradeState, TradeType
from wxpaykit.core.signing import build_response_message
from wxpaykit.errors import (
    BadRequestError,
    NotFoundError,
    SignatureMismatchError,
    StaleTimestampError,
)
from wxpaykit.testing.keys import GeneratedCertificate


def _prepay_route(platform: FakePlatform, kind: str, answer: dict[str, Any]) -> None:
    platform.route("POST", f"/v3/pay/transactions/{kind}", lambda request: (200, answer))


def _verify_pay_sign(key: rsa.RSAPrivateKey, lines: list[str], signature: str) -> None:
    message = "".join(f"{line}\n" for line in lines).encode()
    key.public_key().verify(
        base64.b64decode(signature), message, padding.PKCS1v15(), hashes.SHA256()
    )


async def test_jsapi_prepay_fills_merchant_and_signs_pay_params(
    make_client: HarnessFactory, platform: FakePlatform, merchant_cert: GeneratedCertificate
) -> None:
    _prepay_route(platform, "jsapi", {"prepay_id": "wx201410272009395522657a690389285100"})
    harness = make_client(platform.transport())
    result = await harness.call(
        transactions.jsapi(
            description="Image形象店-深圳腾大-QQ公仔",
            out_trade_no="1217752501201407033233368018",
            notify_url="https://example.com/notify",
            amount=100,
            payer_openid="oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
        )
    )
    sent = json_body(platform.requests[-1])
    assert sent["mchid"] == MCHID
    assert sent["appid"] == APPID
    assert sent["amount"] == {"total": 100, "currency": "CNY"}
    assert result.trade_type is TradeType.JSAPI
    assert result.prepay_id == "wx201410272009395522657a690389285100"
    params = result.pay_params
    assert params is not None
    assert params["package"] == "prepay_id=wx201410272009395522657a690389285100"
    assert params["signType"] == "RSA"
    _verify_pay_sign(
        merchant_cert.private_key,
        [params["appId"], params["timeStamp"], params["nonceStr"], params["package"]],
        params["paySign"],
    )


async def test_app_native_h5_prepay_results(
    make_client: HarnessFactory, platform: FakePlatform, merchant_cert: GeneratedCertificate
) -> None:
    _prepay_route(platform, "app", {"prepay_id": "wx_app_1"})
    _prepay_route(platform, "native", {"code_url": "weixin://wxpay/bizpayurl?pr=JyC91EIz1"})
    _prepay_route(
        platform, "h5", {"h5_url": "https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb"}
    )
    harness = make_client(platform.transport())
    common: dict[str, Any] = {
        "description": "d",
        "out_trade_no": "order_0001",
        "notify_url": "https://example.com/n",
        "amount": 1,
    }
    app = await harness.call(transactions.app(**common))
    assert app.pay_params is not None
    assert app.pay_params["partnerId"] == MCHID
    assert app.pay_params["packageValue"] == "Sign=WXPay"
    _verify_pay_sign(
        merchant_cert.private_key,
        [APPID, app.pay_params["timeStamp"], app.pay_params["nonceStr"], "wx_app_1"],
        app.pay_params["sign"],
    )
    native = await harness.call(transactions.native(**common))
    assert native.code_url == "weixin://wxpay/bizpayurl?pr=JyC91EIz1"
    assert native.pay_params is None
    h5 = await harness.call(
        transactions.h5(
            **common,
            scene_info=SceneInfo(payer_client_ip="203.0.113.7", h5_info=H5Info(type="Wap")),
        )
    )
    assert h5.trade_type is TradeType.MWEB
    assert h5.h5_url is not None
    assert json_body(platform.requests[-1])["scene_info"]["h5_info"] == {"type": "Wap"}


async def test_query_close_and_refund_roundtrip(
    make_client: HarnessFactory, platform: FakePlatform
) -> None:
    transaction = {
        "appid": APPID,
        "mchid": MCHID,
        "out_trade_no": "order/0001",
        "transaction_id": "4200000001",
        "trade_state": "NOTPAY",
        "amount": {"total": 100, "currency": "CNY"},
    }
    platform.route(
        "GET", "/v3/pay/transactions/out-trade-no/order/0001", lambda request: (200, transaction)
    )
    platform.route("GET", "/v3/pay/transactions/id/4200000001", lambda request: (200, transaction))
    platform.route(
        "POST", "/v3/pay/transactions/out-trade-no/order/0001/close", lambda request: (204, None)
    )
    refund = {
        "refund_id": "50000000382019052709732678859",
        "out_refund_no": "R1",
        "transaction_id": "4200000001",
        "out_trade_no": "order/0001",
        "channel": "ORIGINAL",
        "create_time": "2024-01-01T10:00:00+08:00",
        "status": "PROCESSING",
        "amount": {"total": 100, "refund": 40, "payer_total": 100, "payer_refund": 40},
    }
    platform.route("POST", "/v3/refund/domestic/refunds", lambda request: (200, refund))
    platform.route("GET", "/v3/refund/domestic/refunds/R1", lambda request: (200, refund))
    harness = make_client(platform.transport())

    by_no = await harness.call(transactions.query_by_out_trade_no("order/0001"))
    assert by_no.trade_state is TradeState.NOTPAY
    # the slash is percent-encoded on the wire, and signed as sent
    assert (
        platform.requests[-1].url.raw_path
        == b"/v3/pay/transactions/out-trade-no/order%2F0001?mchid=1900007291"
    )
    by_id = await harness.call(transactions.query_by_id("4200000001"))
    assert by_id.transaction_id == "4200000001"
    await harness.call(transactions.close("order/0001"))
    assert platform.requests[-1].url.path == "/v3/pay/transactions/out-trade-no/order/0001/close"
    assert json_body(platform.requests[-1]) == {"mchid": MCHID}

    created = await harness.call(
        refunds.create(out_trade_no="order/0001", out_refund_no="R1", refund=40, total=100)
    )
    assert created.status == "PROCESSING"
    assert json_body(platform.requests[-1])["amount"] == {
        "refund": 40,
        "total": 100,
        "currency": "CNY",
    }
    queried = await harness.call(refunds.query("R1"))
    assert queried.amount.refund == 40


async def test_escape_hatch_signs_and_verifies_any_path(
    make_client: HarnessFactory, platform: FakePlatform
) -> None:
    platform.route(
        "POST",
        "/v3/marketing/favor/users/o1/coupons",
        lambda request: (200, {"coupon_id": "c1", "echo": json_body(request)}),
    )
    harness = make_client(platform.transport())
    response = await harness.request(
        "POST",
        "/v3/marketing/favor/users/o1/coupons",
        json={"stock_id": "9856000", "note": "中文"},
        params={"appid": APPID},
    )
    assert response.json()["echo"] == {"stock_id": "9856000", "note": "中文"}
    assert response.request_id is not None
    sent = platform.requests[-1]
    assert sent.url.query == f"appid={APPID}".encode()
    assert (
        sent.content
        == json.dumps(
            {"stock_id": "9856000", "note": "中文"}, ensure_ascii=False, separators=(",", ":")
        ).encode()
    )
    with pytest.raises(ValueError, match="/v3/"):
        await harness.request("GET", "/v2/whatever")


async def test_tampered_answer_is_refused(
    make_client: HarnessFactory, platform: FakePlatform
) -> None:
    platform.route("GET", "/v3/refund/domestic/refunds/R1", lambda request: (200, {"x": 1}))
    platform.tamper = lambda headers, body: (headers, body.replace(b'"x":1', b'"x":2'))
    harness = make_client(platform.transport())
    with pytest.raises(SignatureMismatchError) as caught:
        await harness.call(refunds.query("R1"))
    assert caught.value.request_id is not None


async def test_answer_outside_the_timestamp_window_is_refused(
    make_client: HarnessFactory, platform: FakePlatform
) -> None:
    platform.route("GET", "/v3/refund/domestic/refunds/R1", lambda request: (200, {"x": 1}))
    harness = make_client(platform.transport())
    await harness.refresh()  # certificates downloaded while the clocks agree
    real_clock = platform.clock
    platform.clock = lambda: real_clock() - 301
    with pytest.raises(StaleTimestampError):
        await harness.call(refunds.query("R1"))


async def test_signature_covers_204_empty_body(
    make_client: HarnessFactory, platform: FakePlatform, platform_cert: GeneratedCertificate
) -> None:
    platform.route("POST", "/v3/pay/transactions/out-trade-no/o123456/close", lambda r: (204, None))
    seen: list[httpx.Response] = []

    def keep(headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
        seen.append(httpx.Response(204, headers=headers))
        return headers, body

    platform.tamper = keep
    harness = make_client(platform.transport())
    await harness.call(transactions.close("o123456"))
    headers = seen[-1].headers
    message = build_response_message(
        headers["Wechatpay-Timestamp"], headers["Wechatpay-Nonce"], b""
    )
    assert message.endswith(b"\n\n")


async def test_api_error_carries_status_code_message_detail_and_request_id(
    make_client: HarnessFactory, platform: FakePlatform
) -> None:
    detail = {
        "field": "/amount/currency",
        "value": "XYZ",
        "issue": "Currency code is invalid",
        "location": "body",
    }
    platform.route(
        "POST",
        "/v3/refund/domestic/refunds",
        lambda request: (400, {"code": "PARAM_ERROR", "message": "参数错误", "detail": detail}),
    )
    platform.route(
        "GET",
        "/v3/refund/domestic/refunds/none",
        lambda r: (404, {"code": "RESOURCE_NOT_EXISTS", "message": "退款单不存在"}),
    )
    harness = make_client(platform.transport())
    with pytest.raises(BadRequestError) as caught:
        await harness.call(
            refunds.create(transaction_id="42", out_refund_no="R9", refund=1, total=1)
        )
    error = caught.value
    assert (error.status_code, error.code, error.message) == (400, "PARAM_ERROR", "参数错误")
    assert error.detail == detail
    assert error.request_id is not None
    assert error.request_id.startswith("REQ-ERR-")
    with pytest.raises(NotFoundError):
        await harness.call(refunds.query("none"))


async def test_sensitive_encryptor_uses_the_public_key_and_names_it(
    make_client: HarnessFactory,
    platform: FakePlatform,
    wechatpay_key_pair: tuple[str, rsa.RSAPrivateKey],
) -> None:
    from wxpaykit.core.keys import WeChatPayPublicKey

    key_id, private_key = wechatpay_key_pair
    platform.route("POST", "/v3/profitsharing/receivers/add", lambda request: (200, {"ok": True}))
    harness = make_client(
        platform.transport(),
        public_key=WeChatPayPublicKey(key_id=key_id, public_key=private_key.public_key()),
    )
    encryptor = await harness.encryptor()
    assert encryptor.serial == key_id
    name = encryptor.encrypt("张三")
    await harness.request(
        "POST",
        "/v3/profitsharing/receivers/add",
        json={"type": "PERSONAL_OPENID", "name": name},
        wechatpay_serial=encryptor.serial,
    )
    sent = platform.requests[-1]
    assert sent.headers["Wechatpay-Serial"] == key_id
    assert rsa_oaep_decrypt(json_body(sent)["name"], private_key) == "张三"


async def test_sensitive_encryptor_falls_back_to_newest_certificate(
    make_client: HarnessFactory, platform: FakePlatform, platform_cert: GeneratedCertificate
) -> None:
    harness = make_client(platform.transport())
    encryptor = await harness.encryptor()
    assert encryptor.serial == platform_cert.serial_no
    assert rsa_oaep_decrypt(encryptor.encrypt("6222"), platform_cert.private_key) == "6222"


async def test_request_headers_follow_the_protocol(
    make_client: HarnessFactory, platform: FakePlatform, platform_cert: GeneratedCertificate
) -> None:
    platform.route("GET", "/v3/refund/domestic/refunds/R1", lambda request: (200, {}))
    harness = make_client(platform.transport())
    with pytest.raises(Exception, match="refund"):
        await harness.call(refunds.query("R1"))  # {} is not a refund: parse error
    sent = platform.requests[-1]
    assert sent.headers["Accept"] == "application/json"
    assert sent.headers["User-Agent"].startswith("wxpaykit/")
    assert sent.headers["Wechatpay-Serial"] == platform_cert.serial_no
    assert "Content-Type" not in sent.headers
    assert sent.headers["Authorization"].startswith('WECHATPAY2-SHA256-RSA2048 mchid="1900007291"')
