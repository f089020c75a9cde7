"""What this gateway process knows is committed, and the duplicates it absorbed alone.

Two thirds of the notifications a busy gateway sees can be copies of one it has
already recorded (WeChat Pay re-sends, concurrent twins). Once a notification's
transaction has committed, acknowledging a later copy needs no database work: the
ledger would only find the unique key taken. :class:`CommittedNotifications` remembers
the ids this process committed (bounded, oldest forgotten first); a copy found there
is acknowledged as a duplicate after the same signature, window, decryption and
merchant checks as any other. Forgetting is always safe (the copy then goes to the
ledger, which absorbs it); remembering an id that is not committed is impossible,
because ids are added only after :meth:`Ledger.record_notification` returned.

:class:`DuplicateTally` keeps the count those copies would have added to the ledger's
``duplicate_count`` and writes it in one statement per flush (every second, and at
shutdown), so the figures stay right without a transaction per copy. A crash loses at
most the last second of counts, never a notification.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog

from wxpaykit.storage.base import Ledger

__all__ = ["CommittedNotifications", "DuplicateTally"]

_log = structlog.get_logger("wxpaykit.gateway")


class CommittedNotifications:
    """A bounded set of ``(mchid, notification_id)`` known to be committed.

    Copies arrive within seconds (twins) to minutes (re-sends of a lost 2xx), so the
    last 50,000 commits (a few MiB) cover them; older copies go to the ledger.
    """

    def __init__(self, capacity: int = 50_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        # A dict keeps insertion order: the first key is the oldest, evicted first.
        self._keys: dict[tuple[str, str], None] = {}

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: tuple[str, str]) -> None:
        """Remember ``key`` (call only after its commit)."""
        if key in self._keys:
            return
        if len(self._keys) >= self._capacity:
            del self._keys[next(iter(self._keys))]
        self._keys[key] = None


class DuplicateTally:
    """Duplicates acknowledged without the ledger, written to it in batches."""

    def __init__(self, ledger: Ledger, *, interval_seconds: float = 1.0) -> None:
        self._ledger = ledger
        self._interval = interval_seconds
        self._counts: dict[tuple[str, str], int] = {}
        self._writing = 0

    @property
    def pending(self) -> int:
        """Copies counted but not yet written (including a write under way)."""
        return sum(self._counts.values()) + self._writing

    def note(self, key: tuple[str, str]) -> None:
        """Count one more copy of ``key``."""
        self._counts[key] = self._counts.get(key, 0) + 1

    async def flush(self) -> None:
        """Write the counts so far; on failure they are kept for the next flush."""
        counts, self._counts = self._counts, {}
        if not counts:
            return
        writing = sum(counts.values())
        self._writing += writing
        try:
            await self._ledger.count_duplicates(counts)
        except Exception as exc:  # a metric must not take the gateway down
            for key, copies in counts.items():
                self._counts[key] = self._counts.get(key, 0) + copies
            _log.warning("duplicate_counts_not_written", error=type(exc).__name__)
        finally:
            self._writing -= writing

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Flush every ``interval_seconds`` while the block runs, and once at its end."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(self._interval)
                await self.flush()

        task = asyncio.get_running_loop().create_task(loop())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self.flush()
