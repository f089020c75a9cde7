"""Verifying WeChat Pay's signature on responses and notifications (protocol reference §3).

Checks run cheapest first, and each failure is its own exception:

1. the four ``Wechatpay-*`` headers are present (:class:`MissingHeaderError`), and
   ``Wechatpay-Signature-Type``, when sent, is ``WECHATPAY2-SHA256-RSA2048``;
2. a ``WECHATPAY/SIGNTEST/`` signature is a probe (:class:`SignatureProbeError`): the
   platform expects a 4xx/5xx and re-sends a genuinely signed copy;
3. the key is chosen by ``Wechatpay-Serial`` among the platform certificates *and* the
   WeChat Pay public key, both at once during migration (:class:`UnknownSerialError`),
   and a certificate must be valid now (:class:`CertificateNotValidError`);
4. the timestamp lies within ``tolerance_seconds`` of ``now`` (:class:`StaleTimestampError`);
5. the RSA signature matches the *raw* bytes (:class:`SignatureMismatchError`).

Nothing is parsed before step 5 succeeds.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from wxpaykit.core.keys import PlatformCertificate, WeChatPayPublicKey
from wxpaykit.core.serials import format_serial, is_public_key_id
from wxpaykit.core.signing import SIGNATURE_TYPE, build_response_message
from wxpaykit.errors import (
    CertificateNotValidError,
    MissingHeaderError,
    SignatureMismatchError,
    SignatureProbeError,
    StaleTimestampError,
    UnknownSerialError,
    UnsupportedSignatureTypeError,
)

__all__ = [
    "DEFAULT_TOLERANCE_SECONDS",
    "PROBE_PREFIX",
    "SignedHeaders",
    "TrustedKeys",
    "VerifiedSignature",
    "extract_signed_headers",
    "verify_signature",
]

DEFAULT_TOLERANCE_SECONDS = 300
PROBE_PREFIX = "WECHATPAY/SIGNTEST/"
_PKCS1V15 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()

KeyKind = Literal["certificate", "public_key"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedHeaders:
    """The signature headers of one message, already case-normalised."""

    timestamp: str
    nonce: str
    signature: str
    serial: str
    signature_type: str | None = None
    request_id: str | None = None


def _lookup(headers: Mapping[str, str], name: str) -> str | None:
    # Frameworks lower-case header names (ASGI), keep them (WSGI dicts) or rename them
    # (Django's META: HTTP_WECHATPAY_SIGNATURE); protocol reference §10 pitfall 2.
    for candidate in (name, name.lower(), "HTTP_" + name.upper().replace("-", "_")):
        value = headers.get(candidate)
        if value is not None:
            return value
    return None


def _lookup_any_case(headers: Mapping[str, str], name: str) -> str | None:
    value = _lookup(headers, name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return None


def extract_signed_headers(headers: Mapping[str, str]) -> SignedHeaders:
    """Pull the ``Wechatpay-*`` headers out of any mapping, whatever its key casing."""
    request_id = _lookup_any_case(headers, "Request-ID")
    serial = (_lookup_any_case(headers, "Wechatpay-Serial") or "").strip()
    values: dict[str, str] = {}
    for field_name, header in (
        ("timestamp", "Wechatpay-Timestamp"),
        ("nonce", "Wechatpay-Nonce"),
        ("signature", "Wechatpay-Signature"),
        ("serial", "Wechatpay-Serial"),
    ):
        value = _lookup_any_case(headers, header)
        if value is None or not value.strip():
            raise MissingHeaderError(header, serial=serial or None, request_id=request_id)
        values[field_name] = value.strip()
    return SignedHeaders(
        signature_type=_lookup_any_case(headers, "Wechatpay-Signature-Type"),
        request_id=request_id,
        **values,
    )


class TrustedKeys:
    """The keys WeChat Pay may sign with: platform certificates and/or the public key.

    Both kinds can be present at once (public-key migration, §3.5); the key is chosen by
    ``Wechatpay-Serial``. Certificates can be replaced at run time by the key manager;
    the swap is a single attribute assignment, so readers never see a half-updated set.
    """

    def __init__(
        self,
        *,
        certificates: Iterable[PlatformCertificate] = (),
        public_keys: Iterable[WeChatPayPublicKey] = (),
    ) -> None:
        self._certificates: dict[int, PlatformCertificate] = {}
        self._public_keys: dict[str, WeChatPayPublicKey] = {k.key_id: k for k in public_keys}
        self.replace_certificates(certificates)

    def replace_certificates(self, certificates: Iterable[PlatformCertificate]) -> None:
        """Swap in a new set of platform certificates (after a download or refresh)."""
        self._certificates = {int(c.serial_no, 16): c for c in certificates}

    def add_public_key(self, key: WeChatPayPublicKey) -> None:
        """Trust one more WeChat Pay public key."""
        self._public_keys = {**self._public_keys, key.key_id: key}

    @property
    def certificates(self) -> list[PlatformCertificate]:
        """The trusted platform certificates."""
        return list(self._certificates.values())

    @property
    def public_keys(self) -> list[WeChatPayPublicKey]:
        """The trusted WeChat Pay public keys."""
        return list(self._public_keys.values())

    def knows(self, serial: str) -> bool:
        """True when ``serial`` names a trusted certificate or public key."""
        try:
            self.find(serial)
        except UnknownSerialError:
            return False
        return True

    def find(self, serial: str) -> tuple[KeyKind, rsa.RSAPublicKey, PlatformCertificate | None]:
        """Return the key for ``serial``; raise :class:`UnknownSerialError` when unknown."""
        if is_public_key_id(serial):
            public_key = self._public_keys.get(serial)
            if public_key is not None:
                return "public_key", public_key.public_key, None
        else:
            try:
                number = int(serial, 16)
            except ValueError:
                number = -1
            certificate = self._certificates.get(number)
            if certificate is not None:
                return "certificate", certificate.public_key, certificate
        known = sorted(self._public_keys) + [format_serial(n) for n in self._certificates]
        raise UnknownSerialError(
            f"Wechatpay-Serial {serial!r} is not a trusted key (trusted: {', '.join(known) or 'none'})",
            serial=serial,
        )

    def newest_certificate(self) -> PlatformCertificate | None:
        """The certificate to encrypt sensitive fields with: the latest to become valid."""
        if not self._certificates:
            return None
        return max(self._certificates.values(), key=lambda c: (c.not_before, c.not_after))

    def encryption_key(self) -> tuple[str, rsa.RSAPublicKey]:
        """``(Wechatpay-Serial, key)`` for sensitive-field encryption (§8).

        The public key wins when configured: it is the platform's current mechanism and
        never rotates under us. Otherwise the newest platform certificate.
        """
        for key in self._public_keys.values():
            return key.key_id, key.public_key
        newest = self.newest_certificate()
        if newest is None:
            raise UnknownSerialError("no platform certificate or public key is configured")
        return newest.serial_no, newest.public_key


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedSignature:
    """What verification established: which key, and how far the sender's clock was off."""

    serial: str
    key_kind: KeyKind
    timestamp: int
    skew_seconds: int
    request_id: str | None


