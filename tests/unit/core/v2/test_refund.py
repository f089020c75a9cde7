"""Refund ``req_info`` (§9.4, §13 V10), the v2 notification models, and wechatpy interop."""

from __future__ import annotations

import base64
import dataclasses

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import assume, given
from hypothesis import strategies as st
from wechatpy.crypto import RefundCrypto, WeChatRefundCrypto
from wechatpy.pay import WeChatPay

from wxpaykit.core.v2.refund import (
    PaymentNotificationV2,
    RefundReqInfo,
    decrypt_req_info,
    encrypt_req_info,
)
from wxpaykit.core.v2.signing import SignType, sign_v2, verify_v2
from wxpaykit.core.v2.xml import build_xml, parse_xml
from wxpaykit.errors import DecryptionError, MalformedMessageError, UnsafeXmlError

API_KEY = "192006250b4c09247ec02edce69f6a2d"
#: V10: md5(API_KEY) as lower-case hex, used as 32 ASCII bytes.
V10_AES_KEY = b"d96eb16afdd491fa1e705096edbc2205"
V10_PLAINTEXT = (
    b"<root>\n<out_refund_no><![CDATA[R1234]]></out_refund_no>\n"
    b"<out_trade_no><![CDATA[1409811653]]></out_trade_no>\n"
    b"<refund_fee><![CDATA[1]]></refund_fee>\n"
    b"<refund_status><![CDATA[SUCCESS]]></refund_status>\n"
    b"<total_fee><![CDATA[1]]></total_fee>\n</root>"
)
V10_REQ_INFO = (
    "4gS8kbcHysCW7bHqyEU0M9umdFVGKPOUBs+y0jA3Blgc1/6wedQ42G/YgTuT2IhSNFTq30gLca5QoezdJeYUqWXp"
    "zmfF3FfPbqDHMKGQpDU1PL8rkClINtFJkzdXX/v6Q3xiF156sv5bkuQ4k+cLi3zclJ9PUmK8v5LA1IWB/CqaHQsz"
    "yd5bmkNXifus9AbEx2OK1/0tkLtn6vggf8WJ+ha1fj+Eorgndx3fNxf3KAYa3LPgsjvZgxaeYyrhV05KK0nui9wj"
    "B+PtrbKbeNUxMmqTNDVpfI4FjZ7sOlmFESdYXKEOiYys6v5gTWrzox3e3oq5OYelGTRed7W0Ow/YvQ=="
)

#: Every field §9.4 lists, in the platform's alphabetical order.
FULL_REFUND = {
    "out_refund_no": "131811191610442717309",
    "out_trade_no": "71106718111915575302817",
    "refund_account": "REFUND_SOURCE_RECHARGE_FUNDS",
    "refund_fee": "3960",
    "refund_id": "50000408942018111907145868882",
    "refund_recv_accout": "支付用户零钱",
    "refund_request_source": "API",
    "refund_status": "SUCCESS",
    "settlement_refund_fee": "3960",
    "settlement_total_fee": "3960",
    "success_time": "2018-11-19 16:24:13",
    "total_fee": "3960",
    "transaction_id": "4200000215201811190261405420",
}

#: §13 V9 notification fields with their MD5 sign.
V9_NOTIFICATION = {
    "appid": "wx2421b1c4370ec43b",
    "attach": "支付测试",
    "bank_type": "CFT",
    "cash_fee": "1",
    "fee_type": "CNY",
    "is_subscribe": "Y",
    "mch_id": "10000100",
    "nonce_str": "5d2b6c2a8db53831f7eda20af46e531c",
    "openid": "oUpF8uMEb4qRXf22hE3X68TekukE",
    "out_trade_no": "1409811653",
    "result_code": "SUCCESS",
    "return_code": "SUCCESS",
    "time_end": "20140903131540",
    "total_fee": "1",
    "trade_type": "JSAPI",
    "transaction_id": "1004400740201409030005092168",
    "sign": "A79C5985C6A8FC7DA5DF1F7656412908",
}

refund_values = st.text(alphabet="0123456789ABCXYZabcxyz_-:支付退款", min_size=1, max_size=30)
refund_fields = st.dictionaries(
    st.from_regex(r"[a-z_]{1,20}", fullmatch=True), refund_values, min_size=1, max_size=10
)


def root_document(params: dict[str, str]) -> bytes:
    """A ``<root>`` document in the platform's layout, built without our XML writer."""
    children = "".join(f"\n<{key}><![CDATA[{value}]]></{key}>" for key, value in params.items())
    return f"<root>{children}\n</root>".encode()


