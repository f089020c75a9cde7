"""Notifications and orders for the storage tests (plain values, no randomness hidden)."""

from __future__ import annotations

import secrets

from sqlalchemy import func, select

from wxpaykit.storage.base import (
    OrderRecord,
    PaymentFacts,
    RawRequest,
    RefundFacts,
    VerifiedNotification,
)
from wxpaykit.storage.events import events
from wxpaykit.storage.ledger import SqlLedger
from wxpaykit.storage.schema import notifications

SUCCESS_TIME = "2023-11-15T06:13:20+08:00"  # before the default FakeClock "now"


def new_id(prefix: str = "N") -> str:
    """A fresh notification (or order) id."""
    return f"{prefix}{secrets.token_hex(8)}"


def order(
    mchid: str,
    out_trade_no: str,
    *,
    total: int = 100,
    state: str = "NOTPAY",
    expires_at_ms: int | None = None,
) -> OrderRecord:
    """An order as the merchant registers it."""
    return OrderRecord(
        mchid=mchid,
        out_trade_no=out_trade_no,
        appid="wxd678efh567hg6787",
        description="Image形象店-深圳腾大-QQ公仔",
        total=total,
        currency="CNY",
        state=state,
        expires_at_ms=expires_at_ms,
    )


def payment(
    mchid: str,
    out_trade_no: str,
    *,
    notification_id: str | None = None,
    trade_state: str = "SUCCESS",
    total: int = 100,
    currency: str = "CNY",
    transaction_id: str = "4200000000000000000000000001",
    success_time: str | None = SUCCESS_TIME,
    body: bytes = b'{"id":"EV-1","resource":{"ciphertext":"..."}}',
) -> VerifiedNotification:
    """A verified payment notification."""
    return VerifiedNotification(
        mchid=mchid,
        notification_id=notification_id or new_id(),
        api_version="v3",
        event_type="TRANSACTION.SUCCESS",
        kind="payment",
        payment=PaymentFacts(
            out_trade_no=out_trade_no,
            transaction_id=transaction_id,
            trade_state=trade_state,
            total=total,
            currency=currency,
            payer_total=total,
            success_time=success_time,
            appid="wxd678efh567hg6787",
            openid="oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
        ),
        raw=RawRequest(
            headers={"Wechatpay-Nonce": secrets.token_hex(16), "Wechatpay-Serial": "5157F09E"},
            body=body,
            received_at_ms=1_700_000_000_000,
        ),
    )


def refund(
    mchid: str,
    out_trade_no: str,
    out_refund_no: str,
    *,
    amount: int,
    total: int = 100,
    status: str = "SUCCESS",
    notification_id: str | None = None,
) -> VerifiedNotification:
    """A verified refund notification."""
    return VerifiedNotification(
        mchid=mchid,
        notification_id=notification_id or new_id(),
        api_version="v3",
        event_type=f"REFUND.{status}",
        kind="refund",
        refund=RefundFacts(
            out_trade_no=out_trade_no,
            out_refund_no=out_refund_no,
            refund_id=f"50000{secrets.token_hex(6)}",
            transaction_id="4200000000000000000000000001",
            refund_status=status,
            refund=amount,
            total=total,
            success_time=SUCCESS_TIME if status == "SUCCESS" else None,
        ),
    )


async def event_types(ledger: SqlLedger, mchid: str) -> list[str]:
    """Types of the merchant's outbox events, in commit order."""
    async with ledger.engine.connect() as connection:
        rows = await connection.execute(
            select(events.c.type).where(events.c.mchid == mchid).order_by(events.c.seq)
        )
        return [str(row[0]) for row in rows]


async def notification_count(ledger: SqlLedger, mchid: str) -> int:
    """Notification rows recorded for the merchant."""
    async with ledger.engine.connect() as connection:
        count = await connection.scalar(
            select(func.count()).select_from(notifications).where(notifications.c.mchid == mchid)
        )
        return int(count or 0)
