"""Interop with ``wechatpayv3``, an independent implementation (installed as a test dependency).

Its client is built in public-key mode, or in certificate mode with a ``cert_dir`` that
already holds the platform certificate; either way its constructor needs no network.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpayv3.utils import aes_decrypt, build_authorization, rsa_decrypt, rsa_encrypt

from wxpaykit.core.crypto import aes_gcm_open, aes_gcm_seal, rsa_oaep_decrypt, rsa_oaep_encrypt
from wxpaykit.core.notifications import parse_notification
from wxpaykit.core.payment_params import jsapi_pay_params
from wxpaykit.core.signing import build_request_message, parse_authorization
from wxpaykit.core.verification import TrustedKeys
from wxpaykit.errors import DecryptionError, SignatureMismatchError
from wxpaykit.testing.keys import GeneratedCertificate, public_key_pem
from wxpaykit.testing.notifications import sample_refund, sample_transaction, seal_notification

KEY = "TestAPIv3Key0123456789abcdefABCD"
MCHID = "1900007291"
APPID = "wxd678efh567hg6787"


@pytest.fixture(scope="module")
def public_key_client(
    merchant_cert: GeneratedCertificate, wechatpay_key_pair: tuple[str, rsa.RSAPrivateKey]
) -> WeChatPay:
    """wechatpayv3 in public-key mode: trusts our WeChat Pay public key and id."""
    key_id, private_key = wechatpay_key_pair
    return WeChatPay(
        wechatpay_type=WeChatPayType.JSAPI,
        mchid=MCHID,
        private_key=merchant_cert.private_key_pem.decode(),
        cert_serial_no=merchant_cert.serial_no,
        appid=APPID,
        apiv3_key=KEY,
        public_key=public_key_pem(private_key.public_key()).decode(),
        public_key_id=key_id,
    )


@pytest.fixture(scope="module")
def certificate_client(
    tmp_path_factory: pytest.TempPathFactory,
    merchant_cert: GeneratedCertificate,
    platform_cert: GeneratedCertificate,
) -> WeChatPay:
    """wechatpayv3 in certificate mode; the platform certificate is already in its cert_dir."""
    cert_dir = tmp_path_factory.mktemp("wechatpayv3-certs")
    (cert_dir / f"{platform_cert.serial_no}.pem").write_bytes(platform_cert.certificate_pem)
    return WeChatPay(
        wechatpay_type=WeChatPayType.JSAPI,
        mchid=MCHID,
        private_key=merchant_cert.private_key_pem.decode(),
        cert_serial_no=merchant_cert.serial_no,
        appid=APPID,
        apiv3_key=KEY,
        cert_dir=str(cert_dir),
    )


def _now() -> int:
    return int(time.time())


# --- (a) what we seal and sign, wechatpayv3 verifies and decrypts -------------------------


@pytest.mark.parametrize(
    ("resource", "event_type"),
    [(sample_transaction(), "TRANSACTION.SUCCESS"), (sample_refund(), "REFUND.SUCCESS")],
    ids=["payment", "refund"],
)
@pytest.mark.parametrize("body_type", [bytes, str])
def test_our_notifications_pass_wechatpayv3_callback_in_public_key_mode(
    public_key_client: WeChatPay,
    wechatpay_key_pair: tuple[str, rsa.RSAPrivateKey],
    resource: dict[str, Any],
    event_type: str,
    body_type: type,
) -> None:
    key_id, private_key = wechatpay_key_pair
    sealed = seal_notification(
        resource,
        apiv3_key=KEY,
        signing_key=private_key,
        serial=key_id,
        timestamp=_now(),
        event_type=event_type,
    )
    body = sealed.body if body_type is bytes else sealed.body.decode("utf-8")
    result = public_key_client.callback(sealed.headers, body)
    assert result is not None
    assert result["event_type"] == event_type
    assert result["resource"] == resource


def test_our_notifications_pass_wechatpayv3_callback_in_certificate_mode(
    certificate_client: WeChatPay, platform_cert: GeneratedCertificate
) -> None:
    sealed = seal_notification(
        sample_transaction(),
        apiv3_key=KEY,
        signing_key=platform_cert.private_key,
        serial=platform_cert.serial_no,
        timestamp=_now(),
    )
    lower_case = {name.lower(): value for name, value in sealed.headers.items()}
    for headers in (sealed.headers, lower_case):
        result = certificate_client.callback(headers, sealed.body)
        assert result is not None
        assert result["resource"]["payer"]["openid"] == "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"


def test_wechatpayv3_also_refuses_what_we_refuse_as_tampered(
    public_key_client: WeChatPay,
    wechatpay_key_pair: tuple[str, rsa.RSAPrivateKey],
    trusted_keys: TrustedKeys,
) -> None:
    key_id, private_key = wechatpay_key_pair
    sealed = seal_notification(
        sample_transaction(),
        apiv3_key=KEY,
        signing_key=private_key,
        serial=key_id,
        timestamp=_now(),
    )
    tampered = sealed.body.replace(b"TRANSACTION.SUCCESS", b"TRANSACTION.SUCCESs")
    assert public_key_client.callback(sealed.headers, tampered) is None
    with pytest.raises(SignatureMismatchError):
        parse_notification(
            sealed.headers, tampered, keys=trusted_keys, apiv3_key=KEY, now=dt.datetime.now(dt.UTC)
        )


def test_v6_passes_wechatpayv3_which_checks_no_clock(
    vectors: dict[str, Any],
    official_public_key: rsa.RSAPublicKey,
    merchant_cert: GeneratedCertificate,
) -> None:
    # wechatpayv3 has no timestamp window (§3.3); we refuse V6 with the real clock.
    v6 = vectors["V6"]
    client = WeChatPay(
        wechatpay_type=WeChatPayType.JSAPI,
        mchid=MCHID,
        private_key=merchant_cert.private_key_pem.decode(),
        cert_serial_no=merchant_cert.serial_no,
        appid=APPID,
        apiv3_key=v6["apiv3_key"],
        public_key=public_key_pem(official_public_key).decode(),
        public_key_id=v6["headers"]["Wechatpay-Serial"],
    )
    result = client.callback(v6["headers"], v6["body"].encode("utf-8"))
    assert result is not None
    assert result["resource"] == json.loads(v6["plaintext"])


# --- (b) what wechatpayv3 signs, we verify ---------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "data"),
    [
        ("GET", "/v3/certificates", None),
        (
            "GET",
            "/v3/pay/transactions/out-trade-no/1217752501201407033233368018?mchid=1900007291",
            None,
        ),
        (
            "POST",
            "/v3/pay/transactions/jsapi",
            {
                "appid": APPID,
                "mchid": MCHID,
                "description": "Image形象店-深圳腾大-QQ公仔",
                "amount": {"total": 100},
            },
        ),
    ],
)
def test_wechatpayv3_authorization_verifies_with_our_parser(
    merchant_cert: GeneratedCertificate, method: str, path: str, data: dict[str, Any] | None
) -> None:
    header = build_authorization(
        path, method, MCHID, merchant_cert.serial_no, merchant_cert.private_key, data=data
    )
    fields = parse_authorization(header)
    assert (fields.mchid, fields.serial_no) == (MCHID, merchant_cert.serial_no)
    assert abs(int(fields.timestamp) - _now()) < 60
    body = json.dumps(data).encode() if data else b""  # the exact bytes wechatpayv3 signed
    message = build_request_message(method, path, fields.timestamp, fields.nonce_str, body)
    merchant_cert.private_key.public_key().verify(
        base64.b64decode(fields.signature), message, padding.PKCS1v15(), hashes.SHA256()
    )


def test_wechatpayv3_pay_sign_equals_ours(
    public_key_client: WeChatPay, merchant_cert: GeneratedCertificate
) -> None:
    # PKCS#1 v1.5 is deterministic, so the two paySigns are the same string.
    prepay_id = "wx201410272009395522657a690389285100"
    ours = jsapi_pay_params(
        appid=APPID,
        prepay_id=prepay_id,
        private_key=merchant_cert.private_key,
        timestamp=1554208460,
        nonce="593BEC0C930BF1AFEB40B4A08C8FB242",
    )
    theirs = public_key_client.sign(
        [APPID, "1554208460", "593BEC0C930BF1AFEB40B4A08C8FB242", f"prepay_id={prepay_id}"]
    )
    assert theirs == ours["paySign"]


# --- (c) RSA-OAEP both ways ------------------------------------------------------------------


@pytest.mark.parametrize("text", ["张三", "6222021234567890", "a" * 200])
def test_oaep_interoperates_both_ways(merchant_cert: GeneratedCertificate, text: str) -> None:
    private_key = merchant_cert.private_key
    assert rsa_oaep_decrypt(rsa_encrypt(text, private_key.public_key()), private_key) == text
    assert rsa_decrypt(rsa_oaep_encrypt(text, private_key.public_key()), private_key) == text


# --- (d) AES-256-GCM -------------------------------------------------------------------------


@pytest.mark.parametrize("aad", ["transaction", "certificate", ""])
def test_wechatpayv3_opens_what_we_seal(aad: str) -> None:
    plaintext = json.dumps(sample_transaction(), ensure_ascii=False)
    sealed = aes_gcm_seal(
        KEY, nonce="A1b2C3d4E5f6", associated_data=aad, plaintext=plaintext.encode()
    )
    assert (
        aes_decrypt(nonce="A1b2C3d4E5f6", ciphertext=sealed, associated_data=aad, apiv3_key=KEY)
        == plaintext
    )
    # wechatpayv3 has no AES-GCM seal; the reverse direction is covered by V6 (sealed by the
    # reference's author with `cryptography`) and V7 (wechatpay-go's own vector) in
    # test_crypto.py. Both libraries agree on the same ciphertext here:
    assert (
        aes_gcm_open(KEY, nonce="A1b2C3d4E5f6", associated_data=aad, ciphertext=sealed)
        == plaintext.encode()
    )


def test_wechatpayv3_opens_the_v6_ciphertext_like_we_do(vectors: dict[str, Any]) -> None:
    v6 = vectors["V6"]
    theirs = aes_decrypt(
        nonce=v6["nonce"],
        ciphertext=v6["ciphertext"],
        associated_data=v6["associated_data"],
        apiv3_key=v6["apiv3_key"],
    )
    ours = aes_gcm_open(
        v6["apiv3_key"],
        nonce=v6["nonce"],
        associated_data=v6["associated_data"],
        ciphertext=v6["ciphertext"],
    )
    assert theirs == ours.decode("utf-8") == v6["plaintext"]


def test_both_refuse_a_wrong_apiv3_key_on_the_same_notification(
    public_key_client: WeChatPay,
    wechatpay_key_pair: tuple[str, rsa.RSAPrivateKey],
    trusted_keys: TrustedKeys,
) -> None:
    key_id, private_key = wechatpay_key_pair
    sealed = seal_notification(
        sample_transaction(),
        apiv3_key=KEY[::-1],
        signing_key=private_key,
        serial=key_id,
        timestamp=_now(),
    )
    assert public_key_client.callback(sealed.headers, sealed.body) is None
    with pytest.raises(DecryptionError, match="wrong APIv3 key"):
        parse_notification(
            sealed.headers,
            sealed.body,
            keys=trusted_keys,
            apiv3_key=KEY,
            now=dt.datetime.now(dt.UTC),
        )
