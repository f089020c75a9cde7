"""``client.parse_notification(headers, body)``: for apps that keep their own web framework.

Pass the request headers (any casing: ASGI lower-case, WSGI, or Django's
``request.META`` with ``HTTP_WECHATPAY_SIGNATURE``) and the *raw* body bytes, read
once and never re-serialised. The signature is verified before anything is parsed
(:func:`wxpaykit.core.notifications.parse_notification`) with the client's platform
keys; a notification signed by a certificate we do not know yet (rotation) makes the
key manager refresh once, single flight, and verification is tried again.

Answer ``204`` (or 200) when this returns, after storing what you need; answer 4xx/5xx
with ``{"code": "FAIL", "message": ...}`` when it raises (:func:`failure_body`), and
WeChat Pay delivers again later.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from wxpaykit.client._flow import Flow
from wxpaykit.client._refresh import KeyRefresh
from wxpaykit.core.notifications import Notification, parse_notification
from wxpaykit.errors import ConfigurationError, UnknownSerialError

__all__ = ["failure_body", "notification_flow"]


def notification_flow(
    client: KeyRefresh, headers: Mapping[str, str], body: bytes
) -> Flow[Notification]:
    """Verify, decrypt and parse one notification with ``client``'s keys."""
    keys = client.keys
    if keys.apiv3_key is None:
        raise ConfigurationError("parse_notification needs the APIv3 key")
    yield from client._ensure_keys_flow()
    seen = keys.generation
    try:
        return _parse(client, headers, body)
    except UnknownSerialError as exc:
        if not (yield from client._refresh_for_serial_flow(seen, exc.serial)):
            raise
    return _parse(client, headers, body)


def _parse(client: KeyRefresh, headers: Mapping[str, str], body: bytes) -> Notification:
    assert client.keys.apiv3_key is not None  # noqa: S101 - checked by the caller
    return parse_notification(
        headers,
        body,
        keys=client.keys.trusted,
        apiv3_key=client.keys.apiv3_key,
        now=client._now(),
        tolerance_seconds=client._tolerance_seconds,
    )


def failure_body(message: str) -> bytes:
    """The platform-shaped failure answer ``{"code":"FAIL","message":...}`` (≤64 chars)."""
    return json.dumps({"code": "FAIL", "message": message[:64]}, ensure_ascii=False).encode()
