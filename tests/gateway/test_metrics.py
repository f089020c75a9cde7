"""The gateway's metrics as Prometheus exposes them: counters and the latency histogram."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from wxpaykit.gateway.metrics import GatewayMetrics


def test_counters_and_the_latency_histogram_are_exposed_with_their_labels() -> None:
    metrics = GatewayMetrics()
    metrics.count("received", "v3")
    metrics.count("received", "v3")
    metrics.count("rejected", "v3", "STALE_TIMESTAMP")
    for seconds in (0.0005, 0.001, 0.003, 0.2, 9.0):
        metrics.observe_latency("v3", seconds)

    values = metrics.snapshot()
    assert values["wxpaykit_notifications_received_total{api=v3}"] == 2
    assert values["wxpaykit_notifications_rejected_total{api=v3,reason=STALE_TIMESTAMP}"] == 1
    assert metrics.value("received", "v3") == 2
    assert metrics.value("failed", "v3") == 0
    # Buckets are cumulative and "le" is inclusive: 0.001 holds 0.0005 and 0.001.
    bucket = "wxpaykit_notification_latency_seconds_bucket{api=v3,le=%s}"
    assert values[bucket % "0.001"] == 2
    assert values[bucket % "0.005"] == 3
    assert values[bucket % "0.25"] == 4
    assert values[bucket % "5.0"] == 4
    assert values[bucket % "+Inf"] == 5
    assert values["wxpaykit_notification_latency_seconds_count{api=v3}"] == 5
    assert abs(values["wxpaykit_notification_latency_seconds_sum{api=v3}"] - 9.2045) < 1e-9

    # The text format parses back, with every family declared even before any count.
    families = {
        family.name: family for family in text_string_to_metric_families(metrics.render().decode())
    }
    assert families["wxpaykit_notifications_failed"].type == "counter"
    assert families["wxpaykit_notifications_failed"].samples == []
    assert families["wxpaykit_notification_latency_seconds"].type == "histogram"


def test_each_app_counts_alone() -> None:
    first, second = GatewayMetrics(), GatewayMetrics()
    first.count("received", "v2")
    assert second.value("received", "v2") == 0
    assert "wxpaykit_notifications_received_total{api=v2}" not in second.snapshot()
