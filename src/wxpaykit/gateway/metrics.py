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

import bisect
from collections.abc import Iterator
from typing import Literal

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE_LATEST", "GatewayMetrics"]

#: The counters :meth:`GatewayMetrics.count` adds to.
CounterName = Literal["received", "acknowledged", "duplicates", "rejected", "failed"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

#: name -> (Prometheus name, help, label names)
_COUNTERS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "received": (
        "wxpaykit_notifications_received",
        "Notification requests received.",
        ("api",),
    ),
    "acknowledged": (
        "wxpaykit_notifications_acknowledged",
        "Notifications acknowledged after commit, by ledger outcome.",
        ("api", "outcome"),
    ),
    "duplicates": (
        "wxpaykit_notifications_duplicates",
        "Acknowledged notifications that were already recorded.",
        ("api",),
    ),
    "rejected": (
        "wxpaykit_notifications_rejected",
        "Notifications refused with a 4xx, by reason code.",
        ("api", "reason"),
    ),
    "failed": (
        "wxpaykit_notifications_failed",
        "Notifications answered 500 (storage or internal failure; WeChat retries).",
        ("api",),
    ),
}


class _Latency:
    """One label set's histogram: counts per bucket (not cumulative) and the sum."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(_LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self.total = 0.0


class GatewayMetrics:
    """The gateway's counters and latency histogram in a private registry.

    The values are plain integers updated on the request path (one event-loop thread
    per process, so no lock is needed, unlike ``prometheus_client``'s metric objects,
    which take one per update) and turned into Prometheus metric families when the
    registry is collected.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._counts: dict[tuple[str, tuple[str, ...]], int] = {}
        self._latency: dict[str, _Latency] = {}
        self.registry.register(_Families(self))

    def count(self, name: CounterName, *labels: str) -> None:
        """Add one to the counter ``name`` (received, acknowledged, ...) for ``labels``."""
        key = (name, labels)
        self._counts[key] = self._counts.get(key, 0) + 1

    def value(self, name: CounterName, *labels: str) -> int:
        """The counter ``name``'s value for ``labels`` (0 before the first count)."""
        return self._counts.get((name, labels), 0)

    def observe_latency(self, api: str, seconds: float) -> None:
        """Record one request-to-answer time."""
        latency = self._latency.get(api)
        if latency is None:
            latency = self._latency[api] = _Latency()
        latency.counts[bisect.bisect_left(_LATENCY_BUCKETS, seconds)] += 1
        latency.total += seconds

    def families(self) -> Iterator[Metric]:
        """The Prometheus metric families of the current values."""
        for name, (metric, documentation, label_names) in _COUNTERS.items():
            family = CounterMetricFamily(metric, documentation, labels=label_names)
            for (counter, labels), value in sorted(self._counts.items()):
                if counter == name:
                    family.add_metric(labels, value)
            yield family
        histogram = HistogramMetricFamily(
            "wxpaykit_notification_latency_seconds",
            "Time from request to answer.",
            labels=("api",),
        )
        for api, latency in sorted(self._latency.items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*_LATENCY_BUCKETS, float("inf")), latency.counts, strict=True):
                cumulative += count
                buckets.append((_bucket_label(bound), cumulative))
            histogram.add_metric((api,), buckets, latency.total)
        yield histogram

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


def _bucket_label(bound: float) -> str:
    # Prometheus's own spelling: "+Inf", and floats as repr (0.001, 1.0...).
    return "+Inf" if bound == float("inf") else repr(bound)


class _Families(Collector):
    """Hands the registry :meth:`GatewayMetrics.families` at each collection."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics.families()

    def describe(self) -> Iterator[Metric]:
        # Names only (for the registry's duplicate check): no values needed.
        return self._metrics.families()
