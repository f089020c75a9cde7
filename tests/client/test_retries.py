"""Retries: what is retried, how long we wait, and that identifiers never change."""

from __future__ import annotations

import httpx
import pytest

from tests.client.conftest import HarnessFactory
from tests.client.fake_platform import FakePlatform
from wxpaykit.api import refunds
from wxpaykit.api.call import ApiCall
from wxpaykit.client import RetryPolicy
from wxpaykit.errors import (
    BadRequestError,
    PlatformServerError,
    RateLimitedError,
    RequestTimeoutError,
    TransportError,
    UnauthorizedError,
)

REFUND = {
    "refund_id": "5000",
    "out_refund_no": "R-keep-1",
    "status": "PROCESSING",
    "amount": {"total": 100, "refund": 100},
}


def _refund_route(platform: FakePlatform) -> None:
    platform.route("POST", "/v3/refund/domestic/refunds", lambda request: (200, REFUND))


def _create_refund() -> ApiCall[refunds.Refund]:
    return refunds.create(transaction_id="4200", out_refund_no="R-keep-1", refund=100, total=100)


@pytest.mark.parametrize(
    "fault",
    [
        500,
        429,
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("read timed out"),
        httpx.RemoteProtocolError("peer closed connection"),
    ],
    ids=["500", "429", "connect", "timeout", "dropped"],
)
async def test_transient_failures_are_retried_then_succeed(
    make_client: HarnessFactory, platform: FakePlatform, fault: int | Exception
) -> None:
    _refund_route(platform)
    harness = make_client(platform.transport())
    await harness.refresh()
    platform.requests.clear()
    platform.faults = [fault, fault]
    refund = await harness.call(_create_refund())
    assert refund.refund_id == "5000"
    assert len(platform.requests) == 3
    # full jitter with random() = 0.5: half of 0.25 s, then half of 0.5 s
    assert harness.sleeps == [0.125, 0.25]


async def test_refund_retries_resend_the_same_out_refund_no_and_bytes(
    make_client: HarnessFactory, platform: FakePlatform
) -> None:
    _refund_route(platform)
    harness = make_client(platform.transport())
    await harness.refresh()
    platform.requests.clear()
    platform.faults = [500, httpx.ReadTimeout("slow")]
    await harness.call(_create_refund())
    bodies = {request.content for request in platform.requests}
    assert len(bodies) == 1
    assert b'"out_refund_no":"R-keep-1"' in bodies.pop()
    # each attempt is signed afresh (new nonce and timestamp)
    assert len({request.headers["Authorization"] for request in platform.requests}) == 3


@pytest.mark.parametrize(
    ("status", "code", "error_type"),
    [
        (400, "PARAM_ERROR", BadRequestError),
        (401, "SIGN_ERROR", UnauthorizedError),
        (403, "NOT_ENOUGH", Exception),
        (400, "ORDER_CLOSED", BadRequestError),
    ],
)
async def test_business_errors_are_not_retried(
    make_client: HarnessFactory,
    platform: FakePlatform,
    status: int,
    code: str,
    error_type: type[Exception],
) -> None:
    platform.route(
        "POST",
        "/v3/refund/domestic/refunds",
        lambda request: (status, {"code": code, "message": "no"}),
    )
    harness = make_client(platform.transport())
    await harness.refresh()
    platform.requests.clear()
    with pytest.raises(error_type) as caught:
        await harness.call(_create_refund())
    assert getattr(caught.value, "code", None) == code
    assert len(platform.requests) == 1
    assert harness.sleeps == []


@pytest.mark.parametrize("code", ["SYSTEM_ERROR", "BANK_ERROR", "FREQUENCY_LIMITED"])
async def test_retryable_codes_are_retried_whatever_the_status(
    make_client: HarnessFactory, platform: FakePlatform, code: str
) -> None:
    answers = [(403, {"code": code, "message": "later"}), (200, REFUND)]
    platform.route("POST", "/v3/refund/domestic/refunds", lambda request: answers.pop(0))
    harness = make_client(platform.transport())
    refund = await harness.call(_create_refund())
    assert refund.out_refund_no == "R-keep-1"
    assert len(harness.sleeps) == 1


