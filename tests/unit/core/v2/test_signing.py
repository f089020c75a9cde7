"""APIv2 ``sign``: known answers (§13 V8, V9), properties, and agreement with wechatpy."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from wechatpy.pay import WeChatPay
from wechatpy.pay.utils import calculate_signature, calculate_signature_hmac

from wxpaykit.core.v2.signing import (
    SignType,
    app_pay_params_v2,
    build_sign_string,
    jsapi_pay_params_v2,
    sign_v2,
    verify_v2,
)
from wxpaykit.errors import (
    MalformedMessageError,
    SignatureMismatchError,
    UnsupportedSignatureTypeError,
)

#: The APIv2 key of the official documentation example (§9.1); public test data.
API_KEY = "192006250b4c09247ec02edce69f6a2d"

#: V8: the official "安全规范" example.
V8_PARAMS = {
    "appid": "wxd930ea5d5a258f4f",
    "mch_id": "10000100",
    "device_info": "1000",
    "body": "test",
    "nonce_str": "ibuaiVcKdpRxkhJA",
}
V8_SIGN_STRING = (
    "appid=wxd930ea5d5a258f4f&body=test&device_info=1000&mch_id=10000100&nonce_str=ibuaiVcKdpRxkhJA"
)
V8_MD5 = "9A0A8659F005D6984697E2CA0A9CF3B7"
V8_HMAC = "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"

#: V9: a payment notification (computed in the protocol reference).
V9_PARAMS = {
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
}
V9_MD5 = "A79C5985C6A8FC7DA5DF1F7656412908"
V9_HMAC = "91A356D1D5F2450A3381951A8174E5FDFBA86A909ADDDBA50A9A61343CA47DEA"
V9_HMAC_PARAMS = {**V9_PARAMS, "sign_type": "HMAC-SHA256"}

keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True).filter(
    lambda key: key not in ("sign", "sign_type")
)
values = st.one_of(st.text(max_size=24), st.text(alphabet="支付测试商品退款元 &=", max_size=12))
param_dicts = st.dictionaries(keys, values, min_size=1, max_size=12)
api_keys = st.text(alphabet="0123456789abcdefABCDEF", min_size=32, max_size=32)


def test_sign_string_matches_the_official_example() -> None:
    assert build_sign_string(V8_PARAMS) == V8_SIGN_STRING


@pytest.mark.parametrize(
    ("sign_type", "expected"), [(SignType.MD5, V8_MD5), (SignType.HMAC_SHA256, V8_HMAC)]
)
def test_sign_reproduces_the_official_example(sign_type: SignType, expected: str) -> None:
    assert sign_v2(V8_PARAMS, API_KEY, sign_type) == expected


def test_sign_reproduces_v9_notification_vectors() -> None:
    assert sign_v2(V9_PARAMS, API_KEY, SignType.MD5) == V9_MD5
    assert sign_v2(V9_HMAC_PARAMS, API_KEY, SignType.HMAC_SHA256) == V9_HMAC


def test_sign_string_drops_sign_and_empty_values_and_keeps_raw_text() -> None:
    params = {"b": "x y", "sign": "ABC", "a": "", "B": "1&2", "c": " "}
    # ASCII order puts upper case before lower case; values are neither encoded nor trimmed.
    assert build_sign_string(params) == "B=1&2&b=x y&c= "


def test_sign_type_parameter_is_itself_signed() -> None:
    assert build_sign_string(V9_HMAC_PARAMS).endswith(
        "&result_code=SUCCESS&return_code=SUCCESS&sign_type=HMAC-SHA256&time_end=20140903131540"
        "&total_fee=1&trade_type=JSAPI&transaction_id=1004400740201409030005092168"
    )


def test_verify_defaults_to_md5_when_sign_type_is_absent() -> None:
    assert verify_v2({**V9_PARAMS, "sign": V9_MD5}, API_KEY) is SignType.MD5


def test_verify_follows_the_declared_sign_type() -> None:
    assert verify_v2({**V9_HMAC_PARAMS, "sign": V9_HMAC}, API_KEY) is SignType.HMAC_SHA256


def test_verify_with_explicit_sign_type_ignores_the_declared_one() -> None:
    md5_signed = {**V9_PARAMS, "sign": V9_MD5}
    with pytest.raises(SignatureMismatchError):
        verify_v2(md5_signed, API_KEY, sign_type=SignType.HMAC_SHA256)


def test_try_both_accepts_md5_signature_on_an_hmac_order() -> None:
    md5_signed = {**V9_HMAC_PARAMS, "sign": sign_v2(V9_HMAC_PARAMS, API_KEY, SignType.MD5)}
    with pytest.raises(SignatureMismatchError):
        verify_v2(md5_signed, API_KEY)
    assert verify_v2(md5_signed, API_KEY, try_both=True) is SignType.MD5


def test_try_both_does_not_accept_hmac_on_an_md5_order() -> None:
    hmac_signed = {**V9_PARAMS, "sign": sign_v2(V9_PARAMS, API_KEY, SignType.HMAC_SHA256)}
    with pytest.raises(SignatureMismatchError):
        verify_v2(hmac_signed, API_KEY, sign_type=SignType.MD5, try_both=True)


@pytest.mark.parametrize("sign", [None, ""])
def test_verify_refuses_a_message_without_sign(sign: str | None) -> None:
    params = dict(V9_PARAMS) if sign is None else {**V9_PARAMS, "sign": sign}
    with pytest.raises(MalformedMessageError):
        verify_v2(params, API_KEY)


def test_verify_refuses_an_unknown_sign_type() -> None:
    with pytest.raises(UnsupportedSignatureTypeError):
        verify_v2({**V9_PARAMS, "sign_type": "SHA1", "sign": V9_MD5}, API_KEY)


@pytest.mark.parametrize("sign", [V9_MD5.lower(), V9_MD5 + " ", "签名" + V9_MD5[2:]])
def test_verify_compares_the_sign_exactly(sign: str) -> None:
    with pytest.raises(SignatureMismatchError):
        verify_v2({**V9_PARAMS, "sign": sign}, API_KEY)


def test_empty_api_key_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match="APIv2 key"):
        sign_v2(V8_PARAMS, "", SignType.MD5)


@given(params=param_dicts, api_key=api_keys, sign_type=st.sampled_from(SignType))
def test_sign_then_verify_round_trips(
    params: dict[str, str], api_key: str, sign_type: SignType
) -> None:
    signed = {**params, "sign": sign_v2(params, api_key, sign_type)}
    assert verify_v2(signed, api_key, sign_type=sign_type) is sign_type


@given(
    params=param_dicts,
    sign_type=st.sampled_from(SignType),
    data=st.data(),
)
def test_any_changed_value_is_refused(
    params: dict[str, str], sign_type: SignType, data: st.DataObject
) -> None:
    signed = {**params, "sign": sign_v2(params, API_KEY, sign_type)}
    key = data.draw(st.sampled_from(sorted(params)))
    signed[key] = data.draw(values.filter(lambda value: value != params[key]))
    with pytest.raises(SignatureMismatchError):
        verify_v2(signed, API_KEY, sign_type=sign_type, try_both=True)


@given(params=param_dicts, sign_type=st.sampled_from(SignType), data=st.data())
def test_any_flipped_sign_character_is_refused(
    params: dict[str, str], sign_type: SignType, data: st.DataObject
) -> None:
    sign = sign_v2(params, API_KEY, sign_type)
    index = data.draw(st.integers(0, len(sign) - 1))
    replacement = data.draw(st.characters().filter(lambda char: char != sign[index]))
    flipped = sign[:index] + replacement + sign[index + 1 :]
    with pytest.raises(SignatureMismatchError):
        verify_v2({**params, "sign": flipped}, API_KEY, sign_type=sign_type, try_both=True)


@given(params=param_dicts, api_key=api_keys, other_key=api_keys)
def test_another_key_is_refused(params: dict[str, str], api_key: str, other_key: str) -> None:
    assume(other_key != api_key)
    signed = {**params, "sign": sign_v2(params, api_key, SignType.HMAC_SHA256)}
    with pytest.raises(SignatureMismatchError):
        verify_v2(signed, other_key, sign_type=SignType.HMAC_SHA256, try_both=True)


@given(params=param_dicts, api_key=api_keys)
def test_md5_agrees_with_wechatpy(params: dict[str, str], api_key: str) -> None:
    assert sign_v2(params, api_key, SignType.MD5) == calculate_signature(params, api_key)


@given(params=param_dicts, api_key=api_keys)
def test_hmac_agrees_with_wechatpy(params: dict[str, str], api_key: str) -> None:
    expected = calculate_signature_hmac(params, api_key)
    assert sign_v2(params, api_key, SignType.HMAC_SHA256) == expected


def test_jsapi_params_agree_with_wechatpy() -> None:
    wechatpy_client = WeChatPay("wx2421b1c4370ec43b", API_KEY, "10000100")
    expected = wechatpy_client.jsapi.get_jsapi_params(
        "wx201410272009395522657a690389285100",
        timestamp="1554208460",
        nonce_str="593BEC0C930BF1AFEB40B4A08C8FB242",
    )
    ours = jsapi_pay_params_v2(
        "wx2421b1c4370ec43b",
        "wx201410272009395522657a690389285100",
        api_key=API_KEY,
        sign_type=SignType.MD5,
        timestamp=1554208460,
        nonce_str="593BEC0C930BF1AFEB40B4A08C8FB242",
    )
    assert ours == expected


def test_jsapi_params_sign_the_five_camel_case_keys_with_hmac() -> None:
    ours = jsapi_pay_params_v2(
        "wx2421b1c4370ec43b",
        "wx201410272009395522657a690389285100",
        api_key=API_KEY,
        sign_type=SignType.HMAC_SHA256,
        timestamp=1554208460,
        nonce_str="593BEC0C930BF1AFEB40B4A08C8FB242",
    )
    pay_sign = ours.pop("paySign")
    assert ours["signType"] == "HMAC-SHA256"
    assert build_sign_string(ours) == (
        "appId=wx2421b1c4370ec43b&nonceStr=593BEC0C930BF1AFEB40B4A08C8FB242"
        "&package=prepay_id=wx201410272009395522657a690389285100"
        "&signType=HMAC-SHA256&timeStamp=1554208460"
    )
    assert pay_sign == calculate_signature_hmac(ours, API_KEY)


def test_app_params_agree_with_wechatpy() -> None:
    wechatpy_client = WeChatPay("wx2421b1c4370ec43b", API_KEY, "10000100")
    expected = wechatpy_client.order.get_appapi_params(
        "wx201410272009395522657a690389285100",
        timestamp="1554208460",
        nonce_str="593BEC0C930BF1AFEB40B4A08C8FB242",
    )
    ours = app_pay_params_v2(
        "wx2421b1c4370ec43b",
        "10000100",
        "wx201410272009395522657a690389285100",
        api_key=API_KEY,
        sign_type=SignType.MD5,
        timestamp=1554208460,
        nonce_str="593BEC0C930BF1AFEB40B4A08C8FB242",
    )
    assert ours == expected
