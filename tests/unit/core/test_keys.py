"""Loading key material: every accepted format, and a specific error naming the file otherwise."""

from __future__ import annotations

import base64
import datetime as dt
import textwrap
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from wxpaykit.core.keys import (
    ClientCertificate,
    MerchantCredentials,
    WeChatPayPublicKey,
    load_client_certificate_p12,
    load_client_certificate_pem,
    load_merchant_certificate,
    load_platform_certificate,
    load_private_key,
    load_public_key,
    read_key_file,
)
from wxpaykit.errors import KeyLoadError
from wxpaykit.testing.keys import (
    GeneratedCertificate,
    generate_certificate,
    generate_private_key,
    private_key_pem,
    public_key_pem,
)

MCHID = "1900007291"
PAST = (dt.datetime(2015, 1, 1, tzinfo=dt.UTC), dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
FUTURE = (dt.datetime(2040, 1, 1, tzinfo=dt.UTC), dt.datetime(2045, 1, 1, tzinfo=dt.UTC))


def _same_key(a: rsa.RSAPrivateKey, b: rsa.RSAPrivateKey) -> bool:
    return a.private_numbers() == b.private_numbers()


def _der_body(key: rsa.RSAPrivateKey, fmt: serialization.PrivateFormat, *, wrap: bool) -> str:
    der = key.private_bytes(serialization.Encoding.DER, fmt, serialization.NoEncryption())
    body = base64.b64encode(der).decode()
    return "\n".join(textwrap.wrap(body, 64)) + "\n" if wrap else body


def _write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


@pytest.fixture(scope="module")
def expired_cert(merchant_cert: GeneratedCertificate) -> GeneratedCertificate:
    """The merchant key under a certificate that expired in 2020."""
    return generate_certificate(
        MCHID, private_key=merchant_cert.private_key, not_before=PAST[0], not_after=PAST[1]
    )


@pytest.fixture(scope="module")
def future_cert(merchant_cert: GeneratedCertificate) -> GeneratedCertificate:
    """The merchant key under a certificate valid only from 2040."""
    return generate_certificate(
        MCHID, private_key=merchant_cert.private_key, not_before=FUTURE[0], not_after=FUTURE[1]
    )


# --- the merchant private key -------------------------------------------------------------


def test_official_pkcs8_pem_loads(
    vectors: dict[str, Any], official_private_key: rsa.RSAPrivateKey
) -> None:
    public = load_public_key(vectors["official_key"]["public_key_pem"])
    assert official_private_key.key_size == 2048
    assert official_private_key.public_key().public_numbers() == public.public_numbers()


@pytest.mark.parametrize("pkcs1", [False, True], ids=["pkcs8", "pkcs1"])
@pytest.mark.parametrize("as_text", [False, True], ids=["bytes", "text"])
def test_pem_private_key_loads(
    merchant_cert: GeneratedCertificate, pkcs1: bool, as_text: bool
) -> None:
    pem = private_key_pem(merchant_cert.private_key, pkcs1=pkcs1)
    assert (b"BEGIN RSA PRIVATE KEY" in pem) is pkcs1
    loaded = load_private_key(pem.decode() if as_text else pem)
    assert _same_key(loaded, merchant_cert.private_key)


@pytest.mark.parametrize(
    "fmt",
    [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL],
    ids=["pkcs8-der", "pkcs1-der"],
)
@pytest.mark.parametrize("wrap", [False, True], ids=["one-line", "line-broken"])
def test_bare_base64_body_from_the_portal_loads(
    merchant_cert: GeneratedCertificate, fmt: serialization.PrivateFormat, wrap: bool
) -> None:
    body = _der_body(merchant_cert.private_key, fmt, wrap=wrap)
    assert "-----" not in body
    assert _same_key(load_private_key("  " + body + "\r\n"), merchant_cert.private_key)


def test_bare_body_of_the_official_key_loads(official_private_key: rsa.RSAPrivateKey) -> None:
    pem = Path(__file__).parents[2].joinpath("vectors", "official_test_private_key.pem").read_text()
    body = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
    assert _same_key(load_private_key(body), official_private_key)


def _encrypted_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )


