"""The simulator on a real port, shared by the module, and clients wired to it."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.client.conftest import Harness
from wxpaykit import AsyncWeChatPay, WeChatPay, WeChatPayPublicKey, load_public_key
from wxpaykit.client import RetryPolicy
from wxpaykit.simulator.merchants import MerchantBundle
from wxpaykit.testing.simulator import ServedSimulator, serve_simulator


@pytest.fixture(scope="module")
def sim() -> Iterator[ServedSimulator]:
    """One simulator (uvicorn in a thread, plus its mutual-TLS listener) per module."""
    with serve_simulator() as served:
        yield served


class CountingTransport(httpx.HTTPTransport):
    """A real HTTP transport that counts requests per path (and keeps response headers)."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: Counter[str] = Counter()
        self.response_serials: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths[request.url.path] += 1
        response = super().handle_request(request)
        self.response_serials.append(response.headers.get("Wechatpay-Serial", ""))
        return response


class AsyncCountingTransport(httpx.AsyncHTTPTransport):
    """Async twin of :class:`CountingTransport`."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: Counter[str] = Counter()
        self.response_serials: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths[request.url.path] += 1
        response = await super().handle_async_request(request)
        self.response_serials.append(response.headers.get("Wechatpay-Serial", ""))
        return response


def bundle_public_key(bundle: MerchantBundle) -> WeChatPayPublicKey:
    """The public key of a merchant bundle (public-key or migration mode)."""
    return WeChatPayPublicKey(
        key_id=bundle.public_key_id,
        public_key=load_public_key(bundle.public_key_pem, source="pub_key.pem"),
    )


class SimHarness(Harness):
    """A harness whose transport counts requests."""

    transport: CountingTransport | AsyncCountingTransport

    @property
    def paths(self) -> Counter[str]:
        """Requests per path."""
        return self.transport.paths


class SimClients:
    """Builds sync or async clients for a simulator merchant."""

    def __init__(self, mode: str, sim: ServedSimulator) -> None:
        self.mode = mode
        self.sim = sim
        self.made: list[SimHarness] = []

    def __call__(self, bundle: MerchantBundle, **options: Any) -> SimHarness:
        options.setdefault("credentials", bundle.credentials())
        options.setdefault("apiv3_key", bundle.apiv3_key)
        options.setdefault("appid", bundle.appid)
        options.setdefault("base_url", self.sim.base_url)
        options.setdefault("retry", RetryPolicy(random=lambda: 0.0))
        sleeps: list[float] = []
        transport: CountingTransport | AsyncCountingTransport
        if self.mode == "async":

            async def sleep(seconds: float) -> None:
                sleeps.append(seconds)

            transport = AsyncCountingTransport()
            client: WeChatPay | AsyncWeChatPay = AsyncWeChatPay(
                transport=transport, sleep=sleep, **options
            )
        else:
            transport = CountingTransport()
            client = WeChatPay(transport=transport, sleep=sleeps.append, **options)
        harness = SimHarness(client, sleeps)
        harness.transport = transport
        self.made.append(harness)
        return harness


@pytest.fixture(params=["sync", "async"])
async def sim_client(
    request: pytest.FixtureRequest, sim: ServedSimulator
) -> AsyncIterator[SimClients]:
    """Parametrised over both clients; closes what it made."""
    factory = SimClients(str(request.param), sim)
    yield factory
    for harness in factory.made:
        await harness.close()
