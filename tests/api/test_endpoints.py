"""Endpoint values: paths, bodies, query order and local validation, without any I/O."""

from __future__ import annotations

import gzip as gzip_module
import hashlib
from typing import Any

import pytest

from wxpaykit.api import bills, certificates, partner, refunds, transactions
from wxpaykit.api.bills import BillDigest, BillInfo, download_target
from wxpaykit.api.call import ApiCall, encode_json_body, path_segment
from wxpaykit.api.transactions import Amount, H5Info, SceneInfo
from wxpaykit.errors import MalformedMessageError, VerificationError

COMMON: dict[str, Any] = {
    "description": "d",
    "out_trade_no": "order_0001",
    "notify_url": "https://example.com/n",
    "amount": 1,
}


def test_prepay_paths_and_filled_fields() -> None:
    for factory, path in (
        (transactions.app, "/v3/pay/transactions/app"),
        (transactions.native, "/v3/pay/transactions/native"),
    ):
        call = factory(**COMMON)
        assert (call.method, call.path) == ("POST", path)
        body = call.final_body(mchid="1900007291", appid="wx1")
        assert body is not None
        assert body["mchid"] == "1900007291"
        assert body["appid"] == "wx1"
        assert body["amount"] == {"total": 1, "currency": "CNY"}
        assert "time_expire" not in body  # None is omitted: the platform refuses null


def test_explicit_merchant_fields_win_over_client_defaults() -> None:
    call = transactions.native(**COMMON, mchid="1230000109", appid="wxA")
    assert call.final_body(mchid="1900007291", appid="wxB") == {
        **call.body,  # type: ignore[dict-item]
        "mchid": "1230000109",
        "appid": "wxA",
    }


def test_missing_appid_is_reported() -> None:
    with pytest.raises(ValueError, match="appid"):
        transactions.native(**COMMON).final_body(mchid="1", appid=None)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"amount": 0}, "greater than or equal to 1"),
        ({"out_trade_no": "short"}, "pattern"),
        ({"out_trade_no": "has space 123"}, "pattern"),
        ({"notify_url": "https://example.com/n?x=1"}, "pattern"),
        ({"description": ""}, "at least 1"),
        ({"colour": "red"}, "Extra inputs"),
    ],
)
def test_bad_arguments_are_refused_before_sending(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        transactions.native(**{**COMMON, **overrides})


def test_jsapi_and_h5_requirements() -> None:
    with pytest.raises(ValueError, match="payer_openid"):
        transactions.prepay("JSAPI", **COMMON)
    with pytest.raises(ValueError, match="scene_info"):
        transactions.prepay("H5", **COMMON)
    with pytest.raises(ValueError, match="unknown prepay kind"):
        transactions.prepay("CARD", **COMMON)  # type: ignore[arg-type]
    call = transactions.h5(
        **COMMON, scene_info=SceneInfo(payer_client_ip="1.2.3.4", h5_info=H5Info(type="iOS"))
    )
    assert call.body is not None
    assert call.body["scene_info"] == {"payer_client_ip": "1.2.3.4", "h5_info": {"type": "iOS"}}


def test_time_expire_accepts_aware_datetimes_only() -> None:
    import datetime as dt

    tz = dt.timezone(dt.timedelta(hours=8))
    call = transactions.native(**COMMON, time_expire=dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=tz))
    assert call.body is not None
    assert call.body["time_expire"] == "2024-01-02T03:04:05+08:00"
    with pytest.raises(ValueError, match="timezone"):
        transactions.native(**COMMON, time_expire=dt.datetime(2024, 1, 2))


def test_query_targets_are_encoded_and_filled() -> None:
    call = transactions.query_by_out_trade_no("a/b c")
    assert (
        call.target("1900007291") == "/v3/pay/transactions/out-trade-no/a%2Fb%20c?mchid=1900007291"
    )
    assert (
        transactions.query_by_id("42", mchid="7").target("1")
        == "/v3/pay/transactions/id/42?mchid=7"
    )
    with pytest.raises(ValueError, match="empty"):
        path_segment("")