def _ec_pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem_block(label: str, body: bytes) -> bytes:
    """A PEM block around ``body`` (here: a corrupt 4-character body, never key material)."""
    return (
        b"-----BEGIN "
        + label.encode()
        + b"-----\n"
        + body
        + b"\n-----END "
        + label.encode()
        + b"-----\n"
    )


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda c: b"", "file is empty"),
        (lambda c: b"  \n\n", "file is empty"),
        (lambda c: c.certificate_pem, "found a PEM 'CERTIFICATE' block"),
        (lambda c: public_key_pem(c.private_key.public_key()), "found a PEM 'PUBLIC KEY' block"),
        (lambda c: _encrypted_pem(c.private_key), "password-protected"),
        (
            lambda c: _pem_block("PRIVATE KEY", b"AAAA"),
            "corrupt PEM private key",
        ),
        (lambda c: c.private_key_pem[:400], "corrupt PEM private key"),
        (lambda c: b"MIIEvQIBADANBg", "neither PEM nor a base64 key body"),
        (lambda c: base64.b64encode(b"not a key at all"), "not a DER private key"),
        (lambda c: _ec_pem(), "expected an RSA private key, got"),
        (lambda c: private_key_pem(generate_private_key(1024)), "1024 bits"),
        (lambda c: "ключ".encode(), "neither PEM nor a base64 key body"),
    ],
    ids=[
        "empty",
        "blank",
        "certificate",
        "public-key",
        "encrypted",
        "corrupt-body",
        "truncated",
        "bad-base64",
        "not-der",
        "ec-key",
        "1024-bit",
        "non-ascii",
    ],
)
def test_unusable_private_key_file_names_file_and_reason(
    tmp_path: Path, merchant_cert: GeneratedCertificate, make: Any, reason: str
) -> None:
    path = _write(tmp_path, "apiclient_key.pem", make(merchant_cert))
    with pytest.raises(KeyLoadError) as caught:
        MerchantCredentials.from_files(
            mchid=MCHID, private_key_path=path, serial_no=merchant_cert.serial_no
        )
    assert caught.value.source == str(path)
    assert reason in caught.value.reason
    assert str(path) in str(caught.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "apiclient_key.pem"
    with pytest.raises(KeyLoadError, match="cannot read file") as caught:
        read_key_file(path)
    assert caught.value.source == str(path)


# --- merchant certificate and credentials ---------------------------------------------------


def test_credentials_from_files_take_the_serial_from_the_certificate(
    tmp_path: Path, merchant_cert: GeneratedCertificate
) -> None:
    key = _write(tmp_path, "apiclient_key.pem", merchant_cert.private_key_pem)
    cert = _write(tmp_path, "apiclient_cert.pem", merchant_cert.certificate_pem)
    credentials = MerchantCredentials.from_files(
        mchid=MCHID, private_key_path=key, certificate_path=cert
    )
    assert credentials.serial_no == merchant_cert.serial_no
    assert credentials.serial_no == f"{merchant_cert.certificate.serial_number:X}"
    assert _same_key(credentials.private_key, merchant_cert.private_key)
    assert "PRIVATE" not in repr(credentials)
    assert "private_key" not in repr(credentials)


def test_configured_serial_is_upper_cased_and_may_keep_a_leading_zero(
    tmp_path: Path, merchant_cert: GeneratedCertificate
) -> None:
    key = _write(tmp_path, "apiclient_key.pem", merchant_cert.private_key_pem)
    cert = _write(tmp_path, "apiclient_cert.pem", merchant_cert.certificate_pem)
    credentials = MerchantCredentials.from_files(
        mchid=MCHID,
        private_key_path=key,
        certificate_path=cert,
        serial_no="0" + merchant_cert.serial_no.lower(),
    )
    assert credentials.serial_no == merchant_cert.serial_no
    only_serial = MerchantCredentials.from_files(
        mchid=MCHID, private_key_path=key, serial_no=merchant_cert.serial_no.lower()
    )
    assert only_serial.serial_no == merchant_cert.serial_no


def test_serial_with_leading_zero_nibble_is_written_without_it() -> None:
    generated = generate_certificate(MCHID, serial_number=0x0ABC)
    _, serial = load_merchant_certificate(generated.certificate_pem)
    assert serial == "ABC"


def test_key_and_certificate_that_do_not_match_name_both_files(
    tmp_path: Path, merchant_cert: GeneratedCertificate, platform_cert: GeneratedCertificate
) -> None:
    key = _write(tmp_path, "apiclient_key.pem", merchant_cert.private_key_pem)
    cert = _write(tmp_path, "apiclient_cert.pem", platform_cert.certificate_pem)
    with pytest.raises(KeyLoadError) as caught:
        MerchantCredentials.from_files(mchid=MCHID, private_key_path=key, certificate_path=cert)
    assert caught.value.source == str(cert)
    assert "does not belong to the private key" in caught.value.reason
    assert str(key) in caught.value.reason


def test_configured_serial_that_differs_from_the_certificate_is_refused(
    tmp_path: Path, merchant_cert: GeneratedCertificate
) -> None:
    key = _write(tmp_path, "apiclient_key.pem", merchant_cert.private_key_pem)
    cert = _write(tmp_path, "apiclient_cert.pem", merchant_cert.certificate_pem)
    with pytest.raises(KeyLoadError, match="differs from configured 1234") as caught:
        MerchantCredentials.from_files(
            mchid=MCHID, private_key_path=key, certificate_path=cert, serial_no="1234"
        )
    assert caught.value.source == str(cert)


def test_credentials_need_a_certificate_or_a_serial(
    tmp_path: Path, merchant_cert: GeneratedCertificate
) -> None:
    key = _write(tmp_path, "apiclient_key.pem", merchant_cert.private_key_pem)
    with pytest.raises(KeyLoadError, match="need the merchant certificate or its serial"):
        MerchantCredentials.from_files(mchid=MCHID, private_key_path=key)


@pytest.mark.parametrize(
    ("which", "reason"),
    [("expired", "certificate expired on 2020-01-01"), ("future", "not valid before 2040-01-01")],
)
def test_expired_or_future_merchant_certificate_is_refused_with_now(
    tmp_path: Path,
    merchant_cert: GeneratedCertificate,
    expired_cert: GeneratedCertificate,
    future_cert: GeneratedCertificate,
    which: str,
    reason: str,
) -> None:
    generated = expired_cert if which == "expired" else future_cert
    key = _write(tmp_path, "apiclient_key.pem", merchant_cert.private_key_pem)
    cert = _write(tmp_path, "apiclient_cert.pem", generated.certificate_pem)
    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    with pytest.raises(KeyLoadError, match=reason) as caught:
        MerchantCredentials.from_files(
            mchid=MCHID, private_key_path=key, certificate_path=cert, now=now
        )
    assert caught.value.source == str(cert)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda c: b"", "file is empty"),
        (lambda c: c.private_key_pem, "this is a private key, not a certificate"),
        (lambda c: c.certificate_pem.replace(b"MII", b"XXX", 1), "corrupt certificate"),
        (lambda c: b"\x30\x82garbage", "corrupt certificate"),
    ],
    ids=["empty", "private-key", "corrupt-pem", "corrupt-der"],
)
def test_unusable_certificate_file_names_file_and_reason(
    tmp_path: Path, platform_cert: GeneratedCertificate, make: Any, reason: str
) -> None:
    path = _write(tmp_path, "wechatpay_cert.pem", make(platform_cert))
    with pytest.raises(KeyLoadError, match=reason) as caught:
        load_platform_certificate(read_key_file(path), source=str(path))
    assert caught.value.source == str(path)


