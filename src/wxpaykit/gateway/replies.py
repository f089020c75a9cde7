"""Every answer the gateway gives, from one exception-to-HTTP table.

Scheme (documented in ``docs/gateway.md``): a refusal answers a specific status and
``{"code": REASON, "message": human text}``; ``REASON`` is a stable machine code
(``SIGNATURE_PROBE``, ``STALE_TIMESTAMP``, ``UNKNOWN_MERCHANT``...), the same string
used as the ``reason`` label of the rejection metric. WeChat Pay only looks at the
status (any 4xx/5xx means "re-send later", protocol reference §6.5), so the code is
for operators. A failure on our side (storage, a bug) answers 500 with WeChat's own
failure shape ``{"code": "FAIL", "message": ...}``. APIv2 endpoints answer the same
statuses with the documented reply XML (§9.3) instead of JSON.

Messages come from exception texts that by construction hold no keys, no decrypted
data and no bodies (see :mod:`wxpaykit.errors`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from wxpaykit.core.v2.xml import reply_xml
from wxpaykit.errors import (
    CertificateNotValidError,
    DecryptionError,
    MalformedMessageError,
    MissingHeaderError,
    SignatureMismatchError,
    SignatureProbeError,
    StaleTimestampError,
    StorageError,
    UnknownSerialError,
    UnsafeXmlError,
    UnsupportedSignatureTypeError,
    VerificationError,
    WxPayKitError,
)

__all__ = [
    "AppidMismatchError",
    "BodyTooLargeError",
    "MalformedHeaderError",
    "MalformedXmlError",
    "MerchantMismatchError",
    "ReplayedNonceError",
    "Reply",
    "UnknownMerchantError",
    "UnsupportedEventError",
    "json_body",
    "reply_for",
    "v2_body",
]

#: ``return_msg`` is documented as at most 128 bytes; WeChat's v3 failure message ≤ 64 chars.
_MAX_MESSAGE_CHARS = 64


class BodyTooLargeError(MalformedMessageError):
    """The request body is over the configured limit (refused before reading it all)."""

    reason_code = "BODY_TOO_LARGE"


class MalformedHeaderError(VerificationError):
    """A ``Wechatpay-*`` header is present but cannot be what WeChat Pay sends."""

    reason_code = "MALFORMED_HEADER"


class MalformedXmlError(MalformedMessageError):
    """An APIv2 body that is not a well-formed flat XML document."""

    reason_code = "MALFORMED_XML"


class UnknownMerchantError(WxPayKitError):
    """The path names a mchid this gateway is not configured for."""

    reason_code = "UNKNOWN_MERCHANT"


class ReplayedNonceError(VerificationError):
    """A ``Wechatpay-Nonce`` already seen inside the replay window, not yet acknowledged."""

    reason_code = "REPLAYED_NONCE"


class MerchantMismatchError(WxPayKitError):
    """An authentic notification whose mchid is not the path's merchant."""

    reason_code = "MCHID_MISMATCH"


class AppidMismatchError(WxPayKitError):
    """An authentic notification for an appid the merchant does not list."""

    reason_code = "APPID_MISMATCH"


class UnsupportedEventError(WxPayKitError):
    """An authentic notification of an event type the ledger does not handle."""

    reason_code = "UNSUPPORTED_EVENT_TYPE"


@dataclass(frozen=True, slots=True)
class Reply:
    """A refusal or failure: HTTP status, machine code, human message."""

    status: int
    code: str
    message: str


# The one table. Order matters: the first matching class wins, so subclasses come first.
_TABLE: tuple[tuple[type[BaseException], int, str | None], ...] = (
    (BodyTooLargeError, 413, None),
    (UnknownMerchantError, 404, None),
    (MissingHeaderError, 400, None),
    (MalformedHeaderError, 400, None),
    (UnsupportedSignatureTypeError, 401, None),
    (SignatureProbeError, 401, None),
    (UnknownSerialError, 401, None),
    (CertificateNotValidError, 401, None),
    (SignatureMismatchError, 401, None),
    (StaleTimestampError, 401, None),
    (ReplayedNonceError, 409, None),
    (DecryptionError, 400, None),
    (UnsafeXmlError, 400, None),
    (MalformedXmlError, 400, None),
    (MalformedMessageError, 400, "MALFORMED_BODY"),
    (MerchantMismatchError, 403, None),
    (AppidMismatchError, 403, None),
    (UnsupportedEventError, 400, None),
    (VerificationError, 401, None),
    (StorageError, 500, "FAIL"),
)


def reply_for(exc: BaseException) -> Reply:
    """Map an exception to its reply; anything unknown is a 500 ``FAIL`` (WeChat retries)."""
    for kind, status, code in _TABLE:
        if isinstance(exc, kind):
            reason = code or str(getattr(exc, "reason_code", "FAIL"))
            message = "storage unavailable, retry later" if status >= 500 else str(exc)
            return Reply(status, reason, _shorten(message))
    return Reply(500, "FAIL", "internal error, retry later")


def json_body(reply: Reply) -> bytes:
    """The JSON body ``{"code", "message"}`` of an APIv3 refusal."""
    return json.dumps(
        {"code": reply.code, "message": reply.message}, ensure_ascii=False, separators=(",", ":")
    ).encode("utf-8")


def v2_body(reply: Reply) -> bytes:
    """The APIv2 failure reply XML; ``return_msg`` carries ``CODE: message``."""
    return reply_xml(False, _shorten(f"{reply.code}: {reply.message}", 120))


def _shorten(text: str, limit: int = _MAX_MESSAGE_CHARS * 4) -> str:
    # WeChat keeps only the first 64 characters, but operators read our logs and tests
    # read the body; keep the whole sentence up to a sane bound.
    return text if len(text) <= limit else text[: limit - 1] + "…"
