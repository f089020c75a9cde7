"""Merchant provisioning: every key a merchant holds, and the bundle handed to them.

A simulated merchant has what the merchant portal (商户平台) gives a real one: the API
private key and certificate (``apiclient_key.pem``, ``apiclient_cert.pem``, ``.p12``
with the mchid as password; the same pair serves APIv2 mutual TLS), an APIv3 key, an
APIv2 key and appids; and on the platform side, keys in one of three modes
(protocol reference §3.5):

* ``certificate``: platform certificates, downloadable from ``/v3/certificates`` and
  rotatable (a new certificate overlaps the old one);
* ``public_key``: a WeChat Pay public key ``PUB_KEY_ID_...``; no platform certificate;
* ``migration``: both. Responses follow the request's ``Wechatpay-Serial``;
  notifications are signed by the public key for a fraction of them (the ramp).

:class:`Merchant` is the platform's view (it holds the platform private keys);
:class:`MerchantBundle` is the merchant's view (what is written to disk).
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from wxpaykit.core.keys import (
    MerchantCredentials,
    WeChatPayPublicKey,
    load_merchant_certificate,
    load_platform_certificate,
    load_private_key,
    load_public_key,
)
from wxpaykit.core.serials import format_serial
from wxpaykit.core.verification import TrustedKeys
from wxpaykit.simulator.authority import CertificateAuthority
from wxpaykit.testing.keys import (
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

#: Share of notifications signed with the public key on day 1..7 of a migration (§3.5).
MIGRATION_RAMP = (0.001, 0.01, 0.05, 0.10, 0.20, 0.50, 1.0)
_DAY_SECONDS = 86400.0


class MerchantMode(StrEnum):
    """How the platform signs for this merchant."""

    CERTIFICATE = "certificate"
    PUBLIC_KEY = "public_key"
    MIGRATION = "migration"


@dataclass(frozen=True, kw_only=True)
class PlatformCertificateKey:
    """A platform certificate and the private key the simulator signs with."""

    certificate: x509.Certificate = field(repr=False)
    private_key: rsa.RSAPrivateKey = field(repr=False)

    @property
    def serial_no(self) -> str:
        """Upper-case hex serial."""
        return format_serial(self.certificate.serial_number)

    @property
    def certificate_pem(self) -> bytes:
        """PEM of the certificate."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

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
        day = int((now - self.created_at) / (_DAY_SECONDS * max(time_scale, 1e-9)))
        return MIGRATION_RAMP[min(day, len(MIGRATION_RAMP) - 1)]

    def notification_signer(
        self, draw: float, now: float, time_scale: float
    ) -> tuple[str, rsa.RSAPrivateKey]:
        """The key that signs a notification; ``draw`` in [0, 1) decides during the ramp."""
        if draw < self.public_key_share(now, time_scale):
            return self.public_key_signer()
        newest = self.newest_certificate(now)
        return newest.serial_no, newest.private_key

    def add_platform_certificate(self, now: float) -> PlatformCertificateKey:
        """Rotation: a new platform certificate, effective now, overlapping the old ones."""
        start = dt.datetime.fromtimestamp(now, dt.UTC) - dt.timedelta(seconds=1)
        generated = generate_certificate("Tenpay.com Root CA", not_before=start)
        entry = PlatformCertificateKey(
            certificate=generated.certificate, private_key=generated.private_key
        )
        self.platform_certificates.append(entry)
        return entry

    def to_doc(self) -> dict[str, Any]:
        """The stored form (PEM strings)."""
        return {
            "mchid": self.mchid,
            "mode": self.mode.value,
            "appids": self.appids,
            "apiv3_key": self.apiv3_key,
            "apiv2_key": self.apiv2_key,
            "api_private_key": private_key_pem(self.api_private_key).decode(),
            "api_certificate": self.api_certificate.public_bytes(
                serialization.Encoding.PEM
            ).decode(),
            "platform_certificates": [
                {
                    "certificate": c.certificate_pem.decode(),
                    "private_key": private_key_pem(c.private_key).decode(),
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
        client_pem = self.api_certificate.public_bytes(serialization.Encoding.PEM)
        p12 = pkcs12.serialize_key_and_certificates(
            b"apiclient",
            self.api_private_key,
            self.api_certificate,
            None,
            serialization.BestAvailableEncryption(self.mchid.encode()),
        )
        return MerchantBundle(
            mchid=self.mchid,
            mode=self.mode,
            appids=tuple(self.appids),
            apiv3_key=self.apiv3_key,
            apiv2_key=self.apiv2_key,
            merchant_serial_no=self.serial_no,
            apiclient_key_pem=private_key_pem(self.api_private_key),
            apiclient_cert_pem=client_pem,
            apiclient_cert_p12=p12,
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


@functools.lru_cache(maxsize=256)
def _cached_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    # Loading a PEM key re-validates it (tens of milliseconds); tests sign many requests.
    return load_private_key(pem, source="apiclient_key.pem")


def _random_digits(count: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(count))


def provision_merchant(
    mode: MerchantMode | str = MerchantMode.CERTIFICATE,
    *,
    now: float,
    authority: CertificateAuthority | None = None,
    mchid: str | None = None,
    appids: list[str] | None = None,
) -> Merchant:
    """Make a merchant with fresh keys (about 0.2 s: three RSA-2048 keys).

    With ``authority`` the API certificate is issued by the simulator CA (needed for
    APIv2 mutual TLS); without, it is self-signed, which is enough for offline tests.
    """
    mode = MerchantMode(mode)
    mchid = mchid or "19" + _random_digits(8)
    api_key = generate_private_key()
    if authority is not None:
        api_certificate = authority.issue_merchant_certificate(mchid, api_key.public_key(), now=now)
    else:
        start = dt.datetime.fromtimestamp(now, dt.UTC) - dt.timedelta(days=1)
        api_certificate = generate_certificate(
            mchid, private_key=api_key, not_before=start, organization="微信商户系统"
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
        start = dt.datetime.fromtimestamp(now, dt.UTC) - dt.timedelta(days=1)
        generated = generate_certificate("Tenpay.com Root CA", not_before=start)
        merchant.platform_certificates.append(
            PlatformCertificateKey(
                certificate=generated.certificate, private_key=generated.private_key
            )
        )
    if mode is not MerchantMode.CERTIFICATE:
        merchant.public_key_id = generate_public_key_id()
        merchant.public_key_private = generate_private_key()
    return merchant


@dataclass(frozen=True, kw_only=True)
class MerchantBundle:
    """The merchant's side: files from the portal, keys, and where the simulator listens.

    :meth:`write` lays the files out like the portal's downloads; ``bundle.json``
    holds everything (so a test can :meth:`read` it back).
    """

    mchid: str
    mode: MerchantMode
    appids: tuple[str, ...]
    apiv3_key: str = field(repr=False)
    apiv2_key: str = field(repr=False)
    merchant_serial_no: str
    apiclient_key_pem: bytes = field(repr=False)
    apiclient_cert_pem: bytes = field(repr=False)
    apiclient_cert_p12: bytes = field(repr=False)
    platform_certificates: tuple[tuple[str, bytes], ...] = ()
    public_key_id: str = ""
    public_key_pem: bytes = field(default=b"", repr=False)
    sim_ca_pem: bytes = field(default=b"", repr=False)
    api_base_url: str = ""
    tls_base_url: str = ""

    @property
    def appid(self) -> str:
        """The first appid."""
        return self.appids[0]

    def credentials(self) -> MerchantCredentials:
        """The merchant's signing credentials (the key is parsed once per process)."""
        return MerchantCredentials(
            mchid=self.mchid,
            serial_no=self.merchant_serial_no,
            private_key=_cached_private_key(self.apiclient_key_pem),
        )

    def trusted_keys(self) -> TrustedKeys:
        """Every platform key the merchant should trust (certificates and public key)."""
        return TrustedKeys(
            certificates=[
                load_platform_certificate(pem, source=f"wechatpay_{serial}.pem")
                for serial, pem in self.platform_certificates
            ],
            public_keys=(
                [
                    WeChatPayPublicKey(
                        key_id=self.public_key_id,
                        public_key=load_public_key(self.public_key_pem, source="pub_key.pem"),
                    )
                ]
                if self.public_key_id
                else []
            ),
        )

    def to_json(self) -> dict[str, Any]:
        """The ``bundle.json`` document (PEMs as text, the .p12 in base64)."""
        return {
            "mchid": self.mchid,
            "mode": self.mode.value,
            "appid": self.appid,
            "appids": list(self.appids),
            "apiv3_key": self.apiv3_key,
            "apiv2_key": self.apiv2_key,
            "merchant_serial_no": self.merchant_serial_no,
            "apiclient_key_pem": self.apiclient_key_pem.decode(),
            "apiclient_cert_pem": self.apiclient_cert_pem.decode(),
            "apiclient_cert_p12": base64.b64encode(self.apiclient_cert_p12).decode(),
            "p12_password": self.mchid,
            "platform_certificates": [
                {"serial_no": serial, "pem": pem.decode()}
                for serial, pem in self.platform_certificates
            ],
            "public_key_id": self.public_key_id,
            "public_key_pem": self.public_key_pem.decode(),
            "sim_ca_pem": self.sim_ca_pem.decode(),
            "api_base_url": self.api_base_url,
            "tls_base_url": self.tls_base_url,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> MerchantBundle:
        """Parse a ``bundle.json`` document."""
        return cls(
            mchid=doc["mchid"],
            mode=MerchantMode(doc["mode"]),
            appids=tuple(doc["appids"]),
            apiv3_key=doc["apiv3_key"],
            apiv2_key=doc["apiv2_key"],
            merchant_serial_no=doc["merchant_serial_no"],
            apiclient_key_pem=doc["apiclient_key_pem"].encode(),
            apiclient_cert_pem=doc["apiclient_cert_pem"].encode(),
            apiclient_cert_p12=base64.b64decode(doc["apiclient_cert_p12"]),
            platform_certificates=tuple(
                (c["serial_no"], c["pem"].encode()) for c in doc["platform_certificates"]
            ),
            public_key_id=doc.get("public_key_id", ""),
            public_key_pem=doc.get("public_key_pem", "").encode(),
            sim_ca_pem=doc.get("sim_ca_pem", "").encode(),
            api_base_url=doc.get("api_base_url", ""),
            tls_base_url=doc.get("tls_base_url", ""),
        )

    def write(self, directory: str | Path) -> Path:
        """Write the portal-style files and ``bundle.json`` into ``directory``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        (out / "apiclient_key.pem").write_bytes(self.apiclient_key_pem)
        (out / "apiclient_cert.pem").write_bytes(self.apiclient_cert_pem)
        (out / "apiclient_cert.p12").write_bytes(self.apiclient_cert_p12)
        for serial, pem in self.platform_certificates:
            (out / f"wechatpay_{serial}.pem").write_bytes(pem)
        if self.public_key_pem:
            (out / "pub_key.pem").write_bytes(self.public_key_pem)
        if self.sim_ca_pem:
            (out / "sim_ca.pem").write_bytes(self.sim_ca_pem)
        (out / "bundle.json").write_text(
            json.dumps(self.to_json(), ensure_ascii=False, indent=2), encoding="utf-8"
        )
        for secret_file in ("apiclient_key.pem", "apiclient_cert.p12", "bundle.json"):
            (out / secret_file).chmod(0o600)
        return out

    @classmethod
    def read(cls, directory: str | Path) -> MerchantBundle:
        """Read ``bundle.json`` from a directory written by :meth:`write`."""
        return cls.from_json(json.loads((Path(directory) / "bundle.json").read_text("utf-8")))

    def api_certificate_serial(self) -> str:
        """Serial read from ``apiclient_cert.pem`` (equals ``merchant_serial_no``)."""
        return load_merchant_certificate(self.apiclient_cert_pem)[1]
