"""The database nonce guard (used when Redis is not configured)."""

from __future__ import annotations

import asyncio

from tests.storage.conftest import FakeClock
from wxpaykit.storage.ledger import SqlLedger


async def test_a_nonce_is_claimed_once_until_it_expires(
    ledger: SqlLedger, mchid: str, clock: FakeClock
) -> None:
    expires = clock.now_ms + 300_000
    assert await ledger.claim_nonce(
        mchid, "5K8264ILTKCH16CQ2502SI8ZNMTM67VS", expires_at_ms=expires
    )
    assert not await ledger.claim_nonce(
        mchid, "5K8264ILTKCH16CQ2502SI8ZNMTM67VS", expires_at_ms=expires
    )
    # another merchant's identical nonce is unrelated
    assert await ledger.claim_nonce(
        mchid + "0", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS", expires_at_ms=expires
    )

    clock.advance(299_999)
    assert not await ledger.claim_nonce(mchid, "5K8264ILTKCH16CQ2502SI8ZNMTM67VS", expires_at_ms=1)
    clock.advance(1)  # expires_at_ms reached: the slot is free again
    assert await ledger.claim_nonce(
        mchid, "5K8264ILTKCH16CQ2502SI8ZNMTM67VS", expires_at_ms=clock.now_ms + 300_000
    )
    assert not await ledger.claim_nonce(mchid, "5K8264ILTKCH16CQ2502SI8ZNMTM67VS", expires_at_ms=1)


async def test_concurrent_claims_of_one_nonce_have_one_winner(
    ledger: SqlLedger, mchid: str, clock: FakeClock
) -> None:
    expires = clock.now_ms + 300_000
    await ledger.claim_nonce(mchid, "expired-one", expires_at_ms=clock.now_ms - 1)

    fresh = await asyncio.gather(
        *(ledger.claim_nonce(mchid, "fresh-one", expires_at_ms=expires) for _ in range(20))
    )
    recycled = await asyncio.gather(
        *(ledger.claim_nonce(mchid, "expired-one", expires_at_ms=expires) for _ in range(20))
    )

    assert fresh.count(True) == 1
    assert recycled.count(True) == 1


async def test_purge_removes_only_expired_nonces(
    ledger: SqlLedger, mchid: str, clock: FakeClock
) -> None:
    await ledger.claim_nonce(mchid, "old", expires_at_ms=clock.now_ms - 1)
    await ledger.claim_nonce(mchid, "new", expires_at_ms=clock.now_ms + 1_000)

    assert await ledger.purge_expired_nonces() >= 1

    assert not await ledger.claim_nonce(mchid, "new", expires_at_ms=clock.now_ms + 1_000)
