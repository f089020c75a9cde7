"""Redis Streams via redis-py: XADD, made idempotent by a per-event marker key.

Redis has no idempotent XADD before 8.x, so one Lua script checks a marker
``<stream>:sent:<event id>`` and appends only when it is absent, atomically. A retry
after a lost reply therefore adds no second entry while the marker lives
(``dedupe_seconds``, a day by default). The entry holds ``id``, ``type``, ``mchid``,
``aggregate`` and ``body`` (the JSON envelope).
"""

from __future__ import annotations

from typing import Any

from wxpaykit.dispatch.sinks.base import OutgoingEvent, SinkResult

__all__ = ["RedisStreamSink"]

_IDEMPOTENT_XADD = """
local existing = redis.call('GET', KEYS[2])
if existing then return existing end
local args = {KEYS[1]}
if tonumber(ARGV[2]) > 0 then
  table.insert(args, 'MAXLEN'); table.insert(args, '~'); table.insert(args, ARGV[2])
end
table.insert(args, '*')
for i = 3, #ARGV do table.insert(args, ARGV[i]) end
local entry = redis.call('XADD', unpack(args))
redis.call('SET', KEYS[2], entry, 'EX', tonumber(ARGV[1]))
return entry
"""


class RedisStreamSink:
    """Append each event to the stream ``stream`` (``{type}`` is substituted)."""

    def __init__(
        self,
        name: str,
        *,
        url: str,
        stream: str = "wxpaykit:events",
        maxlen: int = 0,
        dedupe_seconds: int = 86_400,
        timeout_seconds: float = 5.0,
    ) -> None:
        self.name = name
        self.url = url
        self.stream = stream
        self.maxlen = maxlen
        self.dedupe_seconds = dedupe_seconds
        self.timeout_seconds = timeout_seconds
        self._client: Any = None
        self._script: Any = None

    async def open(self) -> None:
        """Create the client (connections are made on first use)."""
        from redis.asyncio import Redis

        if self._client is None:
            self._client = Redis.from_url(
                self.url,
                socket_timeout=self.timeout_seconds,
                socket_connect_timeout=self.timeout_seconds,
            )
            self._script = self._client.register_script(_IDEMPOTENT_XADD)

    async def close(self) -> None:
        """Close the connection pool."""
        if self._client is not None:
            await self._client.aclose()
        self._client = None
        self._script = None

    async def deliver(self, event: OutgoingEvent) -> SinkResult:
        """XADD once per event id."""
        from redis.exceptions import RedisError

        try:
            if self._script is None:
                await self.open()
            stream = self.stream.format(type=event.type, mchid=event.mchid)
            await self._script(
                keys=[stream, f"{stream}:sent:{event.event_id}"],
                args=[
                    self.dedupe_seconds,
                    self.maxlen,
                    "id",
                    event.event_id,
                    "type",
                    event.type,
                    "mchid",
                    event.mchid,
                    "aggregate",
                    event.aggregate_key,
                    "body",
                    event.body,
                ],
            )
        except (RedisError, ConnectionError, TimeoutError, OSError) as exc:
            return SinkResult.failed(f"Redis: {type(exc).__name__}: {exc}"[:300])
        return SinkResult.ok()
