"""Simulated merchants as the platform sees them, and how one is provisioned.

A :class:`Merchant` holds what the platform knows of a merchant: the API certificate
(and, since the simulator plays the merchant too, its private key), the APIv3 and
APIv2 keys, the appids, and the platform's own keys in one of the three modes of
:mod:`wxpaykit.simulator.modes`. It picks the key that signs each response and
notification, rotates platform certificates, and is stored as a document.
:func:`provision_merchant` makes one with fresh keys; :meth:`Merchant.bundle` is what
the merchant downloads (:class:`~wxpaykit.simulator.bundle.MerchantBundle`).
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from wxpaykit.core.keys import load_private_key
from wxpaykit.core.serials import format_serial
from wxpaykit.simulator.authority import CertificateAuthority
from wxpaykit.simulator.bundle import MerchantBundle
from wxpaykit.simulator.modes import MIGRATION_RAMP, MerchantMode, migration_share
from wxpaykit.testing.keys import (
    GeneratedCertificate,
    KeySource,
    generate_certificate,
    generate_private_key,
    generate_public_key_id,
    private_key_pem,
    public_key_pem,
)

__all__ = [
    "MIGRATION_RAMP",
    "Merchant",
    "MerchantBundle",
    "MerchantMode",
    "PlatformCertificateKey",
    "provision_merchant",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class PlatformCertificateKey(GeneratedCertificate):
    """A platform certificate and the private key the simulator signs with."""

    def is_effective_at(self, now: float) -> bool:
        """True when the certificate is valid at Unix time ``now``."""
        moment = dt.datetime.fromtimestamp(now, dt.UTC)
        return (
            self.certificate.not_valid_before_utc <= moment <= self.certificate.not_valid_after_utc
        )


@dataclass(kw_only=True)
class Merchant:
    """A simulated merchant as the platform sees it (secrets included)."""

    mchid: str
    mode: MerchantMode
    appids: list[str]
    apiv3_key: str = field(repr=False)
    apiv2_key: str = field(repr=False)
    api_private_key: rsa.RSAPrivateKey = field(repr=False)
    api_certificate: x509.Certificate = field(repr=False)
    platform_certificates: list[PlatformCertificateKey] = field(default_factory=list)
    public_key_id: str = ""
    public_key_private: rsa.RSAPrivateKey | None = field(default=None, repr=False)
    #: Fixed share of notifications signed by the public key in migration mode; None
    #: follows :data:`MIGRATION_RAMP` by (time-scaled) days since ``created_at``.
    public_key_fraction: float | None = None
    refund_auto_complete: bool = True
    created_at: float = 0.0

    @property
    def appid(self) -> str:
        """The first appid."""
        return self.appids[0]

    @property
    def serial_no(self) -> str:
        """Serial of the merchant API certificate (the ``serial_no`` of requests)."""
        return format_serial(self.api_certificate.serial_number)

    @property
    def has_certificates(self) -> bool:
        """True when ``/v3/certificates`` has something to return."""
        return self.mode is not MerchantMode.PUBLIC_KEY and bool(self.platform_certificates)

    def newest_certificate(self, now: float) -> PlatformCertificateKey:
        """The certificate responses are signed with: the latest to become effective."""
        effective = [c for c in self.platform_certificates if c.is_effective_at(now)]
        candidates = effective or self.platform_certificates
        return max(candidates, key=lambda c: c.certificate.not_valid_before_utc)

    def public_key_signer(self) -> tuple[str, rsa.RSAPrivateKey]:
        """``(PUB_KEY_ID_..., private key)``; only for public-key and migration modes."""
        if self.public_key_private is None:
            raise ValueError(f"merchant {self.mchid} has no WeChat Pay public key")
        return self.public_key_id, self.public_key_private

    def response_signer(self, request_serial: str, now: float) -> tuple[str, rsa.RSAPrivateKey]:
        """The key that signs a response to a request carrying ``Wechatpay-Serial``."""
        if self.mode is MerchantMode.PUBLIC_KEY:
            return self.public_key_signer()
        if self.mode is MerchantMode.MIGRATION and request_serial == self.public_key_id:
            return self.public_key_signer()
        newest = self.newest_certificate(now)
        return newest.serial_no, newest.private_key

    def public_key_share(self, now: float, time_scale: float) -> float:
        """Fraction of notifications signed with the public key at ``now``."""
        if self.mode is MerchantMode.PUBLIC_KEY:
            return 1.0
        if self.mode is MerchantMode.CERTIFICATE:
            return 0.0
        if self.public_key_fraction is not None:
            return self.public_key_fraction
        return migration_share(now - self.created_at, time_scale)

    def notification_signer(
        self, draw: float, now: float, time_scale: float
    ) -> tuple[str, rsa.RSAPrivateKey]:
        """The key that signs a notification; ``draw`` in [0, 1) decides during the ramp."""
        if draw < self.public_key_share(now, time_scale):
            return self.public_key_signer()
        newest = self.newest_certificate(now)
        return newest.serial_no, newest.private_key

    def add_platform_certificate(
        self, now: float, *, key_source: KeySource = generate_private_key
    ) -> PlatformCertificateKey:
        """Rotation: a new platform certificate, effective now, overlapping the old ones."""
        entry = _platform_certificate(now - 1, key_source)
        self.platform_certificates.append(entry)
        return entry

    def _api_pair(self) -> GeneratedCertificate:
        return GeneratedCertificate(
            private_key=self.api_private_key, certificate=self.api_certificate
        )

    def to_doc(self) -> dict[str, Any]:
        """The stored form (PEM strings)."""
        api_pair = self._api_pair()
        return {
            "mchid": self.mchid,
            "mode": self.mode.value,
            "appids": self.appids,
            "apiv3_key": self.apiv3_key,
            "apiv2_key": self.apiv2_key,
            "api_private_key": api_pair.private_key_pem.decode(),
            "api_certificate": api_pair.certificate_pem.decode(),
            "platform_certificates": [
                {
                    "certificate": c.certificate_pem.decode(),
                    "private_key": c.private_key_pem.decode(),
                }
                for c in self.platform_certificates
            ],
            "public_key_id": self.public_key_id,
            "public_key_private": (
                private_key_pem(self.public_key_private).decode()
                if self.public_key_private is not None
                else None
            ),
            "public_key_fraction": self.public_key_fraction,
            "refund_auto_complete": self.refund_auto_complete,
            "created_at": self.created_at,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Merchant:
        """Rebuild from :meth:`to_doc` output."""
        public_private = doc.get("public_key_private")
        return cls(
            mchid=doc["mchid"],
            mode=MerchantMode(doc["mode"]),
            appids=list(doc["appids"]),
            apiv3_key=doc["apiv3_key"],
            apiv2_key=doc["apiv2_key"],
            api_private_key=load_private_key(doc["api_private_key"]),
            api_certificate=x509.load_pem_x509_certificate(doc["api_certificate"].encode()),
            platform_certificates=[
                PlatformCertificateKey(
                    certificate=x509.load_pem_x509_certificate(c["certificate"].encode()),
                    private_key=load_private_key(c["private_key"]),
                )
                for c in doc["platform_certificates"]
            ],
            public_key_id=doc.get("public_key_id", ""),
            public_key_private=load_private_key(public_private) if public_private else None,
            public_key_fraction=doc.get("public_key_fraction"),
            refund_auto_complete=bool(doc.get("refund_auto_complete", True)),
            created_at=float(doc.get("created_at", 0.0)),
        )

    def bundle(
        self, *, authority_pem: bytes = b"", api_base_url: str = "", tls_base_url: str = ""
    ) -> MerchantBundle:
        """What the merchant downloads from the portal, plus the simulator's addresses."""
        api_pair = self._api_pair()
        return MerchantBundle(
            mchid=self.mchid,
            mode=self.mode,
            appids=tuple(self.appids),
            apiv3_key=self.apiv3_key,
            apiv2_key=self.apiv2_key,
            merchant_serial_no=self.serial_no,
            apiclient_key_pem=api_pair.private_key_pem,
            apiclient_cert_pem=api_pair.certificate_pem,
            # The portal's .p12 is protected by the mchid.
            apiclient_cert_p12=api_pair.pkcs12(self.mchid),
            platform_certificates=tuple(
                (c.serial_no, c.certificate_pem)
                for c in (
                    self.platform_certificates if self.mode is not MerchantMode.PUBLIC_KEY else []
                )
            ),
            public_key_id=self.public_key_id,
            public_key_pem=(
                public_key_pem(self.public_key_private.public_key())
                if self.public_key_private is not None
                else b""
            ),
            sim_ca_pem=authority_pem,
            api_base_url=api_base_url,
            tls_base_url=tls_base_url,
        )


