"""AEAD_AES_256_GCM (§5) and RSA-OAEP (§8): known answers V6/V7, round trips, tampering."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from wxpaykit.core.crypto import (
    ApiV3Key,
    aes_gcm_open,
    aes_gcm_seal,
    rsa_oaep_decrypt,
    rsa_oaep_encrypt,
)
from wxpaykit.errors import ConfigurationError, DecryptionError
from wxpaykit.testing.keys import GeneratedCertificate

KEY = "TestAPIv3Key0123456789abcdefABCD"
NONCE_TEXT = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    min_size=12,
    max_size=12,
)
AAD_TEXT = st.text(max_size=16)
FAST = settings(max_examples=60, deadline=None)


def test_v6_seal_is_byte_exact_and_opens(vectors: dict[str, Any]) -> None:
    v6 = vectors["V6"]
    plaintext = v6["plaintext"].encode("utf-8")
    assert len(plaintext) == v6["plaintext_bytes"] == 431
    sealed = aes_gcm_seal(
        v6["apiv3_key"],
        nonce=v6["nonce"],
        associated_data=v6["associated_data"],
        plaintext=plaintext,
    )
    assert sealed == v6["ciphertext"]
    assert len(base64.b64decode(sealed)) == v6["ciphertext_raw_bytes"] == 447
    opened = aes_gcm_open(
        ApiV3Key(v6["apiv3_key"]),
        nonce=v6["nonce"],
        associated_data=v6["associated_data"],
        ciphertext=v6["ciphertext"],
    )
    assert opened == plaintext


@pytest.mark.parametrize("key_form", [str, str.encode])
def test_v7_opens_with_a_16_byte_key(vectors: dict[str, Any], key_form: Any) -> None:
    # wechatpay-go's own vector uses AES-128-GCM; go and java do not enforce 32 bytes (§5).
    v7 = vectors["V7"]
    opened = aes_gcm_open(
        key_form(v7["key"]),
        nonce=v7["nonce"],
        associated_data=v7["associated_data"],
        ciphertext=v7["ciphertext"],
    )
    assert opened == v7["plaintext"].encode()


def test_apiv3_key_must_be_32_bytes_and_never_prints() -> None:
    with pytest.raises(ConfigurationError, match="got 33"):
        ApiV3Key(KEY + "\n")
    with pytest.raises(ConfigurationError, match="got 16"):
        ApiV3Key(b"testAPIv3Key0000")
    key = ApiV3Key(KEY)
    assert KEY not in repr(key)
    assert repr(key) == "ApiV3Key(***)"


def test_raw_key_of_unusable_length_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="16, 24 or 32"):
        aes_gcm_seal(b"short", nonce="A1b2C3d4E5f6", associated_data="", plaintext=b"x")


@FAST
@given(plaintext=st.binary(max_size=2048), nonce=NONCE_TEXT, aad=AAD_TEXT)
def test_seal_then_open_round_trips(plaintext: bytes, nonce: str, aad: str) -> None:
    sealed = aes_gcm_seal(KEY, nonce=nonce, associated_data=aad, plaintext=plaintext)
    assert len(base64.b64decode(sealed)) == len(plaintext) + 16
    assert aes_gcm_open(KEY, nonce=nonce, associated_data=aad, ciphertext=sealed) == plaintext


def test_empty_associated_data_and_none_are_the_same() -> None:
    sealed = aes_gcm_seal(KEY, nonce="A1b2C3d4E5f6", associated_data="", plaintext=b"{}")
    assert aes_gcm_open(KEY, nonce="A1b2C3d4E5f6", associated_data=None, ciphertext=sealed) == b"{}"


@FAST
@given(data=st.data(), plaintext=st.binary(min_size=0, max_size=200))
def test_any_flipped_ciphertext_or_tag_byte_is_refused(
    data: st.DataObject, plaintext: bytes
) -> None:
    raw = bytearray(
        base64.b64decode(
            aes_gcm_seal(
                KEY, nonce="A1b2C3d4E5f6", associated_data="transaction", plaintext=plaintext
            )
        )
    )
    # Indices past len(plaintext) are the 16-byte tag.
    index = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    raw[index] ^= data.draw(st.integers(min_value=1, max_value=255))
    with pytest.raises(DecryptionError, match="wrong APIv3 key"):
        aes_gcm_open(
            KEY,
            nonce="A1b2C3d4E5f6",
            associated_data="transaction",
            ciphertext=base64.b64encode(bytes(raw)),
        )


@FAST
@given(data=st.data())
def test_any_changed_nonce_byte_is_refused(data: st.DataObject) -> None:
    nonce = b"A1b2C3d4E5f6"
    sealed = aes_gcm_seal(KEY, nonce=nonce, associated_data="transaction", plaintext=b"{}")
    changed = bytearray(nonce)
    changed[data.draw(st.integers(min_value=0, max_value=11))] ^= data.draw(
        st.integers(min_value=1, max_value=255)
    )
    with pytest.raises(DecryptionError):
        aes_gcm_open(KEY, nonce=bytes(changed), associated_data="transaction", ciphertext=sealed)


@FAST
@given(aad=AAD_TEXT, other=AAD_TEXT)
def test_different_associated_data_is_refused(aad: str, other: str) -> None:
    assume(other != aad)
    sealed = aes_gcm_seal(KEY, nonce="A1b2C3d4E5f6", associated_data=aad, plaintext=b"{}")
    with pytest.raises(DecryptionError):
        aes_gcm_open(KEY, nonce="A1b2C3d4E5f6", associated_data=other, ciphertext=sealed)


def test_wrong_key_is_refused_without_echoing_anything() -> None:
    sealed = aes_gcm_seal(
        KEY, nonce="A1b2C3d4E5f6", associated_data="t", plaintext=b"secret-openid"
    )
    with pytest.raises(DecryptionError) as caught:
        aes_gcm_open(KEY[::-1], nonce="A1b2C3d4E5f6", associated_data="t", ciphertext=sealed)
    assert "secret" not in str(caught.value)
    assert sealed not in str(caught.value)


@pytest.mark.parametrize(
    ("nonce", "ciphertext", "problem"),
    [
        ("A1b2C3d4E5f6", "not base64!", "not valid base64"),
        ("A1b2C3d4E5f6", base64.b64encode(b"short").decode(), "shorter than the 16-byte"),
        ("A1b2C3d4E5", base64.b64encode(bytes(32)).decode(), "nonce must be 12 bytes"),
    ],
)
def test_malformed_inputs_are_decryption_errors(nonce: str, ciphertext: str, problem: str) -> None:
    with pytest.raises(DecryptionError, match=problem):
        aes_gcm_open(KEY, nonce=nonce, associated_data="", ciphertext=ciphertext)


def test_seal_refuses_a_nonce_that_is_not_12_bytes() -> None:
    with pytest.raises(ValueError, match="12 bytes"):
        aes_gcm_seal(KEY, nonce="short", associated_data="", plaintext=b"")


@settings(max_examples=15, deadline=None)
@given(text=st.text(min_size=1, max_size=60))
def test_oaep_round_trips(merchant_cert: GeneratedCertificate, text: str) -> None:
    ciphertext = rsa_oaep_encrypt(text, merchant_cert.private_key.public_key())
    assert len(base64.b64decode(ciphertext)) == 256
    assert rsa_oaep_decrypt(ciphertext, merchant_cert.private_key) == text


def test_oaep_is_randomised_and_keeps_empty_empty(merchant_cert: GeneratedCertificate) -> None:
    public_key = merchant_cert.private_key.public_key()
    assert rsa_oaep_encrypt("张三", public_key) != rsa_oaep_encrypt("张三", public_key)
    assert rsa_oaep_encrypt("", public_key) == ""
    assert rsa_oaep_decrypt("", merchant_cert.private_key) == ""


def test_oaep_refuses_wrong_key_and_garbage(
    merchant_cert: GeneratedCertificate, platform_cert: GeneratedCertificate
) -> None:
    ciphertext = rsa_oaep_encrypt("6222021234567890", platform_cert.private_key.public_key())
    with pytest.raises(DecryptionError, match="wrong key"):
        rsa_oaep_decrypt(ciphertext, merchant_cert.private_key)
    with pytest.raises(DecryptionError):
        rsa_oaep_decrypt("not base64!", merchant_cert.private_key)
