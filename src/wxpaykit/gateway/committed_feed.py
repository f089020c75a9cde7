"""Commits of the other gateway processes, heard over Redis pub/sub.

Each process remembers the notifications it committed (committed.py), so a copy that
reaches the same process is acknowledged without Redis or the database. With several
processes (``uvicorn --workers N``), a copy lands on another process about half the
time and then costs a Redis claim. :class:`CommittedFeed` publishes what a process
committed, batched per event-loop turn (one ``PUBLISH`` per group commit), and adds
what the others published to this process's set.

Like the committed markers the claim script reads, a key is published only after
its commit returned, so the set never holds a notification the database does not.
The feed is an accelerator: a message lost, late, or never sent (Redis down) only
sends the copy to the Redis claim or the ledger, which absorb it as before. Keys
carry the merchant, and the channel names the ledger's database (:func:`feed_channel`),
so deployments sharing a Redis never hear each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import structlog

from wxpaykit.gateway.committed import CommittedNotifications
from wxpaykit.gateway.redis_batch import listen

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from wxpaykit.gateway.redis_batch import RedisBatcher

__all__ = ["CommittedFeed", "feed_channel"]

_log = structlog.get_logger("wxpaykit.gateway.committed_feed")
_FIELD, _RECORD = "\t", "\n"
#: Seconds between attempts to subscribe again after Redis failed.
_RESUBSCRIBE_SECONDS = (0.5, 1.0, 2.0, 5.0)


def feed_channel(key_prefix: str, database_url: str) -> str:
    """The channel of the processes that record into ``database_url``.

    Pub/sub channels are shared by every database number of a Redis server, so the
    channel names the ledger: a gateway never takes another deployment's commits for
    its own. (The digest hides the URL's password; processes that reach one database
    by different URLs just do not share their commits, which costs only speed.)
    """
    tag = hashlib.sha256(database_url.encode()).hexdigest()[:16]
    return f"{key_prefix}committed:{tag}"


class CommittedFeed:
    """Publishes this process's commits and adds the other processes' to ``committed``."""

    def __init__(
        self,
        redis: Redis,
        batcher: RedisBatcher,
        committed: CommittedNotifications,
        *,
        channel: str,
    ) -> None:
        self._redis = redis
        self._batcher = batcher
        self._committed = committed
        self._channel = channel
        # Our own messages come back to us; the token tells them apart.
        self._token = secrets.token_hex(8)
        self._pending: list[tuple[str, str]] = []
        self._sending: set[asyncio.Future[Any]] = set()
        self.heard = 0
        self._failures = 0

    def publish(self, key: tuple[str, str]) -> None:
        """Announce ``key`` (call only after its commit); sent at the next loop turn."""
        mchid, notification_id = key
        if any(mark in mchid + notification_id for mark in (_FIELD, _RECORD)):
            return  # not representable in the message; copies take the usual path
        self._pending.append(key)
        if len(self._pending) == 1:
            asyncio.get_running_loop().call_soon(self._send_pending)

    def _send_pending(self) -> None:
        keys, self._pending = self._pending, []
        payload = _RECORD.join([self._token, *(f"{mchid}{_FIELD}{nid}" for mchid, nid in keys)])
        sent = self._batcher.send("PUBLISH", self._channel, payload)
        self._sending.add(sent)
        sent.add_done_callback(self._sent)

    def _sent(self, sent: asyncio.Future[Any]) -> None:
        self._sending.discard(sent)
        error = None if sent.cancelled() else sent.exception()
        if error is not None:  # an accelerator: the copies go the usual way
            _log.debug("committed_feed_publish_failed", error=type(error).__name__)

    def _heard(self, data: bytes) -> None:
        self._failures = 0  # subscribed and hearing: a later failure starts over
        self.receive(data)

    def receive(self, data: bytes | str) -> None:
        """Add the keys of one message (another process's commits) to the set."""
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        token, _, body = text.partition(_RECORD)
        if token == self._token or not body:
            return
        for record in body.split(_RECORD):
            mchid, sep, notification_id = record.partition(_FIELD)
            if sep and mchid and notification_id:
                self._committed.add((mchid, notification_id))
                self.heard += 1

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Listen while the block runs; publishes still queued are sent at its end."""
        listener = asyncio.get_running_loop().create_task(self._listen())
        try:
            yield
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            if self._pending:
                self._send_pending()
            if self._sending:
                await asyncio.wait(set(self._sending))

    async def _listen(self) -> None:
        self._failures = 0
        while True:
            try:
                await listen(self._redis, self._channel, self._heard)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down: copies take the usual path meanwhile
                _log.info("committed_feed_unavailable", error=type(exc).__name__)
                await asyncio.sleep(_RESUBSCRIBE_SECONDS[min(self._failures, 3)])
                self._failures += 1
