"""The gateway's log lines: one JSON object per line, stamped in UTC, rendered as before."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import structlog

from wxpaykit.gateway.logs import IsoUtcStamper, configure_logging

_ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@pytest.fixture
def restore_structlog() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def test_stamper_formats_utc_with_microseconds() -> None:
    ticks = iter([1700000000.0, 1700000000.25, 1700000059.999999, 1700000060.5])
    stamper = IsoUtcStamper(clock=lambda: next(ticks))

    stamps = [stamper(None, "info", {})["timestamp"] for _ in range(4)]

    assert stamps == [
        "2023-11-14T22:13:20.000000Z",
        "2023-11-14T22:13:20.250000Z",
        "2023-11-14T22:14:19.999999Z",  # 59.999999 s stays in its second
        "2023-11-14T22:14:20.500000Z",  # a new second: the prefix is formatted again
    ]


def test_stamper_agrees_with_datetime() -> None:
    moment = 1767225599.123456  # the last second of 2025 UTC
    stamp = IsoUtcStamper(clock=lambda: moment)(None, "info", {})["timestamp"]

    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert parsed.utcoffset() == UTC.utcoffset(None)
    assert abs(parsed.timestamp() - moment) < 2e-6
    assert stamp.startswith("2025-12-31T23:59:59.")


def test_configured_lines_are_json_with_level_and_time(restore_structlog: None) -> None:
    stream = io.BytesIO()
    configure_logging("info", stream=stream)
    log = structlog.get_logger("wxpaykit.test")

    log.debug("hidden", detail=1)
    log.info("notification_acknowledged", mchid="1900007291", note="支付成功", events=2)
    log.warning("refused", code="BAD_SIGNATURE")

    lines = stream.getvalue().decode("utf-8").splitlines()
    assert len(lines) == 2  # debug is below the configured level
    first, second = (json.loads(line) for line in lines)
    assert first["event"] == "notification_acknowledged"
    assert first["level"] == "info"
    assert first["note"] == "支付成功"  # UTF-8, not \u escapes
    assert first["events"] == 2
    assert _ISO_UTC.match(first["timestamp"])
    logged = datetime.fromisoformat(first["timestamp"].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - logged).total_seconds()) < 60
    assert (second["level"], second["code"]) == ("warning", "BAD_SIGNATURE")
    assert "支付成功".encode() in stream.getvalue()


def test_values_json_cannot_hold_are_rendered_as_text(restore_structlog: None) -> None:
    stream = io.BytesIO()
    configure_logging("info", stream=stream)

    structlog.get_logger("wxpaykit.test").info("odd", value={1, 2}.__class__)

    line = json.loads(stream.getvalue())
    assert line["value"] == "<class 'set'>"
