"""Wake a worker when events are committed: PostgreSQL ``LISTEN`` on a dedicated connection.

:func:`~wxpaykit.storage.events.append_events` sends one ``NOTIFY`` on
:data:`~wxpaykit.storage.events.EVENTS_CHANNEL` per call that queued events, from
inside the writer's transaction; PostgreSQL delivers it when (and only if) that
transaction commits. A listening worker then fans out and claims at once, whichever
process committed, instead of at its next poll.

Polling stays: it is what finds retries that fall due, and it covers every moment
the listener is not connected (another database, a lost connection, a pooler in
transaction mode that cannot ``LISTEN``). A lost connection is opened again with
backoff; each (re)connection wakes the worker once, for events committed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from wxpaykit.storage.events import EVENTS_CHANNEL

__all__ = ["CommitListener"]

logger = logging.getLogger("wxpaykit.dispatch")


class CommitListener:
    """Calls ``on_commit`` for each commit notification of this engine's schema."""

    def __init__(
        self,
        engine: AsyncEngine,
        on_commit: Callable[[], None],
        *,
        retry_seconds: tuple[float, float] = (0.5, 10.0),
        check_seconds: float = 15.0,
    ) -> None:
        """``retry_seconds``: first and longest wait before reconnecting.

        ``check_seconds``: how often an idle connection is checked with a query
        (a peer that vanished without closing the TCP connection sends no error).
        """
        self.engine = engine
        self.on_commit = on_commit
        self.retry_seconds = retry_seconds
        self.check_seconds = check_seconds
        #: Notifications received for our schema (each one woke the worker).
        self.notifications = 0
        #: Successful LISTENs so far (1 + reconnections).
        self.connections = 0
        #: Whether a LISTEN is in place right now.
        self.listening = False
        #: The server process of the listening connection (for diagnostics and tests).
        self.backend_pid: int | None = None
        self._schema: str | None = None

    def _on_notification(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        # The payload names the writer's schema: several installations may share a
        # database; another one's commits are not ours to fan out.
        if payload == self._schema:
            self.notifications += 1
            self.on_commit()

    async def run(self, stopping: asyncio.Event) -> None:
        """Listen until ``stopping`` is set, reconnecting after any failure."""
        delay = self.retry_seconds[0]
        while not stopping.is_set():
            try:
                await self._listen(stopping)
                delay = self.retry_seconds[0]
            except Exception as exc:
                logger.warning(
                    "commit listener: %s: %s; polling meanwhile, reconnecting in %.1f s",
                    type(exc).__name__,
                    exc,
                    delay,
                )
            self.listening = False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stopping.wait()
            delay = min(self.retry_seconds[1], delay * 2)

    async def _listen(self, stopping: asyncio.Event) -> None:
        # A connection from the engine's pool, so it has the engine's connect arguments
        # (credentials, TLS, search_path), then detached: it is not returned to the
        # pool and does not count against its size; closing it closes it.
        connection: AsyncConnection = await self.engine.connect()
        driver: Any = None
        try:
            raw = await connection.get_raw_connection()
            driver = raw.driver_connection  # before detaching, which forgets it
            raw.detach()
            lost = asyncio.Event()
            driver.add_termination_listener(lambda _connection: lost.set())
            self._schema = await driver.fetchval("SELECT current_schema()")
            self.backend_pid = driver.get_server_pid()
            await driver.add_listener(EVENTS_CHANNEL, self._on_notification)
            self.listening = True
            self.connections += 1
            if self.connections > 1:
                logger.info("commit listener: listening again (pid %s)", self.backend_pid)
            self.on_commit()  # anything committed while nobody listened
            await self._watch(driver, lost, stopping)
        finally:
            self.listening = False
            if driver is not None and not driver.is_closed():
                if stopping.is_set():
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(2):
                            await driver.close()
                if not driver.is_closed():
                    driver.terminate()
            with contextlib.suppress(Exception):
                await connection.close()

    async def _watch(self, driver: Any, lost: asyncio.Event, stopping: asyncio.Event) -> None:
        """Return when stopping; raise when the connection is lost."""
        while not stopping.is_set():
            waiters = {
                asyncio.ensure_future(lost.wait()),
                asyncio.ensure_future(stopping.wait()),
            }
            try:
                done, _ = await asyncio.wait(
                    waiters, timeout=self.check_seconds, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for waiter in waiters:
                    waiter.cancel()
            if lost.is_set():
                raise ConnectionError("listening connection closed")
            if not done:
                async with asyncio.timeout(5):
                    await driver.fetchval("SELECT 1")
