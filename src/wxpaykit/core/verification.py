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

import binascii
import datetime as dt
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from wxpaykit.core.keys import PlatformCertificate, WeChatPayPublicKey
from wxpaykit.core.serials import PUBLIC_KEY_ID_PREFIX, format_serial
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
# DER DigestInfo prefix for SHA-256 (RFC 8017 §9.2 note 1), the same fixed encoding
# OpenSSL's RSA_verify compares against.
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")

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


_REQUIRED_HEADERS = (
    "Wechatpay-Timestamp",
    "Wechatpay-Nonce",
    "Wechatpay-Signature",
    "Wechatpay-Serial",
)


def _spellings(name: str) -> tuple[str, ...]:
    # Frameworks keep header names (WSGI dicts), lower-case them (ASGI) or rename them
    # (Django's META: HTTP_WECHATPAY_SIGNATURE); protocol reference §10 pitfall 2.
    return (name, name.lower(), "HTTP_" + name.upper().replace("-", "_"))


# Built once: this lookup runs for every notification, so no string is built per call.
_SPELLINGS = {
    name: _spellings(name)
    for name in (*_REQUIRED_HEADERS, "Wechatpay-Signature-Type", "Request-ID")
}
_SPELLINGS["Request-ID"] += ("Request-Id",)

_HeaderValues = tuple[str, str, str, str, str | None, str | None]


def _get(headers: Mapping[str, str], name: str) -> str | None:
    for spelling in _SPELLINGS[name]:
        value = headers.get(spelling)
        if value is not None:
            return value
    return None


def _read_headers(headers: Mapping[str, str]) -> _HeaderValues:
    """``(timestamp, nonce, signature, serial, signature_type, request_id)``, stripped."""
    get = headers.get
    # Straight-line for the two common spellings (as sent, ASGI lower case): this runs for
    # every notification. An empty value counts as absent, as it does below.
    timestamp = get("Wechatpay-Timestamp") or get("wechatpay-timestamp")
    nonce = get("Wechatpay-Nonce") or get("wechatpay-nonce")
    signature = get("Wechatpay-Signature") or get("wechatpay-signature")
    serial = get("Wechatpay-Serial") or get("wechatpay-serial")
    if timestamp and nonce and signature and serial:
        signature_type = get("Wechatpay-Signature-Type") or get("wechatpay-signature-type")
        request_id = get("Request-ID") or get("request-id") or get("Request-Id")
    else:
        timestamp, nonce, signature, serial, signature_type, request_id = _read_rare_spellings(
            headers
        )
    serial = serial.strip() if serial is not None else ""
    if timestamp and nonce and signature and serial:
        timestamp, nonce, signature = timestamp.strip(), nonce.strip(), signature.strip()
        if timestamp and nonce and signature:
            return timestamp, nonce, signature, serial, signature_type, request_id
    # Something is missing or blank: _require() names the first such header.
    return (
        _require(timestamp, "Wechatpay-Timestamp", serial, request_id),
        _require(nonce, "Wechatpay-Nonce", serial, request_id),
        _require(signature, "Wechatpay-Signature", serial, request_id),
        _require(serial, "Wechatpay-Serial", serial, request_id),
        signature_type,
        request_id,
    )


def _read_rare_spellings(headers: Mapping[str, str]) -> tuple[str | None, ...]:
    # Django's META (HTTP_WECHATPAY_SIGNATURE), then any other casing in one pass.
    values = [_get(headers, name) for name in _SPELLINGS]
    if any(value is None for value in values[:4]):
        lowered = {key.lower(): value for key, value in headers.items()}
        values = [
            value if value is not None else lowered.get(name.lower())
            for name, value in zip(_SPELLINGS, values, strict=True)
        ]
    return tuple(values)


def _require(value: str | None, name: str, serial: str, request_id: str | None) -> str:
    if value is None or not (value := value.strip()):
        raise MissingHeaderError(name, serial=serial or None, request_id=request_id)
    return value