def _platform_certificate(not_before: float, key_source: KeySource) -> PlatformCertificateKey:
    start = dt.datetime.fromtimestamp(not_before, dt.UTC)
    generated = generate_certificate(
        "Tenpay.com Root CA", private_key=key_source(), not_before=start
    )
    return PlatformCertificateKey(
        certificate=generated.certificate, private_key=generated.private_key
    )


def _random_digits(count: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(count))


def provision_merchant(
    mode: MerchantMode | str = MerchantMode.CERTIFICATE,
    *,
    now: float,
    authority: CertificateAuthority | None = None,
    mchid: str | None = None,
    appids: list[str] | None = None,
    key_source: KeySource = generate_private_key,
) -> Merchant:
    """Make a merchant with fresh keys (about 0.2 s: up to three RSA-2048 keys).

    With ``authority`` the API certificate is issued by the simulator CA (needed for
    APIv2 mutual TLS); without, it is self-signed, which is enough for offline tests.
    ``key_source`` makes the RSA keys (tests pass a
    :class:`~wxpaykit.testing.keys.KeyPool` to skip key generation).
    """
    mode = MerchantMode(mode)
    mchid = mchid or "19" + _random_digits(8)
    a_day_ago = now - 86400
    api_key = key_source()
    if authority is not None:
        api_certificate = authority.issue_merchant_certificate(mchid, api_key.public_key(), now=now)
    else:
        api_certificate = generate_certificate(
            mchid,
            private_key=api_key,
            not_before=dt.datetime.fromtimestamp(a_day_ago, dt.UTC),
            organization="微信商户系统",
        ).certificate
    merchant = Merchant(
        mchid=mchid,
        mode=mode,
        appids=appids or ["wx" + secrets.token_hex(8)],
        apiv3_key=secrets.token_hex(16),
        apiv2_key=secrets.token_hex(16),
        api_private_key=api_key,
        api_certificate=api_certificate,
        created_at=now,
    )
    if mode is not MerchantMode.PUBLIC_KEY:
        merchant.platform_certificates.append(_platform_certificate(a_day_ago, key_source))
    if mode is not MerchantMode.CERTIFICATE:
        merchant.public_key_id = generate_public_key_id()
        merchant.public_key_private = key_source()
    return merchant