# --- platform certificates and the WeChat Pay public key -------------------------------------


@pytest.mark.parametrize("encoding", [serialization.Encoding.PEM, serialization.Encoding.DER])
def test_platform_certificate_loads_from_pem_or_der(
    platform_cert: GeneratedCertificate, encoding: serialization.Encoding
) -> None:
    loaded = load_platform_certificate(platform_cert.certificate.public_bytes(encoding))
    assert loaded.serial_no == platform_cert.serial_no
    assert loaded.pem == platform_cert.certificate_pem
    assert (
        loaded.public_key.public_numbers()
        == platform_cert.private_key.public_key().public_numbers()
    )
    assert loaded.is_valid_at(dt.datetime.now(dt.UTC))
    assert not loaded.is_valid_at(loaded.not_after + dt.timedelta(seconds=1))
    assert not loaded.is_valid_at(loaded.not_before - dt.timedelta(seconds=1))


def test_expired_platform_certificate_is_refused_with_now(
    expired_cert: GeneratedCertificate,
) -> None:
    with pytest.raises(KeyLoadError, match="expired") as caught:
        load_platform_certificate(
            expired_cert.certificate_pem, source="wechatpay_old.pem", now=dt.datetime.now(dt.UTC)
        )
    assert caught.value.source == "wechatpay_old.pem"
    # Without a clock the certificate loads; verification then refuses it by date.
    assert load_platform_certificate(expired_cert.certificate_pem).not_after == PAST[1]


