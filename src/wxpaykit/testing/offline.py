"""No HTTP: a simulated merchant and the notifications the platform would send it.

For unit tests of a notification handler: :func:`new_merchant` makes a merchant's
keys in memory; :func:`build_notification` returns ``(headers, body)`` of a signed,
encrypted APIv3 notification exactly as the simulator sends it, from a resource made
by :func:`payment_resource` or :func:`refund_resource_for`;
:func:`build_v2_payment_notification` and :func:`build_v2_refund_notification` return
the APIv2 XML. The bodies come from the same builders the simulator uses.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal

from wxpaykit.core.signing import generate_nonce, sign_response_headers
from wxpaykit.simulator.merchants import Merchant, MerchantMode, provision_merchant
from wxpaykit.simulator.notifications import (
    build_envelope,
    new_notification_id,
    refund_resource,
    transaction_resource,
    v2_payment_xml,
    v2_refund_xml,
)
from wxpaykit.simulator.state import Order, Refund
from wxpaykit.testing.keys import KeySource, shared_key_pool

__all__ = [
    "build_notification",
    "build_v2_payment_notification",
    "build_v2_refund_notification",
    "new_merchant",
    "payment_resource",
    "refund_resource_for",
]

RefundStatus = Literal["SUCCESS", "ABNORMAL", "CLOSED"]

# Well-formed example values, as in the platform's documentation.
_OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
_TRANSACTION_ID = "4200000000202401010000000001"
_REFUND_ID = "50000000202401010000000000001"


def new_merchant(
    mode: MerchantMode | str = MerchantMode.CERTIFICATE,
    *,
    now: float | None = None,
    mchid: str | None = None,
    key_source: KeySource | None = None,
) -> Merchant:
    """A merchant made offline (no simulator; self-signed API certificate).

    Its RSA keys come from ``key_source``, by default the testing kit's shared
    :class:`~wxpaykit.testing.keys.KeyPool` (pass
    :func:`~wxpaykit.testing.keys.generate_private_key` for keys of its own).
    """
    return provision_merchant(
        mode,
        now=time.time() if now is None else now,
        mchid=mchid,
        key_source=key_source or shared_key_pool(),
    )


def _paid_order(
    merchant: Merchant,
    *,
    out_trade_no: str,
    total: int,
    transaction_id: str,
    paid_at: float,
    trade_state: str = "SUCCESS",
    trade_type: str = "JSAPI",
    openid: str = _OPENID,
    attach: str = "",
    api: str = "v3",
    sign_type: str = "",
) -> Order:
    """An order of ``merchant`` paid at ``paid_at`` (never stored anywhere)."""
    return Order(
        mchid=merchant.mchid,
        appid=merchant.appid,
        out_trade_no=out_trade_no,
        api=api,
        trade_type=trade_type,
        trade_state=trade_state,
        total=total,
        notify_url="",
        attach=attach,
        openid=openid,
        prepay_id="",
        code_token="",
        transaction_id=transaction_id,
        created_at=paid_at,
        expires_at=paid_at,
        success_time=paid_at,
        sign_type=sign_type,
    )


def _refunded_order(
    merchant: Merchant,
    *,
    out_trade_no: str,
    out_refund_no: str,
    refund: int,
    total: int,
    status: str,
    transaction_id: str = _TRANSACTION_ID,
    refund_id: str = _REFUND_ID,
) -> tuple[Order, Refund]:
    now = time.time()
    order = _paid_order(
        merchant,
        out_trade_no=out_trade_no,
        total=total,
        transaction_id=transaction_id,
        paid_at=now,
        trade_state="REFUND",
    )
    row = Refund(
        mchid=merchant.mchid,
        order_id=0,
        out_refund_no=out_refund_no,
        refund_id=refund_id,
        status=status,
        refund=refund,
        total=total,
        created_at=now,
        success_time=now if status == "SUCCESS" else None,
    )
    return order, row


def payment_resource(
    merchant: Merchant,
    *,
    out_trade_no: str,
    total: int,
    openid: str = _OPENID,
    transaction_id: str = _TRANSACTION_ID,
    trade_type: str = "JSAPI",
    attach: str = "",
    success_time: float | None = None,
) -> dict[str, Any]:
    """A decrypted TRANSACTION.SUCCESS resource (§6.3) for ``merchant``."""
    order = _paid_order(
        merchant,
        out_trade_no=out_trade_no,
        total=total,
        transaction_id=transaction_id,
        paid_at=time.time() if success_time is None else success_time,
        trade_type=trade_type,
        openid=openid,
        attach=attach,
    )
    return transaction_resource(order)


def refund_resource_for(
    merchant: Merchant,
    *,
    out_trade_no: str,
    out_refund_no: str,
    refund: int,
    total: int,
    status: RefundStatus = "SUCCESS",
    transaction_id: str = _TRANSACTION_ID,
    refund_id: str = _REFUND_ID,
) -> dict[str, Any]:
    """A decrypted REFUND.* resource (§6.4) for ``merchant``."""
    order, row = _refunded_order(
        merchant,
        out_trade_no=out_trade_no,
        out_refund_no=out_refund_no,
        refund=refund,
        total=total,
        status=status,
        transaction_id=transaction_id,
        refund_id=refund_id,
    )
    return refund_resource(row, order)


def build_notification(
    merchant: Merchant,
    event_type: str,
    resource: Mapping[str, Any],
    *,
    key: Literal["auto", "certificate", "public_key"] = "auto",
    timestamp: int | None = None,
    notification_id: str | None = None,
    probe: bool = False,
) -> tuple[dict[str, str], bytes]:
    """``(headers, body)`` of an APIv3 notification, exactly as the platform sends it.

    ``key="auto"`` signs with the public key in ``public_key`` mode and the newest
    platform certificate otherwise. ``probe=True`` replaces the signature with a
    ``WECHATPAY/SIGNTEST/`` probe (§3.4).
    """
    now = time.time() if timestamp is None else timestamp
    body = build_envelope(
        event_type,
        dict(resource),
        merchant.apiv3_key,
        notification_id=notification_id or new_notification_id(),
        create_time=now,
    )
    use_public_key = key == "public_key" or (
        key == "auto" and merchant.mode is MerchantMode.PUBLIC_KEY
    )
    if use_public_key:
        serial, private_key = merchant.public_key_signer()
    else:
        newest = merchant.newest_certificate(now)
        serial, private_key = newest.serial_no, newest.private_key
    headers = sign_response_headers(
        body=body,
        private_key=private_key,
        serial=serial,
        timestamp=int(now),
        nonce=generate_nonce(32),
    )
    if probe:
        headers["Wechatpay-Signature"] = "WECHATPAY/SIGNTEST/" + generate_nonce(300)
    headers["Content-Type"] = "application/json"
    return headers, body


def build_v2_payment_notification(
    merchant: Merchant,
    *,
    out_trade_no: str,
    total: int,
    sign_type: Literal["MD5", "HMAC-SHA256"] = "MD5",
    openid: str = _OPENID,
    transaction_id: str = _TRANSACTION_ID,
) -> bytes:
    """The signed APIv2 payment notification XML (§9.3)."""
    order = _paid_order(
        merchant,
        out_trade_no=out_trade_no,
        total=total,
        transaction_id=transaction_id,
        paid_at=time.time(),
        openid=openid,
        api="v2",
        sign_type=sign_type,
    )
    return v2_payment_xml(order, apiv2_key=merchant.apiv2_key)


def build_v2_refund_notification(
    merchant: Merchant,
    *,
    out_trade_no: str,
    out_refund_no: str,
    refund: int,
    total: int,
    status: RefundStatus = "SUCCESS",
) -> bytes:
    """The APIv2 refund notification XML with encrypted ``req_info`` (§9.4)."""
    order, row = _refunded_order(
        merchant,
        out_trade_no=out_trade_no,
        out_refund_no=out_refund_no,
        refund=refund,
        total=total,
        status=status,
    )
    return v2_refund_xml(row, order, appid=merchant.appid, apiv2_key=merchant.apiv2_key)
