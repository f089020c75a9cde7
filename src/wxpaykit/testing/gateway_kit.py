"""A merchant with throwaway keys, and the notifications WeChat Pay would send it.

Used by the gateway's tests, the benchmark and the demo: :class:`MerchantKit` holds the
platform's signing keys (the simulator's side) and the merchant's secrets, builds
:class:`~wxpaykit.gateway.settings.MerchantSettings`, writes a gateway TOML config with
its key files for subprocess gateways, and signs APIv3 and APIv2 notifications.
"""

from __future__ import annotations

import secrets
import string
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from wxpaykit.core.crypto import ApiV3Key
from wxpaykit.core.keys import WeChatPayPublicKey, load_platform_certificate
from wxpaykit.core.signing import generate_nonce
from wxpaykit.core.v2 import SignType, build_xml, encrypt_req_info, sign_v2
from wxpaykit.core.verification import TrustedKeys
from wxpaykit.gateway.settings import MerchantSettings
from wxpaykit.storage.base import OrderRecord
from wxpaykit.testing.keys import (
    GeneratedCertificate,
    generate_certificate,
    generate_private_key,
    generate_public_key_id,
    private_key_pem,
    public_key_pem,
)
from wxpaykit.testing.notifications import (
    SealedNotification,
    sample_refund,
    sample_transaction,
    seal_notification,
)

__all__ = ["MerchantKit"]

_ALNUM = string.ascii_letters + string.digits


def _random_key(length: int = 32) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


