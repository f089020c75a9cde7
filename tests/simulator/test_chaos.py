"""Chaos modes, each against a receiver that verifies like a correct gateway (§3.4, §6.6)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.types import Receive, Scope, Send

from tests.simulator.conftest import fake_clock_config, native_order, read_body
from wxpaykit.core.crypto import aes_gcm_open
from wxpaykit.core.notifications import parse_notification
from wxpaykit.errors import WxPayKitError
from wxpaykit.simulator import ChaosSettings, MerchantBundle
from wxpaykit.simulator.chaos import draw
from wxpaykit.testing.simulator import FakeClock, InProcessSimulator, running_simulator


class VerifyingReceiver:
    """Answers 204 to authentic notifications and 401 to anything else."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.bundle: MerchantBundle | None = None
        self.accepted: list[bytes] = []
        self.refused: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(receive)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        assert self.bundle is not None
        try:
            parse_notification(
                headers,
                body,
                keys=self.bundle.trusted_keys(),
                apiv3_key=self.bundle.apiv3_key,
                now=dt.datetime.fromtimestamp(self.clock.now(), dt.UTC),
            )
        except WxPayKitError as exc:
            self.refused.append(type(exc).__name__)
            status = 401
        else:
            self.accepted.append(body)
            status = 204
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture
def gateway(fake_clock: FakeClock) -> VerifyingReceiver:
    return VerifyingReceiver(fake_clock)


@pytest.fixture
async def chaos_sim(
    fake_clock: FakeClock, gateway: VerifyingReceiver
) -> AsyncIterator[InProcessSimulator]:
    async with running_simulator(fake_clock_config(fake_clock, gateway)) as sim:
        gateway.bundle = sim.create_merchant("certificate")
        yield sim


async def _set_chaos(sim: InProcessSimulator, **settings: Any) -> None:
    response = await sim.http.put("/sim/chaos", json=settings)
    assert response.status_code == 200, response.text


async def _pay(sim: InProcessSimulator, bundle: MerchantBundle, out_trade_no: str) -> None:
    prepay = await sim.request(
        bundle, "POST", "/v3/pay/transactions/native", json_body=native_order(bundle, out_trade_no)
    )
    sim.pay(code_url=prepay.json()["code_url"])


async def _deliveries(sim: InProcessSimulator) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (await sim.http.get("/sim/notifications")).json()["notifications"]
    return found


@pytest.mark.parametrize(
    ("kind", "refusal"),
    [
        ("probe", "SignatureProbeError"),
        ("stale_timestamp", "StaleTimestampError"),
        ("tampered", "SignatureMismatchError"),
        ("unknown_serial", "UnknownSerialError"),
    ],
)
async def test_forged_attempt_then_genuine_resend(
    chaos_sim: InProcessSimulator, gateway: VerifyingReceiver, kind: str, refusal: str
) -> None:
    assert gateway.bundle is not None
    await _set_chaos(chaos_sim, mchid=gateway.bundle.mchid, seed=7, **{f"{kind}_rate": 1.0})
    await _pay(chaos_sim, gateway.bundle, "ORDER_FORGED")
    await chaos_sim.run_due()
    assert gateway.refused == [refusal]
    assert len(gateway.accepted) == 1
    [delivery] = await _deliveries(chaos_sim)
    assert delivery["status"] == "delivered"
    assert delivery["forged_attempts"] == 1
    forged, genuine = delivery["attempts"]
    assert (forged["chaos"], forged["forged"], forged["status"], forged["acked"]) == (
        kind,
        True,
        401,
        False,
    )
    assert (genuine["chaos"], genuine["forged"], genuine["status"]) == (None, False, 204)


async def test_dropped_notification_is_never_sent(
    chaos_sim: InProcessSimulator, gateway: VerifyingReceiver
) -> None:
    assert gateway.bundle is not None
    await _set_chaos(chaos_sim, drop_rate=1.0)
    await _pay(chaos_sim, gateway.bundle, "ORDER_DROP01")
    await chaos_sim.run_due()
    assert gateway.accepted == []
    assert gateway.refused == []
    [delivery] = await _deliveries(chaos_sim)
    assert delivery["status"] == "dropped"
    assert delivery["attempts"][0]["chaos"] == "dropped"


async def test_spaced_duplicate(
    chaos_sim: InProcessSimulator, gateway: VerifyingReceiver, fake_clock: FakeClock
) -> None:
    assert gateway.bundle is not None
    await _set_chaos(
        chaos_sim, duplicate_rate=1.0, duplicate_mode="spaced", duplicate_delay_seconds=2
    )
    await _pay(chaos_sim, gateway.bundle, "ORDER_DUP001")
    await chaos_sim.run_due()
    assert len(gateway.accepted) == 1
    fake_clock.advance(2)
    await chaos_sim.run_due()
    assert len(gateway.accepted) == 2
    assert gateway.accepted[0] == gateway.accepted[1]
    first, second = await _deliveries(chaos_sim)
    assert first["notification_id"] == second["notification_id"]
    assert second["chaos"] == ["duplicate"]
    assert second["attempts"][0]["chaos"] == "duplicate"