@pytest.mark.parametrize(
    "encode",
    [
        public_key_pem,
        lambda k: k.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1),
        lambda k: "".join(public_key_pem(k).decode().splitlines()[1:-1]).encode(),
    ],
    ids=["spki-pem", "pkcs1-pem", "bare-base64"],
)
def test_public_key_formats_load(
    tmp_path: Path, wechatpay_key_pair: tuple[str, rsa.RSAPrivateKey], encode: Any
) -> None:
    key_id, private_key = wechatpay_key_pair
    path = _write(tmp_path, "pub_key.pem", encode(private_key.public_key()))
    loaded = WeChatPayPublicKey.load(read_key_file(path), key_id, source=str(path))
    assert loaded.key_id == key_id
    assert loaded.public_key.public_numbers() == private_key.public_key().public_numbers()


def test_public_key_id_must_have_the_prefix(
    wechatpay_key_pair: tuple[str, rsa.RSAPrivateKey],
) -> None:
    _, private_key = wechatpay_key_pair
    with pytest.raises(KeyLoadError, match="must start with 'PUB_KEY_ID_'") as caught:
        WeChatPayPublicKey.load(
            public_key_pem(private_key.public_key()),
            "0000000024101100397200000006",
            source="pub_key.pem",
        )
    assert caught.value.source == "pub_key.pem"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "file is empty"),
        (
            _pem_block("CERTIFICATE", b"AAAA"),
            "this is a certificate",
        ),
        (_pem_block("PUBLIC KEY", b"AAAA"), "corrupt public key"),
        (b"AAAA", "corrupt public key"),
    ],
)
def test_unusable_public_key_is_refused(data: bytes, reason: str) -> None:
    with pytest.raises(KeyLoadError, match=reason):
        load_public_key(data, source="pub_key.pem")


def test_non_rsa_public_key_is_refused() -> None:
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(KeyLoadError, match="expected an RSA public key"):
        load_public_key(pem, source="pub_key.pem")


# --- the APIv2 client certificate -----------------------------------------------------------


def _assert_pair(client: ClientCertificate, generated: GeneratedCertificate) -> None:
    assert client.serial_no == generated.serial_no
    cert_pem, key_pem = client.pem_pair()
    assert cert_pem == generated.certificate_pem
    assert _same_key(load_private_key(key_pem), generated.private_key)