def extract_signed_headers(headers: Mapping[str, str]) -> SignedHeaders:
    """Pull the ``Wechatpay-*`` headers out of any mapping, whatever its key casing."""
    timestamp, nonce, signature, serial, signature_type, request_id = _read_headers(headers)
    return SignedHeaders(
        timestamp=timestamp,
        nonce=nonce,
        signature=signature,
        serial=serial,
        signature_type=signature_type,
        request_id=request_id,
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
        if serial.startswith(PUBLIC_KEY_ID_PREFIX):  # is_public_key_id(), inlined: hot path
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


class VerifiedSignature(NamedTuple):
    """What verification established: which key, and how far the sender's clock was off.

    A named tuple rather than a frozen dataclass: one is built per notification, and a
    frozen dataclass's ``__init__`` costs about a microsecond more (see docs/core.md).
    """

    serial: str
    key_kind: KeyKind
    timestamp: int
    skew_seconds: int
    request_id: str | None


def _not_unix_seconds(text: str, serial: str, request_id: str | None) -> StaleTimestampError:
    is_number = text.isascii() and text.isdigit()
    hint = " (milliseconds? WeChat sends seconds)" if is_number else ""
    return StaleTimestampError(
        f"Wechatpay-Timestamp {text!r} is not a Unix time in seconds{hint}",
        skew_seconds=0,
        serial=serial,
        request_id=request_id,
    )


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
    if isinstance(headers, SignedHeaders):
        text_timestamp, nonce, signature_text = headers.timestamp, headers.nonce, headers.signature
        serial, signature_type, request_id = (
            headers.serial,
            headers.signature_type,
            headers.request_id,
        )
    else:
        text_timestamp, nonce, signature_text, serial, signature_type, request_id = _read_headers(
            headers
        )
    if signature_type is not None and signature_type.strip() != SIGNATURE_TYPE:
        raise UnsupportedSignatureTypeError(
            f"Wechatpay-Signature-Type {signature_type!r} is not {SIGNATURE_TYPE}",
            serial=serial,
            request_id=request_id,
        )
    if signature_text.startswith(PROBE_PREFIX):
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
    # isascii(): str.isdigit() also accepts '²' and full-width digits, which int() rejects
    # or silently converts; ASGI decodes header bytes as latin-1, so '²' can arrive.
    if not (text_timestamp.isascii() and text_timestamp.isdigit() and len(text_timestamp) <= 11):
        raise _not_unix_seconds(text_timestamp, serial, request_id)
    timestamp = int(text_timestamp)
    skew = int(now.timestamp()) - timestamp
    if abs(skew) > tolerance_seconds:
        raise StaleTimestampError(
            f"Wechatpay-Timestamp is {skew:+d} s from now (allowed ±{tolerance_seconds} s)",
            skew_seconds=skew,
            serial=serial,
            request_id=request_id,
        )
    try:
        # strict_mode refuses non-alphabet characters and bad padding, like validate=True.
        signature = binascii.a2b_base64(signature_text, strict_mode=True)
    except (binascii.Error, ValueError):
        raise SignatureMismatchError(
            "Wechatpay-Signature is not valid base64", serial=serial, request_id=request_id
        ) from None
    message = build_response_message(text_timestamp, nonce, body)
    if not _rsa_sha256_verifies(public_key, signature, message):
        raise SignatureMismatchError(
            "signature does not match the raw body under the selected key",
            serial=serial,
            request_id=request_id,
        )
    # tuple.__new__ skips the named tuple's Python-level __new__: one frame less per call.
    return tuple.__new__(VerifiedSignature, (serial, kind, timestamp, skew, request_id))


def _rsa_sha256_verifies(public_key: rsa.RSAPublicKey, signature: bytes, message: bytes) -> bool:
    """RSASSA-PKCS1-v1_5 verification with SHA-256 (RFC 8017 §8.2.2), encode-and-compare.

    Equivalent to ``public_key.verify(signature, message, PKCS1v15(), SHA256())`` and
    about 3 µs cheaper per call, which matters on the notification hot path: the library
    call fetches the digest by name and sets it on a fresh context each time. Here OpenSSL
    does the public-key operation and checks the ``00 01 FF..FF 00`` padding (at least 8
    ``FF``); what follows the padding must equal DigestInfo(SHA-256) || H(message)
    exactly, which fixes every byte of the encoded message, as RFC 8017 step 4 requires.
    """
    # Step 1: the signature is exactly k octets. OpenSSL's recover would also take a
    # shorter one (a signature with its leading zero byte dropped); verify() refuses it.
    if len(signature) != (public_key.key_size + 7) // 8:
        return False
    try:
        recovered = public_key.recover_data_from_signature(signature, _PKCS1V15, None)
    except InvalidSignature:
        return False
    expected = _SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
    return hmac.compare_digest(recovered, expected)