def _parse_timestamp(headers: SignedHeaders) -> int:
    text = headers.timestamp
    # isascii(): str.isdigit() also accepts '²' and full-width digits, which int() rejects
    # or silently converts; ASGI decodes header bytes as latin-1, so '²' can arrive.
    is_number = text.isascii() and text.isdigit()
    if not is_number or len(text) > 11:
        hint = " (milliseconds? WeChat sends seconds)" if is_number else ""
        raise StaleTimestampError(
            f"Wechatpay-Timestamp {text!r} is not a Unix time in seconds{hint}",
            skew_seconds=0,
            serial=headers.serial,
            request_id=headers.request_id,
        )
    return int(text)


def verify_signature(
    headers: Mapping[str, str] | SignedHeaders,
    body: bytes,
    keys: TrustedKeys,
    *,
    now: dt.datetime,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> VerifiedSignature:
    """Verify a response or notification over its raw ``body`` bytes.

    ``now`` is injected (an aware datetime) so tests and the doctor control the clock.
    A message whose timestamp is at most ``tolerance_seconds`` away from ``now`` passes.
    Returns what was verified; raises a :class:`VerificationError` subclass otherwise.
    """
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime")
    signed = headers if isinstance(headers, SignedHeaders) else extract_signed_headers(headers)
    serial, request_id = signed.serial, signed.request_id
    if signed.signature_type is not None and signed.signature_type.strip() != SIGNATURE_TYPE:
        raise UnsupportedSignatureTypeError(
            f"Wechatpay-Signature-Type {signed.signature_type!r} is not {SIGNATURE_TYPE}",
            serial=serial,
            request_id=request_id,
        )
    if signed.signature.startswith(PROBE_PREFIX):
        raise SignatureProbeError(
            "signature probe (WECHATPAY/SIGNTEST/): refuse it and WeChat Pay re-sends",
            serial=serial,
            request_id=request_id,
        )
    try:
        # find() compares certificate serials as numbers, so no normalising here: the
        # error then quotes the serial exactly as it was sent.
        kind, public_key, certificate = keys.find(serial)
    except UnknownSerialError as exc:
        raise UnknownSerialError(str(exc), serial=serial, request_id=request_id) from None
    if certificate is not None and not certificate.is_valid_at(now):
        raise CertificateNotValidError(
            f"platform certificate {certificate.serial_no} is valid only from "
            f"{certificate.not_before.isoformat()} to {certificate.not_after.isoformat()}",
            serial=serial,
            request_id=request_id,
        )
    timestamp = _parse_timestamp(signed)
    skew = int(now.timestamp()) - timestamp
    if abs(skew) > tolerance_seconds:
        raise StaleTimestampError(
            f"Wechatpay-Timestamp is {skew:+d} s from now (allowed ±{tolerance_seconds} s)",
            skew_seconds=skew,
            serial=serial,
            request_id=request_id,
        )
    try:
        signature = base64.b64decode(signed.signature, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureMismatchError(
            "Wechatpay-Signature is not valid base64", serial=serial, request_id=request_id
        ) from None
    message = build_response_message(signed.timestamp, signed.nonce, body)
    try:
        public_key.verify(signature, message, _PKCS1V15, _SHA256)
    except InvalidSignature:
        raise SignatureMismatchError(
            "signature does not match the raw body under the selected key",
            serial=serial,
            request_id=request_id,
        ) from None
    return VerifiedSignature(
        serial=serial,
        key_kind=kind,
        timestamp=timestamp,
        skew_seconds=skew,
        request_id=request_id,
    )
