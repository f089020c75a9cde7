"""What a merchant downloads from the merchant portal (商户平台), as files and as JSON.

:class:`MerchantBundle` is the merchant's side of a simulated merchant: the API
private key and certificate (``apiclient_key.pem``, ``apiclient_cert.pem``, and
``apiclient_cert.p12`` with the mchid as password; the same pair serves APIv2 mutual
TLS), the APIv3 and APIv2 keys, the appids, the platform certificates or WeChat Pay
public key to trust, and where the simulator listens. It holds no platform secret;
:class:`~wxpaykit.simulator.merchants.Merchant` (the platform's side) makes it.
"""

from __future__ import annotations

import base64
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from wxpaykit.core.keys import (
    MerchantCredentials,
    WeChatPayPublicKey,
    load_merchant_certificate,
    load_platform_certificate,
    load_private_key,
    load_public_key,
)
from wxpaykit.core.verification import TrustedKeys
from wxpaykit.simulator.modes import MerchantMode

__all__ = ["MerchantBundle"]


@functools.lru_cache(maxsize=256)
def _cached_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    # Loading a PEM key re-validates it (tens of milliseconds); tests sign many requests.
    return load_private_key(pem, source="apiclient_key.pem")


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
