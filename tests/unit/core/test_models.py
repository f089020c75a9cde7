"""Wire models (§6): WeChat's field names, enums for closed sets, integer fen, extras kept."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from pydantic import ValidationError

from wxpaykit.core.models import (
    EventType,
    NotificationEnvelope,
    RefundResource,
    RefundStatus,
    TradeState,
    TradeType,
    Transaction,
)
from wxpaykit.testing.notifications import sample_refund, sample_transaction

CHINA = dt.timezone(dt.timedelta(hours=8))


def test_v6_plaintext_parses_into_a_typed_transaction(vectors: dict[str, Any]) -> None:
    transaction = Transaction.model_validate_json(vectors["V6"]["plaintext"])
    assert transaction.trade_state is TradeState.SUCCESS
    assert transaction.trade_type is TradeType.JSAPI
    assert transaction.out_trade_no == "1217752501201407033233368018"
    assert transaction.success_time == dt.datetime(2021, 3, 3, 14, 41, 56, tzinfo=CHINA)
    assert transaction.amount is not None
    assert (transaction.amount.total, transaction.amount.payer_total) == (100, 100)
    assert type(transaction.amount.total) is int
    assert transaction.payer is not None
    assert transaction.payer.openid == "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
    assert transaction.merchant_id == "1900007291"
    assert transaction.app_id == "wxd678efh567hg6787"
    assert transaction.attach == ""


def test_unknown_fields_are_kept_at_every_level() -> None:
    data = sample_transaction(
        new_top_level="x", amount={"total": 1, "settlement_total": 1}, payer={"openid": "o", "x": 1}
    )
    transaction = Transaction.model_validate(data)
    assert transaction.model_extra == {"new_top_level": "x"}
    assert transaction.amount is not None
    assert transaction.amount.model_extra == {"settlement_total": 1}
    assert transaction.model_dump(exclude_none=True)["new_top_level"] == "x"


@pytest.mark.parametrize(
    "total", ["100", 100.0, 1.5, True], ids=["string", "float", "fraction", "bool"]
)
def test_amounts_must_be_integer_fen(total: Any) -> None:
    with pytest.raises(ValidationError):
        Transaction.model_validate(sample_transaction(amount={"total": total}))


def test_trade_state_is_a_closed_set_but_trade_type_is_open() -> None:
    with pytest.raises(ValidationError):
        Transaction.model_validate(sample_transaction(trade_state="DONE"))
    assert (
        Transaction.model_validate(sample_transaction(trade_type="NEWPAY")).trade_type == "NEWPAY"
    )


def test_partner_mode_ids() -> None:
    data = sample_transaction(
        sp_mchid="1900000100", sub_mchid="1900000109", sp_appid="wxsp", sub_appid="wxsub"
    )
    del data["mchid"], data["appid"]
    data["payer"] = {"sp_openid": "sp-o", "sub_openid": "sub-o"}
    transaction = Transaction.model_validate(data)
    assert transaction.merchant_id == "1900000109"
    assert transaction.app_id == "wxsub"
    assert transaction.payer is not None
    assert transaction.payer.sub_openid == "sub-o"


def test_models_are_frozen() -> None:
    transaction = Transaction.model_validate(sample_transaction())
    with pytest.raises(ValidationError):
        transaction.out_trade_no = "other"  # type: ignore[misc]


def test_refund_resource_parses() -> None:
    refund = RefundResource.model_validate_json(json.dumps(sample_refund()))
    assert refund.refund_status is RefundStatus.SUCCESS
    assert refund.amount.refund == 100
    assert refund.user_received_account == "招商银行信用卡0403"
    assert refund.merchant_id == "1900007291"
    abnormal = RefundResource.model_validate(
        sample_refund(refund_status="ABNORMAL", success_time=None)
    )
    assert abnormal.refund_status is RefundStatus.ABNORMAL
    assert abnormal.success_time is None


def test_refund_needs_its_amounts() -> None:
    data = sample_refund()
    del data["amount"]["refund"]
    with pytest.raises(ValidationError, match=r"amount\.refund"):
        RefundResource.model_validate(data)


def test_envelope_event_type_is_an_enum_when_known_and_a_string_otherwise(
    vectors: dict[str, Any],
) -> None:
    envelope = NotificationEnvelope.model_validate_json(vectors["V6"]["body"])
    assert envelope.event_type is EventType.TRANSACTION_SUCCESS
    assert envelope.id == "4b2d1f3e-7a6c-5e8d-9f0a-1b2c3d4e5f60"
    assert envelope.resource.nonce == "A1b2C3d4E5f6"
    assert envelope.resource.associated_data == "transaction"
    other = json.loads(vectors["V6"]["body"])
    other["event_type"] = "SECURITY_ECHO.SUCCESS"
    assert NotificationEnvelope.model_validate(other).event_type == "SECURITY_ECHO.SUCCESS"


def test_envelope_without_associated_data_defaults_to_empty(vectors: dict[str, Any]) -> None:
    data = json.loads(vectors["V6"]["body"])
    del data["resource"]["associated_data"]
    assert NotificationEnvelope.model_validate(data).resource.associated_data == ""
