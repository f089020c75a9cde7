"""Throwaway RSA keys and X.509 certificates shaped like WeChat Pay's.

Serials are 20 random bytes with a non-zero top nibble, so every SDK's serial format
(leading zero kept or dropped, protocol reference §4) gives the same string.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from wxpaykit.core.serials import format_serial

__all__ = [
    "GeneratedCertificate",
    "KeyPool",
    "KeySource",
    "generate_certificate",
    "generate_private_key",
    "generate_public_key_id",
    "generate_serial_number",
    "private_key_pem",
    "public_key_pem",
    "shared_key_pool",
]

#: Where a component gets its RSA private keys: :func:`generate_private_key` (fresh
#: keys, the default everywhere) or a :class:`KeyPool` (tests).
KeySource = Callable[[], rsa.RSAPrivateKey]


def generate_private_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    """A fresh RSA private key (2048 bits, like WeChat Pay's)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


class KeyPool:
    """RSA keys made once and handed out in turn, for tests that make many merchants.

    Generating an RSA-2048 key takes 50-300 ms, and a simulated merchant needs up to
    three; a test suite that makes hundreds of merchants spends most of its time
    there. A pool makes its first ``size`` keys on demand, then hands the same keys
    out again in the same order, so any ``size`` consecutive keys from one pool are
    distinct (a test needing more distinct keys than that should use fresh ones).
    Call the pool where a :data:`KeySource` is expected. Never use it outside tests:
    pooled keys are shared by everything that draws from the pool.
    """

    def __init__(self, size: int = 32, *, bits: int = 2048) -> None:
        if size < 1:
            raise ValueError("a key pool needs at least one key")
        self.size = size
        self.bits = bits
        self._keys: list[rsa.RSAPrivateKey] = []
        self._next = 0
        self._lock = threading.Lock()

    def __call__(self) -> rsa.RSAPrivateKey:
        """The next key of the pool (made now if the pool is not yet full)."""
        with self._lock:
            index = self._next
            self._next = (index + 1) % self.size
            if index == len(self._keys):
                self._keys.append(generate_private_key(self.bits))
            return self._keys[index]

    @property
    def generated(self) -> int:
        """How many keys the pool has made so far (at most ``size``)."""
        return len(self._keys)


_SHARED_POOL = KeyPool()


def shared_key_pool() -> KeyPool:
    """The process-wide :class:`KeyPool` the testing kit and pytest plugin draw from."""
    return _SHARED_POOL


def generate_serial_number() -> int:
    """20 random bytes with the top nibble 1-7: 40 upper-hex digits in every format.

    The top bit stays clear because RFC 5280 serials are positive and at most 159 bits
    (``cryptography`` refuses 160-bit ones), as WeChat's own serials are (``5157F0...``).
    """
    while True:
        number = int.from_bytes(secrets.token_bytes(20), "big")
        if 1 <= number >> 156 <= 7:
            return number


def generate_public_key_id() -> str:
    """A ``PUB_KEY_ID_`` followed by 34 digits, like the official examples."""
    return "PUB_KEY_ID_" + "".join(secrets.choice("0123456789") for _ in range(34))


def private_key_pem(key: rsa.RSAPrivateKey, *, pkcs1: bool = False) -> bytes:
    """PEM of a private key: PKCS#8 (the portal's format) or PKCS#1."""
    fmt = (
        serialization.PrivateFormat.TraditionalOpenSSL
        if pkcs1
        else serialization.PrivateFormat.PKCS8
    )
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def public_key_pem(key: rsa.RSAPublicKey) -> bytes:
    """SPKI PEM of a public key (the ``pub_key.pem`` format)."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class GeneratedCertificate:
    """A generated key pair and its certificate."""

    private_key: rsa.RSAPrivateKey = field(repr=False)
    certificate: x509.Certificate = field(repr=False)

    @property
    def serial_no(self) -> str:
        """Upper-case hex serial, as WeChat writes it."""
        return format_serial(self.certificate.serial_number)

    @property
    def certificate_pem(self) -> bytes:
        """PEM of the certificate."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def private_key_pem(self) -> bytes:
        """PKCS#8 PEM of the private key."""
        return private_key_pem(self.private_key)

    def pkcs12(self, password: str) -> bytes:
        """The pair as ``apiclient_cert.p12`` (WeChat uses the mchid as password)."""
        return pkcs12.serialize_key_and_certificates(
            b"apiclient",
            self.private_key,
            self.certificate,
            None,
            serialization.BestAvailableEncryption(password.encode()),
        )


def generate_certificate(
    common_name: str,
    *,
    private_key: rsa.RSAPrivateKey | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    serial_number: int | None = None,
    organization: str = "Tenpay.com",
) -> GeneratedCertificate:
    """A self-signed certificate (default validity: from a day ago for five years)."""
    key = private_key or generate_private_key()
    start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    end = not_after or start + dt.timedelta(days=5 * 365)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial_number or generate_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .sign(key, hashes.SHA256())
    )
    return GeneratedCertificate(private_key=key, certificate=certificate)
