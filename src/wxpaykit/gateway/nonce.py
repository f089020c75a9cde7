"""The ``Wechatpay-Nonce`` replay guard: Redis ``SET NX EX`` when configured, else the ledger.

A nonce is claimed after the signature and timestamp checks pass, so only authentic,
fresh messages reach it. Its time to live covers the whole timestamp window
(``2 × tolerance`` plus a minute of clock drift between gateway processes): after
that, the timestamp check alone refuses the replay.

What a repeated nonce means, and why it can never lose a payment:

* WeChat Pay re-signs every retry (fresh timestamp, fresh nonce; its retries span 24 h
  and every SDK enforces a 5-minute window), so a repeated nonce is either a replay
  or a link-failover twin carrying byte-identical headers.
* With Redis, the claim is ``PENDING`` until the ledger commit, then ``ACKED`` with
  the body digest. A repeat of an acknowledged message (same nonce, same body) is
  acknowledged again (it is durable: answering 204 is the truth) and counted as a
  duplicate; a repeat while the first copy is still in flight gets 409
  ``REPLAYED_NONCE``, and WeChat Pay re-sends later under a new nonce, which the
  ledger's unique notification id then absorbs. If processing fails, the claim is
  released, so an identical retry is not refused.
* Without Redis, :meth:`Ledger.claim_nonce` is a plain unique insert and cannot be
  released: every repeat gets 409, and the re-signed retry completes the work.

Redis is an accelerator, never the source of truth: when it errors, the guard falls
back to the ledger for that request.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

import structlog

from wxpaykit.errors import WxPayKitError

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from wxpaykit.storage.base import Ledger

__all__ = [
    "LedgerNonceGuard",
    "NonceClaim",
    "NonceGuard",
    "NonceTicket",
    "RedisNonceGuard",
    "nonce_ttl_seconds",
]

_log = structlog.get_logger("wxpaykit.gateway.nonce")
_PENDING = "P"
_ACKED_PREFIX = "A:"
#: Clock drift tolerated between gateway processes sharing one guard.
_DRIFT_SECONDS = 60


def nonce_ttl_seconds(tolerance_seconds: int) -> int:
    """How long a claimed nonce is remembered: the whole acceptance window plus drift."""
    return 2 * tolerance_seconds + _DRIFT_SECONDS


class NonceClaim(StrEnum):
    """What claiming a nonce found."""

    CLAIMED = "claimed"  # first sighting: go on
    IN_FLIGHT = "in_flight"  # seen, not (known to be) acknowledged: refuse with 409
    ACKED = "acked"  # seen with this very body and already committed: acknowledge again


@dataclass(frozen=True, slots=True)
class NonceTicket:
    """A claim to settle once the outcome is known."""

    key: str
    body_digest: str
    claim: NonceClaim
    via_redis: bool


class NonceGuard(Protocol):
    """Claims nonces and settles the claims."""

    async def claim(self, mchid: str, nonce: str, body: bytes, *, now_ms: int) -> NonceTicket:
        """Claim ``nonce`` for ``mchid``; the ticket says whether it was new."""
        ...

    async def settle(self, ticket: NonceTicket, *, acknowledged: bool) -> None:
        """Mark the claim acknowledged (after commit) or release it (after a failure)."""
        ...


class LedgerNonceGuard:
    """Nonces in the ledger's table: durable, shared by every process, never released."""

    def __init__(self, ledger: Ledger, *, tolerance_seconds: int) -> None:
        self._ledger = ledger
        self._ttl_ms = nonce_ttl_seconds(tolerance_seconds) * 1000

    async def claim(self, mchid: str, nonce: str, body: bytes, *, now_ms: int) -> NonceTicket:
        """Insert the nonce; a conflict means it was seen inside the window."""
        fresh = await self._ledger.claim_nonce(mchid, nonce, expires_at_ms=now_ms + self._ttl_ms)
        state = NonceClaim.CLAIMED if fresh else NonceClaim.IN_FLIGHT
        return NonceTicket(f"{mchid}:{nonce}", "", state, via_redis=False)

    async def settle(self, ticket: NonceTicket, *, acknowledged: bool) -> None:
        """Nothing to do: ledger claims expire by time only."""


class RedisNonceGuard:
    """Nonces in Redis (``SET NX EX``), falling back to the ledger when Redis fails."""

    def __init__(
        self,
        redis: Redis,
        fallback: LedgerNonceGuard,
        *,
        tolerance_seconds: int,
        key_prefix: str = "wxpaykit:nonce:",
    ) -> None:
        self._redis = redis
        self._fallback = fallback
        self._ttl = nonce_ttl_seconds(tolerance_seconds)
        self._prefix = key_prefix

    async def claim(self, mchid: str, nonce: str, body: bytes, *, now_ms: int) -> NonceTicket:
        """``SET key PENDING NX EX ttl``; on conflict, read whether it was acknowledged."""
        key = f"{self._prefix}{mchid}:{nonce}"
        digest = hashlib.sha256(body).hexdigest()
        try:
            created = await self._redis.set(key, _PENDING, nx=True, ex=self._ttl)
            if created:
                return NonceTicket(key, digest, NonceClaim.CLAIMED, via_redis=True)
            current = await self._redis.get(key)
        except (OSError, WxPayKitError, _redis_error()) as exc:
            _log.warning("redis_unavailable_nonce_fallback", error=type(exc).__name__)
            return await self._fallback.claim(mchid, nonce, body, now_ms=now_ms)
        value = current.decode() if isinstance(current, bytes) else current
        if value == _ACKED_PREFIX + digest:
            return NonceTicket(key, digest, NonceClaim.ACKED, via_redis=True)
        return NonceTicket(key, digest, NonceClaim.IN_FLIGHT, via_redis=True)

    async def settle(self, ticket: NonceTicket, *, acknowledged: bool) -> None:
        """Record the acknowledgement, or release the claim so an identical retry passes."""
        if not ticket.via_redis or ticket.claim is not NonceClaim.CLAIMED:
            return
        try:
            if acknowledged:
                await self._redis.set(
                    ticket.key, _ACKED_PREFIX + ticket.body_digest, xx=True, ex=self._ttl
                )
            else:
                await self._redis.delete(ticket.key)
        except (OSError, _redis_error()) as exc:
            # Losing the mark only costs a 409 on a replay, never a payment.
            _log.warning("redis_unavailable_nonce_settle", error=type(exc).__name__)


def _redis_error() -> type[Exception]:
    from redis.exceptions import RedisError

    return RedisError