@dataclass(frozen=True, slots=True, kw_only=True)
class MerchantKit:
    """One merchant's keys on both sides of the wire."""

    mchid: str = "1900007291"
    appid: str = "wxd678efh567hg6787"
    apiv3_key: str = field(default_factory=_random_key, repr=False)
    apiv2_key: str = field(default_factory=_random_key, repr=False)
    platform: GeneratedCertificate = field(
        default_factory=lambda: generate_certificate("Tenpay.com Root CA"), repr=False
    )
    public_key_id: str = field(default_factory=generate_public_key_id)
    public_key_private: rsa.RSAPrivateKey = field(default_factory=generate_private_key, repr=False)

    # --- the merchant's side -------------------------------------------------------

    def trusted_keys(self) -> TrustedKeys:
        """Both kinds of platform key, as during a public-key migration."""
        return TrustedKeys(
            certificates=[load_platform_certificate(self.platform.certificate_pem)],
            public_keys=[
                WeChatPayPublicKey(
                    key_id=self.public_key_id, public_key=self.public_key_private.public_key()
                )
            ],
        )

    def merchant_settings(self, **overrides: Any) -> MerchantSettings:
        """Gateway settings for this merchant (certificates and public key trusted)."""
        values: dict[str, Any] = {
            "mchid": self.mchid,
            "appids": frozenset({self.appid}),
            "apiv3_key": ApiV3Key(self.apiv3_key),
            "apiv2_key": self.apiv2_key,
            "trusted_keys": self.trusted_keys(),
        }
        values.update(overrides)
        return MerchantSettings(**values)

    def write_files(self, folder: Path) -> dict[str, str]:
        """Write the merchant's key files into ``folder``; returns the TOML merchant entries."""
        folder.mkdir(parents=True, exist_ok=True)
        files = {
            "apiv3_key_file": ("apiv3.key", self.apiv3_key.encode()),
            "apiv2_key_file": ("apiv2.key", self.apiv2_key.encode()),
            "platform_public_key_file": (
                "pub_key.pem",
                public_key_pem(self.public_key_private.public_key()),
            ),
        }
        entries: dict[str, str] = {}
        for setting, (name, data) in files.items():
            path = folder / f"{self.mchid}_{name}"
            path.write_bytes(data)
            path.chmod(0o600)
            entries[setting] = str(path)
        cert_path = folder / f"{self.mchid}_wechatpay_{self.platform.serial_no}.pem"
        cert_path.write_bytes(self.platform.certificate_pem)
        entries["platform_certificate_files"] = str(cert_path)
        entries["platform_public_key_id"] = self.public_key_id
        return entries

    def toml_entry(self, folder: Path, *, private_key: rsa.RSAPrivateKey | None = None) -> str:
        """A ``[[merchants]]`` table for this merchant, writing its key files to ``folder``."""
        entries = self.write_files(folder)
        lines = [
            "[[merchants]]",
            f'mchid = "{self.mchid}"',
            f'appids = ["{self.appid}"]',
            f'apiv3_key_file = "{entries["apiv3_key_file"]}"',
            f'apiv2_key_file = "{entries["apiv2_key_file"]}"',
            f'platform_public_key_file = "{entries["platform_public_key_file"]}"',
            f'platform_public_key_id = "{entries["platform_public_key_id"]}"',
            f'platform_certificate_files = ["{entries["platform_certificate_files"]}"]',
        ]
        if private_key is not None:
            key_path = folder / f"{self.mchid}_apiclient_key.pem"
            key_path.write_bytes(private_key_pem(private_key))
            key_path.chmod(0o600)
            lines.append(f'private_key_file = "{key_path}"')
        return "\n".join(lines) + "\n"

    def order(self, out_trade_no: str, *, total: int = 100) -> OrderRecord:
        """An unpaid CNY order of this merchant, as its shop registers it."""
        return OrderRecord(
            mchid=self.mchid,
            out_trade_no=out_trade_no,
            appid=self.appid,
            description="test order",
            total=total,
            currency="CNY",
            state="NOTPAY",
        )

    # --- WeChat Pay's side ----------------------------------------------------------

    def payment(
        self,
        out_trade_no: str,
        *,
        total: int = 100,
        notification_id: str | None = None,
        timestamp: int | None = None,
        nonce: str | None = None,
        use_public_key: bool = False,
        **overrides: Any,
    ) -> SealedNotification:
        """A signed ``TRANSACTION.SUCCESS`` notification for ``out_trade_no``."""
        resource = sample_transaction(
            mchid=self.mchid,
            appid=self.appid,
            out_trade_no=out_trade_no,
            transaction_id=_transaction_id(out_trade_no),
            amount={"total": total, "payer_total": total, "currency": "CNY"},
        )
        resource.update(overrides)
        return self.seal(
            resource,
            notification_id=notification_id,
            timestamp=timestamp,
            nonce=nonce,
            use_public_key=use_public_key,
        )

    def refund(
        self,
        out_trade_no: str,
        out_refund_no: str,
        *,
        refund: int = 100,
        total: int = 100,
        status: str = "SUCCESS",
        notification_id: str | None = None,
        **overrides: Any,
    ) -> SealedNotification:
        """A signed ``REFUND.<status>`` notification."""
        resource = sample_refund(
            mchid=self.mchid,
            out_trade_no=out_trade_no,
            out_refund_no=out_refund_no,
            transaction_id=_transaction_id(out_trade_no),
            refund_id="5" + uuid.uuid5(uuid.NAMESPACE_OID, out_refund_no).hex[:28],
            refund_status=status,
            amount={"total": total, "refund": refund, "payer_total": total, "payer_refund": refund},
        )
        resource.update(overrides)
        return self.seal(resource, event_type=f"REFUND.{status}", notification_id=notification_id)

    def seal(
        self,
        resource: dict[str, Any] | bytes,
        *,
        event_type: str = "TRANSACTION.SUCCESS",
        notification_id: str | None = None,
        timestamp: int | None = None,
        nonce: str | None = None,
        use_public_key: bool = False,
        apiv3_key: str | None = None,
    ) -> SealedNotification:
        """Encrypt ``resource`` and sign the envelope with the platform key (or public key)."""
        signing_key, serial = (
            (self.public_key_private, self.public_key_id)
            if use_public_key
            else (self.platform.private_key, self.platform.serial_no)
        )
        return seal_notification(
            resource,
            apiv3_key=apiv3_key or self.apiv3_key,
            signing_key=signing_key,
            serial=serial,
            timestamp=int(time.time()) if timestamp is None else timestamp,
            event_type=event_type,
            notification_id=notification_id,
            header_nonce=nonce,
        )

    def v2_payment(
        self,
        out_trade_no: str,
        *,
        total: int = 100,
        sign_type: SignType = SignType.MD5,
        **overrides: str,
    ) -> bytes:
        """An APIv2 payment notification XML, signed with the APIv2 key."""
        params: dict[str, str] = {
            "return_code": "SUCCESS",
            "return_msg": "OK",
            "appid": self.appid,
            "mch_id": self.mchid,
            "nonce_str": generate_nonce(),
            "result_code": "SUCCESS",
            "openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
            "is_subscribe": "N",
            "trade_type": "JSAPI",
            "bank_type": "OTHERS",
            "total_fee": str(total),
            "fee_type": "CNY",
            "cash_fee": str(total),
            "transaction_id": _transaction_id(out_trade_no),
            "out_trade_no": out_trade_no,
            "time_end": "20240102150405",
        }
        if sign_type is SignType.HMAC_SHA256:
            params["sign_type"] = sign_type.value
        params.update(overrides)
        params["sign"] = sign_v2(params, self.apiv2_key, sign_type)
        return build_xml(params)

    def v2_refund(
        self,
        out_trade_no: str,
        out_refund_no: str,
        *,
        refund_fee: int = 100,
        total_fee: int = 100,
        refund_status: str = "SUCCESS",
        apiv2_key: str | None = None,
        **outer: str,
    ) -> bytes:
        """An APIv2 refund notification XML with ``req_info`` encrypted like WeChat Pay."""
        inner = {
            "out_refund_no": out_refund_no,
            "out_trade_no": out_trade_no,
            "refund_account": "REFUND_SOURCE_RECHARGE_FUNDS",
            "refund_fee": str(refund_fee),
            "refund_id": "5" + uuid.uuid5(uuid.NAMESPACE_OID, out_refund_no).hex[:28],
            "refund_recv_accout": "支付用户零钱",
            "refund_request_source": "API",
            "refund_status": refund_status,
            "settlement_refund_fee": str(refund_fee),
            "settlement_total_fee": str(total_fee),
            "success_time": "2024-01-02 16:00:00",
            "total_fee": str(total_fee),
            "transaction_id": _transaction_id(out_trade_no),
        }
        plaintext = (
            "<root>" + "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in inner.items()) + "</root>"
        ).encode()
        params: dict[str, str] = {
            "return_code": "SUCCESS",
            "appid": self.appid,
            "mch_id": self.mchid,
            "nonce_str": generate_nonce(),
            "req_info": encrypt_req_info(plaintext, apiv2_key or self.apiv2_key),
        }
        params.update(outer)
        return build_xml(params)


def _transaction_id(out_trade_no: str) -> str:
    # Deterministic per order, 28 digits like WeChat's.
    return "42" + str(uuid.uuid5(uuid.NAMESPACE_OID, out_trade_no).int)[:26]
