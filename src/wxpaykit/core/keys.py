"""Loading key material: merchant key and certificate, platform certificates, public key.

Every loader takes bytes (or text) plus a ``source`` label (usually the file path) and
raises :class:`~wxpaykit.errors.KeyLoadError` naming that source and the reason, so a
user with five PEM files knows which one is wrong. ``*_file`` variants read the file.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from wxpaykit.core.serials import PUBLIC_KEY_ID_PREFIX, format_serial
from wxpaykit.errors import KeyLoadError

__all__ = [
    "ClientCertificate",
    "MerchantCredentials",
    "PlatformCertificate",
    "WeChatPayPublicKey",
    "load_client_certificate_p12",
    "load_client_certificate_pem",
    "load_merchant_certificate",
    "load_platform_certificate",
    "load_private_key",
    "load_public_key",
    "read_key_file",
]

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
_MIN_RSA_BITS = 2048


def read_key_file(path: str | Path) -> bytes:
    """Read a key or certificate file, turning OS errors into :class:`KeyLoadError`."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise KeyLoadError(str(path), f"cannot read file ({exc.strerror or exc})") from exc


def _as_bytes(data: bytes | str) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else data


def _require_rsa_private(key: object, source: str) -> rsa.RSAPrivateKey:
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyLoadError(source, f"expected an RSA private key, got {type(key).__name__}")
    if key.key_size < _MIN_RSA_BITS:
        raise KeyLoadError(source, f"RSA key is {key.key_size} bits; WeChat Pay uses 2048")
    return key


