"""Decrypting the ``GET /v3/certificates`` payload (§4)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from wxpaykit.core.certificates import decrypt_certificates
from wxpaykit.core.crypto import ApiV3Key, aes_gcm_seal
from wxpaykit.errors import DecryptionError, KeyLoadError, MalformedMessageError
from wxpaykit.testing.keys import GeneratedCertificate, generate_certificate

KEY = "TestAPIv3Key0123456789abcdefABCD"
NOW = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)


def _entry(pem: bytes, serial_no: str, *, nonce: str = "61f9c719728a") -> dict[str, Any]:
    return {
        "serial_no": serial_no,
        "effective_time": "2018-06-08T10:34:56+08:00",
        "expire_time": "2028-12-08T10:34:56+08:00",
        "encrypt_certificate": {
            "algorithm": "AEAD_AES_256_GCM",
            "nonce": nonce,
            "associated_data": "certificate",
            "ciphertext": aes_gcm_seal(
                KEY, nonce=nonce, associated_data="certificate", plaintext=pem
            ),
        },
    }


@pytest.fixture(scope="module")
def current() -> GeneratedCertificate:
    """A platform certificate valid at ``NOW``."""
    return generate_certificate(
        "Tenpay.com Root CA",
        not_before=dt.datetime(2023, 1, 1, tzinfo=dt.UTC),
        not_after=dt.datetime(2028, 1, 1, tzinfo=dt.UTC),
    )


@pytest.fixture(scope="module")
def expired() -> GeneratedCertificate:
    """A platform certificate that expired before ``NOW``."""
    return generate_certificate(
        "Tenpay.com Root CA",
        not_before=dt.datetime(2018, 1, 1, tzinfo=dt.UTC),
        not_after=dt.datetime(2023, 1, 1, tzinfo=dt.UTC),
    )


def test_decrypts_every_entry_from_bytes_or_dict(
    current: GeneratedCertificate, expired: GeneratedCertificate
) -> None:
    document = {
        "data": [
            _entry(current.certificate_pem, current.serial_no),
            _entry(expired.certificate_pem, expired.serial_no, nonce="0123456789ab"),
        ]
    }
    for payload in (json.dumps(document).encode(), document):
        certificates = decrypt_certificates(payload, ApiV3Key(KEY))
        assert [c.serial_no for c in certificates] == [current.serial_no, expired.serial_no]
        assert certificates[0].pem == current.certificate_pem


def test_with_a_clock_unusable_certificates_are_dropped(
    current: GeneratedCertificate, expired: GeneratedCertificate
) -> None:
    document = {
        "data": [
            _entry(expired.certificate_pem, expired.serial_no),
            _entry(current.certificate_pem, current.serial_no),
        ]
    }
    assert [c.serial_no for c in decrypt_certificates(document, KEY, now=NOW)] == [
        current.serial_no
    ]


def test_serial_is_compared_as_a_number(current: GeneratedCertificate) -> None:
    entry = _entry(current.certificate_pem, "0" + current.serial_no.lower())
    assert decrypt_certificates({"data": [entry]}, KEY)[0].serial_no == current.serial_no


def test_serial_that_is_not_the_certificates_own_is_refused(
    current: GeneratedCertificate, expired: GeneratedCertificate
) -> None:
    entry = _entry(current.certificate_pem, expired.serial_no)
    with pytest.raises(MalformedMessageError, match="differs from the certificate's own"):
        decrypt_certificates({"data": [entry]}, KEY)


def test_wrong_apiv3_key_is_a_decryption_error(current: GeneratedCertificate) -> None:
    entry = _entry(current.certificate_pem, current.serial_no)
    with pytest.raises(DecryptionError, match="wrong APIv3 key"):
        decrypt_certificates({"data": [entry]}, KEY[::-1])


def test_plaintext_that_is_not_a_certificate_names_the_entry() -> None:
    entry = _entry(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "ABC")
    with pytest.raises(KeyLoadError, match="corrupt certificate") as caught:
        decrypt_certificates({"data": [entry]}, KEY)
    assert caught.value.source == "/v3/certificates[ABC]"


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"<html>502</html>", "not JSON"),
        (b"[]", "lacks a 'data' list"),
        ({"data": {"serial_no": "1"}}, "lacks a 'data' list"),
        ({"data": [{"serial_no": "ABC"}]}, "entry 0 lacks"),
        ({"data": ["ABC"]}, "entry 0 lacks"),
        (
            {"data": [{"serial_no": "ABC", "encrypt_certificate": {"nonce": "61f9c719728a"}}]},
            "entry 0 lacks",
        ),
    ],
)
def test_malformed_payloads_are_refused(payload: bytes | dict[str, Any], problem: str) -> None:
    with pytest.raises(MalformedMessageError, match=problem):
        decrypt_certificates(payload, KEY)