def ecb_encrypt(plaintext_with_padding: bytes) -> str:
    """Independent AES-256-ECB under the V10 key, padding chosen by the test."""
    encryptor = Cipher(algorithms.AES(V10_AES_KEY), modes.ECB()).encryptor()  # noqa: S305
    return base64.b64encode(
        encryptor.update(plaintext_with_padding) + encryptor.finalize()
    ).decode()


def test_v10_req_info_decrypts_to_the_documented_plaintext() -> None:
    assert decrypt_req_info(V10_REQ_INFO, API_KEY) == parse_xml(V10_PLAINTEXT, root_tag="root")
    assert decrypt_req_info(V10_REQ_INFO, API_KEY) == {
        "out_refund_no": "R1234",
        "out_trade_no": "1409811653",
        "refund_fee": "1",
        "refund_status": "SUCCESS",
        "total_fee": "1",
    }


def test_v10_encryption_reproduces_the_documented_req_info() -> None:
    assert encrypt_req_info(V10_PLAINTEXT, API_KEY) == V10_REQ_INFO


def test_v10_req_info_is_ecb_under_the_documented_aes_key() -> None:
    padded = V10_PLAINTEXT + bytes([14]) * 14
    assert ecb_encrypt(padded) == V10_REQ_INFO


@given(refund_fields)
def test_encrypt_then_decrypt_round_trips(params: dict[str, str]) -> None:
    assert decrypt_req_info(encrypt_req_info(root_document(params), API_KEY), API_KEY) == params


@given(st.text(alphabet="0123456789abcdef", min_size=32, max_size=32))
def test_another_key_is_refused(other_key: str) -> None:
    assume(other_key != API_KEY)
    with pytest.raises(DecryptionError):
        decrypt_req_info(V10_REQ_INFO, other_key)


def test_valid_padding_around_non_xml_is_a_decryption_failure() -> None:
    # What a wrong key looks like in the 1-in-256 case where the padding happens to pass.
    with pytest.raises(DecryptionError, match="XML"):
        decrypt_req_info(encrypt_req_info(b"\x93\x00garbage", API_KEY), API_KEY)


def test_unsafe_plaintext_stays_an_unsafe_xml_error() -> None:
    plaintext = b'<!DOCTYPE root [<!ENTITY a "b">]><root><a>&a;</a></root>'
    with pytest.raises(UnsafeXmlError):
        decrypt_req_info(encrypt_req_info(plaintext, API_KEY), API_KEY)


@pytest.mark.parametrize(
    "padding",
    [bytes([32]) * 32, bytes([17]) * 17, b"\x00" * 16, b"\x01" * 15 + b"\x02"],
    ids=["32-byte pad", "17-byte pad", "zero pad", "inconsistent pad"],
)
def test_refuses_padding_other_than_16_byte_pkcs7(padding: bytes) -> None:
    body = b"<root><a>1</a></root>"
    filler = b" " * (-(len(body) + len(padding)) % 16)
    with pytest.raises(DecryptionError, match="padding"):
        decrypt_req_info(ecb_encrypt(body + filler + padding), API_KEY)