def load_private_key(data: bytes | str, *, source: str = "<private key>") -> rsa.RSAPrivateKey:
    """Load the merchant API private key (``apiclient_key.pem``).

    Accepts PKCS#8 PEM, PKCS#1 PEM (``BEGIN RSA PRIVATE KEY``) and the bare base64 body
    that users paste from the merchant portal (PKCS#8 or PKCS#1 DER, line breaks allowed).
    """
    raw = _as_bytes(data).strip()
    if not raw:
        raise KeyLoadError(source, "file is empty")
    match = _PEM_BLOCK.search(raw)
    if match:
        kind = match.group(1).decode()
        if "PRIVATE KEY" not in kind:
            raise KeyLoadError(
                source,
                f"expected a private key but found a PEM '{kind}' block"
                " (is this the certificate instead of apiclient_key.pem?)",
            )
        if "ENCRYPTED" in kind:
            raise KeyLoadError(
                source, "the private key is password-protected; export it unencrypted"
            )
        try:
            key = serialization.load_pem_private_key(raw, password=None)
        except (ValueError, TypeError) as exc:
            raise KeyLoadError(source, "corrupt PEM private key (cannot be decoded)") from exc
        return _require_rsa_private(key, source)
    try:
        der = base64.b64decode(b"".join(raw.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyLoadError(source, "neither PEM nor a base64 key body") from exc
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyLoadError(
            source, "base64 body is not a DER private key (corrupt or truncated)"
        ) from exc
    return _require_rsa_private(key, source)


def load_public_key(data: bytes | str, *, source: str = "<public key>") -> rsa.RSAPublicKey:
    """Load an RSA public key from PEM (SPKI or PKCS#1) or a bare base64 SPKI body."""
    raw = _as_bytes(data).strip()
    if not raw:
        raise KeyLoadError(source, "file is empty")
    try:
        if _PEM_BLOCK.search(raw):
            if b"CERTIFICATE" in raw[:64]:
                raise KeyLoadError(source, "this is a certificate, not a public key")
            key = serialization.load_pem_public_key(raw)
        else:
            key = serialization.load_der_public_key(base64.b64decode(b"".join(raw.split())))
    except KeyLoadError:
        raise
    except (ValueError, TypeError, binascii.Error) as exc:
        raise KeyLoadError(source, "corrupt public key (cannot be decoded)") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise KeyLoadError(source, f"expected an RSA public key, got {type(key).__name__}")
    return key


def _load_certificate(data: bytes | str, source: str) -> x509.Certificate:
    raw = _as_bytes(data)
    text = raw.strip()
    if not text:
        raise KeyLoadError(source, "file is empty")
    try:
        if b"-----BEGIN" in text:
            if b"PRIVATE KEY" in text[:64]:
                raise KeyLoadError(source, "this is a private key, not a certificate")
            return x509.load_pem_x509_certificate(text)
        # DER is binary: its last bytes (the signature's) may be whitespace values, so
        # it is decoded as given, never stripped.
        return x509.load_der_x509_certificate(raw)
    except KeyLoadError:
        raise
    except ValueError as exc:
        raise KeyLoadError(source, "corrupt certificate (cannot be decoded)") from exc


def _check_validity(cert: x509.Certificate, source: str, now: dt.datetime | None) -> None:
    if now is None:
        return
    if now > cert.not_valid_after_utc:
        raise KeyLoadError(source, f"certificate expired on {cert.not_valid_after_utc.isoformat()}")
    if now < cert.not_valid_before_utc:
        raise KeyLoadError(
            source, f"certificate not valid before {cert.not_valid_before_utc.isoformat()}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class PlatformCertificate:
    """A WeChat Pay platform certificate, identified by ``serial_no`` (upper-case hex)."""

    serial_no: str
    public_key: rsa.RSAPublicKey = field(repr=False)
    not_before: dt.datetime
    not_after: dt.datetime
    pem: bytes = field(repr=False)

    def is_valid_at(self, now: dt.datetime) -> bool:
        """True when ``now`` lies inside the certificate's validity period."""
        return self.not_before <= now <= self.not_after


def load_platform_certificate(
    data: bytes | str, *, source: str = "<platform certificate>", now: dt.datetime | None = None
) -> PlatformCertificate:
    """Load a platform certificate (PEM or DER). With ``now``, an expired one is refused."""
    cert = _load_certificate(data, source)
    _check_validity(cert, source, now)
    public_key = cert.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise KeyLoadError(source, "certificate does not hold an RSA key")
    return PlatformCertificate(
        serial_no=format_serial(cert.serial_number),
        public_key=public_key,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        pem=cert.public_bytes(serialization.Encoding.PEM),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class WeChatPayPublicKey:
    """The WeChat Pay public key (``pub_key.pem``) and its id ``PUB_KEY_ID_...``."""

    key_id: str
    public_key: rsa.RSAPublicKey = field(repr=False)

    @classmethod
    def load(
        cls, data: bytes | str, key_id: str, *, source: str = "<wechatpay public key>"
    ) -> WeChatPayPublicKey:
        """Load ``pub_key.pem`` and pair it with its id from the merchant portal."""
        if not key_id.startswith(PUBLIC_KEY_ID_PREFIX):
            raise KeyLoadError(
                source, f"public key id must start with {PUBLIC_KEY_ID_PREFIX!r}, got {key_id!r}"
            )
        return cls(key_id=key_id, public_key=load_public_key(data, source=source))


def load_merchant_certificate(
    data: bytes | str, *, source: str = "<merchant certificate>", now: dt.datetime | None = None
) -> tuple[x509.Certificate, str]:
    """Load ``apiclient_cert.pem`` and return it with its serial (the ``serial_no``)."""
    cert = _load_certificate(data, source)
    _check_validity(cert, source, now)
    return cert, format_serial(cert.serial_number)


def _same_public_key(private_key: rsa.RSAPrivateKey, cert: x509.Certificate) -> bool:
    cert_key = cert.public_key()
    return (
        isinstance(cert_key, rsa.RSAPublicKey)
        and cert_key.public_numbers() == private_key.public_key().public_numbers()
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class MerchantCredentials:
    """What a merchant signs requests with: mchid, API certificate serial and private key."""

    mchid: str
    serial_no: str
    private_key: rsa.RSAPrivateKey = field(repr=False)

    @classmethod
    def from_files(
        cls,
        *,
        mchid: str,
        private_key_path: str | Path,
        certificate_path: str | Path | None = None,
        serial_no: str | None = None,
        now: dt.datetime | None = None,
    ) -> MerchantCredentials:
        """Load from ``apiclient_key.pem`` plus the certificate (or its serial number).

        When the certificate is given, its key must match the private key: a mismatch
        is the most common cause of SIGN_ERROR and is reported here, before any call.
        """
        key = load_private_key(read_key_file(private_key_path), source=str(private_key_path))
        if certificate_path is not None:
            cert, cert_serial = load_merchant_certificate(
                read_key_file(certificate_path), source=str(certificate_path), now=now
            )
            if not _same_public_key(key, cert):
                raise KeyLoadError(
                    str(certificate_path),
                    f"certificate does not belong to the private key in {private_key_path}",
                )
            if serial_no is not None and int(serial_no, 16) != int(cert_serial, 16):
                raise KeyLoadError(
                    str(certificate_path),
                    f"certificate serial {cert_serial} differs from configured {serial_no}",
                )
            serial_no = cert_serial
        if serial_no is None:
            raise KeyLoadError(str(private_key_path), "need the merchant certificate or its serial")
        return cls(mchid=mchid, serial_no=serial_no.upper(), private_key=key)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientCertificate:
    """The APIv2 client certificate for mutual TLS (``secapi/pay/refund``)."""

    certificate: x509.Certificate = field(repr=False)
    private_key: rsa.RSAPrivateKey = field(repr=False)

    @property
    def serial_no(self) -> str:
        """Serial of the client certificate."""
        return format_serial(self.certificate.serial_number)

    def pem_pair(self) -> tuple[bytes, bytes]:
        """Return ``(certificate_pem, unencrypted_private_key_pem)`` for TLS libraries."""
        return (
            self.certificate.public_bytes(serialization.Encoding.PEM),
            self.private_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )


def load_client_certificate_pem(
    certificate: bytes | str,
    private_key: bytes | str,
    *,
    source: str = "<apiclient_cert.pem>",
    key_source: str = "<apiclient_key.pem>",
    now: dt.datetime | None = None,
) -> ClientCertificate:
    """Load the PEM pair ``apiclient_cert.pem`` + ``apiclient_key.pem``.

    ``source`` and ``key_source`` label the two files in errors.
    """
    cert = _load_certificate(certificate, source)
    _check_validity(cert, source, now)
    key = load_private_key(private_key, source=key_source)
    if not _same_public_key(key, cert):
        raise KeyLoadError(source, "client certificate does not belong to the private key")
    return ClientCertificate(certificate=cert, private_key=key)


def load_client_certificate_p12(
    data: bytes,
    password: str,
    *,
    source: str = "<apiclient_cert.p12>",
    now: dt.datetime | None = None,
) -> ClientCertificate:
    """Load ``apiclient_cert.p12``; WeChat sets its password to the merchant id."""
    try:
        key, cert, _ = pkcs12.load_key_and_certificates(data, password.encode())
    except ValueError as exc:
        raise KeyLoadError(source, "cannot open PKCS#12 (wrong password or corrupt file)") from exc
    if cert is None or key is None:
        raise KeyLoadError(source, "PKCS#12 file lacks the certificate or the key")
    _check_validity(cert, source, now)
    return ClientCertificate(certificate=cert, private_key=_require_rsa_private(key, source))
