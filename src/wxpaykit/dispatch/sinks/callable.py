"""In-process handlers given by import path (``myshop.payments:on_event``), sync or async."""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, cast

from wxpaykit.dispatch.events import EventEnvelope, parse_event
from wxpaykit.dispatch.sinks.base import OutgoingEvent, SinkResult
from wxpaykit.errors import ConfigurationError

__all__ = ["CallableSink", "EventHandler", "load_handler"]

#: ``handler(event)``; returning normally means delivered, raising means retry.
EventHandler = Callable[[EventEnvelope], Awaitable[object] | object]


def load_handler(import_path: str) -> EventHandler:
    """Resolve ``package.module:attribute`` to a callable."""
    module_name, _, attribute = import_path.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(
            f"handler {import_path!r} must look like 'package.module:function'"
        )
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"cannot import {module_name!r} for handler {import_path!r}"
        ) from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as exc:
            raise ConfigurationError(f"{module_name!r} has no attribute {attribute!r}") from exc
    if not callable(target):
        raise ConfigurationError(f"handler {import_path!r} is not callable")
    return cast(EventHandler, target)


class CallableSink:
    """Calls a function with the parsed :class:`EventEnvelope`.

    Async functions are awaited on the worker's loop; plain functions run in a thread
    so a slow handler cannot stall other deliveries. Any exception is a failed attempt
    (retried by the sink's policy).
    """

    def __init__(self, name: str, handler: EventHandler | str) -> None:
        self.name = name
        self._handler = load_handler(handler) if isinstance(handler, str) else handler
        self._is_async = inspect.iscoroutinefunction(self._handler) or inspect.iscoroutinefunction(
            getattr(self._handler, "__call__", None)  # noqa: B004 - async callable objects
        )

    async def open(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to release."""

    async def deliver(self, event: OutgoingEvent) -> SinkResult:
        """Call the handler once."""
        envelope = parse_event(event.body)
        try:
            if self._is_async:
                await cast(Awaitable[object], self._handler(envelope))
            else:
                await asyncio.to_thread(self._handler, envelope)
        except Exception as exc:
            # The handler is the merchant's own code; its message helps them debug.
            return SinkResult.failed(f"handler raised {type(exc).__name__}: {exc}"[:300])
        return SinkResult.ok()
