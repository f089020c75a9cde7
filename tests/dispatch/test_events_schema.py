"""The published event schema is current, and our own webhook verifier behaves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wxpaykit.dispatch.events import EventType, parse_event, render_json_schema
from wxpaykit.dispatch.webhooks import (
    WebhookSecret,
    generate_webhook_secret,
    sign_webhook,
    verify_webhook,
)
from wxpaykit.errors import (
    ConfigurationError,
    MissingHeaderError,
    SignatureMismatchError,
    StaleTimestampError,
)
from wxpaykit.storage.events import NewEvent, render_envelope

SCHEMA_FILE = Path(__file__).parents[2] / "docs" / "events.schema.json"


def test_committed_schema_file_is_current() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == render_json_schema(), (
        "regenerate with: wxpaykit events schema > docs/events.schema.json"
    )


def test_stored_envelope_parses_and_types_its_data() -> None:
    event = NewEvent(
        type="refund.succeeded",
        mchid="1900000109",
        aggregate_key="1900000109:o1",
        dedup_key="k",
        payload={
            "out_trade_no": "o1",
            "out_refund_no": "r1",
            "refund_status": "SUCCESS",
            "refund": 50,
            "total": 100,
        },
    )
    envelope = parse_event(render_envelope(event, now_ms=1_700_000_000_123))
    assert envelope.id == event.event_id
    assert envelope.created_at == "2023-11-14T22:13:20.123Z"
    assert envelope.typed_data().model_dump()["refund"] == 50
    assert json.loads(SCHEMA_FILE.read_text())["properties"]["type"]["enum"] == [
        t.value for t in EventType
    ]


def test_verify_webhook_accepts_ours_and_refuses_tampering() -> None:
    secret = generate_webhook_secret()
    body = b'{"id":"evt_1"}'
    headers = {
        "webhook-id": "evt_1",
        "webhook-timestamp": "1000",
        "webhook-signature": sign_webhook("evt_1", 1000, body, [secret]),
    }
    assert verify_webhook(body, headers, [secret], now_seconds=1100) == "evt_1"
    with pytest.raises(SignatureMismatchError):
        verify_webhook(body + b" ", headers, [secret], now_seconds=1100)
    with pytest.raises(SignatureMismatchError):
        verify_webhook(body, headers, [generate_webhook_secret()], now_seconds=1100)
    with pytest.raises(StaleTimestampError):
        verify_webhook(body, headers, [secret], now_seconds=1000 + 301)
    with pytest.raises(MissingHeaderError):
        verify_webhook(body, {**headers, "webhook-id": ""}, [secret], now_seconds=1100)
    assert WebhookSecret.parse(secret.render()) == secret
    assert secret.render() not in repr(secret)
    with pytest.raises(ConfigurationError):
        WebhookSecret.parse("whsec_not base64!")
    with pytest.raises(ConfigurationError):
        WebhookSecret.parse("whsec_c2hvcnQ=")  # 5 bytes