async def test_gives_up_after_max_attempts_with_the_last_error(
    make_client: HarnessFactory, platform: FakePlatform
) -> None:
    _refund_route(platform)
    harness = make_client(
        platform.transport(), retry=RetryPolicy(max_attempts=4, random=lambda: 1.0)
    )
    await harness.refresh()
    platform.requests.clear()
    platform.faults = [500, 500, 429, 500, 500]
    with pytest.raises(PlatformServerError) as caught:
        await harness.call(_create_refund())
    assert caught.value.code == "SYSTEM_ERROR"
    assert len(platform.requests) == 4
    assert harness.sleeps == [0.25, 0.5, 1.0]


async def test_total_time_cap_stops_retrying(
    make_client: HarnessFactory, platform: FakePlatform
) -> None:
    elapsed = [0.0]
    steps = iter([5.0, 4.5, 100.0])

    def slow_429(request: httpx.Request) -> tuple[int, dict[str, str]]:
        elapsed[0] += next(steps)  # each attempt takes a while before failing
        return 429, {"code": "FREQUENCY_LIMITED", "message": "slow down"}

    platform.route("POST", "/v3/refund/domestic/refunds", slow_429)
    harness = make_client(
        platform.transport(),
        retry=RetryPolicy(max_attempts=10, max_elapsed_seconds=10.0, random=lambda: 1.0),
        monotonic=lambda: elapsed[0],
    )
    await harness.refresh()
    platform.requests.clear()
    with pytest.raises(RateLimitedError):
        await harness.call(_create_refund())
    # after attempt 1 at 5 s: wait 0.25 (ok); after attempt 2 at 9.5 s: 9.5 + 0.5 = 10 (ok);
    # after attempt 3 at 109.5 s the budget is gone.
    assert len(platform.requests) == 3
    assert harness.sleeps == [0.25, 0.5]


async def test_failover_to_backup_domain_after_connection_failure(
    make_client: HarnessFactory, platform: FakePlatform
) -> None:
    _refund_route(platform)

    def primary_down(request: httpx.Request) -> httpx.Response:
        if request.url.host == "api.mch.weixin.qq.com" and request.url.path != "/v3/certificates":
            platform.requests.append(request)
            raise httpx.ConnectError("primary unreachable")
        return platform.handle(request)

    harness = make_client(
        httpx.MockTransport(primary_down), retry=RetryPolicy(failover=True, random=lambda: 0.0)
    )
    refund = await harness.call(_create_refund())
    assert refund.refund_id == "5000"
    hosts = [r.url.host for r in platform.requests if r.url.path != "/v3/certificates"]
    assert hosts == ["api.mch.weixin.qq.com", "api2.mch.weixin.qq.com"]


async def test_without_failover_retries_stay_on_the_primary(
    make_client: HarnessFactory, platform: FakePlatform
) -> None:
    _refund_route(platform)
    harness = make_client(platform.transport())
    await harness.refresh()
    platform.requests.clear()
    platform.faults = [httpx.ConnectError("refused")]
    await harness.call(_create_refund())
    assert {r.url.host for r in platform.requests} == {"api.mch.weixin.qq.com"}


async def test_timeouts_surface_as_request_timeout_error(
    make_client: HarnessFactory, platform: FakePlatform
) -> None:
    _refund_route(platform)
    harness = make_client(platform.transport(), retry=RetryPolicy.disabled())
    await harness.refresh()
    platform.faults = [httpx.ReadTimeout("slow")]
    with pytest.raises(RequestTimeoutError) as caught:
        await harness.call(_create_refund())
    assert isinstance(caught.value, TransportError)
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
