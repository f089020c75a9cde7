"""Redis is an accelerator: a dead or hung Redis sends nonce claims to the ledger."""

from __future__ import annotations

import asyncio
import time

import pytest

from wxpaykit.gateway.nonce import (
    LedgerNonceGuard,
    NonceClaim,
    NonceTicket,
    RedisNonceGuard,
    fail_fast_redis,
)
from wxpaykit.storage.ledger import SqlLedger

from .conftest import free_port


@pytest.mark.parametrize("kind", ["down", "hung"])
async def test_claims_fall_back_to_the_ledger(
    ledger: SqlLedger, kind: str, request: pytest.FixtureRequest
) -> None:
    port = request.getfixturevalue("silent_port") if kind == "hung" else free_port()
    redis = fail_fast_redis(f"redis://127.0.0.1:{port}/0", timeout_seconds=0.3)
    guard = RedisNonceGuard(
        redis, LedgerNonceGuard(ledger, tolerance_seconds=300), tolerance_seconds=300
    )

    async def claim() -> NonceTicket:
        return await asyncio.wait_for(
            guard.claim(
                "1900000109",
                "nonce-a",
                b"{}",
                now_ms=int(time.time() * 1000),
                notification_id="n-1",
            ),
            10,
        )

    started = time.monotonic()
    try:
        first = await claim()
        again = await claim()  # the same nonce again
        elapsed = time.monotonic() - started
    finally:
        await guard.batcher.aclose()
        await redis.aclose()
    assert first.claim is NonceClaim.CLAIMED
    assert not first.via_redis  # the ledger's table took it
    assert again.claim is NonceClaim.IN_FLIGHT  # and the ledger remembers it
    # Failing fast: a few timeouts' worth, not redis-py's default retries with backoff.
    assert elapsed < 3.0
    await guard.settle(first, acknowledged=True)  # nothing to do for ledger claims
