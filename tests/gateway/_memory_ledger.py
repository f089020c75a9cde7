"""TEMPORARY in-memory ledger while SqlLedger is being written. Delete before reporting."""

from __future__ import annotations

import asyncio

from wxpaykit.storage.base import (
    AppliedTransition,
    OrderRecord,
    RecordOutcome,
    RecordResult,
    VerifiedNotification,
)


class MemoryLedger:
    def __init__(self) -> None:
        self.notifications: dict[tuple[str, str], VerifiedNotification] = {}
        self.failures: list[tuple[VerifiedNotification, str]] = []
        self.nonces: dict[tuple[str, str], int] = {}
        self.orders: dict[tuple[str, str], OrderRecord] = {}
        self.events: list[str] = []
        self._lock = asyncio.Lock()

    async def record_notification(self, notification: VerifiedNotification) -> RecordResult:
        async with self._lock:
            key = (notification.mchid, notification.notification_id)
            if key in self.notifications:
                return RecordResult(outcome=RecordOutcome.DUPLICATE)
            self.notifications[key] = notification
            if notification.payment is None:
                return RecordResult(outcome=RecordOutcome.UNMATCHED)
            order = self.orders.get((notification.mchid, notification.payment.out_trade_no))
            if order is None:
                return RecordResult(outcome=RecordOutcome.UNMATCHED)
            if order.state == notification.payment.trade_state:
                return RecordResult(outcome=RecordOutcome.NO_CHANGE)
            self.events.append(notification.notification_id)
            return RecordResult(
                outcome=RecordOutcome.APPLIED,
                transitions=(
                    AppliedTransition(
                        entity="order",
                        key=order.out_trade_no,
                        from_state=order.state,
                        to_state=notification.payment.trade_state,
                    ),
                ),
                event_ids=(notification.notification_id,),
            )

    async def record_failure(self, notification: VerifiedNotification, *, error: str) -> None:
        self.failures.append((notification, error))

    async def claim_nonce(self, mchid: str, nonce: str, *, expires_at_ms: int) -> bool:
        if (mchid, nonce) in self.nonces:
            return False
        self.nonces[(mchid, nonce)] = expires_at_ms
        return True

    async def create_order(self, order: OrderRecord) -> OrderRecord:
        self.orders.setdefault((order.mchid, order.out_trade_no), order)
        return self.orders[(order.mchid, order.out_trade_no)]

    async def get_order(self, mchid: str, out_trade_no: str) -> OrderRecord | None:
        return self.orders.get((mchid, out_trade_no))

    def row_counts(self) -> dict[str, int]:
        return {
            "notifications": len(self.notifications),
            "failures": len(self.failures),
            "nonces": len(self.nonces),
            "orders": len(self.orders),
            "events": len(self.events),
        }
