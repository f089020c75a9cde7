"""Dispatch settings: which sinks exist and how each one is retried, limited and guarded.

Settings come from a TOML or JSON file (``wxpaykit worker --sinks sinks.toml``)::

    [worker]
    poll_interval_seconds = 0.02

    [[sinks]]
    name = "shop"
    type = "http"
    url = "https://shop.example/hooks/wxpay"
    secrets = ["whsec_…"]          # or secret_files = ["/run/secrets/wxpay_webhook"]
    concurrency = 16
    rate_per_second = 200
    event_types = ["payment.*", "refund.*"]
    retry = { max_age_seconds = 86400, dead_letter_permanent = true }
    breaker = { failure_threshold = 5, open_seconds = 30 }

Library code receives a :class:`DispatchSettings`; only the CLI reads files or the
environment.
"""

from __future__ import annotations

import fnmatch
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from wxpaykit.dispatch.retry import RetryPolicy
from wxpaykit.errors import ConfigurationError

__all__ = [
    "BreakerSettings",
    "CallableSinkConfig",
    "DispatchSettings",
    "HttpSinkConfig",
    "NatsSinkConfig",
    "RabbitMqSinkConfig",
    "RedisSinkConfig",
    "RetrySettings",
    "SinkConfig",
    "WorkerSettings",
    "load_dispatch_settings",
    "parse_dispatch_settings",
]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetrySettings(_Settings):
    """See :class:`wxpaykit.dispatch.retry.RetryPolicy`."""

    base_seconds: float = Field(default=15.0, ge=0)
    cap_seconds: float = Field(default=3 * 3600.0, ge=0)
    max_attempts: int | None = Field(default=None, ge=1)
    max_age_seconds: float | None = Field(default=24 * 3600.0 + 240.0, gt=0)
    dead_letter_permanent: bool = False

    def policy(self) -> RetryPolicy:
        """The equivalent policy value."""
        return RetryPolicy(**self.model_dump())


class BreakerSettings(_Settings):
    """Circuit breaker of one sink (state shared by all workers through the database)."""

    enabled: bool = True
    #: Consecutive transient failures that open the breaker.
    failure_threshold: int = Field(default=5, ge=1)
    #: First open period; doubles each time a half-open probe fails, up to the maximum.
    open_seconds: float = Field(default=30.0, gt=0)
    max_open_seconds: float = Field(default=600.0, gt=0)


class _SinkBase(_Settings):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    #: Deliveries in flight at once, per worker.
    concurrency: int = Field(default=8, ge=1, le=1000)
    #: Attempts per second, per worker (``None``: unlimited).
    rate_per_second: float | None = Field(default=None, gt=0)
    timeout_seconds: float = Field(default=5.0, gt=0)
    #: Shell-style patterns of event types this sink receives.
    event_types: tuple[str, ...] = ("*",)
    retry: RetrySettings = RetrySettings()
    breaker: BreakerSettings = BreakerSettings()

    def accepts(self, event_type: str) -> bool:
        """Whether events of ``event_type`` go to this sink."""
        return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in self.event_types)


class HttpSinkConfig(_SinkBase):
    """A Standard Webhooks endpoint."""

    type: Literal["http"]
    url: str = Field(pattern=r"^https?://")
    secrets: tuple[SecretStr, ...] = ()
    secret_files: tuple[Path, ...] = ()
    headers: dict[str, str] = Field(default_factory=dict)

    def secret_texts(self) -> list[str]:
        """Inline secrets, then those read from ``secret_files`` (newest first, by convention)."""
        texts = [secret.get_secret_value() for secret in self.secrets]
        for path in self.secret_files:
            try:
                texts.append(path.read_text(encoding="utf-8").strip())
            except OSError as exc:
                raise ConfigurationError(f"sink {self.name!r}: cannot read {path}") from exc
        if not texts:
            raise ConfigurationError(f"sink {self.name!r}: set secrets or secret_files")
        return texts


