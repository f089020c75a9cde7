"""Envelope to verified, decrypted, typed notification (§6): V6 end to end, and every refusal."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from wxpaykit.core.crypto import ApiV3Key
from wxpaykit.core.models import EventType, RefundResource, RefundStatus, TradeState, Transaction
from wxpaykit.core.notifications import MAX_NOTIFICATION_BYTES, parse_notification
from wxpaykit.core.signing import sign_response_headers
from wxpaykit.core.verification import TrustedKeys
from wxpaykit.errors import (
    DecryptionError,
    MalformedMessageError,
    SignatureMismatchError,
    StaleTimestampError,
)
from wxpaykit.testing.notifications import (
    SealedNotification,
    sample_refund,
    sample_transaction,
    seal_notification,
)

KEY = "TestAPIv3Key0123456789abcdefABCD"
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"


@pytest.fixture
def seal(wechatpay_key_pair: tuple[str, rsa.RSAPrivateKey], now: dt.datetime) -> Any:
    """Seal and sign a resource like WeChat Pay, with the public-key-mode key, at ``now``."""
    key_id, private_key = wechatpay_key_pair

    def _seal(resource: dict[str, Any] | bytes, **options: Any) -> SealedNotification:
        return seal_notification(
            resource,
            apiv3_key=KEY,
            signing_key=private_key,
            serial=key_id,
            timestamp=int(now.timestamp()),
            **options,
        )

    return _seal


def _sign(
    body: bytes, wechatpay_key_pair: tuple[str, rsa.RSAPrivateKey], now: dt.datetime
) -> dict[str, str]:
    key_id, private_key = wechatpay_key_pair
    return sign_response_headers(
        body=body, private_key=private_key, serial=key_id, timestamp=int(now.timestamp()), nonce="n"
    )


def test_v6_parses_end_to_end_with_a_fixed_clock(
    vectors: dict[str, Any], v6_keys: TrustedKeys, v6_now: dt.datetime
) -> None:
    v6 = vectors["V6"]
    notification = parse_notification(
        v6["headers"], v6["body"].encode("utf-8"), keys=v6_keys, apiv3_key=ApiV3Key(KEY), now=v6_now
    )
    assert notification.id == "4b2d1f3e-7a6c-5e8d-9f0a-1b2c3d4e5f60"
    assert notification.event_type is EventType.TRANSACTION_SUCCESS
    assert isinstance(notification.resource, Transaction)
    assert notification.resource.trade_state is TradeState.SUCCESS
    assert notification.resource.transaction_id == "4200000985202103031441826014"
    assert notification.signature.key_kind == "public_key"
    assert notification.signature.skew_seconds == 10


def test_v6_is_stale_with_the_real_clock(vectors: dict[str, Any], v6_keys: TrustedKeys) -> None:
    v6 = vectors["V6"]
    with pytest.raises(StaleTimestampError):
        parse_notification(
            v6["headers"],
            v6["body"].encode("utf-8"),
            keys=v6_keys,
            apiv3_key=KEY,
            now=dt.datetime.now(dt.UTC),
        )


@pytest.mark.parametrize("status", ["SUCCESS", "ABNORMAL", "CLOSED"])
def test_refund_notifications_parse_into_refund_resources(
    seal: Any, trusted_keys: TrustedKeys, now: dt.datetime, status: str
) -> None:
    sealed = seal(sample_refund(refund_status=status), event_type=f"REFUND.{status}")
    notification = parse_notification(
        sealed.headers, sealed.body, keys=trusted_keys, apiv3_key=KEY, now=now
    )
    assert notification.event_type == f"REFUND.{status}"
    assert isinstance(notification.resource, RefundResource)
    assert notification.resource.refund_status is RefundStatus(status)


def test_refund_with_empty_associated_data_parses(
    seal: Any, trusted_keys: TrustedKeys, now: dt.datetime
) -> None:
    # The official refund sample shows associated_data "" (§5).
    sealed = seal(sample_refund(), event_type="REFUND.SUCCESS", associated_data="")
    notification = parse_notification(
        sealed.headers, sealed.body, keys=trusted_keys, apiv3_key=KEY, now=now
    )
    assert isinstance(notification.resource, RefundResource)


def test_other_event_types_give_the_decrypted_dict(
    seal: Any, trusted_keys: TrustedKeys, now: dt.datetime
) -> None:
    sealed = seal({"echo": "ok"}, event_type="SECURITY_ECHO.SUCCESS", original_type="")
    notification = parse_notification(
        sealed.headers, sealed.body, keys=trusted_keys, apiv3_key=KEY, now=now
    )
    assert notification.resource == {"echo": "ok"}
    assert notification.event_type == "SECURITY_ECHO.SUCCESS"


def test_tampered_body_is_refused_before_anything_is_parsed(
    seal: Any, trusted_keys: TrustedKeys, now: dt.datetime
) -> None:
    sealed = seal(sample_transaction())
    for tampered in (sealed.body.replace(b'"id":"', b'"id":"X'), b"{not json", sealed.body + b"\n"):
        with pytest.raises(SignatureMismatchError):
            parse_notification(sealed.headers, tampered, keys=trusted_keys, apiv3_key=KEY, now=now)


def test_oversized_body_is_refused_before_verification(
    trusted_keys: TrustedKeys, now: dt.datetime
) -> None:
    with pytest.raises(MalformedMessageError, match="exceeds"):
        parse_notification(
            {}, b"x" * (MAX_NOTIFICATION_BYTES + 1), keys=trusted_keys, apiv3_key=KEY, now=now
        )


def test_wrong_apiv3_key_is_a_decryption_error(
    seal: Any, trusted_keys: TrustedKeys, now: dt.datetime
) -> None:
    sealed = seal(sample_transaction())
    with pytest.raises(DecryptionError, match="wrong APIv3 key"):
        parse_notification(
            sealed.headers, sealed.body, keys=trusted_keys, apiv3_key=KEY[::-1], now=now
        )


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"id":"1","create_time":"x","event_type":"TRANSACTION.SUCCESS"}',
    ],
    ids=["not-json", "array", "no-resource"],
)
def test_authentic_but_malformed_envelope_is_refused(
    body: bytes,
    trusted_keys: TrustedKeys,
    now: dt.datetime,
    wechatpay_key_pair: tuple[str, rsa.RSAPrivateKey],
) -> None:
    headers = _sign(body, wechatpay_key_pair, now)
    with pytest.raises(MalformedMessageError, match="invalid notification envelope"):
        parse_notification(headers, body, keys=trusted_keys, apiv3_key=KEY, now=now)


def test_unsupported_resource_algorithm_is_refused(
    seal: Any,
    trusted_keys: TrustedKeys,
    now: dt.datetime,
    wechatpay_key_pair: tuple[str, rsa.RSAPrivateKey],
) -> None:
    body = seal(sample_transaction()).body.replace(b"AEAD_AES_256_GCM", b"AEAD_SM4_GCM")
    headers = _sign(body, wechatpay_key_pair, now)
    with pytest.raises(MalformedMessageError, match="AEAD_SM4_GCM"):
        parse_notification(headers, body, keys=trusted_keys, apiv3_key=KEY, now=now)


def test_invalid_resource_names_fields_but_never_values(
    seal: Any, trusted_keys: TrustedKeys, now: dt.datetime
) -> None:
    resource = sample_transaction(amount={"total": "100"})
    del resource["out_trade_no"]
    sealed = seal(resource)
    with pytest.raises(MalformedMessageError) as caught:
        parse_notification(sealed.headers, sealed.body, keys=trusted_keys, apiv3_key=KEY, now=now)
    message = str(caught.value)
    assert "out_trade_no: missing" in message
    assert "amount.total" in message
    assert OPENID not in message
    assert "1217752501201407033233368018" not in message


@pytest.mark.parametrize(
    ("plaintext", "problem"),
    [(b"not json", "not JSON"), (b"[1, 2]", "not a JSON object")],
)
def test_decrypted_resource_of_unknown_type_must_be_a_json_object(
    seal: Any, trusted_keys: TrustedKeys, now: dt.datetime, plaintext: bytes, problem: str
) -> None:
    sealed = seal(plaintext, event_type="PAYSCORE.USER_CONFIRM", original_type="payscore")
    with pytest.raises(MalformedMessageError, match=problem):
        parse_notification(sealed.headers, sealed.body, keys=trusted_keys, apiv3_key=KEY, now=now)


def test_lower_case_asgi_headers_and_django_meta_both_work(
    seal: Any, trusted_keys: TrustedKeys, now: dt.datetime
) -> None:
    sealed = seal(sample_transaction())
    asgi = {name.lower(): value for name, value in sealed.headers.items()}
    django = {"HTTP_" + n.upper().replace("-", "_"): v for n, v in sealed.headers.items()}
    for headers in (asgi, django):
        notification = parse_notification(
            headers, sealed.body, keys=trusted_keys, apiv3_key=KEY, now=now
        )
        assert isinstance(notification.resource, Transaction)


def test_body_keeps_wechat_key_order_and_is_compact(seal: Any) -> None:
    body = seal(sample_transaction()).body
    assert b" " not in body.replace("支付成功".encode(), b"")
    assert list(json.loads(body)) == [
        "id",
        "create_time",
        "resource_type",
        "event_type",
        "summary",
        "resource",
    ]
