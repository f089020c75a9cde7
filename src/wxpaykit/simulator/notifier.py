"""Announcing state changes: the notification the platform sends after each one.

A successful payment announces ``TRANSACTION.SUCCESS``; a refund reaching a final
state announces ``REFUND.SUCCESS``, ``REFUND.ABNORMAL`` or ``REFUND.CLOSED``. The body
is built once, here, in the order's API: an encrypted APIv3 envelope, or APIv2 XML
(signed with the order's ``sign_type``). The delivery engine then sends those exact
bytes, freshly signed on every attempt, until the merchant acknowledges them.
"""

from __future__ import annotations

from collections.abc import Callable

from wxpaykit.simulator.clock import Clock
from wxpaykit.simulator.delivery import DeliveryEngine
from wxpaykit.simulator.merchants import Merchant
from wxpaykit.simulator.notifications import (
    build_envelope,
    new_notification_id,
    refund_resource,
    transaction_resource,
    v2_payment_xml,
    v2_refund_xml,
)
from wxpaykit.simulator.state import Delivery, Order, Refund

__all__ = ["Notifier"]


class Notifier:
    """Builds the notification of a state change and queues it for delivery."""

    def __init__(
        self,
        *,
        clock: Clock,
        merchant: Callable[[str], Merchant | None],
        delivery: DeliveryEngine,
        wake: Callable[[], None],
    ) -> None:
        self._clock = clock
        self._merchant = merchant
        self._delivery = delivery
        self._wake = wake

    def payment_succeeded(self, order: Order) -> None:
        """Queue ``TRANSACTION.SUCCESS`` to the order's notify_url."""
        merchant = self._merchant(order.mchid)
        if merchant is None:
            return
        nid = new_notification_id()
        if order.api == "v2":
            body = v2_payment_xml(order, apiv2_key=merchant.apiv2_key)
        else:
            body = build_envelope(
                "TRANSACTION.SUCCESS",
                transaction_resource(order),
                merchant.apiv3_key,
                notification_id=nid,
                create_time=self._clock.now(),
            )
        self._enqueue(
            order, nid, order.api, "TRANSACTION.SUCCESS", order.notify_url, body, order.sign_type
        )

    def refund_finished(self, refund: Refund, order: Order) -> None:
        """Queue ``REFUND.<status>`` to the refund's notify_url (else the order's)."""
        merchant = self._merchant(order.mchid)
        url = refund.notify_url or order.notify_url
        if merchant is None or not url:
            return
        nid = new_notification_id()
        event_type = f"REFUND.{refund.status}"
        if refund.api == "v2":
            body = v2_refund_xml(refund, order, appid=order.appid, apiv2_key=merchant.apiv2_key)
        else:
            body = build_envelope(
                event_type,
                refund_resource(refund, order),
                merchant.apiv3_key,
                notification_id=nid,
                create_time=self._clock.now(),
            )
        # APIv2 refund notifications carry no sign (req_info is encrypted instead).
        self._enqueue(order, nid, refund.api, event_type, url, body, "")

    def _enqueue(
        self,
        order: Order,
        nid: str,
        api: str,
        event_type: str,
        url: str,
        body: bytes,
        sign_type: str,
    ) -> None:
        now = self._clock.now()
        self._delivery.enqueue(
            Delivery(
                mchid=order.mchid,
                notification_id=nid,
                api=api,
                event_type=event_type,
                notify_url=url,
                body=body,
                next_at=now,
                created_at=now,
                sign_type=sign_type,
            )
        )
        self._wake()
