"""Fixtures for client unit tests: a fake platform behind MockTransport, both clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.client.fake_platform import FakePlatform
from wxpaykit.api.bills import BillInfo
from wxpaykit.api.call import ApiCall, ApiResponse
from wxpaykit.client import AsyncWeChatPay, RetryPolicy, WeChatPay
from wxpaykit.client.keys import SensitiveEncryptor
from wxpaykit.core.keys import MerchantCredentials, PlatformCertificate, WeChatPayPublicKey
from wxpaykit.core.notifications import Notification
from wxpaykit.testing.keys import GeneratedCertificate

T = TypeVar("T")
MCHID = "1900007291"
APPID = "wxd678efh567hg6787"
APIV3_KEY = "TestAPIv3Key0123456789abcdefABCD"


@pytest.fixture
def credentials(merchant_cert: GeneratedCertificate) -> MerchantCredentials:
    """The merchant's signing credentials."""
    return MerchantCredentials(
        mchid=MCHID, serial_no=merchant_cert.serial_no, private_key=merchant_cert.private_key
    )


@pytest.fixture
def platform(
    merchant_cert: GeneratedCertificate,
    platform_cert: GeneratedCertificate,
    wechatpay_key_pair: tuple[str, rsa.RSAPrivateKey],
) -> FakePlatform:
    """A fake platform in certificate mode that also holds a public key."""
    return FakePlatform(
        merchant=merchant_cert,
        apiv3_key=APIV3_KEY,
        certificates=[platform_cert],
        public_key=wechatpay_key_pair,
    )


@dataclass
class Harness:
    """One of the two clients behind one awaitable interface, plus recorded sleeps."""

    client: WeChatPay | AsyncWeChatPay
    sleeps: list[float] = field(default_factory=list)

    @property
    def is_async(self) -> bool:
        """True for the asyncio client."""
        return isinstance(self.client, AsyncWeChatPay)

    async def call(self, call: ApiCall[T]) -> T:
        """Send ``call`` with whichever client this is."""
        if isinstance(self.client, AsyncWeChatPay):
            return await self.client.call(call)
        return self.client.call(call)

    async def request(self, method: str, path: str, **kwargs: Any) -> ApiResponse:
        """The escape hatch."""
        if isinstance(self.client, AsyncWeChatPay):
            return await self.client.request(method, path, **kwargs)
        return self.client.request(method, path, **kwargs)

    async def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """Verify, decrypt and parse a notification."""
        if isinstance(self.client, AsyncWeChatPay):
            return await self.client.parse_notification(headers, body)
        return self.client.parse_notification(headers, body)

    async def encryptor(self) -> SensitiveEncryptor:
        """The sensitive-field encryptor."""
        if isinstance(self.client, AsyncWeChatPay):
            return await self.client.sensitive_encryptor()
        return self.client.sensitive_encryptor()

    async def download_bill(self, info: BillInfo, *, gzip: bool = True) -> bytes:
        """Download and check a bill."""
        if isinstance(self.client, AsyncWeChatPay):
            return await self.client.download_bill(info, gzip=gzip)
        return self.client.download_bill(info, gzip=gzip)

    async def refresh(self) -> list[PlatformCertificate]:
        """Download certificates now."""
        if isinstance(self.client, AsyncWeChatPay):
            return await self.client.refresh_platform_keys()
        return self.client.refresh_platform_keys()

    async def close(self) -> None:
        """Close the client."""
        if isinstance(self.client, AsyncWeChatPay):
            await self.client.aclose()
        else:
            self.client.close()


class HarnessFactory:
    """Builds a harness of the parametrised mode around a fake platform."""

    def __init__(self, mode: str, credentials: MerchantCredentials) -> None:
        self.mode = mode
        self.credentials = credentials
        self.made: list[Harness] = []

    def __call__(self, transport: httpx.MockTransport, **options: Any) -> Harness:
        options.setdefault("credentials", self.credentials)
        options.setdefault("apiv3_key", APIV3_KEY)
        options.setdefault("appid", APPID)
        options.setdefault("base_url", "https://api.mch.weixin.qq.com")
        options.setdefault("retry", RetryPolicy(random=lambda: 0.5))
        sleeps: list[float] = []
        if self.mode == "async":

            async def sleep(seconds: float) -> None:
                sleeps.append(seconds)

            client: WeChatPay | AsyncWeChatPay = AsyncWeChatPay(
                transport=transport, sleep=sleep, **options
            )
        else:
            client = WeChatPay(transport=transport, sleep=sleeps.append, **options)
        harness = Harness(client, sleeps)
        self.made.append(harness)
        return harness


@pytest.fixture(params=["sync", "async"])
async def make_client(
    request: pytest.FixtureRequest, credentials: MerchantCredentials
) -> AsyncIterator[HarnessFactory]:
    """Parametrised over both clients; closes what it made."""
    factory = HarnessFactory(str(request.param), credentials)
    yield factory
    for harness in factory.made:
        await harness.close()


@pytest.fixture
def public_key(wechatpay_key_pair: tuple[str, rsa.RSAPrivateKey]) -> WeChatPayPublicKey:
    """The merchant's copy of the WeChat Pay public key."""
    key_id, private_key = wechatpay_key_pair
    return WeChatPayPublicKey(key_id=key_id, public_key=private_key.public_key())
