"""Prometheus counters of the gateway, served at ``/metrics``.

Each app gets its own registry, so several apps in one process (tests, the demo)
never share counts. Names follow Prometheus conventions::

    wxpaykit_notifications_received_total{api}
    wxpaykit_notifications_acknowledged_total{api, outcome}   outcome = RecordOutcome
    wxpaykit_notifications_duplicates_total{api}
    wxpaykit_notifications_rejected_total{api, reason}        reason = the reply code
    wxpaykit_notifications_failed_total{api}                  answered 500
    wxpaykit_notification_latency_seconds{api}                histogram, request to answer
"""

from __future__ import annotations

from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "GatewayMetrics"]

#: The counters :meth:`GatewayMetrics.count` adds to.
CounterName = Literal["received", "acknowledged", "duplicates", "rejected", "failed"]
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class GatewayMetrics:
    """The gateway's counters and latency histogram in a private registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.received = Counter(
            "wxpaykit_notifications_received",
            "Notification requests received.",
            ["api"],
            registry=self.registry,
        )
        self.acknowledged = Counter(
            "wxpaykit_notifications_acknowledged",
            "Notifications acknowledged after commit, by ledger outcome.",
            ["api", "outcome"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "wxpaykit_notifications_duplicates",
            "Acknowledged notifications that were already recorded.",
            ["api"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "wxpaykit_notifications_rejected",
            "Notifications refused with a 4xx, by reason code.",
            ["api", "reason"],
            registry=self.registry,
        )
        self.failed = Counter(
            "wxpaykit_notifications_failed",
            "Notifications answered 500 (storage or internal failure; WeChat retries).",
            ["api"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "wxpaykit_notification_latency_seconds",
            "Time from request to answer.",
            ["api"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

        # Children per label values, looked up once: ``labels()`` validates its
        # arguments and takes a lock on every call, on the path every request takes.
        self._children: dict[tuple[str, tuple[str, ...]], Any] = {}

    def count(self, name: CounterName, *labels: str) -> None:
        """Add one to the counter ``name`` (received, acknowledged, ...) for ``labels``."""
        self._child(name, labels).inc()

    def observe_latency(self, api: str, seconds: float) -> None:
        """Record one request-to-answer time."""
        self._child("latency", (api,)).observe(seconds)

    def _child(self, name: str, labels: tuple[str, ...]) -> Any:
        key = (name, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = getattr(self, name).labels(*labels)
        return child

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)

    def snapshot(self) -> dict[str, float]:
        """Flat ``{"name{label=value,...}": value}`` of every sample (for the demo and tests)."""
        values: dict[str, float] = {}
        for family in self.registry.collect():
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                values[f"{sample.name}{{{labels}}}"] = sample.value
        return values
