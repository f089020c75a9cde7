"""Both clients against the simulator on a real port: every endpoint, keys, retries."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.client.integration.conftest import SimClients, bundle_public_key
from wxpaykit import AsyncWeChatPay, WeChatPay, bills, partner, refunds, transactions
from wxpaykit.api import certificates
from wxpaykit.api.transactions import H5Info, SceneInfo
from wxpaykit.core.models import TradeState
from wxpaykit.errors import BadRequestError, NotFoundError
from wxpaykit.simulator.merchants import MerchantMode
from wxpaykit.testing.simulator import ServedSimulator, build_notification, payment_resource

NOTIFY = "https://merchant.example.com/wxpay/notify"
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"


def _order_no() -> str:
    return "it_" + uuid.uuid4().hex[:20]


def _arm(sim: ServedSimulator, *, mchid: str, path: str, mode: str, count: int = 1) -> None:
    with sim.client() as http:
        response = http.post(
            "/sim/faults", json={"mchid": mchid, "path": path, "mode": mode, "count": count}
        )
        response.raise_for_status()


def _rotate(sim: ServedSimulator, mchid: str) -> str:
    with sim.client() as http:
        response = http.post(f"/sim/merchants/{mchid}/rotate-certificate")
        response.raise_for_status()
        serial: str = response.json()["serial_no"]
        return serial


async def test_every_direct_endpoint(sim: ServedSimulator, sim_client: SimClients) -> None:
    bundle = sim.create_merchant(MerchantMode.CERTIFICATE)
    client = sim_client(bundle)

    paid_no = _order_no()
    jsapi = await client.call(
        transactions.jsapi(
            description="QQ公仔",
            out_trade_no=paid_no,
            notify_url=NOTIFY,
            amount=100,
            payer_openid=OPENID,
        )
    )
    assert jsapi.prepay_id
    assert jsapi.pay_params is not None
    assert jsapi.pay_params["appId"] == bundle.appid
    app = await client.call(
        transactions.app(description="d", out_trade_no=_order_no(), notify_url=NOTIFY, amount=1)
    )
    assert app.pay_params is not None
    native = await client.call(
        transactions.native(description="d", out_trade_no=_order_no(), notify_url=NOTIFY, amount=1)
    )
    assert native.code_url is not None
    assert native.code_url.startswith("weixin://wxpay/bizpayurl")
    h5 = await client.call(
        transactions.h5(
            description="d",
            out_trade_no=_order_no(),
            notify_url=NOTIFY,
            amount=1,
            scene_info=SceneInfo(payer_client_ip="203.0.113.9", h5_info=H5Info(type="Wap")),
        )
    )
    assert h5.h5_url

    unpaid = await client.call(transactions.query_by_out_trade_no(paid_no))
    assert unpaid.trade_state is TradeState.NOTPAY
    sim.pay(prepay_id=jsapi.prepay_id)
    paid = await client.call(transactions.query_by_out_trade_no(paid_no))
    assert paid.trade_state is TradeState.SUCCESS
    assert paid.transaction_id is not None
    by_id = await client.call(transactions.query_by_id(paid.transaction_id))
    assert by_id.out_trade_no == paid_no

    closed_no = _order_no()
    await client.call(
        transactions.native(description="d", out_trade_no=closed_no, notify_url=NOTIFY, amount=5)
    )
    await client.call(transactions.close(closed_no))
    closed = await client.call(transactions.query_by_out_trade_no(closed_no))
    assert closed.trade_state is TradeState.CLOSED

    refund = await client.call(
        refunds.create(out_trade_no=paid_no, out_refund_no="R" + paid_no, refund=30, total=100)
    )
    again = await client.call(
        refunds.create(out_trade_no=paid_no, out_refund_no="R" + paid_no, refund=30, total=100)
    )
    assert again.refund_id == refund.refund_id  # same out_refund_no = same refund
    queried = await client.call(refunds.query("R" + paid_no))
    assert queried.amount.refund == 30

    yesterday = dt.date.today() - dt.timedelta(days=1)
    for info in (
        await client.call(bills.trade_bill(yesterday)),
        await client.call(bills.fund_flow_bill(yesterday)),
    ):
        content = await client.download_bill(info)
        assert content  # hash_value checked inside; gzip undone
    plain = await client.call(bills.trade_bill(yesterday, gzip=False))
    assert await client.download_bill(plain, gzip=False)

    listed = await client.call(certificates.download())
    assert [entry.serial_no for entry in listed.data] == [
        s for s, _ in bundle.platform_certificates
    ]
    raw = await client.request("GET", "/v3/certificates", params={"algorithm_type": "RSA"})
    assert raw.json()["data"]


async def test_partner_endpoints(sim: ServedSimulator, sim_client: SimClients) -> None:
    bundle = sim.create_merchant(MerchantMode.CERTIFICATE)
    client = sim_client(bundle)
    sub_mchid = "1900000109"
    order_no = _order_no()
    result = await client.call(
        partner.jsapi(
            sub_mchid=sub_mchid,
            description="d",
            out_trade_no=order_no,
            notify_url=NOTIFY,
            amount=10,
            sp_openid=OPENID,
        )
    )
    assert result.pay_params is not None
    native = await client.call(
        partner.native(
            sub_mchid=sub_mchid,
            description="d",
            out_trade_no=_order_no(),
            notify_url=NOTIFY,
            amount=1,
        )
    )
    assert native.code_url
    found = await client.call(partner.query_by_out_trade_no(order_no, sub_mchid=sub_mchid))
    assert found.trade_state is TradeState.NOTPAY
    await client.call(partner.close(order_no, sub_mchid=sub_mchid))
    closed = await client.call(partner.query_by_out_trade_no(order_no, sub_mchid=sub_mchid))
    assert closed.trade_state is TradeState.CLOSED


async def test_certificate_rotation_mid_run(sim: ServedSimulator, sim_client: SimClients) -> None:
    bundle = sim.create_merchant(MerchantMode.CERTIFICATE)
    client = sim_client(bundle)
    await client.call(
        transactions.native(description="d", out_trade_no=_order_no(), notify_url=NOTIFY, amount=1)
    )
    new_serial = _rotate(sim, bundle.mchid)
    await client.call(
        transactions.native(description="d", out_trade_no=_order_no(), notify_url=NOTIFY, amount=1)
    )
    assert client.paths["/v3/certificates"] == 2
    assert client.transport.response_serials[-1] == new_serial
    # a notification signed by the new certificate verifies without another download
    merchant = sim.merchant(bundle.mchid)
    headers, body = build_notification(
        merchant, "TRANSACTION.SUCCESS", payment_resource(merchant, out_trade_no="n1", total=1)
    )
    notification = await client.parse_notification(headers, body)
    assert notification.signature.serial == new_serial
    assert client.paths["/v3/certificates"] == 2


async def test_public_key_migration_mid_run(sim: ServedSimulator, sim_client: SimClients) -> None:
    bundle = sim.create_merchant(MerchantMode.MIGRATION)
    merchant = sim.merchant(bundle.mchid)
    old_app = sim_client(bundle)  # certificates only, as before the migration
    new_app = sim_client(bundle, public_key=bundle_public_key(bundle))
    native = transactions.native(
        description="d", out_trade_no=_order_no(), notify_url=NOTIFY, amount=1
    )
    await old_app.call(native)
    await new_app.call(
        transactions.native(description="d", out_trade_no=_order_no(), notify_url=NOTIFY, amount=1)
    )
    assert old_app.transport.response_serials[-1] != bundle.public_key_id
    assert new_app.transport.response_serials[-1] == bundle.public_key_id
    # notifications ramp from certificate to public key; the new app takes both
    resource = payment_resource(merchant, out_trade_no="m1", total=1)
    for key in ("certificate", "public_key", "certificate"):
        headers, body = build_notification(merchant, "TRANSACTION.SUCCESS", resource, key=key)
        notification = await new_app.parse_notification(headers, body)
        assert notification.signature.key_kind == key
    assert new_app.paths["/v3/certificates"] == 1


async def test_public_key_only_merchant_needs_no_configuration(
    sim: ServedSimulator, sim_client: SimClients
) -> None:
    bundle = sim.create_merchant(MerchantMode.PUBLIC_KEY)
    client = sim_client(bundle, public_key=bundle_public_key(bundle))
    for _ in range(2):
        await client.call(
            transactions.native(
                description="d", out_trade_no=_order_no(), notify_url=NOTIFY, amount=1
            )
        )
    assert client.paths["/v3/certificates"] == 1  # 404 once, then never asked again


async def test_unknown_serial_downloads_once_under_fifty_concurrent_requests(
    sim: ServedSimulator, sim_client: SimClients
) -> None:
    bundle = sim.create_merchant(MerchantMode.CERTIFICATE)
    harness = sim_client(bundle)
    out_trade_no = _order_no()
    await harness.call(
        transactions.native(description="d", out_trade_no=out_trade_no, notify_url=NOTIFY, amount=1)
    )
    _rotate(sim, bundle.mchid)
    query = transactions.query_by_out_trade_no(out_trade_no)
    client = harness.client
    if isinstance(client, AsyncWeChatPay):
        results = await asyncio.gather(*(client.call(query) for _ in range(50)))
    else:
        sync_client: WeChatPay = client
        with ThreadPoolExecutor(max_workers=50) as pool:
            results = list(pool.map(lambda _: sync_client.call(query), range(50)))
    assert len(results) == 50
    assert harness.paths["/v3/certificates"] == 2  # start + exactly one for the new serial


@pytest.mark.parametrize("mode", ["FREQUENCY_LIMITED", "SYSTEM_ERROR", "DROP_CONNECTION"])
async def test_injected_faults_are_retried_then_succeed(
    sim: ServedSimulator, sim_client: SimClients, mode: str
) -> None:
    bundle = sim.create_merchant(MerchantMode.CERTIFICATE)
    client = sim_client(bundle)
    out_trade_no = _order_no()
    await client.call(
        transactions.jsapi(
            description="d",
            out_trade_no=out_trade_no,
            notify_url=NOTIFY,
            amount=100,
            payer_openid=OPENID,
        )
    )
    order = await client.call(transactions.query_by_out_trade_no(out_trade_no))
    sim.pay(mchid=bundle.mchid, out_trade_no=out_trade_no)
    del order
    _arm(sim, mchid=bundle.mchid, path="/v3/refund/domestic/refunds", mode=mode, count=2)
    refund = await client.call(
        refunds.create(
            out_trade_no=out_trade_no, out_refund_no="RF" + out_trade_no, refund=100, total=100
        )
    )
    assert refund.out_refund_no == "RF" + out_trade_no
    assert client.paths["/v3/refund/domestic/refunds"] == 3
    assert len(client.sleeps) == 2


async def test_business_errors_are_not_retried(
    sim: ServedSimulator, sim_client: SimClients
) -> None:
    bundle = sim.create_merchant(MerchantMode.CERTIFICATE)
    client = sim_client(bundle)
    with pytest.raises(NotFoundError) as caught:
        await client.call(transactions.query_by_out_trade_no("no_such_order_1"))
    assert caught.value.code == "ORDER_NOT_EXIST"
    assert caught.value.request_id
    assert client.paths["/v3/pay/transactions/out-trade-no/no_such_order_1"] == 1
    with pytest.raises(BadRequestError) as param_error:
        # the escape hatch skips local validation, so the platform itself refuses
        await client.request(
            "POST",
            "/v3/pay/transactions/native",
            json={
                "appid": bundle.appid,
                "mchid": bundle.mchid,
                "description": "d",
                "out_trade_no": _order_no(),
                "notify_url": NOTIFY,
                "amount": {"total": 0, "currency": "CNY"},
            },
        )
    assert param_error.value.code == "PARAM_ERROR"
    assert client.paths["/v3/pay/transactions/native"] == 1
    assert client.sleeps == []


async def test_connection_refused_fails_over_to_backup(
    sim: ServedSimulator, sim_client: SimClients
) -> None:
    from wxpaykit.client import RetryPolicy

    bundle = sim.create_merchant(MerchantMode.CERTIFICATE)
    client = sim_client(
        bundle,
        base_url="http://127.0.0.1:9",  # discard port: nothing listens, connection refused
        backup_base_url=sim.base_url,
        retry=RetryPolicy(failover=True, random=lambda: 0.0),
    )
    result = await client.call(
        transactions.native(description="d", out_trade_no=_order_no(), notify_url=NOTIFY, amount=1)
    )
    assert result.code_url


async def test_unreachable_platform_is_a_transport_error(
    sim_client: SimClients, sim: ServedSimulator
) -> None:
    from wxpaykit.client import RetryPolicy
    from wxpaykit.errors import TransportError

    bundle = sim.create_merchant(MerchantMode.CERTIFICATE)
    client = sim_client(
        bundle, base_url="http://127.0.0.1:9", retry=RetryPolicy(max_attempts=2, random=lambda: 0.0)
    )
    with pytest.raises(TransportError) as caught:
        await client.call(transactions.query_by_out_trade_no("x123456"))
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
