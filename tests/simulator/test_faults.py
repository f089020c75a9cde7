"""Fault injection for client retry tests (``POST /sim/faults``)."""

from __future__ import annotations

import httpx
import pytest

from tests.simulator.conftest import native_order
from wxpaykit.simulator import MerchantBundle
from wxpaykit.testing.simulator import InProcessSimulator, serve_simulator, signed_headers


async def test_next_n_requests_are_rate_limited_then_served(
    sim: InProcessSimulator, merchant: MerchantBundle
) -> None:
    armed = await sim.http.post(
        "/sim/faults",
        json={
            "path": "/v3/pay/transactions/native",
            "mode": "FREQUENCY_LIMITED",
            "count": 2,
            "mchid": merchant.mchid,
        },
    )
    assert armed.status_code == 201
    statuses = []
    for _ in range(3):
        response = await sim.request(
            merchant, "POST", "/v3/pay/transactions/native", json_body=native_order(merchant)
        )
        statuses.append(response.status_code)
    assert statuses == [429, 429, 200]
    assert (await sim.http.get("/sim/faults")).json()["faults"] == []


async def test_system_error_and_other_merchants_unaffected(
    sim: InProcessSimulator, merchant: MerchantBundle
) -> None:
    await sim.http.post(
        "/sim/faults", json={"path": "/v3/", "mode": "SYSTEM_ERROR", "mchid": merchant.mchid}
    )
    other = sim.create_merchant()
    assert (await sim.request(other, "GET", "/v3/certificates")).status_code == 200
    failed = await sim.request(merchant, "GET", "/v3/certificates")
    assert failed.status_code == 500
    assert failed.json() == {"code": "SYSTEM_ERROR", "message": "系统错误"}
    assert failed.headers["Request-ID"]


async def test_dropped_connection_in_process(
    sim: InProcessSimulator, merchant: MerchantBundle
) -> None:
    await sim.http.post("/sim/faults", json={"path": "/v3/certificates", "mode": "DROP_CONNECTION"})
    with pytest.raises(httpx.RemoteProtocolError):
        await sim.request(merchant, "GET", "/v3/certificates")
    assert (await sim.request(merchant, "GET", "/v3/certificates")).status_code == 200


async def test_fault_api_validates(sim: InProcessSimulator) -> None:
    assert (
        await sim.http.post("/sim/faults", json={"path": "/v3/", "mode": "NOPE"})
    ).status_code == 400
    assert (
        await sim.http.post("/sim/faults", json={"path": "v3", "mode": "SYSTEM_ERROR"})
    ).status_code == 400
    assert (
        await sim.http.post(
            "/sim/faults", json={"path": "/v3/", "mode": "SYSTEM_ERROR", "count": 0}
        )
    ).status_code == 400


def test_dropped_connection_over_a_socket() -> None:
    with serve_simulator(mutual_tls=False) as served:
        bundle = served.create_merchant()
        with served.client() as client:
            client.post("/sim/faults", json={"path": "/v3/certificates", "mode": "DROP_CONNECTION"})
            url = served.base_url + "/v3/certificates"
            with pytest.raises(httpx.RemoteProtocolError):
                client.get(url, headers=signed_headers(bundle, "GET", url))
            assert client.get(url, headers=signed_headers(bundle, "GET", url)).status_code == 200
