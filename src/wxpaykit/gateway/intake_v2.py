"""The APIv2 (XML) intake: payment notifications (``sign``) and refunds (``req_info``).

APIv2 signs inside the document, so the body must be parsed before it can be verified;
:func:`wxpaykit.core.v2.parse_xml` is the mitigation (size limit, no DTD, no entities,
flat documents only). Then:

* payment (§9.3): ``return_code`` SUCCESS, ``sign`` (MD5 or HMAC-SHA256, per the
  document's ``sign_type``; an MD5 ``sign`` is also accepted for HMAC orders, as
  merchants observe), then ``mch_id``/``appid`` against the path's merchant;
* refund (§9.4): no ``sign``; authenticity is that ``req_info`` decrypts under the
  merchant's APIv2 key; then ``mch_id``/``appid``.

APIv2 messages carry no signed timestamp, so no nonce window applies: a replay is an
exact copy of an authentic notification, and the ledger's unique notification id
absorbs it. Notification ids are derived: ``v2-pay-<transaction_id>`` and
``v2-refund-<refund_id>-<refund_status>``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping

from wxpaykit.core.v2 import (
    PaymentNotificationV2,
    RefundReqInfo,
    decrypt_req_info,
    parse_xml,
    verify_v2,
)
from wxpaykit.errors import MalformedMessageError, UnsafeXmlError
from wxpaykit.gateway.intake import NotificationIntake, record_or_dead_letter
from wxpaykit.gateway.replies import (
    AppidMismatchError,
    MalformedXmlError,
    MerchantMismatchError,
    UnknownMerchantError,
)
from wxpaykit.gateway.settings import MerchantSettings
from wxpaykit.storage.base import (
    PaymentFacts,
    RawRequest,
    RecordResult,
    RefundFacts,
    VerifiedNotification,
)

__all__ = ["receive_v2"]

_BEIJING = dt.timezone(dt.timedelta(hours=8))
#: v2 refund_status → the APIv3 RefundStatus the ledger speaks.
_REFUND_STATUS = {"SUCCESS": "SUCCESS", "CHANGE": "ABNORMAL", "REFUNDCLOSE": "CLOSED"}


async def receive_v2(
    intake: NotificationIntake, mchid: str, headers: Mapping[str, str], body: bytes
) -> RecordResult:
    """Verify, normalise and record one APIv2 notification; raise a refusal otherwise."""
    received_at_ms = int(time.time() * 1000)
    intake.check_size(body)
    merchant = intake.merchant(mchid)
    if not merchant.apiv2_key:
        raise UnknownMerchantError(f"merchant {mchid} has no APIv2 key configured")
    try:
        params = parse_xml(body, max_bytes=intake.settings.max_body_bytes)
    except UnsafeXmlError:
        raise
    except MalformedMessageError as exc:
        raise MalformedXmlError(str(exc)) from None
    if params.get("return_code") != "SUCCESS":
        raise MalformedMessageError("return_code is not SUCCESS: not a notification to record")
    raw = RawRequest(headers=dict(headers), body=body, received_at_ms=received_at_ms)
    if "req_info" in params:
        notification = _refund(merchant, merchant.apiv2_key, params, raw)
    else:
        notification = _payment(merchant, merchant.apiv2_key, params, raw)
    return await record_or_dead_letter(intake.ledger, notification)


def _check_owner(merchant: MerchantSettings, params: Mapping[str, str]) -> None:
    mch_id = params.get("mch_id")
    if mch_id != merchant.mchid:
        raise MerchantMismatchError(
            f"the notification is for mch_id {str(mch_id)[:32]!r}, not {merchant.mchid}"
        )
    appid = params.get("appid") or None
    if not merchant.allows_appid(appid):
        raise AppidMismatchError(
            f"appid {str(appid)[:32]!r} is not one of merchant {merchant.mchid}'s apps"
        )


def _payment(
    merchant: MerchantSettings, api_key: str, params: Mapping[str, str], raw: RawRequest
) -> VerifiedNotification:
    verify_v2(params, api_key, try_both=True)
    _check_owner(merchant, params)
    payment = PaymentNotificationV2.from_params(params)
    succeeded = payment.result_code == "SUCCESS"
    return VerifiedNotification(
        mchid=merchant.mchid,
        notification_id=f"v2-pay-{payment.transaction_id}",
        api_version="v2",
        event_type="TRANSACTION.SUCCESS" if succeeded else "TRANSACTION.FAIL",
        kind="payment",
        payment=PaymentFacts(
            out_trade_no=payment.out_trade_no,
            transaction_id=payment.transaction_id,
            trade_state="SUCCESS" if succeeded else "PAYERROR",
            total=payment.total_fee,
            currency=payment.fee_type,
            payer_total=payment.cash_fee,
            success_time=_beijing_time(payment.time_end, "%Y%m%d%H%M%S"),
            appid=payment.appid,
            openid=payment.openid,
        ),
        raw=raw,
    )


def _refund(
    merchant: MerchantSettings, api_key: str, params: Mapping[str, str], raw: RawRequest
) -> VerifiedNotification:
    info = RefundReqInfo.from_params(decrypt_req_info(params["req_info"], api_key))
    _check_owner(merchant, params)
    status = _REFUND_STATUS.get(info.refund_status)
    if status is None:
        raise MalformedMessageError(f"unknown refund_status {info.refund_status[:16]!r}")
    return VerifiedNotification(
        mchid=merchant.mchid,
        notification_id=f"v2-refund-{info.refund_id}-{info.refund_status}",
        api_version="v2",
        event_type=f"REFUND.{status}",
        kind="refund",
        refund=RefundFacts(
            out_trade_no=info.out_trade_no,
            out_refund_no=info.out_refund_no,
            refund_id=info.refund_id,
            transaction_id=info.transaction_id,
            refund_status=status,
            refund=info.refund_fee,
            total=info.total_fee,
            success_time=_beijing_time(info.success_time, "%Y-%m-%d %H:%M:%S"),
        ),
        raw=raw,
    )


def _beijing_time(text: str | None, pattern: str) -> str | None:
    # APIv2 times are Beijing wall-clock times without an offset; the ledger keeps
    # RFC 3339 like APIv3 sends.
    if not text:
        return None
    try:
        return dt.datetime.strptime(text, pattern).replace(tzinfo=_BEIJING).isoformat()
    except ValueError:
        raise MalformedMessageError(f"time {text[:20]!r} does not match {pattern}") from None
