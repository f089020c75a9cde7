"""Request signing (§2) and response signing (§3): known answers V1, V2, V5 and round trips."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from wxpaykit.core.keys import WeChatPayPublicKey, load_platform_certificate
from wxpaykit.core.signing import (
    SIGNATURE_TYPE,
    build_authorization,
    build_request_message,
    build_response_message,
    generate_nonce,
    parse_authorization,
    sign_message,
    sign_response_headers,
)
from wxpaykit.core.verification import TrustedKeys, verify_signature
from wxpaykit.errors import MalformedMessageError
from wxpaykit.testing.keys import GeneratedCertificate

ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
RSA_SETTINGS = settings(max_examples=25, deadline=None)


def _verify_pkcs1(public_key: rsa.RSAPublicKey, signature_b64: str, message: bytes) -> None:
    public_key.verify(base64.b64decode(signature_b64), message, padding.PKCS1v15(), hashes.SHA256())


def test_v1_body_and_message_are_byte_exact(vectors: dict[str, Any]) -> None:
    v1 = vectors["V1"]
    body = v1["body"].encode("utf-8")
    assert len(body) == v1["body_bytes"] == 295
    assert hashlib.sha256(body).hexdigest() == v1["body_sha256"]
    message = build_request_message(
        v1["method"], v1["canonical_url"], v1["timestamp"], v1["nonce"], body
    )
    assert message == (
        b"POST\n/v3/pay/transactions/jsapi\n1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n"
        + body
        + b"\n"
    )
    assert len(message) == v1["message_bytes"] == 372
    assert hashlib.sha256(message).hexdigest() == v1["message_sha256"]


def test_v1_signature_matches_the_official_one(
    vectors: dict[str, Any], official_private_key: rsa.RSAPrivateKey
) -> None:
    v1 = vectors["V1"]
    message = build_request_message(
        v1["method"], v1["canonical_url"], v1["timestamp"], v1["nonce"], v1["body"]
    )
    assert sign_message(message, official_private_key) == v1["signature"]


def test_v1_authorization_header_carries_the_official_signature(
    vectors: dict[str, Any],
    official_private_key: rsa.RSAPrivateKey,
    official_public_key: rsa.RSAPublicKey,
) -> None:
    v1, official = vectors["V1"], vectors["official_key"]
    header = build_authorization(
        mchid=official["mchid"],
        serial_no=official["serial_no"],
        private_key=official_private_key,
        method=v1["method"],
        canonical_url=v1["canonical_url"],
        body=v1["body"].encode("utf-8"),
        timestamp=v1["timestamp"],
        nonce=v1["nonce"],
    )
    assert header == (
        f'WECHATPAY2-SHA256-RSA2048 mchid="1900007291",nonce_str="{v1["nonce"]}",'
        f'timestamp="1554208460",serial_no="{official["serial_no"]}",'
        f'signature="{v1["signature"]}"'
    )
    fields = parse_authorization(header)
    assert (fields.mchid, fields.serial_no, fields.signature) == (
        "1900007291",
        official["serial_no"],
        v1["signature"],
    )
    message = build_request_message(
        v1["method"], v1["canonical_url"], fields.timestamp, fields.nonce_str, v1["body"]
    )
    _verify_pkcs1(official_public_key, fields.signature, message)


def test_v2_get_with_empty_body_signs_an_empty_last_line(
    vectors: dict[str, Any], official_private_key: rsa.RSAPrivateKey
) -> None:
    v2 = vectors["V2"]
    message = build_request_message(
        v2["method"], v2["canonical_url"], v2["timestamp"], v2["nonce"], b""
    )
    assert message == v2["message"].encode()
    assert message.endswith(b"\n\n")
    assert sign_message(message, official_private_key) == v2["signature"]


@pytest.mark.parametrize(
    ("body", "signature_key"), [("body", "signature"), ("", "empty_body_signature")]
)
def test_v5_response_signature_known_answer(
    vectors: dict[str, Any],
    official_private_key: rsa.RSAPrivateKey,
    official_public_key: rsa.RSAPublicKey,
    body: str,
    signature_key: str,
) -> None:
    v5 = vectors["V5"]
    raw = v5["body"].encode() if body else b""
    headers = sign_response_headers(
        body=raw,
        private_key=official_private_key,
        serial="PUB_KEY_ID_0000000000000024101100397200000006",
        timestamp=v5["timestamp"],
        nonce=v5["nonce"],
    )
    assert headers["Wechatpay-Signature"] == v5[signature_key]
    assert headers["Wechatpay-Signature-Type"] == SIGNATURE_TYPE
    keys = TrustedKeys(
        public_keys=[
            WeChatPayPublicKey(key_id=headers["Wechatpay-Serial"], public_key=official_public_key)
        ]
    )
    now = dt.datetime.fromtimestamp(v5["timestamp"], dt.UTC)
    verified = verify_signature(headers, raw, keys, now=now)
    assert verified.key_kind == "public_key"
    assert verified.skew_seconds == 0


def test_request_message_appends_newline_even_after_a_trailing_newline() -> None:
    # wechatpay-go's json.Encoder adds "\n" to the body; the message then ends "}\n\n" (§2.1).
    message = build_request_message("post", "/v3/x?a=1", 1, "n", b"{}\n")
    assert message == b"POST\n/v3/x?a=1\n1\nn\n{}\n\n"


def test_request_message_same_for_text_and_bytes_body() -> None:
    text = '{"description":"腾讯充值中心-QQ会员充值"}'
    assert build_request_message("POST", "/", 1, "n", text) == build_request_message(
        "POST", "/", 1, "n", text.encode("utf-8")
    )


def test_response_message_of_empty_body_ends_with_blank_line() -> None:
    assert build_response_message(1554208460, "abc", b"") == b"1554208460\nabc\n\n"


def test_generate_nonce_is_32_alphanumerics_from_the_injected_choice() -> None:
    nonce = generate_nonce()
    assert len(nonce) == 32
    assert set(nonce) <= set(ALNUM)
    assert generate_nonce(5, choice=lambda alphabet: alphabet[0]) == "aaaaa"


@pytest.mark.parametrize(
    "params",
    [
        # py3's order: mchid, nonce_str, signature, timestamp, serial_no
        'mchid="1",nonce_str="N",signature="S",timestamp="2",serial_no="AB"',
        # php's order: mchid, serial_no, timestamp, nonce_str, signature
        'mchid="1",serial_no="AB",timestamp="2",nonce_str="N",signature="S"',
        # spaces after the commas are tolerated
        'signature="S", timestamp="2", serial_no="AB", nonce_str="N", mchid="1"',
    ],
)
def test_parse_authorization_accepts_fields_in_any_order(params: str) -> None:
    fields = parse_authorization(f"WECHATPAY2-SHA256-RSA2048 {params}")
    assert (fields.mchid, fields.nonce_str, fields.timestamp, fields.serial_no) == (
        "1",
        "N",
        "2",
        "AB",
    )
    assert fields.signature == "S"


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ('WECHATPAY2-SM2-WITH-SM3 mchid="1"', "scheme"),
        (
            'WECHATPAY2-SHA256-RSA2048 mchid="1",nonce_str="N",timestamp="2",serial_no="AB"',
            "lacks signature",
        ),
        ('WECHATPAY2-SHA256-RSA2048 mchid=1,nonce_str="N"', "malformed"),
        ('WECHATPAY2-SHA256-RSA2048 mchid="1",mchid="2"', "repeated"),
        (
            'WECHATPAY2-SHA256-RSA2048 mchid="",nonce_str="N",timestamp="2",serial_no="AB",signature="S"',
            "lacks mchid",
        ),
    ],
)
def test_parse_authorization_refuses_malformed_headers(header: str, problem: str) -> None:
    with pytest.raises(MalformedMessageError, match=problem):
        parse_authorization(header)


@RSA_SETTINGS
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]),
    path=st.text(alphabet=ALNUM + "/-_.%?=&", min_size=1, max_size=60),
    body=st.binary(max_size=300),
    timestamp=st.integers(min_value=1_000_000_000, max_value=9_999_999_999),
    nonce=st.text(alphabet=ALNUM, min_size=1, max_size=32),
)
def test_authorization_round_trips_and_verifies_with_the_merchant_public_key(
    merchant_cert: GeneratedCertificate,
    method: str,
    path: str,
    body: bytes,
    timestamp: int,
    nonce: str,
) -> None:
    header = build_authorization(
        mchid="1900007291",
        serial_no=merchant_cert.serial_no,
        private_key=merchant_cert.private_key,
        method=method,
        canonical_url=path,
        body=body,
        timestamp=timestamp,
        nonce=nonce,
    )
    fields = parse_authorization(header)
    assert fields.timestamp == str(timestamp)
    assert fields.nonce_str == nonce
    assert fields.serial_no == merchant_cert.serial_no
    message = build_request_message(method, path, fields.timestamp, fields.nonce_str, body)
    _verify_pkcs1(merchant_cert.private_key.public_key(), fields.signature, message)


@RSA_SETTINGS
@given(body=st.binary(max_size=400), nonce=st.text(alphabet=ALNUM, min_size=1, max_size=32))
def test_response_signing_round_trips_through_verify_signature(
    platform_cert: GeneratedCertificate, body: bytes, nonce: str
) -> None:
    keys = TrustedKeys(certificates=[load_platform_certificate(platform_cert.certificate_pem)])
    now = dt.datetime.now(dt.UTC)
    headers = sign_response_headers(
        body=body,
        private_key=platform_cert.private_key,
        serial=platform_cert.serial_no,
        timestamp=int(now.timestamp()),
        nonce=nonce,
    )
    verified = verify_signature(headers, body, keys, now=now)
    assert verified.serial == platform_cert.serial_no
    assert verified.key_kind == "certificate"
