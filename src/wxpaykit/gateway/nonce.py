"""The ``Wechatpay-Nonce`` replay guard: Redis ``SET NX EX`` when configured, else the ledger.

A nonce is claimed after the signature and timestamp checks pass, so only authentic,
fresh messages reach it. Its time to live covers the whole timestamp window
(``2 × tolerance`` plus a minute of clock drift between gateway processes): after
that, the timestamp check alone refuses the replay.

What a repeated nonce means, and why it can never lose a payment:

* WeChat Pay re-signs every retry (fresh timestamp, fresh nonce; its retries span 24 h
  and every SDK enforces a 5-minute window), so a repeated nonce is either a replay
  or a link-failover twin carrying byte-identical headers.
* With Redis, the claim holds the body digest and is pending until the ledger commit,
  then acknowledged (the notification's committed marker, below, is set). A repeat
  of an acknowledged message (same nonce, same body) is acknowledged again (it is
  durable: answering 204 is the truth) and counted as a duplicate; a repeat while
  the first copy is still in flight gets 409 ``REPLAYED_NONCE``, and WeChat Pay
  re-sends later under a new nonce, which the ledger's unique notification id then
  absorbs. If processing fails, the claim is
  released, so an identical retry is not refused.
* Without Redis, :meth:`Ledger.claim_nonce` is a plain unique insert and cannot be
  released: every repeat gets 409, and the re-signed retry completes the work.

* With Redis, the claim also asks, in the same round trip (one Lua script), whether
  the notification id is already known to be committed (a marker set after each
  commit): then the copy is a ``DUPLICATE`` acknowledged without touching the
  database. The marker is written only after the ledger's commit, so it never
  claims more than the database holds.

Redis is an accelerator, never the source of truth: when it errors, the guard falls
back to the ledger for that request.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from wxpaykit.errors import WxPayKitError
from wxpaykit.gateway.redis_batch import RedisBatcher

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from wxpaykit.storage.base import Ledger

__all__ = [
    "LedgerNonceGuard",
    "NonceClaim",
    "NonceGuard",
    "NonceTicket",
    "RedisNonceGuard",
    "fail_fast_redis",
    "nonce_ttl_seconds",
]

_log = structlog.get_logger("wxpaykit.gateway.nonce")
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
    DUPLICATE = "duplicate"  # a new nonce, but the notification id is already committed


@dataclass(frozen=True, slots=True)
class NonceTicket:
    """A claim to settle once the outcome is known."""

    key: str
    body_digest: str
    claim: NonceClaim
    via_redis: bool
    committed_key: str = ""


class NonceGuard(Protocol):
    """Claims nonces and settles the claims."""

    async def claim(
        self, mchid: str, nonce: str, body: bytes, *, now_ms: int, notification_id: str = ""
    ) -> NonceTicket:
        """Claim ``nonce`` for ``mchid``; the ticket says whether it was new.

        ``notification_id`` lets a guard that knows committed notifications answer
        :attr:`NonceClaim.DUPLICATE` for a fresh copy of one.
        """
        ...

    async def settle(self, ticket: NonceTicket, *, acknowledged: bool) -> None:
        """Mark the claim acknowledged (after commit) or release it (after a failure)."""
        ...

    def settle_soon(self, ticket: NonceTicket, *, acknowledged: bool) -> asyncio.Future[Any] | None:
        """Start :meth:`settle` without waiting: a future that is done when the mark is
        written (failures are logged by the guard), or None when there is nothing to do."""
        ...


class LedgerNonceGuard:
    """Nonces in the ledger's table: durable, shared by every process, never released."""

    def __init__(self, ledger: Ledger, *, tolerance_seconds: int) -> None:
        self._ledger = ledger
        self._ttl_ms = nonce_ttl_seconds(tolerance_seconds) * 1000

    async def claim(
        self, mchid: str, nonce: str, body: bytes, *, now_ms: int, notification_id: str = ""
    ) -> NonceTicket:
        """Insert the nonce; a conflict means it was seen inside the window."""
        fresh = await self._ledger.claim_nonce(mchid, nonce, expires_at_ms=now_ms + self._ttl_ms)
        state = NonceClaim.CLAIMED if fresh else NonceClaim.IN_FLIGHT
        return NonceTicket(f"{mchid}:{nonce}", "", state, via_redis=False)

    async def settle(self, ticket: NonceTicket, *, acknowledged: bool) -> None:
        """Nothing to do: ledger claims expire by time only."""

    def settle_soon(self, ticket: NonceTicket, *, acknowledged: bool) -> asyncio.Future[Any] | None:
        """Nothing to do: ledger claims expire by time only."""
        return None


#: One round trip: claim the nonce (holding ``P:<body digest>``) and, if it is new, ask
#: whether the notification is already committed. Answers C (claimed), D (duplicate of a
#: committed notification), A (this very request, same nonce and body, is durable: it
#: was acknowledged, or its notification is committed) or I (in flight or a different
#: body: refuse). KEYS[2] is the committed marker, or KEYS[1] again when there is none.
_CLAIM_SCRIPT = """
local committed = KEYS[2] ~= KEYS[1] and redis.call('EXISTS', KEYS[2]) == 1
if redis.call('SET', KEYS[1], 'P:' .. ARGV[2], 'NX', 'EX', ARGV[1]) then
  if committed then return 'D' end
  return 'C'
end
local held = redis.call('GET', KEYS[1])
if held == 'A:' .. ARGV[2] or (committed and held == 'P:' .. ARGV[2]) then return 'A' end
return 'I'
"""
_CLAIMS = {
    b"C": NonceClaim.CLAIMED,
    b"D": NonceClaim.DUPLICATE,
    b"A": NonceClaim.ACKED,
    b"I": NonceClaim.IN_FLIGHT,
}


