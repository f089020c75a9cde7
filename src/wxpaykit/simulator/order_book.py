"""The platform's order book: placing, closing and paying orders.

APIv3 and APIv2 share it (an order placed through one can be queried through the
other, as on the real platform). The rules follow protocol reference §7: the same
``out_trade_no`` with the same parameters returns the same order (and prepay_id),
with different ones ``INVALID_REQUEST``/``OUT_TRADE_NO_USED``; a paid order cannot be
placed, closed or paid again; closing a closed order is fine; an expired order closes
when the payer tries to pay it.
"""

from __future__ import annotations

import secrets
import sqlite3
import string
from dataclasses import dataclass

from wxpaykit.simulator.clock import Clock, format_v2_time
from wxpaykit.simulator.notifier import Notifier
from wxpaykit.simulator.platform_errors import REENTRY_MISMATCH, PlatformError
from wxpaykit.simulator.state import Order, SimulatorState

__all__ = ["OrderBook", "OrderRequest"]

#: An order without ``time_expire`` can be paid for a week.
ORDER_VALID_SECONDS = 7 * 86400
_PAID = ("SUCCESS", "REFUND")


@dataclass(kw_only=True)
class OrderRequest:
    """A prepay request, once validated (APIv3 or APIv2)."""

    mchid: str
    sub_mchid: str = ""
    appid: str
    sub_appid: str = ""
    out_trade_no: str
    trade_type: str
    description: str
    total: int
    currency: str = "CNY"
    notify_url: str
    attach: str = ""
    openid: str = ""
    sub_openid: str = ""
    time_expire: float | None = None
    scene_info: dict[str, object] | None = None
    api: str = "v3"
    sign_type: str = ""
    #: Digest of the request's parameters: equal digests are the same request.
    fingerprint: str


def _random_text(length: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _refuse_if_paid_or_closed(order: Order, *, paid_message: str = "该订单已支付") -> None:
    if order.trade_state in _PAID:
        raise PlatformError(400, "ORDERPAID", paid_message, v2_code="ORDERPAID")
    if order.trade_state == "CLOSED":
        raise PlatformError(400, "ORDER_CLOSED", "订单已关闭", v2_code="ORDERCLOSED")


class OrderBook:
    """Orders of every merchant, and what may happen to them."""

    def __init__(self, *, state: SimulatorState, clock: Clock, notifier: Notifier) -> None:
        self._state = state
        self._clock = clock
        self._notifier = notifier

    def _transaction_id(self, now: float) -> str:
        sequence = self._state.next_sequence("transaction")
        return f"420000{format_v2_time(now)[:8]}{sequence:014d}"

    def create(self, request: OrderRequest) -> Order:
        """Place an order, or return the same one for an identical re-submission (§7.1)."""
        existing = self._state.order_by_out_trade_no(
            request.mchid, request.sub_mchid, request.out_trade_no
        )
        if existing is not None:
            return self._reentered(existing, request)
        now = self._clock.now()
        order = Order(
            mchid=request.mchid,
            sub_mchid=request.sub_mchid,
            appid=request.appid,
            sub_appid=request.sub_appid,
            out_trade_no=request.out_trade_no,
            api=request.api,
            trade_type=request.trade_type,
            description=request.description,
            total=request.total,
            currency=request.currency,
            notify_url=request.notify_url,
            attach=request.attach,
            openid=request.openid,
            sub_openid=request.sub_openid,
            prepay_id=f"wx{format_v2_time(now)}{secrets.token_hex(10)}",
            code_token=_random_text(10),
            transaction_id=self._transaction_id(now),
            created_at=now,
            expires_at=request.time_expire or now + ORDER_VALID_SECONDS,
            fingerprint=request.fingerprint,
            sign_type=request.sign_type,
            scene_info=dict(request.scene_info) if request.scene_info else None,
        )
        try:
            return self._state.insert_order(order)
        except sqlite3.IntegrityError:
            # A concurrent identical request won the race: answer as a re-submission.
            raced = self._state.order_by_out_trade_no(
                request.mchid, request.sub_mchid, request.out_trade_no
            )
            if raced is None:
                raise
            return self._reentered(raced, request)

    @staticmethod
    def _reentered(existing: Order, request: OrderRequest) -> Order:
        _refuse_if_paid_or_closed(existing)
        if existing.fingerprint != request.fingerprint:
            raise PlatformError(
                400, "INVALID_REQUEST", REENTRY_MISMATCH, v2_code="OUT_TRADE_NO_USED"
            )
        return existing

    def close(self, order: Order) -> Order:
        """Close an unpaid order; closing a closed one again is fine (§7.4)."""
        if order.trade_state in _PAID:
            raise PlatformError(400, "ORDERPAID", "订单已支付", v2_code="ORDERPAID")
        if order.trade_state != "CLOSED":
            order.trade_state = "CLOSED"
            self._state.update_order(order)
        return order

    def pay(self, order: Order, *, success: bool = True, openid: str | None = None) -> Order:
        """The payer pays (or fails to pay) an order; success queues TRANSACTION.SUCCESS."""
        _refuse_if_paid_or_closed(order)
        now = self._clock.now()
        if now > order.expires_at:
            order.trade_state = "CLOSED"
            self._state.update_order(order)
            raise PlatformError(400, "ORDER_CLOSED", "订单已过期关闭", v2_code="ORDERCLOSED")
        if not success:
            order.trade_state = "PAYERROR"
            self._state.update_order(order)
            return order
        order.trade_state = "SUCCESS"
        order.success_time = now
        if openid:
            order.openid = openid
        elif not order.openid:
            order.openid = "o" + _random_text(27)
        self._state.update_order(order)
        self._notifier.payment_succeeded(order)
        return order
