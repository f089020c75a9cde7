"""APIv3 request signing (protocol reference section 2) and response signing (section 3).

The canonical message builder is kept apart from the signer so that tests compare
messages byte for byte with the platform's documented examples.

Request message::

    METHOD\\nCANONICAL_URL\\nTIMESTAMP\\nNONCE\\nBODY\\n

Response / notification message::

    TIMESTAMP\\nNONCE\\nBODY\\n
"""

from __future__ import annotations

import base64
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from wxpaykit.errors import MalformedMessageError

__all__ = [
    "AUTHORIZATION_SCHEME",
    "SIGNATURE_TYPE",
    "AuthorizationFields",
    "build_authorization",
    "build_request_message",
    "build_response_message",
    "generate_nonce",
    "parse_authorization",
    "sign_message",
    "sign_response_headers",
]

SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
AUTHORIZATION_SCHEME = SIGNATURE_TYPE
_NONCE_ALPHABET = string.ascii_letters + string.digits
_AUTH_KEYS = ("mchid", "nonce_str", "timestamp", "serial_no", "signature")


def generate_nonce(length: int = 32, *, choice: Callable[[str], str] = secrets.choice) -> str:
    """Return a random alphanumeric nonce (32 characters, as the official SDKs use)."""
    return "".join(choice(_NONCE_ALPHABET) for _ in range(length))


def build_request_message(
    method: str, canonical_url: str, timestamp: int | str, nonce: str, body: bytes | str
) -> bytes:
    """Build the five-line message a merchant signs.

    ``canonical_url`` is the request target exactly as sent: raw path plus ``?query``.
    ``body`` is the exact bytes sent (empty for GET). Every line ends in ``\\n``,
    including the body line even when the body itself ends in one.
    """
    body_bytes = body.encode("utf-8") if isinstance(body, str) else body
    head = f"{method.upper()}\n{canonical_url}\n{timestamp}\n{nonce}\n".encode()
    return head + body_bytes + b"\n"


def build_response_message(timestamp: int | str, nonce: str, body: bytes | str) -> bytes:
    """Build the three-line message WeChat Pay signs on responses and notifications."""
    body_bytes = body.encode("utf-8") if isinstance(body, str) else body
    return f"{timestamp}\n{nonce}\n".encode() + body_bytes + b"\n"


def sign_message(message: bytes, private_key: rsa.RSAPrivateKey) -> str:
    """SHA256withRSA (PKCS#1 v1.5), base64 with padding: deterministic for a given key."""
    signature = private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def build_authorization(
    *,
    mchid: str,
    serial_no: str,
    private_key: rsa.RSAPrivateKey,
    method: str,
    canonical_url: str,
    body: bytes | str,
    timestamp: int,
    nonce: str,
) -> str:
    """Return the ``Authorization`` header value for one request."""
    message = build_request_message(method, canonical_url, timestamp, nonce, body)
    signature = sign_message(message, private_key)
    return (
        f'{AUTHORIZATION_SCHEME} mchid="{mchid}",nonce_str="{nonce}",'
        f'timestamp="{timestamp}",serial_no="{serial_no}",signature="{signature}"'
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthorizationFields:
    """The five fields of an ``Authorization`` header, parsed by key."""

    mchid: str
    nonce_str: str
    timestamp: str
    serial_no: str
    signature: str


def parse_authorization(header: str) -> AuthorizationFields:
    """Parse an ``Authorization`` header; the five fields may come in any order.

    Raises :class:`MalformedMessageError` on a wrong scheme, a missing or repeated
    field, or an unquoted value.
    """
    scheme, _, params = header.strip().partition(" ")
    if scheme != AUTHORIZATION_SCHEME:
        raise MalformedMessageError(f"authorization scheme must be {AUTHORIZATION_SCHEME}")
    values: dict[str, str] = {}
    for part in params.split(","):
        key, sep, raw = part.strip().partition("=")
        if not sep or len(raw) < 2 or raw[0] != '"' or raw[-1] != '"':
            raise MalformedMessageError(f"malformed authorization field {key!r}")
        if key in values:
            raise MalformedMessageError(f"repeated authorization field {key!r}")
        values[key] = raw[1:-1]
    missing = [key for key in _AUTH_KEYS if not values.get(key)]
    if missing:
        raise MalformedMessageError(f"authorization lacks {', '.join(missing)}")
    return AuthorizationFields(**{key: values[key] for key in _AUTH_KEYS})


def sign_response_headers(
    *,
    body: bytes,
    private_key: rsa.RSAPrivateKey,
    serial: str,
    timestamp: int,
    nonce: str,
) -> dict[str, str]:
    """Return the ``Wechatpay-*`` headers that sign ``body`` (used by the simulator)."""
    signature = sign_message(build_response_message(timestamp, nonce, body), private_key)
    return {
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": signature,
        "Wechatpay-Timestamp": str(timestamp),
        "Wechatpay-Serial": serial,
        "Wechatpay-Signature-Type": SIGNATURE_TYPE,
    }
