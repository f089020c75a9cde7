"""The APIv2 clients against the simulator: XML, MD5/HMAC signs, and the mTLS refund."""

from __future__ import annotations

import ssl
import uuid

import pytest

from wxpaykit.client import v2
from wxpaykit.client.v2 import AsyncWeChatPayV2, V2Call, WeChatPayV2
from wxpaykit.core.keys import load_client_certificate_p12
from wxpaykit.core.v2 import SignType
from wxpaykit.errors import ApiError, ConfigurationError
from wxpaykit.simulator.merchants import MerchantBundle, MerchantMode
from wxpaykit.testing.simulator import ServedSimulator

NOTIFY = "https://merchant.example.com/wxpay/v2/notify"


def _client(
    sim: ServedSimulator,
    bundle: MerchantBundle,
    mode: str,
    sign_type: SignType,
    *,
    with_certificate: bool,
) -> WeChatPayV2 | AsyncWeChatPayV2:
    certificate = (
        load_client_certificate_p12(bundle.apiclient_cert_p12, bundle.mchid)
        if with_certificate
        else None
    )
    context = ssl.create_default_context(cadata=bundle.sim_ca_pem.decode())
    options = {
        "appid": bundle.appid,
        "mch_id": bundle.mchid,
        "api_key": bundle.apiv2_key,
        "sign_type": sign_type,
        "client_certificate": certificate,
        "base_url": sim.base_url,
        "mutual_tls_base_url": sim.tls_base_url,
    }
    if mode == "async":
        return AsyncWeChatPayV2(verify=context, **options)  # type: ignore[arg-type]
    return WeChatPayV2(verify=context, **options)  # type: ignore[arg-type]


async def _call(client: WeChatPayV2 | AsyncWeChatPayV2, call: V2Call[v2.V2Result]) -> v2.V2Result:
    if isinstance(client, AsyncWeChatPayV2):
        return await client.call(call)
    return client.call(call)


async def _close(client: WeChatPayV2 | AsyncWeChatPayV2) -> None:
    if isinstance(client, AsyncWeChatPayV2):
        await client.aclose()
    else:
        client.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("sign_type", [SignType.MD5, SignType.HMAC_SHA256])
async def test_v2_order_lifecycle_and_mutual_tls_refund(
    sim: ServedSimulator, mode: str, sign_type: SignType
) -> None:
    bundle = sim.create_merchant(MerchantMode.CERTIFICATE)
    client = _client(sim, bundle, mode, sign_type, with_certificate=True)
    try:
        out_trade_no = "v2_" + uuid.uuid4().hex[:20]
        order = await _call(
            client,
            v2.unifiedorder(
                body="QQ公仔",
                out_trade_no=out_trade_no,
                total_fee=100,
                spbill_create_ip="203.0.113.5",
                notify_url=NOTIFY,
                trade_type="JSAPI",
                openid="oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
            ),
        )
        assert order.prepay_id
        queried = await _call(client, v2.orderquery(out_trade_no=out_trade_no))
        assert queried.trade_state == "NOTPAY"
        sim.pay(prepay_id=order.prepay_id)
        paid = await _call(client, v2.orderquery(out_trade_no=out_trade_no))
        assert paid.trade_state == "SUCCESS"
        refund = await _call(
            client,
            v2.refund(
                out_trade_no=out_trade_no,
                out_refund_no="R" + out_trade_no,
                total_fee=100,
                refund_fee=100,
            ),
        )
        assert refund.out_refund_no == "R" + out_trade_no
        found = await _call(client, v2.refundquery(out_refund_no="R" + out_trade_no))
        assert found.model_extra is not None
        assert found.model_extra["out_refund_no_0"] == "R" + out_trade_no

        other = "v2_" + uuid.uuid4().hex[:20]
        await _call(
            client,
            v2.unifiedorder(
                body="d",
                out_trade_no=other,
                total_fee=1,
                spbill_create_ip="203.0.113.5",
                notify_url=NOTIFY,
                trade_type="NATIVE",
                product_id="p1",
            ),
        )
        closed = await _call(client, v2.closeorder(out_trade_no=other))
        assert closed.result_code == "SUCCESS"
    finally:
        await _close(client)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_v2_refund_without_certificate_fails_clearly(sim: ServedSimulator, mode: str) -> None:
    bundle = sim.create_merchant(MerchantMode.CERTIFICATE)
    client = _client(sim, bundle, mode, SignType.MD5, with_certificate=False)
    try:
        with pytest.raises(ConfigurationError, match="mutual TLS"):
            await _call(
                client,
                v2.refund(
                    out_trade_no="v2_nothing_1", out_refund_no="R1", total_fee=1, refund_fee=1
                ),
            )
    finally:
        await _close(client)


async def test_v2_business_error_carries_err_code(sim: ServedSimulator) -> None:
    bundle = sim.create_merchant(MerchantMode.CERTIFICATE)
    client = _client(sim, bundle, "sync", SignType.HMAC_SHA256, with_certificate=False)
    try:
        with pytest.raises(ApiError) as caught:
            await _call(client, v2.orderquery(out_trade_no="v2_missing_000"))
        assert caught.value.code == "ORDERNOTEXIST"
    finally:
        await _close(client)
