"""The seam between the I/O-free client logic and the two clients that do I/O.

Everything a call does (build, sign, send, retry, verify, refresh keys) is written once
as a generator, a *flow*, that yields the few :data:`Action` values needing I/O and
receives their outcome (or has their exception thrown in). :class:`~.sync_client.WeChatPay`
and :class:`~.async_client.AsyncWeChatPay` are drivers: they perform actions with
``httpx.Client``/``threading`` or ``httpx.AsyncClient``/``asyncio`` and nothing else, so
sync and async cannot drift apart. (httpx's ``Auth.auth_flow`` uses the same trick.)
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar

import httpx

__all__ = ["Action", "Blocking", "Flow", "Holding", "Send", "SingleFlight", "Sleep", "Stream"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``request`` (signed by ``auth`` if given); outcome: the read ``httpx.Response``.

    ``mtls`` selects the HTTP client holding the APIv2 client certificate.
    Transport failures are thrown into the flow as ``httpx.TransportError``.
    """

    request: httpx.Request
    auth: httpx.Auth | None = field(default=None, repr=False)
    mtls: bool = False


@dataclass(frozen=True, slots=True)
class Stream:
    """Send ``request`` and pass each body chunk of a 2xx answer to ``on_chunk``.

    Outcome: the closed response (its body read only when it is not 2xx).
    """

    request: httpx.Request
    on_chunk: Callable[[bytes], None] = field(repr=False)
    auth: httpx.Auth | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait ``seconds`` (``time.sleep`` or ``asyncio.sleep``, both injectable)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Blocking:
    """Run a blocking callable (file or Redis cache); async clients use a worker thread."""

    function: Callable[[], Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class SingleFlight:
    """Run ``flow()`` holding the client's refresh lock (one refresh at a time).

    The lock is a ``threading.Lock`` or an ``asyncio.Lock``; the flow itself checks on
    entry whether someone else already did the work while it waited.
    """

    flow: Callable[[], Flow[Any]] = field(repr=False)


@dataclass(frozen=True, slots=True)
class Holding:
    """Run ``flow()`` inside the blocking context manager ``lock()`` (cross-process lock)."""

    lock: Callable[[], AbstractContextManager[object]] = field(repr=False)
    flow: Callable[[], Flow[Any]] = field(repr=False)


Action: TypeAlias = Send | Stream | Sleep | Blocking | SingleFlight | Holding
Flow: TypeAlias = Generator[Action, Any, T]
