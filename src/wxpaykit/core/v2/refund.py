"""APIv2 notification payloads: refund ``req_info`` and typed notification models (§9.3, §9.4).

A refund notification carries no ``sign``; its authenticity rests on ``req_info``
being encrypted under a key only the merchant and WeChat know:

1. base64-decode ``req_info``;
2. the AES-256 key is the lower-case hex MD5 of the APIv2 key, used as 32 ASCII bytes;
3. AES-256-ECB decrypt and strip PKCS#7 padding for 16-byte blocks;
4. the plaintext is a flat ``<root>`` document.

ECB has no integrity check, so a wrong key is detected by the padding and, in the
rare case that the padding happens to look valid, by the plaintext failing to parse.
Both surface as :class:`~wxpaykit.errors.DecryptionError`.

The models are built from already verified (or decrypted) parameters: parse after
verifying, never before.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from wxpaykit.core.v2.xml import parse_xml
from wxpaykit.errors import DecryptionError, MalformedMessageError, UnsafeXmlError

__all__ = [
    "PaymentNotificationV2",
    "RefundReqInfo",
    "decrypt_req_info",
    "encrypt_req_info",
]

_AES_BLOCK_BITS = 128
_FEN = re.compile(r"[0-9]{1,18}")


def decrypt_req_info(req_info: str, api_key: str) -> dict[str, str]:
    """Decrypt a refund notification's ``req_info`` into ``{tag: text}`` of its ``<root>``.

    Padding must be PKCS#7 for 16-byte blocks, as the platform sends; pads of 17–32
    bytes (what wechatpy's encoder writes) are refused, as a Java
    ``AES/ECB/PKCS5Padding`` decoder would.

    Raises:
        MalformedMessageError: ``req_info`` is not base64.
        DecryptionError: wrong key, bad length or padding, or an unreadable plaintext.
        UnsafeXmlError: the plaintext holds a DOCTYPE, entity or processing instruction.
    """
    try:
        ciphertext = base64.b64decode(req_info, validate=True)
    except ValueError as exc:
        raise MalformedMessageError("req_info is not base64") from exc
    if not ciphertext or len(ciphertext) % 16:
        raise DecryptionError("req_info is not a whole number of AES blocks")
    decryptor = Cipher(algorithms.AES(_refund_key(api_key)), modes.ECB()).decryptor()  # noqa: S305
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(_AES_BLOCK_BITS).unpadder()
    try:
        plaintext = unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise DecryptionError("req_info padding is invalid: wrong APIv2 key?") from None
    try:
        return parse_xml(plaintext, root_tag="root")
    except UnsafeXmlError:
        raise
    except MalformedMessageError as exc:
        raise DecryptionError("req_info did not decrypt to XML: wrong APIv2 key?") from exc


def encrypt_req_info(plaintext_xml: bytes, api_key: str) -> str:
    """Encrypt a ``<root>`` document as the platform does: the simulator's half of §9.4.

    ECB is deterministic, so the same plaintext and key always give the same
    ``req_info``; padding is PKCS#7 for 16-byte blocks.
    """
    padder = padding.PKCS7(_AES_BLOCK_BITS).padder()
    padded = padder.update(plaintext_xml) + padder.finalize()
    encryptor = Cipher(algorithms.AES(_refund_key(api_key)), modes.ECB()).encryptor()  # noqa: S305
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode("ascii")


def _refund_key(api_key: str) -> bytes:
    if not api_key:
        raise ValueError("the APIv2 key must not be empty")
    # The hex digest's ASCII bytes are the key, not the 16 raw digest bytes (§9.4).
    return hashlib.md5(api_key.encode("utf-8")).hexdigest().encode("ascii")  # noqa: S324


def _no_extra() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class RefundReqInfo:
    """The decrypted ``req_info`` of an APIv2 refund notification (§9.4).

    Amounts are in fen. ``refund_status`` is ``SUCCESS``, ``CHANGE`` or ``REFUNDCLOSE``;
    ``success_time`` is ``yyyy-MM-dd HH:mm:ss`` (Beijing time); ``refund_recv_accout``
    keeps the platform's spelling. Every other field (``refund_account``,
    ``refund_request_source``, ``settlement_total_fee``, future additions) is kept
    in ``extra``.
    """

    out_refund_no: str
    out_trade_no: str
    refund_id: str
    transaction_id: str
    refund_status: str
    refund_fee: int
    total_fee: int
    settlement_refund_fee: int | None = None
    success_time: str | None = None
    refund_recv_accout: str | None = None
    extra: Mapping[str, str] = field(default_factory=_no_extra, hash=False)

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> RefundReqInfo:
        """Build from :func:`decrypt_req_info` output; missing or bad fields are malformed."""
        fields = _FieldReader(params)
        return cls(
            out_refund_no=fields.text("out_refund_no"),
            out_trade_no=fields.text("out_trade_no"),
            refund_id=fields.text("refund_id"),
            transaction_id=fields.text("transaction_id"),
            refund_status=fields.text("refund_status"),
            refund_fee=fields.fen("refund_fee"),
            total_fee=fields.fen("total_fee"),
            settlement_refund_fee=fields.optional_fen("settlement_refund_fee"),
            success_time=fields.optional_text("success_time"),
            refund_recv_accout=fields.optional_text("refund_recv_accout"),
            extra=fields.unread(),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentNotificationV2:
    """A verified APIv2 payment notification with ``return_code`` ``SUCCESS`` (§9.3).

    Amounts are in fen; check ``total_fee`` against the order before applying it.
    ``fee_type`` defaults to ``CNY`` and ``attach`` to ``""`` when absent, as the
    platform documents. Fields not modelled here (``sign``, ``nonce_str``,
    ``bank_type``, ``coupon_*``, partner fields other than ``sub_mch_id``, …) are
    kept in ``extra``.
    """

    appid: str
    mch_id: str
    out_trade_no: str
    transaction_id: str
    result_code: str
    return_code: str
    total_fee: int
    cash_fee: int | None = None
    fee_type: str = "CNY"
    trade_type: str
    openid: str
    time_end: str
    attach: str = ""
    sub_mch_id: str | None = None
    extra: Mapping[str, str] = field(default_factory=_no_extra, hash=False)

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> PaymentNotificationV2:
        """Build from parameters whose ``sign`` was checked by ``verify_v2``."""
        fields = _FieldReader(params)
        return cls(
            appid=fields.text("appid"),
            mch_id=fields.text("mch_id"),
            out_trade_no=fields.text("out_trade_no"),
            transaction_id=fields.text("transaction_id"),
            result_code=fields.text("result_code"),
            return_code=fields.text("return_code"),
            total_fee=fields.fen("total_fee"),
            cash_fee=fields.optional_fen("cash_fee"),
            fee_type=fields.optional_text("fee_type") or "CNY",
            trade_type=fields.text("trade_type"),
            openid=fields.text("openid"),
            time_end=fields.text("time_end"),
            attach=fields.optional_text("attach") or "",
            sub_mch_id=fields.optional_text("sub_mch_id"),
            extra=fields.unread(),
        )


class _FieldReader:
    """Reads typed fields from flat parameters and remembers which were used."""

    def __init__(self, params: Mapping[str, str]) -> None:
        self._params = params
        self._read: set[str] = set()

    def optional_text(self, key: str) -> str | None:
        self._read.add(key)
        value = self._params.get(key, "")
        return value or None

    def text(self, key: str) -> str:
        value = self.optional_text(key)
        if value is None:
            raise MalformedMessageError(f"{key} is missing or empty")
        return value

    def optional_fen(self, key: str) -> int | None:
        value = self.optional_text(key)
        if value is None:
            return None
        # int() would also take "+1", " 1", "1_000", non-ASCII digits, and raise on
        # thousands of digits; 18 digits of fen is far beyond any real amount.
        if not _FEN.fullmatch(value):
            raise MalformedMessageError(f"{key} is not a whole number of fen")
        return int(value)

    def fen(self, key: str) -> int:
        value = self.optional_fen(key)
        if value is None:
            raise MalformedMessageError(f"{key} is missing or empty")
        return value

    def unread(self) -> Mapping[str, str]:
        return MappingProxyType(
            {key: value for key, value in self._params.items() if key not in self._read}
        )
