"""When to retry a call, and how long to wait: :class:`RetryPolicy`.

Retried (protocol reference §7.8): transport errors and timeouts (no usable answer),
HTTP 5xx, HTTP 429, and the platform codes ``SYSTEM_ERROR``, ``FREQUENCY_LIMITED`` and
``BANK_ERROR`` whatever the status. Never retried: ``SIGN_ERROR``, ``PARAM_ERROR`` and
every other business error, because sending the same request again gives the same
answer. Verification failures are not retried either: a response that fails its
signature check is refused, not asked for again.

A retry sends the *same body bytes* (freshly signed), so ``out_trade_no`` and
``out_refund_no`` never change between attempts: the platform treats a repeated
``out_refund_no`` as the same refund, which is what makes retrying a refund safe.

Delays come from :func:`wxpaykit.core.backoff.backoff_delay` (full jitter) with the
random source injected here, so tests pick the jitter.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable
from dataclasses import dataclass, field

from wxpaykit.core.backoff import backoff_delay
from wxpaykit.errors import ApiError, TransportError, WxPayKitError

__all__ = [
    "NEVER_RETRIED_CODES",
    "RETRIED_CODES",
    "RetryPolicy",
    "is_retryable",
]

#: Platform codes that mean "try again later", whatever the HTTP status (APIv2 spells
#: two of them without the underscore).
RETRIED_CODES = frozenset(
    {"SYSTEM_ERROR", "FREQUENCY_LIMITED", "BANK_ERROR", "SYSTEMERROR", "BANKERROR"}
)
#: Codes that are never retried, even when they arrive with a 5xx status.
NEVER_RETRIED_CODES = frozenset({"SIGN_ERROR", "PARAM_ERROR", "INVALID_REQUEST"})


def is_retryable(error: WxPayKitError) -> bool:
    """True for errors that another attempt may cure (see the module docstring)."""
    if isinstance(error, TransportError):
        return True
    if not isinstance(error, ApiError):
        return False
    if error.code in NEVER_RETRIED_CODES:
        return False
    return error.code in RETRIED_CODES or error.status_code >= 500 or error.status_code == 429


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How many attempts, how long in total, and the backoff between attempts.

    ``max_attempts`` counts the first attempt (1 disables retries);
    ``max_elapsed_seconds`` bounds the whole call including waits: no retry starts if
    its delay would end past that budget. ``failover`` switches to the client's
    backup base URL (``api2.mch.weixin.qq.com``) after a connection failure.
    """

    max_attempts: int = 3
    max_elapsed_seconds: float = 20.0
    base_delay_seconds: float = 0.25
    max_delay_seconds: float = 4.0
    failover: bool = False
    random: Callable[[], float] = field(default=_random.random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.max_elapsed_seconds < 0 or self.base_delay_seconds < 0:
            raise ValueError("time limits must not be negative")

    @classmethod
    def disabled(cls) -> RetryPolicy:
        """A policy that makes exactly one attempt."""
        return cls(max_attempts=1)

    def next_delay(
        self, attempt: int, error: WxPayKitError, *, elapsed_seconds: float
    ) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or ``None`` to give up.

        ``attempt`` is the 1-based number of the attempt that just failed with ``error``
        and ``elapsed_seconds`` the time spent on the call so far.
        """
        if attempt >= self.max_attempts or not is_retryable(error):
            return None
        delay = backoff_delay(
            attempt,
            base_seconds=self.base_delay_seconds,
            cap_seconds=self.max_delay_seconds,
            random=self.random,
        )
        if elapsed_seconds + delay > self.max_elapsed_seconds:
            return None
        return delay