async def test_concurrent_duplicate(
    chaos_sim: InProcessSimulator, gateway: VerifyingReceiver
) -> None:
    assert gateway.bundle is not None
    await _set_chaos(chaos_sim, duplicate_rate=1.0, duplicate_mode="concurrent")
    await _pay(chaos_sim, gateway.bundle, "ORDER_DUP002")
    await chaos_sim.run_due()
    assert len(gateway.accepted) == 2
    [delivery] = await _deliveries(chaos_sim)
    assert sorted(a["chaos"] or "" for a in delivery["attempts"]) == ["", "duplicate"]


async def test_reordering_lets_a_later_notification_overtake(
    chaos_sim: InProcessSimulator, gateway: VerifyingReceiver, fake_clock: FakeClock
) -> None:
    bundle = gateway.bundle
    assert bundle is not None
    await _set_chaos(chaos_sim, reorder_rate=1.0, reorder_delay_seconds=5)
    await _pay(chaos_sim, bundle, "ORDER_FIRST1")
    await chaos_sim.run_due()
    assert gateway.accepted == []
    await chaos_sim.http.delete("/sim/chaos")
    await _pay(chaos_sim, bundle, "ORDER_SECOND")
    await chaos_sim.run_due()
    fake_clock.advance(5)
    await chaos_sim.run_due()
    outs = [_out_trade_no(bundle, body) for body in gateway.accepted]
    assert outs == ["ORDER_SECOND", "ORDER_FIRST1"]
    first = (await _deliveries(chaos_sim))[0]
    assert first["chaos"] == ["reordered"]


def _out_trade_no(bundle: MerchantBundle, body: bytes) -> str:
    resource = json.loads(body)["resource"]
    plaintext = aes_gcm_open(
        bundle.apiv3_key,
        nonce=resource["nonce"],
        associated_data=resource["associated_data"],
        ciphertext=resource["ciphertext"],
    )
    return str(json.loads(plaintext)["out_trade_no"])


async def test_slow_ack_is_retried(
    chaos_sim: InProcessSimulator, gateway: VerifyingReceiver, fake_clock: FakeClock
) -> None:
    assert gateway.bundle is not None
    await _set_chaos(chaos_sim, slow_ack_rate=1.0)
    await _pay(chaos_sim, gateway.bundle, "ORDER_SLOW01")
    await chaos_sim.run_due()
    await chaos_sim.http.delete("/sim/chaos")
    fake_clock.advance(15)
    await chaos_sim.run_due()
    assert len(gateway.accepted) == 2
    [delivery] = await _deliveries(chaos_sim)
    assert [a["chaos"] for a in delivery["attempts"]] == ["slow_ack", None]
    assert delivery["status"] == "delivered"


def test_draws_are_reproducible_from_the_seed() -> None:
    settings = ChaosSettings(seed=42, probe_rate=0.5)
    ids = [f"id-{n}" for n in range(400)]
    first = [draw(settings, nid, 1, "probe") for nid in ids]
    assert first == [draw(settings, nid, 1, "probe") for nid in ids]
    assert 150 < sum(first) < 250
    other = [draw(ChaosSettings(seed=43, probe_rate=0.5), nid, 1, "probe") for nid in ids]
    assert other != first


async def test_chaos_api_validates_and_scopes(
    chaos_sim: InProcessSimulator, gateway: VerifyingReceiver
) -> None:
    assert gateway.bundle is not None
    bad = await chaos_sim.http.put("/sim/chaos", json={"probe_rate": 2})
    assert (bad.status_code, bad.json()["code"]) == (400, "PARAM_ERROR")
    typo = await chaos_sim.http.put("/sim/chaos", json={"prob_rate": 0.1})
    assert typo.status_code == 400
    await _set_chaos(chaos_sim, mchid=gateway.bundle.mchid, probe_rate=0.25, seed=3)
    scoped = (await chaos_sim.http.get(f"/sim/chaos?mchid={gateway.bundle.mchid}")).json()
    assert (scoped["probe_rate"], scoped["seed"]) == (0.25, 3)
    assert (await chaos_sim.http.get("/sim/chaos")).json()["probe_rate"] == 0.0


async def test_migration_ramp_signs_notifications_with_both_keys(fake_clock: FakeClock) -> None:
    gateway = VerifyingReceiver(fake_clock)
    async with running_simulator(fake_clock_config(fake_clock, gateway)) as sim:
        bundle = gateway.bundle = sim.create_merchant("migration")
        await sim.http.patch(f"/sim/merchants/{bundle.mchid}", json={"public_key_fraction": 0.5})
        for n in range(12):
            await _pay(sim, bundle, f"ORDER_RAMP{n:02d}")
        await sim.run_due()
        serials = {a["serial"] for d in await _deliveries(sim) for a in d["attempts"]}
        assert serials == {bundle.public_key_id, bundle.platform_certificates[0][0]}
        assert len(gateway.accepted) == 12
        await sim.http.patch(f"/sim/merchants/{bundle.mchid}", json={"public_key_fraction": 1})
        await _pay(sim, bundle, "ORDER_RAMP_ALL")
        await sim.run_due()
        assert (await _deliveries(sim))[-1]["attempts"][0]["serial"] == bundle.public_key_id