def test_partner_query_order_and_bodies() -> None:
    call = partner.query_by_out_trade_no("o123456", sub_mchid="1900000109")
    assert call.target("1230000109") == (
        "/v3/pay/partner/transactions/out-trade-no/o123456?sp_mchid=1230000109&sub_mchid=1900000109"
    )
    prepay = partner.jsapi(sub_mchid="19", sub_openid="o1", sub_appid="wxSub", **COMMON)
    body = prepay.final_body(mchid="12", appid="wxSp")
    assert body is not None
    assert (body["sp_mchid"], body["sp_appid"], body["sub_mchid"]) == ("12", "wxSp", "19")
    assert body["payer"] == {"sub_openid": "o1"}
    with pytest.raises(ValueError, match="sub_appid"):
        partner.jsapi(sub_mchid="19", sub_openid="o1", **COMMON)
    close = partner.close("o123456", sub_mchid="19")
    assert close.final_body(mchid="12", appid=None) == {"sub_mchid": "19", "sp_mchid": "12"}
    assert partner.query_refund("R1", sub_mchid="19").target("12") == (
        "/v3/refund/domestic/refunds/R1?sub_mchid=19"
    )


def test_refund_validation() -> None:
    with pytest.raises(ValueError, match="transaction_id or out_trade_no"):
        refunds.create(out_refund_no="R1", refund=1, total=1)
    with pytest.raises(ValueError, match="must not exceed"):
        refunds.create(out_trade_no="o1", out_refund_no="R1", refund=2, total=1)
    call = refunds.create(transaction_id="42", out_refund_no="R1", refund=1, total=2, reason="r")
    assert call.body == {
        "transaction_id": "42",
        "out_refund_no": "R1",
        "reason": "r",
        "amount": {"refund": 1, "total": 2, "currency": "CNY"},
    }


def test_bill_queries() -> None:
    assert bills.trade_bill("2024-01-02").target("1") == (
        "/v3/bill/tradebill?bill_date=2024-01-02&bill_type=ALL&tar_type=GZIP"
    )
    assert bills.fund_flow_bill("2024-01-02", gzip=False).target("1") == (
        "/v3/bill/fundflowbill?bill_date=2024-01-02&account_type=BASIC"
    )
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        bills.trade_bill("20240102")
    assert download_target("https://api.mch.weixin.qq.com/v3/billdownload/file?token=abc") == (
        "/v3/billdownload/file?token=abc"
    )
    with pytest.raises(MalformedMessageError):
        download_target("https://evil.example.com/steal")


def _info(content: bytes) -> BillInfo:
    return BillInfo(
        hash_type="SHA1",
        hash_value=hashlib.sha1(content).hexdigest(),  # noqa: S324 - the platform's hash
        download_url="https://api.mch.weixin.qq.com/v3/billdownload/file?token=t",
    )


def test_bill_digest_gunzips_in_chunks_and_checks_hash() -> None:
    content = "交易时间,商户号\n".encode() * 500
    packed = gzip_module.compress(content)
    digest = BillDigest(_info(content), gzip=True)
    out = b"".join(digest.feed(packed[i : i + 100]) for i in range(0, len(packed), 100))
    out += digest.finish()
    digest.verify()
    assert out == content
    wrong = BillDigest(_info(content + b"x"), gzip=False)
    wrong.feed(content)
    wrong.finish()
    with pytest.raises(VerificationError, match="hash_value"):
        wrong.verify()
    broken = BillDigest(_info(content), gzip=True)
    with pytest.raises(MalformedMessageError, match="gzip"):
        broken.feed(b"not gzip at all")


def test_json_body_is_compact_utf8_and_refuses_emoji() -> None:
    assert encode_json_body({"a": "中文", "b": 1}) == '{"a":"中文","b":1}'.encode()
    with pytest.raises(ValueError, match="BMP"):
        encode_json_body({"a": "😀"})


def test_certificates_and_amount_models() -> None:
    assert certificates.download(algorithm_type="RSA").target("1") == (
        "/v3/certificates?algorithm_type=RSA"
    )
    assert certificates.is_no_certificates_answer(404, "RESOURCE_NOT_EXISTS")
    assert not certificates.is_no_certificates_answer(500, "SYSTEM_ERROR")
    assert Amount(total=5).to_wire() == {"total": 5, "currency": "CNY"}
    assert isinstance(transactions.close("o123456"), ApiCall)