@pytest.mark.parametrize(
    ("req_info", "error"),
    [
        ("not base64!", MalformedMessageError),
        ("", DecryptionError),
        (base64.b64encode(b"x" * 15).decode(), DecryptionError),
    ],
)
def test_refuses_req_info_that_is_not_aes_blocks(req_info: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        decrypt_req_info(req_info, API_KEY)


@given(refund_fields)
def test_wechatpy_decrypts_what_we_encrypt(params: dict[str, str]) -> None:
    req_info = encrypt_req_info(root_document(params), API_KEY)
    notification = build_xml(
        {"return_code": "SUCCESS", "appid": "wx1", "mch_id": "100", "req_info": req_info}
    )
    theirs = WeChatRefundCrypto(API_KEY).decrypt_message(notification, "wx1", "100")
    assert dict(theirs) == decrypt_req_info(req_info, API_KEY) == params


@given(filler_length=st.integers(0, 64))
def test_wechatpy_32_byte_padding_is_accepted_only_when_valid_for_16(filler_length: int) -> None:
    # wechatpy's encoder pads to 32-byte blocks; its decoder strips any pad length, so
    # agreement is only required where that padding is also valid 16-byte PKCS#7.
    plaintext = b"<root><a>" + b"x" * filler_length + b"</a></root>"
    req_info = RefundCrypto(WeChatRefundCrypto(API_KEY).key).encrypt(plaintext).decode()
    if 32 - len(plaintext) % 32 <= 16:
        assert decrypt_req_info(req_info, API_KEY) == {"a": "x" * filler_length}
    else:
        with pytest.raises(DecryptionError):
            decrypt_req_info(req_info, API_KEY)


def test_refund_model_reads_every_documented_field() -> None:
    refund = RefundReqInfo.from_params(FULL_REFUND)
    assert refund == RefundReqInfo(
        out_refund_no="131811191610442717309",
        out_trade_no="71106718111915575302817",
        refund_id="50000408942018111907145868882",
        transaction_id="4200000215201811190261405420",
        refund_status="SUCCESS",
        refund_fee=3960,
        total_fee=3960,
        settlement_refund_fee=3960,
        success_time="2018-11-19 16:24:13",
        refund_recv_accout="支付用户零钱",
        extra={
            "refund_account": "REFUND_SOURCE_RECHARGE_FUNDS",
            "refund_request_source": "API",
            "settlement_total_fee": "3960",
        },
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        refund.refund_fee = 1  # type: ignore[misc]


def test_refund_model_leaves_optional_fields_empty() -> None:
    required = {
        key: FULL_REFUND[key]
        for key in ("out_refund_no", "out_trade_no", "refund_id", "transaction_id")
    }
    refund = RefundReqInfo.from_params(
        {**required, "refund_status": "CHANGE", "refund_fee": "1", "total_fee": "2"}
    )
    assert refund.settlement_refund_fee is None
    assert refund.success_time is None
    assert refund.refund_recv_accout is None
    assert refund.extra == {}


def test_v10_plaintext_is_not_a_complete_refund() -> None:
    # The computed V10 sample omits refund_id and transaction_id, which real ones carry.
    with pytest.raises(MalformedMessageError, match="refund_id"):
        RefundReqInfo.from_params(decrypt_req_info(V10_REQ_INFO, API_KEY))


@pytest.mark.parametrize("fee", ["", "1.00", "-1", "+1", " 1", "1_000", "１", "9" * 19])
def test_refund_model_refuses_fees_that_are_not_whole_fen(fee: str) -> None:
    with pytest.raises(MalformedMessageError, match="refund_fee"):
        RefundReqInfo.from_params({**FULL_REFUND, "refund_fee": fee})


def test_payment_notification_model_reads_a_verified_v9_notification() -> None:
    params = parse_xml(build_xml(V9_NOTIFICATION))
    assert verify_v2(params, API_KEY) is SignType.MD5
    notification = PaymentNotificationV2.from_params(params)
    assert notification.total_fee == 1
    assert notification.cash_fee == 1
    assert notification.attach == "支付测试"
    assert notification.sub_mch_id is None
    assert notification.extra == {
        "bank_type": "CFT",
        "is_subscribe": "Y",
        "nonce_str": "5d2b6c2a8db53831f7eda20af46e531c",
        "sign": "A79C5985C6A8FC7DA5DF1F7656412908",
    }


def test_payment_notification_agrees_with_wechatpy() -> None:
    theirs = WeChatPay("wx2421b1c4370ec43b", API_KEY, "10000100").parse_payment_result(
        build_xml(V9_NOTIFICATION)
    )
    ours = PaymentNotificationV2.from_params(V9_NOTIFICATION)
    assert (ours.total_fee, ours.cash_fee) == (theirs["total_fee"], theirs["cash_fee"])
    assert (ours.transaction_id, ours.openid) == (theirs["transaction_id"], theirs["openid"])


def test_payment_notification_defaults_documented_optional_fields() -> None:
    params = {
        key: value
        for key, value in V9_NOTIFICATION.items()
        if key not in ("fee_type", "attach", "cash_fee")
    }
    notification = PaymentNotificationV2.from_params({**params, "sub_mch_id": "1900000109"})
    assert notification.fee_type == "CNY"
    assert notification.attach == ""
    assert notification.cash_fee is None
    assert notification.sub_mch_id == "1900000109"


@pytest.mark.parametrize(
    "missing", ["appid", "mch_id", "out_trade_no", "transaction_id", "total_fee", "openid"]
)
def test_payment_notification_refuses_missing_fields(missing: str) -> None:
    params = {key: value for key, value in V9_NOTIFICATION.items() if key != missing}
    with pytest.raises(MalformedMessageError, match=missing):
        PaymentNotificationV2.from_params(params)


def test_hmac_signed_notification_verifies_then_models() -> None:
    params = {key: value for key, value in V9_NOTIFICATION.items() if key != "sign"}
    params["sign_type"] = "HMAC-SHA256"
    params["sign"] = sign_v2(params, API_KEY, SignType.HMAC_SHA256)
    received = parse_xml(build_xml(params))
    assert verify_v2(received, API_KEY) is SignType.HMAC_SHA256
    assert PaymentNotificationV2.from_params(received).extra["sign_type"] == "HMAC-SHA256"
