"""The backoff formula and the retry policy's decisions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wxpaykit.client.retry import RetryPolicy, is_retryable
from wxpaykit.core.backoff import backoff_ceiling, backoff_delay
from wxpaykit.errors import (
    ApiError,
    BadRequestError,
    ConfigurationError,
    PlatformServerError,
    RateLimitedError,
    RequestTimeoutError,
    TransportError,
    UnauthorizedError,
    VerificationError,
)


def test_ceiling_doubles_then_caps() -> None:
    assert [backoff_ceiling(n, base_seconds=0.5, cap_seconds=3) for n in range(1, 6)] == [
        0.5,
        1.0,
        2.0,
        3.0,
        3.0,
    ]
    assert backoff_ceiling(10_000, base_seconds=1, cap_seconds=7) == 7


def test_full_jitter_uses_the_injected_random_source() -> None:
    assert backoff_delay(3, base_seconds=1, cap_seconds=10, random=lambda: 0.25) == 1.0
    assert backoff_delay(3, base_seconds=1, cap_seconds=10, random=lambda: 0.0) == 0.0


@given(st.integers(min_value=1, max_value=200), st.floats(min_value=0, max_value=1))
def test_delay_stays_within_the_window(attempt: int, fraction: float) -> None:
    delay = backoff_delay(attempt, base_seconds=0.25, cap_seconds=4, random=lambda: fraction)
    assert 0 <= delay <= 4


def test_nonsense_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="start at 1"):
        backoff_ceiling(0, base_seconds=1, cap_seconds=1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        backoff_delay(1, base_seconds=1, cap_seconds=1, random=lambda: 2.0)
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


def _api(cls: type[ApiError], status: int, code: str) -> ApiError:
    return cls(status_code=status, code=code, message="m")


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (TransportError("x"), True),
        (RequestTimeoutError("x"), True),
        (_api(PlatformServerError, 500, "SYSTEM_ERROR"), True),
        (_api(PlatformServerError, 502, "SERVICE_UNAVAILABLE"), True),
        (_api(RateLimitedError, 429, "FREQUENCY_LIMITED"), True),
        (_api(ApiError, 403, "BANK_ERROR"), True),
        (_api(BadRequestError, 400, "PARAM_ERROR"), False),
        (_api(UnauthorizedError, 401, "SIGN_ERROR"), False),
        (_api(PlatformServerError, 500, "SIGN_ERROR"), False),
        (_api(ApiError, 403, "NOT_ENOUGH"), False),
        (VerificationError("x"), False),
        (ConfigurationError("x"), False),
    ],
)
def test_what_is_retried(error: Exception, retried: bool) -> None:
    assert is_retryable(error) is retried  # type: ignore[arg-type]


def test_policy_caps_attempts_and_total_time() -> None:
    policy = RetryPolicy(max_attempts=3, max_elapsed_seconds=2, random=lambda: 1.0)
    error = TransportError("x")
    assert policy.next_delay(1, error, elapsed_seconds=0) == 0.25
    assert policy.next_delay(2, error, elapsed_seconds=1.4) == 0.5
    assert policy.next_delay(2, error, elapsed_seconds=1.6) is None  # 1.6 + 0.5 > 2
    assert policy.next_delay(3, error, elapsed_seconds=0) is None
    assert RetryPolicy.disabled().next_delay(1, error, elapsed_seconds=0) is None