class CallableSinkConfig(_SinkBase):
    """An in-process function, ``package.module:function``."""

    type: Literal["callable"]
    target: str = Field(pattern=r"^[\w.]+:[\w.]+$")


class RabbitMqSinkConfig(_SinkBase):
    """A RabbitMQ exchange (``""`` is the default exchange: routing key = queue name)."""

    type: Literal["rabbitmq"]
    url: str = "amqp://guest:guest@127.0.0.1:5672/"
    exchange: str = "wxpaykit.events"
    exchange_type: Literal["topic", "direct", "fanout", "headers"] = "topic"
    routing_key: str = "{type}"


class NatsSinkConfig(_SinkBase):
    """A NATS JetStream subject (the stream must exist)."""

    type: Literal["nats"]
    url: str = "nats://127.0.0.1:4222"
    subject: str = "wxpaykit.events.{type}"
    stream: str | None = None


class RedisSinkConfig(_SinkBase):
    """A Redis stream."""

    type: Literal["redis"]
    url: str = "redis://127.0.0.1:6379/0"
    stream: str = "wxpaykit:events"
    maxlen: int = Field(default=0, ge=0)
    dedupe_seconds: int = Field(default=86_400, ge=1)


SinkConfig = Annotated[
    HttpSinkConfig | CallableSinkConfig | RabbitMqSinkConfig | NatsSinkConfig | RedisSinkConfig,
    Field(discriminator="type"),
]


class WorkerSettings(_Settings):
    """How one worker process polls and leases."""

    #: Sleep between polls when there is nothing to do.
    poll_interval_seconds: float = Field(default=0.02, gt=0, le=60)
    #: Largest number of deliveries claimed (and events fanned out) per query.
    batch_size: int = Field(default=200, ge=1, le=5000)
    #: Lease = sink timeout + this margin; a crashed worker's deliveries return after it.
    lease_margin_seconds: float = Field(default=10.0, gt=0)
    #: PostgreSQL: wake on each commit (LISTEN/NOTIFY) instead of only polling. Turn
    #: off behind a pooler in transaction mode, where LISTEN does not work.
    listen: bool = True
    #: Delete deliveries delivered longer ago than this, with their attempts (at start,
    #: then hourly; see :mod:`wxpaykit.dispatch.retention`). 0 keeps them forever.
    delivered_retention_days: float = Field(default=0, ge=0)


class DispatchSettings(_Settings):
    """Everything a worker needs besides the database URL."""

    worker: WorkerSettings = WorkerSettings()
    sinks: tuple[SinkConfig, ...] = ()

    def model_post_init(self, context: Any, /) -> None:
        """Refuse duplicate sink names: a delivery row names its sink."""
        names = [sink.name for sink in self.sinks]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"duplicate sink names: {', '.join(duplicates)}")


def parse_dispatch_settings(
    data: Mapping[str, Any], *, base_dir: Path | None = None
) -> DispatchSettings:
    """Validate a settings mapping; errors name the field, never echo values (secrets).

    ``base_dir`` (the folder of the file the mapping came from) anchors relative
    ``secret_files``, so ``serve``, ``worker`` and ``events`` read the same files
    whatever the working directory.
    """
    data = dict(data)
    sinks = data.get("sinks")
    if base_dir is not None and isinstance(sinks, list):
        data["sinks"] = [
            {**sink, "secret_files": [str(base_dir / Path(str(f)).expanduser()) for f in files]}
            if isinstance(sink, Mapping) and isinstance(files := sink.get("secret_files"), list)
            else sink
            for sink in sinks
        ]
    try:
        return DispatchSettings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        raise ConfigurationError(f"invalid dispatch settings: {problems}") from None


def load_dispatch_settings(path: Path) -> DispatchSettings:
    """Read settings from a ``.toml`` or ``.json`` file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read dispatch settings {path}") from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(
            f"{path}: not valid {path.suffix.lstrip('.') or 'TOML'}: {exc}"
        ) from None
    return parse_dispatch_settings(data, base_dir=path.parent)
