"""Refunds (§7.5, §7.6, §6.4) and bills (§7.7)."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib

from tests.simulator.conftest import Receiver, native_order
from wxpaykit.core.models import RefundResource
from wxpaykit.core.notifications import parse_notification
from wxpaykit.simulator import MerchantBundle
from wxpaykit.testing.simulator import FakeClock, InProcessSimulator


async def _paid(sim: InProcessSimulator, bundle: MerchantBundle, total: int = 100) -> str:
    prepay = await sim.request(
        bundle, "POST", "/v3/pay/transactions/native", json_body=native_order(bundle, total=total)
    )
    return sim.pay(code_url=prepay.json()["code_url"]).transaction_id


def _refund(out_refund_no: str, refund: int, total: int = 100) -> dict[str, object]:
    return {
        "out_trade_no": "ORDER_000001",
        "out_refund_no": out_refund_no,
        "amount": {"refund": refund, "total": total, "currency": "CNY"},
    }


async def test_refund_lifecycle_and_notification(
    sim: InProcessSimulator, merchant: MerchantBundle, receiver: Receiver, fake_clock: FakeClock
) -> None:
    await _paid(sim, merchant)
    await sim.run_due()
    created = await sim.request(
        merchant, "POST", "/v3/refund/domestic/refunds", json_body=_refund("R1", 30)
    )
    assert created.status_code == 200
    assert created.json()["status"] == "PROCESSING"
    assert created.json()["amount"]["refund"] == 30
    fake_clock.advance(10)
    await sim.run_due()
    query = await sim.request(merchant, "GET", "/v3/refund/domestic/refunds/R1")
    assert query.json()["status"] == "SUCCESS"
    got = receiver.received[-1]
    notification = parse_notification(
        got.headers,
        got.body,
        keys=merchant.trusted_keys(),
        apiv3_key=merchant.apiv3_key,
        now=dt.datetime.fromtimestamp(fake_clock.now(), dt.UTC),
    )
    assert notification.event_type == "REFUND.SUCCESS"
    assert isinstance(notification.resource, RefundResource)
    assert notification.resource.refund_status == "SUCCESS"
    assert notification.resource.amount.refund == 30
    order = await sim.request(
        merchant, "GET", f"/v3/pay/transactions/out-trade-no/ORDER_000001?mchid={merchant.mchid}"
    )
    assert order.json()["trade_state"] == "REFUND"


async def test_reused_out_refund_no_returns_same_refund(
    sim: InProcessSimulator, merchant: MerchantBundle
) -> None:
    await _paid(sim, merchant)
    first = await sim.request(
        merchant, "POST", "/v3/refund/domestic/refunds", json_body=_refund("R1", 30)
    )
    again = await sim.request(
        merchant, "POST", "/v3/refund/domestic/refunds", json_body=_refund("R1", 30)
    )
    assert first.json()["refund_id"] == again.json()["refund_id"]
    changed = await sim.request(
        merchant, "POST", "/v3/refund/domestic/refunds", json_body=_refund("R1", 31)
    )
    assert changed.json()["code"] == "INVALID_REQUEST"


async def test_refunds_cannot_exceed_the_payment(
    sim: InProcessSimulator, merchant: MerchantBundle
) -> None:
    await _paid(sim, merchant)
    assert (
        await sim.request(
            merchant, "POST", "/v3/refund/domestic/refunds", json_body=_refund("R1", 60)
        )
    ).status_code == 200
    over = await sim.request(
        merchant, "POST", "/v3/refund/domestic/refunds", json_body=_refund("R2", 41)
    )
    assert (over.status_code, over.json()["code"]) == (400, "INVALID_REQUEST")
    wrong_total = await sim.request(
        merchant, "POST", "/v3/refund/domestic/refunds", json_body=_refund("R3", 1, total=99)
    )
    assert wrong_total.status_code == 400
    assert (
        await sim.request(
            merchant, "POST", "/v3/refund/domestic/refunds", json_body=_refund("R4", 40)
        )
    ).status_code == 200


async def test_at_most_fifty_refunds_per_order(
    sim: InProcessSimulator, merchant: MerchantBundle
) -> None:
    await _paid(sim, merchant)
    for n in range(50):
        response = await sim.request(
            merchant, "POST", "/v3/refund/domestic/refunds", json_body=_refund(f"R{n}", 1)
        )
        assert response.status_code == 200
    refused = await sim.request(
        merchant, "POST", "/v3/refund/domestic/refunds", json_body=_refund("R50", 1)
    )
    assert (refused.status_code, refused.json()["code"]) == (403, "RULE_LIMIT")


async def test_unpaid_order_cannot_be_refunded(
    sim: InProcessSimulator, merchant: MerchantBundle
) -> None:
    await sim.request(
        merchant, "POST", "/v3/pay/transactions/native", json_body=native_order(merchant)
    )
    response = await sim.request(
        merchant, "POST", "/v3/refund/domestic/refunds", json_body=_refund("R1", 1)
    )
    assert response.status_code == 400
    missing = await sim.request(merchant, "GET", "/v3/refund/domestic/refunds/NOPE")
    assert (missing.status_code, missing.json()["code"]) == (404, "RESOURCE_NOT_EXISTS")


async def test_abnormal_and_closed_refund_outcomes(
    sim: InProcessSimulator, merchant: MerchantBundle, receiver: Receiver
) -> None:
    await sim.http.patch(f"/sim/merchants/{merchant.mchid}", json={"refund_auto_complete": False})
    await _paid(sim, merchant)
    await sim.request(merchant, "POST", "/v3/refund/domestic/refunds", json_body=_refund("R1", 100))
    for outcome in ("ABNORMAL", "CLOSED"):
        response = await sim.http.post(
            "/sim/refunds/complete",
            json={"mchid": merchant.mchid, "out_refund_no": "R1", "outcome": outcome},
        )
        assert response.json()["status"] == outcome
        await sim.run_due()
    events = [
        d["event_type"] for d in (await sim.http.get("/sim/notifications")).json()["notifications"]
    ]
    assert events == ["TRANSACTION.SUCCESS", "REFUND.ABNORMAL", "REFUND.CLOSED"]
    # A closed refund gives the amount back: a new full refund is accepted.
    again = await sim.request(
        merchant, "POST", "/v3/refund/domestic/refunds", json_body=_refund("R2", 100)
    )
    assert again.status_code == 200


async def test_trade_bill_hash_matches_decompressed_file(
    sim: InProcessSimulator, merchant: MerchantBundle, fake_clock: FakeClock
) -> None:
    transaction_id = await _paid(sim, merchant, total=1234)
    day = dt.datetime.fromtimestamp(fake_clock.now(), dt.timezone(dt.timedelta(hours=8))).date()
    today = await sim.request(merchant, "GET", f"/v3/bill/tradebill?bill_date={day}")
    assert (today.status_code, today.json()["code"]) == (400, "STATEMENT_CREATING")
    fake_clock.advance(86400)
    applied = await sim.request(
        merchant, "GET", f"/v3/bill/tradebill?bill_date={day}&bill_type=ALL&tar_type=GZIP"
    )
    document = applied.json()
    assert document["hash_type"] == "SHA1"
    download_path = document["download_url"].removeprefix(sim.base_url)
    assert download_path.startswith("/v3/billdownload/file?token=")
    downloaded = await sim.request(merchant, "GET", download_path)
    assert downloaded.status_code == 200
    assert "Wechatpay-Signature" not in downloaded.headers
    content = gzip.decompress(downloaded.content)
    assert hashlib.sha1(content).hexdigest() == document["hash_value"]  # noqa: S324
    text = content.decode("utf-8")
    assert text.startswith("交易时间,公众账号ID")
    assert f"`{transaction_id}" in text
    assert "`12.34" in text


async def test_fund_flow_bill_plain(
    sim: InProcessSimulator, merchant: MerchantBundle, fake_clock: FakeClock
) -> None:
    await _paid(sim, merchant, total=500)
    day = dt.datetime.fromtimestamp(fake_clock.now(), dt.timezone(dt.timedelta(hours=8))).date()
    fake_clock.advance(86400)
    applied = (
        await sim.request(
            merchant, "GET", f"/v3/bill/fundflowbill?bill_date={day}&account_type=BASIC"
        )
    ).json()
    content = (
        await sim.request(merchant, "GET", applied["download_url"].removeprefix(sim.base_url))
    ).content
    assert hashlib.sha1(content).hexdigest() == applied["hash_value"]  # noqa: S324
    assert "`收入,`5.00" in content.decode()
    other = sim.create_merchant()
    stolen = await sim.request(other, "GET", applied["download_url"].removeprefix(sim.base_url))
    assert stolen.status_code == 404


async def test_partner_refund_and_cashier_page(
    sim: InProcessSimulator, merchant: MerchantBundle
) -> None:
    order = {
        "sp_appid": merchant.appid,
        "sp_mchid": merchant.mchid,
        "sub_mchid": "1900000109",
        "description": "服务商",
        "out_trade_no": "PARTNER_R01",
        "notify_url": "https://merchant.example/notify",
        "amount": {"total": 10},
        "scene_info": {"payer_client_ip": "127.0.0.1", "h5_info": {"type": "Wap"}},
    }
    h5_url = (
        await sim.request(merchant, "POST", "/v3/pay/partner/transactions/h5", json_body=order)
    ).json()["h5_url"]
    prepay_id = h5_url.split("prepay_id=")[1].split("&")[0]
    paid = await sim.http.post(
        "/sim/cashier", content=f"prepay_id={prepay_id}&outcome=success".encode()
    )
    assert "支付成功" in paid.text
    refund = {
        "sub_mchid": "1900000109",
        "out_trade_no": "PARTNER_R01",
        "out_refund_no": "PR1",
        "amount": {"refund": 10, "total": 10, "currency": "CNY"},
    }
    created = await sim.request(merchant, "POST", "/v3/refund/domestic/refunds", json_body=refund)
    assert created.status_code == 200
    queried = await sim.request(
        merchant, "GET", "/v3/refund/domestic/refunds/PR1?sub_mchid=1900000109"
    )
    assert queried.json()["refund_id"] == created.json()["refund_id"]
    direct = await sim.request(merchant, "GET", "/v3/refund/domestic/refunds/PR1")
    assert direct.status_code == 404
