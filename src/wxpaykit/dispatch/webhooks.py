"""Standard Webhooks signatures (https://www.standardwebhooks.com), both directions.

Every webhook carries three headers::

    webhook-id: evt_…                 (the event id: the same on every retry and replay)
    webhook-timestamp: 1735689600     (seconds since the epoch, at this attempt)
    webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")> [v1,… …]

A secret is ``whsec_`` + base64 of random key bytes. During a rotation the sender
signs with every configured secret (space-separated signatures) and a receiver accepts
any one that matches, so old and new secrets overlap without a failed delivery.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from wxpaykit.errors import (
    ConfigurationError,
    MissingHeaderError,
    SignatureMismatchError,
    StaleTimestampError,
)

__all__ = [
    "WebhookSecret",
    "generate_webhook_secret",
    "sign_webhook",
    "verify_webhook",
]

_PREFIX = "whsec_"


@dataclass(frozen=True, slots=True)
class WebhookSecret:
    """An HMAC key; never printed (``repr`` hides it)."""

    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.key) < 16:
            raise ConfigurationError("a webhook secret needs at least 16 random bytes")

    @classmethod
    def parse(cls, text: str) -> WebhookSecret:
        """Parse ``whsec_<base64>`` (the prefix is optional, as in the spec's libraries)."""
        encoded = text.strip().removeprefix(_PREFIX)
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ConfigurationError("a webhook secret must be whsec_ + base64") from exc
        return cls(key)

    def render(self) -> str:
        """The ``whsec_…`` text form, for configuration files."""
        return _PREFIX + base64.b64encode(self.key).decode("ascii")


def generate_webhook_secret(num_bytes: int = 32) -> WebhookSecret:
    """A fresh random secret."""
    return WebhookSecret(_secrets.token_bytes(num_bytes))


def _signature(secret: WebhookSecret, message_id: str, timestamp: int, body: bytes) -> bytes:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return hmac.new(secret.key, signed, hashlib.sha256).digest()


def sign_webhook(
    message_id: str, timestamp: int, body: bytes, secrets: Sequence[WebhookSecret]
) -> str:
    """The ``webhook-signature`` value: one ``v1,`` signature per secret."""
    if not secrets:
        raise ConfigurationError("an HTTP sink needs at least one webhook secret")
    return " ".join(
        "v1," + base64.b64encode(_signature(secret, message_id, timestamp, body)).decode("ascii")
        for secret in secrets
    )


def verify_webhook(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[WebhookSecret],
    *,
    now_seconds: int,
    tolerance_seconds: int = 300,
) -> str:
    """Check a received webhook before parsing its body; returns the ``webhook-id``.

    Raises :class:`MissingHeaderError`, :class:`StaleTimestampError` (outside
    ``tolerance_seconds``, a replay defence) or :class:`SignatureMismatchError`.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        if not lowered.get(name):
            raise MissingHeaderError(name)
    message_id = lowered["webhook-id"]
    try:
        timestamp = int(lowered["webhook-timestamp"])
    except ValueError as exc:
        raise StaleTimestampError("webhook-timestamp is not an integer", skew_seconds=0) from exc
    skew = now_seconds - timestamp
    if abs(skew) > tolerance_seconds:
        raise StaleTimestampError(f"webhook-timestamp is {skew} s away from now", skew_seconds=skew)
    candidates: list[bytes] = []
    for token in lowered["webhook-signature"].split():
        version, _, encoded = token.partition(",")
        if version != "v1":
            continue
        try:
            candidates.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    for secret in secrets:
        expected = _signature(secret, message_id, timestamp, body)
        if any(hmac.compare_digest(expected, candidate) for candidate in candidates):
            return message_id
    raise SignatureMismatchError("no webhook signature matches the configured secrets")
