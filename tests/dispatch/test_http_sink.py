"""Webhooks end to end: a real receiver, signatures checked with the standardwebhooks library."""

from __future__ import annotations

import json

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.dispatch.conftest import TestDatabase
from tests.dispatch.helpers import append, body_id, payment_event, settings, statuses
from tests.dispatch.receiver import Receiver, wait_until
from wxpaykit.dispatch.clock import SystemClock
from wxpaykit.dispatch.webhooks import generate_webhook_secret
from wxpaykit.dispatch.worker import Worker


async def test_delivered_webhooks_verify_with_standardwebhooks(
    sqlite_db: TestDatabase, receiver: Receiver
) -> None:
    secret = generate_webhook_secret()
    ids = await append(
        sqlite_db,
        [
            payment_event("order-1"),
            payment_event("order-2"),
            payment_event("order-1", "payment.closed"),
        ],
        now_ms=SystemClock().now_ms(),
    )
    worker = Worker(
        sqlite_db.engine,
        settings(
            {"name": "shop", "type": "http", "url": receiver.url, "secrets": [secret.render()]}
        ),
    )
    async with worker.running():
        await wait_until(lambda: len(receiver.delivered()) == 3, message="three webhooks")
    verifier = Webhook(secret.render())
    received = receiver.delivered()
    for request in received:
        payload = verifier.verify(request.body, request.headers)
        assert payload["id"] == request.headers["webhook-id"]
        assert payload["schema_version"] == 1
        assert request.headers["content-type"] == "application/json"
    assert sorted(body_id(r.body) for r in received) == sorted(ids)
    # order-1's two events arrive in commit order
    order_1 = [json.loads(r.body)["type"] for r in received if b'"order-1"' in r.body]
    assert order_1 == ["payment.succeeded", "payment.closed"]
    assert set((await statuses(sqlite_db)).values()) == {"delivered"}


async def test_rotation_signs_with_every_secret_and_a_wrong_secret_fails(
    sqlite_db: TestDatabase, receiver: Receiver
) -> None:
    old, new = generate_webhook_secret(), generate_webhook_secret()
    await append(sqlite_db, [payment_event("order-r")], now_ms=SystemClock().now_ms())
    worker = Worker(
        sqlite_db.engine,
        settings(
            {
                "name": "shop",
                "type": "http",
                "url": receiver.url,
                "secrets": [new.render(), old.render()],
            }
        ),
    )
    async with worker.running():
        await wait_until(lambda: len(receiver.delivered()) == 1, message="one webhook")
    (request,) = receiver.delivered()
    assert len(request.headers["webhook-signature"].split()) == 2
    for secret in (old, new):
        Webhook(secret.render()).verify(request.body, request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_webhook_secret().render()).verify(request.body, request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new.render()).verify(request.body.replace(b"order-r", b"order-x"), request.headers)
