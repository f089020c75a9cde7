"""The exception tree of wxpaykit.

Callers catch by intent; every name ends in ``Error``::

    WxPayKitError
    ├── ConfigurationError            unusable setting or key material
    │   └── KeyLoadError              a key/certificate file that cannot be used (names the file)
    ├── VerificationError             the message must be refused (carries serial, request_id)
    │   ├── MissingHeaderError        a required Wechatpay-* header is absent or empty
    │   ├── UnsupportedSignatureTypeError
    │   ├── UnknownSerialError        Wechatpay-Serial names no trusted key
    │   ├── CertificateNotValidError  the selected platform certificate is expired / not yet valid
    │   ├── StaleTimestampError       Wechatpay-Timestamp outside the tolerance window
    │   ├── SignatureProbeError       a WECHATPAY/SIGNTEST/ probe (answer 4xx/5xx, WeChat re-sends)
    │   └── SignatureMismatchError    the RSA signature (or APIv2 sign) does not match
    ├── DecryptionError               AES-GCM tag / key / nonce / associated-data mismatch, OAEP failure
    ├── MalformedMessageError         authentic (or unsigned) bytes that do not parse as expected
    │   └── UnsafeXmlError            DTDs, entities, or oversized XML refused before parsing
    ├── TransportError                no usable HTTP response; may be retried
    │   └── RequestTimeoutError
    ├── ApiError                      the platform answered non-2xx: status, code, message, request_id
    │   ├── BadRequestError           400
    │   ├── UnauthorizedError         401 (SIGN_ERROR)
    │   ├── ForbiddenError            403
    │   ├── NotFoundError             404
    │   ├── RateLimitedError          429
    │   └── PlatformServerError       5xx
    ├── StorageError                  driver failure, cause chained
    └── DeliveryError                 a sink failed an event

Errors carry fields for programs and sentences for people. They never carry keys,
decrypted resources or bodies that may hold personal data.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ApiError",
    "BadRequestError",
    "CertificateNotValidError",
    "ConfigurationError",
    "DecryptionError",
    "DeliveryError",
    "ForbiddenError",
    "KeyLoadError",
    "MalformedMessageError",
    "MissingHeaderError",
    "NotFoundError",
    "PlatformServerError",
    "RateLimitedError",
    "RequestTimeoutError",
    "SignatureMismatchError",
    "SignatureProbeError",
    "StaleTimestampError",
    "StorageError",
    "TransportError",
    "UnauthorizedError",
    "UnknownSerialError",
    "UnsafeXmlError",
    "UnsupportedSignatureTypeError",
    "VerificationError",
    "WxPayKitError",
]


class WxPayKitError(Exception):
    """Base class of every error raised by wxpaykit."""


class ConfigurationError(WxPayKitError):
    """A setting or key material cannot be used."""


class KeyLoadError(ConfigurationError):
    """A key or certificate could not be loaded; ``source`` names the file (or input)."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class VerificationError(WxPayKitError):
    """A response or notification failed verification and must be refused.

    ``serial`` is the ``Wechatpay-Serial`` header value (a public identifier, not a
    secret) and ``request_id`` the ``Request-ID`` header, when present.
    """

    #: Stable machine-readable reason, used by the gateway and the doctor command.
    reason_code = "VERIFICATION_FAILED"

    def __init__(
        self,
        message: str,
        *,
        serial: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.serial = serial
        self.request_id = request_id
        super().__init__(message)


class MissingHeaderError(VerificationError):
    """A required ``Wechatpay-*`` header is absent or empty."""

    reason_code = "MISSING_HEADER"

    def __init__(
        self,
        header: str,
        *,
        serial: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.header = header
        super().__init__(f"missing header {header}", serial=serial, request_id=request_id)


class UnsupportedSignatureTypeError(VerificationError):
    """``Wechatpay-Signature-Type`` names an algorithm other than WECHATPAY2-SHA256-RSA2048."""

    reason_code = "UNSUPPORTED_SIGNATURE_TYPE"


class UnknownSerialError(VerificationError):
    """``Wechatpay-Serial`` names neither a trusted platform certificate nor the public key."""

    reason_code = "UNKNOWN_SERIAL"


class CertificateNotValidError(VerificationError):
    """The platform certificate chosen by serial is expired or not yet valid."""

    reason_code = "CERTIFICATE_NOT_VALID"


class StaleTimestampError(VerificationError):
    """``Wechatpay-Timestamp`` lies outside the accepted window; ``skew_seconds`` = now - ts."""

    reason_code = "STALE_TIMESTAMP"

    def __init__(
        self,
        message: str,
        *,
        skew_seconds: int,
        serial: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.skew_seconds = skew_seconds
        super().__init__(message, serial=serial, request_id=request_id)


class SignatureProbeError(VerificationError):
    """A ``WECHATPAY/SIGNTEST/`` probe: answer 4xx/5xx and WeChat re-sends a signed copy."""

    reason_code = "SIGNATURE_PROBE"


class SignatureMismatchError(VerificationError):
    """The signature does not match the message under the selected key."""

    reason_code = "SIGNATURE_MISMATCH"


class DecryptionError(WxPayKitError):
    """Ciphertext could not be opened (wrong APIv3/APIv2 key, tampered data, bad nonce)."""

    reason_code = "DECRYPTION_FAILED"


class MalformedMessageError(WxPayKitError):
    """Bytes that do not have the expected shape (JSON, XML, headers, base64)."""

    reason_code = "MALFORMED"


class UnsafeXmlError(MalformedMessageError):
    """XML refused before parsing: DTD, entity declaration, or size over the limit."""

    reason_code = "UNSAFE_XML"


class TransportError(WxPayKitError):
    """No usable HTTP response was received; the call may be retried."""


class RequestTimeoutError(TransportError):
    """The request timed out."""


class ApiError(WxPayKitError):
    """WeChat Pay answered with a non-2xx status.

    ``code`` and ``message`` are the platform's own (``PARAM_ERROR``, ``SIGN_ERROR``, ...).
    """

    def __init__(
        self,
        *,
        status_code: int,
        code: str,
        message: str,
        detail: Any = None,
        request_id: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.code = code
        self.message = message
        self.detail = detail
        self.request_id = request_id
        super().__init__(f"{status_code} {code}: {message} (Request-ID: {request_id or '-'})")


class BadRequestError(ApiError):
    """HTTP 400: PARAM_ERROR, INVALID_REQUEST, ORDER_CLOSED, ..."""


class UnauthorizedError(ApiError):
    """HTTP 401: SIGN_ERROR (wrong key, serial or clock)."""


class ForbiddenError(ApiError):
    """HTTP 403: NO_AUTH, ORDERPAID, NOT_ENOUGH, ..."""


class NotFoundError(ApiError):
    """HTTP 404: ORDER_NOT_EXIST, RESOURCE_NOT_EXISTS."""


class RateLimitedError(ApiError):
    """HTTP 429: FREQUENCY_LIMITED."""


class PlatformServerError(ApiError):
    """HTTP 5xx: SYSTEM_ERROR, BANK_ERROR, SERVICE_UNAVAILABLE."""


class StorageError(WxPayKitError):
    """The database failed; the cause is chained."""


class DeliveryError(WxPayKitError):
    """A sink failed to accept an event."""

    def __init__(self, message: str, *, event_id: str, attempt: int) -> None:
        self.event_id = event_id
        self.attempt = attempt
        super().__init__(message)