class RedisNonceGuard:
    """Nonces in Redis (``SET NX EX``), falling back to the ledger when Redis fails.

    Keys carry the merchant as a hash tag (``{mchid}``), so a nonce and its
    notification's committed marker live in one Redis Cluster slot.
    """

    def __init__(
        self,
        redis: Redis,
        fallback: LedgerNonceGuard,
        *,
        tolerance_seconds: int,
        key_prefix: str = "wxpaykit:",
        committed_ttl_seconds: int = 3600,
    ) -> None:
        self._redis = redis
        self._fallback = fallback
        self._ttl = nonce_ttl_seconds(tolerance_seconds)
        self._committed_ttl = committed_ttl_seconds
        self._prefix = key_prefix
        # Concurrent requests' commands share pipelines (see redis_batch.py).
        self._batch = RedisBatcher(redis)
        self._script_sha = hashlib.sha1(_CLAIM_SCRIPT.encode(), usedforsecurity=False).hexdigest()
        from redis.exceptions import NoScriptError  # redis is installed: we were given a client

        self._no_script = NoScriptError

    @property
    def batcher(self) -> RedisBatcher:
        """The guard's pipelining front (other Redis writes of the request path share it)."""
        return self._batch

    @property
    def key_prefix(self) -> str:
        """The prefix of every key (and channel) this guard uses."""
        return self._prefix

    async def warm_up(self) -> None:
        """Connect the pipeline and load the claim script now, at start-up, so the first
        claims neither wait for a connection nor meet ``NOSCRIPT`` on a fresh Redis."""
        await self._redis.script_load(_CLAIM_SCRIPT)
        await self._batch.execute("PING")

    async def claim(
        self, mchid: str, nonce: str, body: bytes, *, now_ms: int, notification_id: str = ""
    ) -> NonceTicket:
        """Run the claim script (see :data:`_CLAIM_SCRIPT`) in one round trip."""
        key = f"{self._prefix}nonce:{{{mchid}}}:{nonce}"
        committed = f"{self._prefix}done:{{{mchid}}}:{notification_id}" if notification_id else ""
        digest = hashlib.sha256(body).hexdigest()
        try:
            answer = await self._run_claim_script(key, committed or key, digest)
        except (OSError, WxPayKitError, _redis_error()) as exc:
            _log.warning("redis_unavailable_nonce_fallback", error=type(exc).__name__)
            return await self._fallback.claim(mchid, nonce, body, now_ms=now_ms)
        claim = _CLAIMS[answer if isinstance(answer, bytes) else str(answer).encode()]
        return NonceTicket(key, digest, claim, via_redis=True, committed_key=committed)

    async def _run_claim_script(self, key: str, committed: str, digest: str) -> Any:
        """EVALSHA the claim script; after a Redis restart (NOSCRIPT), load it and retry."""
        try:
            return await self._batch.execute(
                "EVALSHA", self._script_sha, 2, key, committed, self._ttl, digest
            )
        except self._no_script:
            await self._redis.script_load(_CLAIM_SCRIPT)
            return await self._batch.execute(
                "EVALSHA", self._script_sha, 2, key, committed, self._ttl, digest
            )

    async def settle(self, ticket: NonceTicket, *, acknowledged: bool) -> None:
        """Record the acknowledgement, or release the claim: one command either way.

        With a notification id, the committed marker is the acknowledgement: the claim
        script answers ``A`` for a repeat of the nonce holding this body once the marker
        is there. Without one, the nonce itself is marked ``A:<digest>``.
        """
        future = self.settle_soon(ticket, acknowledged=acknowledged)
        if future is not None:
            await asyncio.wait({future})

    def settle_soon(self, ticket: NonceTicket, *, acknowledged: bool) -> asyncio.Future[Any] | None:
        """:meth:`settle`'s command, queued on the batcher without a task of its own."""
        if not ticket.via_redis or ticket.claim is not NonceClaim.CLAIMED:
            return None
        if not acknowledged:
            future = self._batch.send("DEL", ticket.key)
        elif ticket.committed_key:
            future = self._batch.send("SET", ticket.committed_key, "1", "EX", self._committed_ttl)
        else:
            acked = _ACKED_PREFIX + ticket.body_digest
            future = self._batch.send("SET", ticket.key, acked, "XX", "EX", self._ttl)
        future.add_done_callback(_log_settle_failure)
        return future


def _log_settle_failure(future: asyncio.Future[Any]) -> None:
    # Losing the mark only costs a 409 on a replay, never a payment.
    error = None if future.cancelled() else future.exception()
    if error is not None:
        _log.warning("redis_unavailable_nonce_settle", error=type(error).__name__)


def fail_fast_redis(url: str, *, timeout_seconds: float = 1.0) -> Redis:
    """A Redis client for the nonce guard: short timeouts and no retries.

    When Redis is down or hung, a claim should fail at once so the request falls back
    to the ledger's table; redis-py's default retries with backoff would hold every
    notification for seconds instead.
    """
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return Redis.from_url(
        url,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        retry=Retry(NoBackoff(), retries=0),
    )


def _redis_error() -> type[Exception]:
    from redis.exceptions import RedisError

    return RedisError
