"""Notification delivery on a fake clock: retry schedule, acks, restart-resume (§6.5, §6.6)."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import httpx

from tests.simulator.conftest import Receiver, fake_clock_config, native_order
from wxpaykit.core.models import Transaction
from wxpaykit.core.notifications import parse_notification
from wxpaykit.simulator import MerchantBundle, SimulatorConfig
from wxpaykit.simulator.delivery import RETRY_DELAYS_SECONDS
from wxpaykit.testing.keys import shared_key_pool
from wxpaykit.testing.simulator import FakeClock, InProcessSimulator, running_simulator


def _now(clock: FakeClock) -> dt.datetime:
    return dt.datetime.fromtimestamp(clock.now(), dt.UTC)


async def _paid_order(
    sim: InProcessSimulator, bundle: MerchantBundle, out_trade_no: str = "ORDER_000001"
) -> str:
    prepay = await sim.request(
        bundle, "POST", "/v3/pay/transactions/native", json_body=native_order(bundle, out_trade_no)
    )
    sim.pay(code_url=prepay.json()["code_url"])
    return out_trade_no


async def test_payment_notification_verifies_and_decrypts(
    sim: InProcessSimulator, merchant: MerchantBundle, receiver: Receiver, fake_clock: FakeClock
) -> None:
    await _paid_order(sim, merchant)
    assert await sim.run_due() == 1
    [got] = receiver.received
    assert got.headers["wechatpay-signature-type"] == "WECHATPAY2-SHA256-RSA2048"
    assert b" " not in got.body  # compact JSON, as on the wire
    notification = parse_notification(
        got.headers,
        got.body,
        keys=merchant.trusted_keys(),
        apiv3_key=merchant.apiv3_key,
        now=_now(fake_clock),
    )
    assert notification.event_type == "TRANSACTION.SUCCESS"
    assert notification.envelope.resource.associated_data == "transaction"
    assert len(notification.envelope.resource.nonce) == 12
    assert isinstance(notification.resource, Transaction)
    assert notification.resource.out_trade_no == "ORDER_000001"
    assert notification.resource.amount is not None
    assert notification.resource.amount.total == 100
    listing = (await sim.http.get("/sim/notifications")).json()["notifications"]
    assert listing[0]["status"] == "delivered"
    assert listing[0]["attempts"][0]["status"] == 204


async def test_retry_schedule_follows_official_intervals(
    sim: InProcessSimulator, merchant: MerchantBundle, receiver: Receiver, fake_clock: FakeClock
) -> None:
    receiver.default_status = 500
    receiver.reply_body = b'{"code":"FAIL","message":"busy"}'
    start = fake_clock.now()
    await _paid_order(sim, merchant)
    assert await sim.run_due() == 1
    offsets = [0.0]
    for delay in RETRY_DELAYS_SECONDS:
        fake_clock.advance(delay - 0.5)
        assert await sim.run_due() == 0, "attempt made before its time"
        fake_clock.advance(0.5)
        assert await sim.run_due() == 1
        offsets.append(fake_clock.now() - start)
    fake_clock.advance(86400)
    assert await sim.run_due() == 0
    assert len(receiver.received) == 16
    assert offsets[-1] == 24 * 3600 + 4 * 60  # 24h04m, §6.6
    [delivery] = (await sim.http.get("/sim/notifications")).json()["notifications"]
    assert delivery["status"] == "failed"
    assert len(delivery["attempts"]) == 16
    assert delivery["attempts"][0]["response_body"] == '{"code":"FAIL","message":"busy"}'
    assert delivery["attempts"][0]["latency_ms"] >= 0
    # Every retry carries the same notification, freshly signed.
    assert len({r.body for r in receiver.received}) == 1
    assert len({r.headers["wechatpay-nonce"] for r in receiver.received}) == 16


async def test_only_200_and_204_acknowledge(
    sim: InProcessSimulator, merchant: MerchantBundle, receiver: Receiver, fake_clock: FakeClock
) -> None:
    receiver.statuses = [202, 302, 200]
    await _paid_order(sim, merchant)
    await sim.run_due()
    fake_clock.advance(15)
    await sim.run_due()
    fake_clock.advance(15)
    await sim.run_due()
    fake_clock.advance(30)
    assert await sim.run_due() == 0
    [delivery] = (await sim.http.get("/sim/notifications")).json()["notifications"]
    assert [a["status"] for a in delivery["attempts"]] == [202, 302, 200]
    assert delivery["status"] == "delivered"


async def test_time_scale_shrinks_the_schedule(fake_clock: FakeClock, receiver: Receiver) -> None:
    receiver.default_status = 503
    config = fake_clock_config(fake_clock, receiver, time_scale=0.01)
    async with running_simulator(config) as sim:
        bundle = sim.create_merchant()
        await _paid_order(sim, bundle)
        await sim.run_due()
        fake_clock.advance(0.14)
        assert await sim.run_due() == 0
        fake_clock.advance(0.01)
        assert await sim.run_due() == 1


async def test_unreachable_notify_url_is_retried(fake_clock: FakeClock) -> None:
    async with running_simulator(fake_clock_config(fake_clock)) as sim:
        bundle = sim.create_merchant()
        body = {**native_order(bundle), "notify_url": "http://127.0.0.1:9/notify"}
        prepay = await sim.request(bundle, "POST", "/v3/pay/transactions/native", json_body=body)
        sim.pay(code_url=prepay.json()["code_url"])
        await sim.run_due()
        [delivery] = (await sim.http.get("/sim/notifications")).json()["notifications"]
        assert delivery["status"] == "pending"
        assert delivery["attempts"][0]["status"] is None
        assert delivery["attempts"][0]["error"]


async def test_pending_deliveries_resume_after_restart(
    tmp_path: Path, fake_clock: FakeClock
) -> None:
    database = tmp_path / "sim.db"
    failing = Receiver(default_status=500)
    config = fake_clock_config(fake_clock, failing, data_path=database)
    async with running_simulator(config) as sim:
        bundle = sim.create_merchant()
        await _paid_order(sim, bundle)
        await sim.run_due()
        assert len(failing.received) == 1
    healthy = Receiver()
    config = fake_clock_config(fake_clock, healthy, data_path=database)
    async with running_simulator(config) as restarted:
        fake_clock.advance(15)
        assert await restarted.run_due() == 1
        [got] = healthy.received
        notification = parse_notification(
            got.headers,
            got.body,
            keys=bundle.trusted_keys(),
            apiv3_key=bundle.apiv3_key,
            now=_now(fake_clock),
        )
        assert isinstance(notification.resource, Transaction)
        [delivery] = (await restarted.http.get("/sim/notifications")).json()["notifications"]
        assert delivery["status"] == "delivered"
        assert [a["status"] for a in delivery["attempts"]] == [500, 204]
        # The merchant, its keys and the order survived the restart too.
        query = await restarted.request(
            bundle, "GET", f"/v3/pay/transactions/out-trade-no/ORDER_000001?mchid={bundle.mchid}"
        )
        assert query.json()["trade_state"] == "SUCCESS"


async def test_background_worker_delivers_without_manual_ticks(receiver: Receiver) -> None:
    config = SimulatorConfig(
        key_source=shared_key_pool(), delivery_transport=httpx.ASGITransport(app=receiver)
    )
    async with running_simulator(config) as sim:
        bundle = sim.create_merchant()
        await _paid_order(sim, bundle)
        for _ in range(200):
            listing = (await sim.http.get("/sim/notifications")).json()["notifications"]
            if listing and listing[0]["status"] == "delivered":
                break
            await asyncio.sleep(0.01)
        assert len(receiver.received) == 1
