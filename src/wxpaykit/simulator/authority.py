"""The simulator's certificate authority: issues merchant and TLS server certificates.

The real platform issues ``apiclient_cert.pem`` from its own CA, and the APIv2 mTLS
endpoints accept only certificates from that CA. The simulator does the same with a
CA made on first start and kept in the state database, so certificates issued before
a restart stay valid after it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from wxpaykit.core.keys import load_private_key
from wxpaykit.simulator.state import SimulatorState
from wxpaykit.testing.keys import (
    KeySource,
    generate_private_key,
    generate_serial_number,
    private_key_pem,
)

__all__ = ["CertificateAuthority"]

_CA_KEY = "ca_key_pem"
_CA_CERT = "ca_cert_pem"
_FIVE_YEARS = dt.timedelta(days=5 * 365)


def _name(common_name: str, organization: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


class CertificateAuthority:
    """A persistent CA (``Tenpay.com Simulator CA``)."""

    def __init__(self, key: rsa.RSAPrivateKey, certificate: x509.Certificate) -> None:
        self.key = key
        self.certificate = certificate

    @classmethod
    def load_or_create(
        cls, state: SimulatorState, *, now: float, key_source: KeySource = generate_private_key
    ) -> CertificateAuthority:
        """Load the CA from ``state``, making and storing one on first use."""
        key_pem, cert_pem = state.get_meta(_CA_KEY), state.get_meta(_CA_CERT)
        if key_pem is not None and cert_pem is not None:
            return cls(
                load_private_key(key_pem, source="simulator CA"),
                x509.load_pem_x509_certificate(cert_pem.encode()),
            )
        key = key_source()
        start = dt.datetime.fromtimestamp(now, dt.UTC) - dt.timedelta(days=1)
        name = _name("Tenpay.com Simulator CA", "Tenpay.com")
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(generate_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + 4 * _FIVE_YEARS)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        authority = cls(key, certificate)
        state.set_meta(_CA_KEY, private_key_pem(key).decode())
        state.set_meta(_CA_CERT, authority.certificate_pem.decode())
        return authority

    @property
    def certificate_pem(self) -> bytes:
        """PEM of the CA certificate (``sim_ca.pem`` in merchant bundles)."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def _issue(
        self,
        subject: x509.Name,
        public_key: rsa.RSAPublicKey,
        *,
        now: float,
        usage: x509.ObjectIdentifier,
        san: list[x509.GeneralName] | None = None,
    ) -> x509.Certificate:
        start = dt.datetime.fromtimestamp(now, dt.UTC) - dt.timedelta(days=1)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(generate_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + _FIVE_YEARS)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def issue_merchant_certificate(
        self, mchid: str, public_key: rsa.RSAPublicKey, *, now: float
    ) -> x509.Certificate:
        """``apiclient_cert.pem``: CN is the mchid, as on the real certificate."""
        return self._issue(
            _name(mchid, "微信商户系统"),
            public_key,
            now=now,
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        )

    def issue_server_certificate(
        self, public_key: rsa.RSAPublicKey, *, now: float, hosts: tuple[str, ...]
    ) -> x509.Certificate:
        """The HTTPS listener's certificate, for ``localhost`` and loopback addresses."""
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        return self._issue(
            _name(hosts[0], "Tenpay.com"),
            public_key,
            now=now,
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            san=names,
        )