def test_client_certificate_pem_pair_loads(
    tmp_path: Path, merchant_cert: GeneratedCertificate
) -> None:
    cert = _write(tmp_path, "apiclient_cert.pem", merchant_cert.certificate_pem)
    key = _write(tmp_path, "apiclient_key.pem", merchant_cert.private_key_pem)
    client = load_client_certificate_pem(
        read_key_file(cert), read_key_file(key), source=str(cert), key_source=str(key)
    )
    _assert_pair(client, merchant_cert)


def test_client_certificate_pem_pair_mismatch_and_bad_key_name_their_files(
    tmp_path: Path, merchant_cert: GeneratedCertificate, platform_cert: GeneratedCertificate
) -> None:
    # "cert" in the directory name once made the key's label point at a file that did not exist.
    (tmp_path / "certs").mkdir()
    cert = _write(tmp_path / "certs", "apiclient_cert.pem", platform_cert.certificate_pem)
    key = _write(tmp_path / "certs", "apiclient_key.pem", merchant_cert.private_key_pem)
    with pytest.raises(KeyLoadError, match="does not belong") as caught:
        load_client_certificate_pem(
            read_key_file(cert), read_key_file(key), source=str(cert), key_source=str(key)
        )
    assert caught.value.source == str(cert)
    with pytest.raises(KeyLoadError, match="file is empty") as empty:
        load_client_certificate_pem(read_key_file(cert), b"", source=str(cert), key_source=str(key))
    assert empty.value.source == str(key)


def test_client_certificate_p12_opens_with_the_mchid(
    tmp_path: Path, merchant_cert: GeneratedCertificate
) -> None:
    path = _write(tmp_path, "apiclient_cert.p12", merchant_cert.pkcs12(MCHID))
    client = load_client_certificate_p12(read_key_file(path), MCHID, source=str(path))
    _assert_pair(client, merchant_cert)


@pytest.mark.parametrize("data", ["wrong-password", "corrupt"])
def test_client_certificate_p12_wrong_password_or_corrupt_is_named(
    tmp_path: Path, merchant_cert: GeneratedCertificate, data: str
) -> None:
    content = merchant_cert.pkcs12(MCHID) if data == "wrong-password" else b"\x30\x82junk"
    path = _write(tmp_path, "apiclient_cert.p12", content)
    with pytest.raises(KeyLoadError, match="wrong password or corrupt file") as caught:
        load_client_certificate_p12(read_key_file(path), "1230000109", source=str(path))
    assert caught.value.source == str(path)


def test_expired_client_certificate_p12_is_refused_with_now(
    expired_cert: GeneratedCertificate,
) -> None:
    with pytest.raises(KeyLoadError, match="expired"):
        load_client_certificate_p12(
            expired_cert.pkcs12(MCHID),
            MCHID,
            source="apiclient_cert.p12",
            now=dt.datetime.now(dt.UTC),
        )


def test_a_der_certificate_ending_in_a_whitespace_byte_loads(
    platform_cert: GeneratedCertificate,
) -> None:
    # DER is binary: a certificate whose signature ends in 0x20, 0x0a... is still valid,
    # and must not be stripped like PEM text. Signatures are random, so sign until one
    # ends that way (about 1 in 40 does); the serial number makes each one different.
    for serial in range(1, 2001):
        cert = generate_certificate(
            MCHID, private_key=platform_cert.private_key, serial_number=serial
        )
        der = cert.certificate.public_bytes(serialization.Encoding.DER)
        if der[-1:].isspace():
            break
    else:  # pragma: no cover - (39/40)^2000 is zero for any practical purpose
        pytest.fail("no certificate ended in a whitespace byte")
    loaded = load_platform_certificate(der)
    assert loaded.serial_no == cert.serial_no
