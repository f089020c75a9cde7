"""Sending notifications: the official retry schedule, acknowledgements, chaos.

An attempt is acknowledged when the merchant answers 200 or 204 (APIv3), or 200 with
``return_code`` SUCCESS XML (APIv2), within ``ack_timeout_seconds`` of real time (5 s,
§6.5). Otherwise the next attempt waits the next interval of the official schedule
(§6.6), multiplied by the time scale::

    15s 15s 30s 3m 10m 20m 30m 30m 30m 60m 3h 3h 3h 6h 6h   (16 attempts, 24h04m)

after which the delivery is ``failed``. Times come from the injected clock, so tests
advance a fake clock and call :meth:`DeliveryEngine.run_due` instead of sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

from wxpaykit.core.signing import generate_nonce, sign_response_headers
from wxpaykit.core.v2 import parse_xml
from wxpaykit.errors import MalformedMessageError
from wxpaykit.simulator.chaos import FORGERIES, ChaosSettings, draw, fraction
from wxpaykit.simulator.clock import Clock
from wxpaykit.simulator.merchants import Merchant
from wxpaykit.simulator.state import Attempt, Delivery, SimulatorState
from wxpaykit.testing.keys import generate_private_key, generate_serial_number

__all__ = ["RETRY_DELAYS_SECONDS", "DeliveryEngine", "SentRequest"]

RETRY_DELAYS_SECONDS = (
    15,
    15,
    30,
    180,
    600,
    1200,
    1800,
    1800,
    1800,
    3600,
    10800,
    10800,
    10800,
    21600,
    21600,
)
_BODY_PREVIEW = 256
_USER_AGENT = "Mozilla/4.0"
_MAX_CONCURRENT = 16


@dataclass(frozen=True, kw_only=True)
class SentRequest:
    """One request ready to send."""

    headers: dict[str, str]
    body: bytes
    serial: str
    chaos: str = ""
    forged: bool = False


class DeliveryEngine:
    """Sends due deliveries and reschedules the unacknowledged ones."""

    def __init__(
        self,
        *,
        state: SimulatorState,
        clock: Clock,
        merchant: Callable[[str], Merchant | None],
        chaos: Callable[[str], ChaosSettings],
        time_scale: float = 1.0,
        ack_timeout_seconds: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        seed: int = 0,
    ) -> None:
        self._state = state
        self._clock = clock
        self._merchant = merchant
        self._chaos = chaos
        self.time_scale = time_scale
        self.ack_timeout_seconds = ack_timeout_seconds
        self._transport = transport
        self._seed = seed
        self._inflight: set[int] = set()
        self._inflight_lock = threading.Lock()
        self._stranger: tuple[str, rsa.RSAPrivateKey] | None = None

    def enqueue(self, delivery: Delivery) -> Delivery:
        """Store a new delivery, due now."""
        return self._state.insert_delivery(delivery)

    def _claim(self, deliveries: list[Delivery]) -> list[Delivery]:
        with self._inflight_lock:
            claimed = [d for d in deliveries if d.id not in self._inflight]
            self._inflight.update(d.id for d in claimed)
        return claimed

    def _release(self, delivery: Delivery) -> None:
        with self._inflight_lock:
            self._inflight.discard(delivery.id)

    async def run_due(self) -> int:
        """Make every attempt that is due now; returns the number of deliveries handled."""
        due = self._claim(self._state.due_deliveries(self._clock.now()))
        if not due:
            return 0
        limit = asyncio.Semaphore(_MAX_CONCURRENT)
        async with httpx.AsyncClient(
            transport=self._transport,
            timeout=self.ack_timeout_seconds,
            follow_redirects=False,
            trust_env=False,
        ) as client:

            async def one(delivery: Delivery) -> None:
                async with limit:
                    try:
                        await self._process(client, delivery)
                    finally:
                        self._release(delivery)

            await asyncio.gather(*(one(d) for d in due))
        return len(due)

    async def _process(self, client: httpx.AsyncClient, delivery: Delivery) -> None:
        merchant = self._merchant(delivery.mchid)
        if merchant is None:
            delivery.status = "failed"
            self._state.update_delivery(delivery)
            return
        settings = self._chaos(delivery.mchid)
        number = delivery.attempts + 1
        nid = delivery.notification_id
        now = self._clock.now()
        first = delivery.attempts == 0 and "duplicate" not in delivery.marks
        if first and "reordered" not in delivery.marks and draw(settings, nid, 0, "reorder"):
            # Held back so notifications created after it overtake it.
            delivery.marks.append("reordered")
            delivery.next_at = now + settings.reorder_delay_seconds * self.time_scale
            self._state.update_delivery(delivery)
            return
        if first and draw(settings, nid, 0, "drop"):
            delivery.marks.append("dropped")
            delivery.status = "dropped"
            self._state.insert_attempt(
                Attempt(
                    delivery_id=delivery.id, number=number, at=now, chaos="dropped", error="dropped"
                )
            )
            self._state.update_delivery(delivery)
            return
        if delivery.api == "v3":
            for kind in FORGERIES:
                if draw(settings, nid, number, kind):
                    forged = self._forge(kind, delivery, merchant, settings)
                    await self._send(client, delivery, number, forged)
                    if kind not in delivery.marks:
                        delivery.marks.append(kind)
        genuine = self._genuine(delivery, merchant)
        # A "slow ack": the merchant's 2xx is taken as arriving after the ack timeout.
        slow = draw(settings, nid, number, "slow_ack")
        if slow:
            delivery.marks.append("slow_ack")
            genuine = SentRequest(
                headers=genuine.headers, body=genuine.body, serial=genuine.serial, chaos="slow_ack"
            )
        if (
            first
            and settings.duplicate_mode == "concurrent"
            and draw(settings, nid, 0, "duplicate")
        ):
            delivery.marks.append("duplicate")
            twin = SentRequest(
                headers=genuine.headers, body=genuine.body, serial=genuine.serial, chaos="duplicate"
            )
            results = await asyncio.gather(
                self._send(client, delivery, number, genuine),
                self._send(client, delivery, number, twin),
            )
            acked = results[0]
        else:
            acked = await self._send(client, delivery, number, genuine)
        acked = acked and not slow
        delivery.attempts = number
        now = self._clock.now()
        if acked:
            delivery.status = "delivered"
            if (
                first
                and settings.duplicate_mode == "spaced"
                and draw(settings, nid, 0, "duplicate")
            ):
                delivery.marks.append("duplicate")
                self._state.insert_delivery(
                    Delivery(
                        mchid=delivery.mchid,
                        notification_id=delivery.notification_id,
                        api=delivery.api,
                        event_type=delivery.event_type,
                        notify_url=delivery.notify_url,
                        body=delivery.body,
                        next_at=now + settings.duplicate_delay_seconds * self.time_scale,
                        created_at=now,
                        marks=["duplicate"],
                        sign_type=delivery.sign_type,
                    )
                )
        elif number > len(RETRY_DELAYS_SECONDS):
            delivery.status = "failed"
        else:
            delivery.next_at = now + RETRY_DELAYS_SECONDS[number - 1] * self.time_scale
        self._state.update_delivery(delivery)

    def _sign(
        self, body: bytes, serial: str, key: rsa.RSAPrivateKey, timestamp: int
    ) -> dict[str, str]:
        headers = sign_response_headers(
            body=body, private_key=key, serial=serial, timestamp=timestamp, nonce=generate_nonce(32)
        )
        headers["Content-Type"] = "application/json"
        headers["User-Agent"] = _USER_AGENT
        return headers

    def _genuine(self, delivery: Delivery, merchant: Merchant) -> SentRequest:
        # A spaced duplicate is a delivery of its own, created marked "duplicate".
        chaos = "duplicate" if delivery.marks[:1] == ["duplicate"] else ""
        if delivery.api == "v2":
            return SentRequest(
                headers={"Content-Type": "text/xml", "User-Agent": _USER_AGENT},
                body=delivery.body,
                serial="",
                chaos=chaos,
            )
        now = self._clock.now()
        draw_value = fraction(self._seed, delivery.notification_id, "ramp")
        serial, key = merchant.notification_signer(draw_value, now, self.time_scale)
        return SentRequest(
            headers=self._sign(delivery.body, serial, key, int(now)),
            body=delivery.body,
            serial=serial,
            chaos=chaos,
        )

    def _stranger_key(self) -> tuple[str, rsa.RSAPrivateKey]:
        if self._stranger is None:
            self._stranger = (f"{generate_serial_number():X}", generate_private_key())
        return self._stranger

    def _forge(
        self, kind: str, delivery: Delivery, merchant: Merchant, settings: ChaosSettings
    ) -> SentRequest:
        now = self._clock.now()
        serial, key = merchant.notification_signer(
            fraction(self._seed, delivery.notification_id, "ramp"), now, self.time_scale
        )
        body = delivery.body
        if kind == "probe":
            headers = self._sign(body, serial, key, int(now))
            noise = base64.b64encode(secrets.token_bytes(180)).decode()
            headers["Wechatpay-Signature"] = "WECHATPAY/SIGNTEST/" + noise
        elif kind == "stale_timestamp":
            headers = self._sign(body, serial, key, int(now) - settings.stale_seconds)
        elif kind == "tampered":
            headers = self._sign(body, serial, key, int(now))
            body = body[:-1] + b',"tampered":true}'
        else:  # unknown_serial: a well-formed signature by a key the merchant never saw
            serial, key = self._stranger_key()
            headers = self._sign(body, serial, key, int(now))
        return SentRequest(headers=headers, body=body, serial=serial, chaos=kind, forged=True)

    async def _send(
        self, client: httpx.AsyncClient, delivery: Delivery, number: int, request: SentRequest
    ) -> bool:
        attempt = Attempt(
            delivery_id=delivery.id,
            number=number,
            at=self._clock.now(),
            chaos=request.chaos,
            forged=request.forged,
            serial=request.serial,
        )
        started = time.perf_counter()
        try:
            response = await client.post(
                delivery.notify_url, content=request.body, headers=request.headers
            )
        except httpx.TimeoutException:
            attempt.error = f"no answer within {self.ack_timeout_seconds:g} s"
        except httpx.HTTPError as exc:
            attempt.error = f"{type(exc).__name__}: {exc}"[:_BODY_PREVIEW]
        else:
            attempt.status_code = response.status_code
            attempt.response_body = response.text[:_BODY_PREVIEW]
            attempt.acked = self._is_ack(delivery, response)
        attempt.latency_ms = round((time.perf_counter() - started) * 1000, 3)
        self._state.insert_attempt(attempt)
        return attempt.acked and not request.forged

    @staticmethod
    def _is_ack(delivery: Delivery, response: httpx.Response) -> bool:
        if delivery.api == "v3":
            return response.status_code in (200, 204)
        if response.status_code != 200:
            return False
        try:
            reply = parse_xml(response.content)
        except MalformedMessageError:
            return False
        return reply.get("return_code") == "SUCCESS"
