"""The key manager through the clients: start, schedule, rotation, migration, caches."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.client.conftest import APIV3_KEY, HarnessFactory
from tests.client.fake_platform import FakePlatform
from tests.services import require_service
from wxpaykit.api import refunds
from wxpaykit.client import AsyncWeChatPay, FileCertificateCache, RedisCertificateCache, WeChatPay
from wxpaykit.client.keys import PlatformKeyManager
from wxpaykit.core.keys import MerchantCredentials, WeChatPayPublicKey
from wxpaykit.errors import ConfigurationError, UnknownSerialError
from wxpaykit.testing.keys import generate_certificate
from wxpaykit.testing.notifications import sample_transaction, seal_notification

REFUND = {
    "refund_id": "5000",
    "out_refund_no": "R1",
    "status": "SUCCESS",
    "amount": {"total": 100, "refund": 100},
}


def _route(platform: FakePlatform) -> None:
    platform.route("GET", "/v3/refund/domestic/refunds/R1", lambda request: (200, REFUND))


async def test_certificates_download_once_at_start(
    make_client: HarnessFactory, platform: FakePlatform
) -> None:
    _route(platform)
    harness = make_client(platform.transport())
    for _ in range(3):
        await harness.call(refunds.query("R1"))
    assert platform.certificate_downloads == 1
    assert platform.requests[0].url.path == "/v3/certificates"


async def test_scheduled_refresh_after_the_interval(
    make_client: HarnessFactory, platform: FakePlatform
) -> None:
    _route(platform)
    now = [time.time()]
    platform.clock = lambda: now[0]
    harness = make_client(platform.transport(), clock=lambda: now[0])
    await harness.call(refunds.query("R1"))
    now[0] += 12 * 3600 - 1
    await harness.call(refunds.query("R1"))
    assert platform.certificate_downloads == 1
    now[0] += 2
    await harness.call(refunds.query("R1"))
    assert platform.certificate_downloads == 2


async def test_failed_scheduled_refresh_keeps_current_keys(
    make_client: HarnessFactory, platform: FakePlatform, caplog: pytest.LogCaptureFixture
) -> None:
    _route(platform)
    now = [time.time()]
    platform.clock = lambda: now[0]
    harness = make_client(platform.transport(), clock=lambda: now[0])
    await harness.call(refunds.query("R1"))
    now[0] += 13 * 3600
    platform.faults = [500, 500, 500]
    with caplog.at_level(logging.WARNING, "wxpaykit.keys"):
        refund = await harness.call(refunds.query("R1"))
    assert refund.refund_id == "5000"
    assert "refresh failed" in caplog.text


async def test_public_key_only_merchant_works_without_configuration(
    make_client: HarnessFactory, platform: FakePlatform, public_key: WeChatPayPublicKey
) -> None:
    _route(platform)
    platform.certificates_available = False
    platform.sign_with = "public_key"
    harness = make_client(platform.transport(), public_key=public_key)
    for _ in range(2):
        assert (await harness.call(refunds.query("R1"))).refund_id == "5000"
    assert platform.certificate_downloads == 1  # asked once, never again
    assert platform.requests[-1].headers["Wechatpay-Serial"] == public_key.key_id


async def test_404_without_public_key_is_a_clear_configuration_error(
    make_client: HarnessFactory, platform: FakePlatform
) -> None:
    _route(platform)
    platform.certificates_available = False
    harness = make_client(platform.transport())
    with pytest.raises(ConfigurationError, match="public key"):
        await harness.call(refunds.query("R1"))


def test_no_key_source_at_all_is_refused(credentials: MerchantCredentials) -> None:
    with pytest.raises(ConfigurationError, match="public key"):
        WeChatPay(credentials=credentials)


async def test_rotation_mid_run_refreshes_on_the_unknown_serial(
    make_client: HarnessFactory, platform: FakePlatform
) -> None:
    _route(platform)
    harness = make_client(platform.transport(), min_download_interval_seconds=0)
    await harness.call(refunds.query("R1"))
    platform.certificates.append(generate_certificate("Tenpay.com Root CA"))
    refund = await harness.call(refunds.query("R1"))
    assert refund.refund_id == "5000"
    assert platform.certificate_downloads == 2


async def test_unknown_serial_that_stays_unknown_fails_clearly(
    make_client: HarnessFactory, platform: FakePlatform
) -> None:
    _route(platform)
    harness = make_client(platform.transport(), min_download_interval_seconds=0)
    await harness.call(refunds.query("R1"))
    stranger = generate_certificate("Stranger")
    platform.tamper = lambda headers, body: (
        {**headers, "Wechatpay-Serial": stranger.serial_no},
        body,
    )
    with pytest.raises(UnknownSerialError) as caught:
        await harness.call(refunds.query("R1"))
    assert caught.value.serial == stranger.serial_no
    assert platform.certificate_downloads == 2


async def test_public_key_migration_mid_run_needs_no_download(
    make_client: HarnessFactory, platform: FakePlatform, public_key: WeChatPayPublicKey
) -> None:
    _route(platform)
    harness = make_client(platform.transport(), public_key=public_key)
    await harness.call(refunds.query("R1"))
    platform.sign_with = "public_key"  # the merchant switched in the portal
    await harness.call(refunds.query("R1"))
    platform.sign_with = "certificate"  # notifications ramp: both kinds interleave
    await harness.call(refunds.query("R1"))
    assert platform.certificate_downloads == 1


async def test_fifty_concurrent_async_requests_trigger_one_download(
    platform: FakePlatform, credentials: MerchantCredentials
) -> None:
    _route(platform)
    async with AsyncWeChatPay(
        credentials=credentials, apiv3_key=APIV3_KEY, transport=platform.transport()
    ) as client:
        await client.call(refunds.query("R1"))
        platform.certificates.append(generate_certificate("Tenpay.com Root CA"))
        platform.certificate_downloads = 0
        results = await asyncio.gather(*(client.call(refunds.query("R1")) for _ in range(50)))
    assert len(results) == 50
    assert platform.certificate_downloads == 1


def test_fifty_concurrent_threads_trigger_one_download(
    platform: FakePlatform, credentials: MerchantCredentials
) -> None:
    _route(platform)
    with WeChatPay(
        credentials=credentials, apiv3_key=APIV3_KEY, transport=platform.transport()
    ) as client:
        client.call(refunds.query("R1"))
        platform.certificates.append(generate_certificate("Tenpay.com Root CA"))
        platform.certificate_downloads = 0
        with ThreadPoolExecutor(max_workers=50) as pool:
            results = list(pool.map(lambda _: client.call(refunds.query("R1")), range(50)))
    assert len(results) == 50
    assert platform.certificate_downloads == 1


async def test_expiring_certificate_is_warned_about(
    make_client: HarnessFactory, platform: FakePlatform, caplog: pytest.LogCaptureFixture
) -> None:
    _route(platform)
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    platform.certificates = [
        generate_certificate("Tenpay.com Root CA", not_after=soon),
    ]
    harness = make_client(platform.transport())
    with caplog.at_level(logging.WARNING, "wxpaykit.keys"):
        await harness.call(refunds.query("R1"))
    assert platform.certificates[0].serial_no in caplog.text
    assert "expires on" in caplog.text


async def test_file_cache_lets_many_workers_download_once(
    make_client: HarnessFactory, platform: FakePlatform, tmp_path: Path
) -> None:
    _route(platform)
    cache = FileCertificateCache(tmp_path / "certs.json")
    workers = [make_client(platform.transport(), certificate_cache=cache) for _ in range(3)]
    for worker in workers:
        await worker.call(refunds.query("R1"))
    assert platform.certificate_downloads == 1
    # rotation: the first worker to see the new serial downloads, the others read the cache
    platform.certificates.append(generate_certificate("Tenpay.com Root CA"))
    for worker in workers:
        await worker.call(refunds.query("R1"))
    assert platform.certificate_downloads == 2


async def test_parse_notification_refreshes_once_for_a_new_serial(
    make_client: HarnessFactory, platform: FakePlatform
) -> None:
    harness = make_client(platform.transport(), min_download_interval_seconds=0)
    await harness.refresh()
    newer = generate_certificate("Tenpay.com Root CA")
    platform.certificates.append(newer)
    sealed = seal_notification(
        sample_transaction(),
        apiv3_key=APIV3_KEY,
        signing_key=newer.private_key,
        serial=newer.serial_no,
        timestamp=int(time.time()),
    )
    # lower-cased headers, as ASGI frameworks deliver them
    headers = {key.lower(): value for key, value in sealed.headers.items()}
    notification = await harness.parse_notification(headers, sealed.body)
    assert notification.resource.out_trade_no == "1217752501201407033233368018"  # type: ignore[union-attr]
    assert platform.certificate_downloads == 2


async def test_forged_serials_cannot_make_us_hammer_the_certificate_api(
    make_client: HarnessFactory,
    platform: FakePlatform,
    wechatpay_key_pair: tuple[str, rsa.RSAPrivateKey],
) -> None:
    harness = make_client(platform.transport())  # default: at most one download per 10 s
    await harness.refresh()
    forger = generate_certificate("Forger")
    for _ in range(5):
        sealed = seal_notification(
            sample_transaction(),
            apiv3_key=APIV3_KEY,
            signing_key=forger.private_key,
            serial=forger.serial_no,
            timestamp=int(time.time()),
        )
        with pytest.raises(UnknownSerialError):
            await harness.parse_notification(sealed.headers, sealed.body)
    # the start download, then one for the first unknown serial; the rest are refused
    assert platform.certificate_downloads == 2


def test_manager_refuses_unknown_mode() -> None:
    with pytest.raises(ValueError, match="certificate_mode"):
        PlatformKeyManager(apiv3_key=APIV3_KEY, certificate_mode="sometimes")  # type: ignore[arg-type]


def test_transport_errors_during_the_first_download_surface(
    platform: FakePlatform, credentials: MerchantCredentials
) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    from wxpaykit.client import RetryPolicy
    from wxpaykit.errors import TransportError

    with (
        WeChatPay(
            credentials=credentials,
            apiv3_key=APIV3_KEY,
            transport=httpx.MockTransport(down),
            retry=RetryPolicy.disabled(),
        ) as client,
        pytest.raises(TransportError),
    ):
        client.call(refunds.query("R1"))


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    """A real Redis connection (skipped locally when down, failed in CI)."""
    require_service("redis", 6379)
    client = redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1)
    yield client
    client.close()


@pytest.mark.redis
async def test_redis_cache_lets_many_workers_download_once(
    make_client: HarnessFactory, platform: FakePlatform, redis_client: redis.Redis
) -> None:
    _route(platform)
    key = f"wxpaykit:test:{uuid.uuid4().hex}"
    try:
        workers = [
            make_client(
                platform.transport(), certificate_cache=RedisCertificateCache(redis_client, key=key)
            )
            for _ in range(3)
        ]
        for worker in workers:
            await worker.call(refunds.query("R1"))
        assert platform.certificate_downloads == 1
        assert redis_client.get(key) is not None
    finally:
        redis_client.delete(key, key + ":lock")
