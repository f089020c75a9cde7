"""Envelope to verified, decrypted, typed notification (protocol reference §6).

The order is the security argument: the signature is checked over the raw body bytes
first, and only authentic bytes are parsed. Parsing attacker-controlled JSON before
verification would hand the parser to anyone who can reach the notify URL.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from pydantic import ValidationError

from wxpaykit.core.crypto import ApiV3Key, aes_gcm_open
from wxpaykit.core.models import (
    EventType,
    NotificationEnvelope,
    RefundResource,
    Transaction,
)
from wxpaykit.core.verification import (
    DEFAULT_TOLERANCE_SECONDS,
    TrustedKeys,
    VerifiedSignature,
    verify_signature,
)
from wxpaykit.errors import MalformedMessageError

__all__ = [
    "MAX_NOTIFICATION_BYTES",
    "Notification",
    "decrypt_resource",
    "parse_envelope",
    "parse_notification",
    "parse_resource",
]

#: Real notifications are about 1 KiB; anything near this limit is not from WeChat Pay.
MAX_NOTIFICATION_BYTES = 64 * 1024

_ALGORITHM = "AEAD_AES_256_GCM"


class Notification(NamedTuple):
    """An authentic, decrypted notification.

    ``resource`` is a :class:`Transaction` for ``TRANSACTION.*``, a
    :class:`RefundResource` for ``REFUND.*``, and a plain dict for other event types.
    (A named tuple, not a frozen dataclass, because one is built per notification.)
    """

    envelope: NotificationEnvelope
    resource: Transaction | RefundResource | dict[str, Any]
    signature: VerifiedSignature

    @property
    def id(self) -> str:
        """The notification id (``id`` of the envelope), the platform's dedup key."""
        return self.envelope.id

    @property
    def event_type(self) -> EventType | str:
        """The ``event_type`` of the envelope."""
        return self.envelope.event_type


def parse_envelope(body: bytes) -> NotificationEnvelope:
    """Parse the outer JSON of a notification (call only after verification)."""
    try:
        # The validator itself rather than model_validate_json(): same validation and
        # errors, without the wrapper's keyword handling (~0.7 µs per call, hot path).
        envelope: NotificationEnvelope = NotificationEnvelope.__pydantic_validator__.validate_json(
            body
        )
    except ValidationError as exc:
        raise MalformedMessageError(_describe(exc, "notification envelope")) from None
    return envelope


def decrypt_resource(envelope: NotificationEnvelope, apiv3_key: ApiV3Key | bytes | str) -> bytes:
    """Open the envelope's AES-256-GCM ``resource``; returns the plaintext JSON bytes."""
    resource = envelope.resource
    if resource.algorithm != _ALGORITHM:
        raise MalformedMessageError(f"unsupported resource algorithm {resource.algorithm!r}")
    return aes_gcm_open(
        apiv3_key,
        nonce=resource.nonce,
        associated_data=resource.associated_data,
        ciphertext=resource.ciphertext,
    )


def parse_resource(
    envelope: NotificationEnvelope, plaintext: bytes
) -> Transaction | RefundResource | dict[str, Any]:
    """Parse decrypted resource JSON into the model its type calls for."""
    kind = envelope.resource.original_type or str(envelope.event_type).split(".", 1)[0].lower()
    try:
        if kind == "transaction":
            transaction: Transaction = Transaction.__pydantic_validator__.validate_json(plaintext)
            return transaction
        if kind == "refund":
            refund: RefundResource = RefundResource.__pydantic_validator__.validate_json(plaintext)
            return refund
        parsed = json.loads(plaintext)
    except ValidationError as exc:
        raise MalformedMessageError(_describe(exc, f"{kind} resource")) from None
    except ValueError:
        raise MalformedMessageError("decrypted resource is not JSON") from None
    if not isinstance(parsed, dict):
        raise MalformedMessageError("decrypted resource is not a JSON object")
    return parsed


def parse_notification(
    headers: Mapping[str, str],
    body: bytes,
    *,
    keys: TrustedKeys,
    apiv3_key: ApiV3Key | bytes | str,
    now: dt.datetime,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    max_body_bytes: int = MAX_NOTIFICATION_BYTES,
) -> Notification:
    """Verify, decrypt and parse one APIv3 notification.

    ``body`` must be the raw request body exactly as received. Raises a
    :class:`~wxpaykit.errors.VerificationError` subclass, :class:`DecryptionError` or
    :class:`MalformedMessageError`; never returns an unverified notification.
    """
    if len(body) > max_body_bytes:
        raise MalformedMessageError(f"body of {len(body)} bytes exceeds {max_body_bytes}")
    verified = verify_signature(headers, body, keys, now=now, tolerance_seconds=tolerance_seconds)
    # parse_envelope(), and parse_resource() for payments, written out: the two calls cost
    # about 1 µs per notification (docs/core.md, Benchmark). Same validation, same errors.
    try:
        envelope: NotificationEnvelope = NotificationEnvelope.__pydantic_validator__.validate_json(
            body
        )
    except ValidationError as exc:
        raise MalformedMessageError(_describe(exc, "notification envelope")) from None
    plaintext = decrypt_resource(envelope, apiv3_key)
    resource: Transaction | RefundResource | dict[str, Any]
    if envelope.resource.original_type == "transaction":
        try:
            resource = Transaction.__pydantic_validator__.validate_json(plaintext)
        except ValidationError as exc:
            raise MalformedMessageError(_describe(exc, "transaction resource")) from None
    else:
        resource = parse_resource(envelope, plaintext)
    # tuple.__new__ skips the named tuple's Python-level __new__: one frame less per call.
    return tuple.__new__(Notification, (envelope, resource, verified))


def _describe(exc: ValidationError, what: str) -> str:
    # Name the fields and the problem, never the values: they may be personal data.
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['type']}"
        for err in exc.errors()[:5]
    )
    return f"invalid {what} ({problems})"
