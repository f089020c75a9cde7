"""Accepted notifications end to end in process: APIv3 and APIv2, payment and refund."""

from __future__ import annotations

import httpx
import pytest

from wxpaykit.core.v2 import SignType
from wxpaykit.core.v2.xml import reply_xml
from wxpaykit.gateway.metrics import GatewayMetrics
from wxpaykit.storage.ledger import SqlLedger
from wxpaykit.testing.gateway_kit import MerchantKit

from .conftest import RowCounts

V3 = "/notify/v3/1900007291"
V2 = "/notify/v2/1900007291"


async def _order(ledger: SqlLedger, kit: MerchantKit, name: str, total: int = 100) -> None:
    await ledger.create_order(kit.order(name, total=total))


@pytest.mark.parametrize("use_public_key", [False, True], ids=["certificate", "public-key"])
async def test_v3_payment_is_applied_once_and_acknowledged_204(
    use_public_key: bool,
    kit: MerchantKit,
    client: httpx.AsyncClient,
    ledger: SqlLedger,
    metrics: GatewayMetrics,
) -> None:
    await _order(ledger, kit, "flow-v3-pay")
    sealed = kit.payment("flow-v3-pay", use_public_key=use_public_key)

    response = await client.post(V3, content=sealed.body, headers=sealed.headers)

    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["x-trace-id"]
    order = await ledger.get_order(kit.mchid, "flow-v3-pay")
    assert order is not None
    assert order.state == "SUCCESS"
    counts = metrics.snapshot()
    assert counts["wxpaykit_notifications_acknowledged_total{api=v3,outcome=applied}"] == 1
    assert counts["wxpaykit_notifications_received_total{api=v3}"] == 1


async def test_v3_refund_after_payment(
    kit: MerchantKit, client: httpx.AsyncClient, ledger: SqlLedger
) -> None:
    await _order(ledger, kit, "flow-v3-refund")
    paid = kit.payment("flow-v3-refund")
    assert (await client.post(V3, content=paid.body, headers=paid.headers)).status_code == 204

    refund = kit.refund("flow-v3-refund", "rf-flow-v3", refund=40)
    response = await client.post(V3, content=refund.body, headers=refund.headers)

    assert response.status_code == 204
    order = await ledger.get_order(kit.mchid, "flow-v3-refund")
    assert order is not None
    assert order.refunded_total == 40


async def test_amount_mismatch_is_acknowledged_but_never_applied(
    kit: MerchantKit, client: httpx.AsyncClient, ledger: SqlLedger, metrics: GatewayMetrics
) -> None:
    await _order(ledger, kit, "flow-anomaly", total=100)
    sealed = kit.payment("flow-anomaly", total=1)

    response = await client.post(V3, content=sealed.body, headers=sealed.headers)

    # Retrying cannot fix an authentic mismatch: acknowledged, recorded as an anomaly.
    assert response.status_code == 204
    order = await ledger.get_order(kit.mchid, "flow-anomaly")
    assert order is not None
    assert order.state == "NOTPAY"
    assert (
        metrics.snapshot()["wxpaykit_notifications_acknowledged_total{api=v3,outcome=anomaly}"] == 1
    )


@pytest.mark.parametrize("sign_type", [SignType.MD5, SignType.HMAC_SHA256])
async def test_v2_payment_replies_the_documented_success_xml(
    sign_type: SignType, kit: MerchantKit, client: httpx.AsyncClient, ledger: SqlLedger
) -> None:
    name = f"flow-v2-{sign_type.name.lower()}"
    await _order(ledger, kit, name)
    body = kit.v2_payment(name, sign_type=sign_type)

    first = await client.post(V2, content=body)
    again = await client.post(V2, content=body)  # WeChat's re-send: identical bytes

    assert first.status_code == 200
    assert first.content == reply_xml(True)
    assert first.content == (
        b"<xml><return_code><![CDATA[SUCCESS]]></return_code>"
        b"<return_msg><![CDATA[OK]]></return_msg></xml>"
    )
    assert again.status_code == 200
    order = await ledger.get_order(kit.mchid, name)
    assert order is not None
    assert order.state == "SUCCESS"
    assert order.transaction_id


async def test_v2_refund_is_decrypted_and_applied(
    kit: MerchantKit,
    client: httpx.AsyncClient,
    ledger: SqlLedger,
    metrics: GatewayMetrics,
    row_counts: RowCounts,
) -> None:
    await _order(ledger, kit, "flow-v2-refund")
    assert (await client.post(V2, content=kit.v2_payment("flow-v2-refund"))).status_code == 200
    body = kit.v2_refund("flow-v2-refund", "rf-flow-v2", refund_fee=30)

    response = await client.post(V2, content=body)
    counts = await row_counts()
    again = await client.post(V2, content=body)

    assert response.status_code == 200
    assert response.content == reply_xml(True)
    assert again.status_code == 200
    order = await ledger.get_order(kit.mchid, "flow-v2-refund")
    assert order is not None
    assert order.refunded_total == 30
    assert await row_counts() == counts
    assert metrics.snapshot()["wxpaykit_notifications_duplicates_total{api=v2}"] == 1


async def test_health_readiness_and_metrics_endpoints(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).status_code == 200
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert "wxpaykit_notifications_received_total" in metrics.text


async def test_storage_failure_answers_500_fail_so_wechat_retries(
    kit: MerchantKit, client: httpx.AsyncClient, ledger: SqlLedger, metrics: GatewayMetrics
) -> None:
    await _order(ledger, kit, "flow-db-down")
    await ledger.engine.dispose()
    async with ledger.engine.begin() as connection:  # break the real database, not a mock
        await connection.exec_driver_sql("ALTER TABLE notifications RENAME TO notifications_gone")
    sealed = kit.payment("flow-db-down")

    response = await client.post(V3, content=sealed.body, headers=sealed.headers)

    assert response.status_code == 500
    assert response.json()["code"] == "FAIL"
    assert metrics.snapshot()["wxpaykit_notifications_failed_total{api=v3}"] == 1
    async with ledger.engine.begin() as connection:
        await connection.exec_driver_sql("ALTER TABLE notifications_gone RENAME TO notifications")
    again = kit.payment("flow-db-down")
    assert (await client.post(V3, content=again.body, headers=again.headers)).status_code == 204
    order = await ledger.get_order(kit.mchid, "flow-db-down")
    assert order is not None
    assert order.state == "SUCCESS"
