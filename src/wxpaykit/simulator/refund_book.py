"""Refunds: accepting a refund request and finishing it.

A refund is accepted as PROCESSING (§7.5): the same ``out_refund_no`` returns the same
refund, different parameters under it are refused, and the platform's limits apply
(paid orders only, ``amount.total`` equal to the order's, at most 50 refunds, never
more than what is left). It then completes on its own after
``refund_delay_seconds`` × time scale (the scheduler calls :meth:`RefundBook.complete`),
or when ``/sim`` says so, and the final state is announced.
"""

from __future__ import annotations

from collections.abc import Callable

from wxpaykit.simulator.clock import Clock, format_v2_time
from wxpaykit.simulator.merchants import Merchant
from wxpaykit.simulator.notifier import Notifier
from wxpaykit.simulator.platform_errors import REENTRY_MISMATCH, PlatformError
from wxpaykit.simulator.state import Order, Refund, SimulatorState

__all__ = ["MAX_REFUNDS_PER_ORDER", "RefundBook"]

#: The platform allows at most 50 (partial) refunds of one order.
MAX_REFUNDS_PER_ORDER = 50
_OUTCOMES = ("SUCCESS", "ABNORMAL", "CLOSED")


def _check_refundable(order: Order, *, refund: int, total: int) -> None:
    if order.trade_state not in ("SUCCESS", "REFUND"):
        raise PlatformError(
            400, "INVALID_REQUEST", "订单状态不正确，未支付的订单不能退款", v2_code="ORDERNOTPAID"
        )
    if total != order.total:
        raise PlatformError(
            400,
            "INVALID_REQUEST",
            "订单金额或退款金额与之前请求不一致，请核实后再试",
            v2_code="INVALID_REQUEST",
        )
    if order.refund_count >= MAX_REFUNDS_PER_ORDER:
        raise PlatformError(
            403, "RULE_LIMIT", "一笔订单最多可以部分退款50次", v2_code="INVALID_REQUEST"
        )
    if refund < 1 or order.refunded + refund > order.total:
        raise PlatformError(
            400, "INVALID_REQUEST", "申请退款金额超过订单可退金额", v2_code="INVALID_REQUEST"
        )


class RefundBook:
    """Refunds of every merchant, and how they finish."""

    def __init__(
        self,
        *,
        state: SimulatorState,
        clock: Clock,
        merchant: Callable[[str], Merchant | None],
        notifier: Notifier,
        wake: Callable[[], None],
        delay_seconds: float,
    ) -> None:
        self._state = state
        self._clock = clock
        self._merchant = merchant
        self._notifier = notifier
        self._wake = wake
        #: Real seconds (already time-scaled) until an accepted refund completes.
        self.delay_seconds = delay_seconds

    def _refund_id(self, now: float) -> str:
        sequence = self._state.next_sequence("refund")
        return f"500000{format_v2_time(now)[:8]}{sequence:015d}"

    def create(
        self,
        order: Order,
        *,
        out_refund_no: str,
        refund: int,
        total: int,
        reason: str = "",
        notify_url: str = "",
        funds_account: str = "",
        api: str = "v3",
        fingerprint: str = "",
    ) -> Refund:
        """Accept a refund (PROCESSING); the same ``out_refund_no`` returns the same refund."""
        existing = self._state.refund_by_out_refund_no(order.mchid, order.sub_mchid, out_refund_no)
        if existing is not None:
            if existing.order_id != order.id or existing.fingerprint != fingerprint:
                raise PlatformError(400, "INVALID_REQUEST", REENTRY_MISMATCH)
            return existing
        _check_refundable(order, refund=refund, total=total)
        merchant = self._merchant(order.mchid)
        auto_complete = merchant is None or merchant.refund_auto_complete
        now = self._clock.now()
        created = self._state.insert_refund(
            Refund(
                mchid=order.mchid,
                sub_mchid=order.sub_mchid,
                order_id=order.id,
                out_refund_no=out_refund_no,
                refund_id=self._refund_id(now),
                api=api,
                refund=refund,
                total=total,
                reason=reason,
                notify_url=notify_url,
                funds_account=funds_account,
                created_at=now,
                complete_at=now + self.delay_seconds if auto_complete else None,
                fingerprint=fingerprint,
            )
        )
        order.refund_count += 1
        order.refunded += refund
        self._state.update_order(order)
        self._wake()
        return created

    def complete(self, refund: Refund, outcome: str = "SUCCESS") -> Refund:
        """Finish a PROCESSING (or ABNORMAL) refund and queue its REFUND.* notification."""
        if outcome not in _OUTCOMES:
            raise PlatformError(400, "PARAM_ERROR", "outcome must be SUCCESS, ABNORMAL or CLOSED")
        if refund.status not in ("PROCESSING", "ABNORMAL"):
            raise PlatformError(400, "INVALID_REQUEST", f"退款已是终态 {refund.status}")
        order = self._state.order_by_id(refund.order_id)
        if order is None:
            raise PlatformError(404, "ORDER_NOT_EXIST", "订单不存在")
        refund.status = outcome
        refund.complete_at = None
        if outcome == "SUCCESS":
            refund.success_time = self._clock.now()
            if order.trade_state == "SUCCESS":
                order.trade_state = "REFUND"
        elif outcome == "CLOSED":
            # A closed refund gives its amount back to what the order can still refund.
            order.refunded -= refund.refund
        self._state.update_refund(refund)
        self._state.update_order(order)
        self._notifier.refund_finished(refund, order)
        return refund

    def complete_due(self) -> None:
        """Complete every PROCESSING refund whose time has come (as SUCCESS)."""
        for refund in self._state.due_refunds(self._clock.now()):
            try:
                self.complete(refund, "SUCCESS")
            except PlatformError:
                continue  # its order is gone, or /sim finished it meanwhile
