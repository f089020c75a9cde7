"""Webhooks: HTTP POST signed per the Standard Webhooks specification.

Success is a 2xx answer within ``timeout_seconds``. 408, 429, 5xx, timeouts and
connection errors are transient; other 4xx are permanent (dead-lettered at once when
the sink's retry policy says so). The body is sent exactly as stored, never
re-serialised, so the signature covers the bytes the receiver reads. Requests go
over kept-alive connections (:mod:`wxpaykit.dispatch.sinks.http_pool`), at most
``max_connections`` at once.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping, Sequence

from wxpaykit.dispatch.clock import Clock, SystemClock
from wxpaykit.dispatch.sinks.base import OutgoingEvent, SinkResult
from wxpaykit.dispatch.sinks.http_pool import WebhookClient, check_headers
from wxpaykit.dispatch.webhooks import WebhookSecret, sign_webhook
from wxpaykit.errors import ConfigurationError, TransportError

__all__ = ["HttpSink", "is_permanent_status"]

USER_AGENT = "wxpaykit-webhooks/1"


def is_permanent_status(status_code: int) -> bool:
    """4xx other than 408 (timeout) and 429 (rate limited): retrying will not help."""
    return 400 <= status_code < 500 and status_code not in (408, 429)


def _retry_after_seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP-date: rare for webhooks; fall back to our own backoff
    return min(max(seconds, 0.0), 3600.0)


class HttpSink:
    """POST each event to ``url`` with ``webhook-*`` signature headers."""

    def __init__(
        self,
        name: str,
        *,
        url: str,
        secrets: Sequence[WebhookSecret],
        timeout_seconds: float = 5.0,
        headers: Mapping[str, str] | None = None,
        max_connections: int = 64,
        clock: Clock | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if not secrets:
            raise ConfigurationError(f"sink {name!r}: an HTTP sink needs at least one secret")
        if not url.startswith(("http://", "https://")):
            raise ConfigurationError(f"sink {name!r}: url must be http:// or https://")
        self.name = name
        self.url = url
        self.timeout_seconds = timeout_seconds
        self._secrets = tuple(secrets)
        self._extra_headers = dict(headers or {})
        try:
            check_headers(list(self._extra_headers.items()))
        except ConfigurationError as exc:
            raise ConfigurationError(f"sink {name!r}: {exc}") from None
        self._clock: Clock = clock or SystemClock()
        self._ssl_context = ssl_context
        self._max_connections = max_connections
        self._client: WebhookClient | None = None

    def _new_client(self) -> WebhookClient:
        return WebhookClient(
            self.url, max_connections=self._max_connections, ssl_context=self._ssl_context
        )

    async def open(self) -> None:
        """Create the connection pool (connections open on first use)."""
        if self._client is None:
            self._client = self._new_client()

    async def close(self) -> None:
        """Close the connection pool."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    def signed_headers(self, event: OutgoingEvent) -> dict[str, str]:
        """Headers for one attempt: a fresh timestamp, the stable event id."""
        timestamp = self._clock.now_ms() // 1000
        return {
            **self._extra_headers,
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": event.event_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign_webhook(event.event_id, timestamp, event.body, self._secrets),
        }

    async def deliver(self, event: OutgoingEvent) -> SinkResult:
        """One POST, answered within ``timeout_seconds``; the answer's status decides."""
        client = self._client
        if client is None:
            client = self._client = self._new_client()
        try:
            async with asyncio.timeout(self.timeout_seconds):
                answer = await client.post(event.body, list(self.signed_headers(event).items()))
        except TimeoutError:
            return SinkResult.failed(f"no answer within {self.timeout_seconds} s")
        except TransportError as exc:
            return SinkResult.failed(str(exc))
        status = answer.status_code
        if 200 <= status < 300:
            return SinkResult.ok(status)
        return SinkResult.failed(
            f"HTTP {status}",
            status_code=status,
            permanent=is_permanent_status(status),
            retry_after_seconds=_retry_after_seconds(answer.retry_after),
        )
