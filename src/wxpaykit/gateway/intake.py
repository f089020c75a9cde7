"""The APIv3 intake pipeline: raw request in, durable ledger record (or a refusal) out.

Steps, cheapest and most fundamental first; each refusal is its own exception from
:mod:`wxpaykit.gateway.replies`, and none of them writes anything:

1. body size (413), done while reading the body, again here;
2. the path's merchant is configured (404);
3. required ``Wechatpay-*`` headers present and well-formed (400);
4. signature over the raw bytes: probe, serial, certificate validity, RSA (401);
5. timestamp window (401 ``STALE_TIMESTAMP``), only for authentic messages;
6. parse the envelope, refuse event types the ledger does not handle (400);
7. decrypt the resource with the merchant's APIv3 key (400 ``DECRYPTION_FAILED``);
8. ``mchid`` and ``appid`` must belong to the path's merchant (403);
9. a copy of a notification this process already committed is acknowledged here as
   a duplicate (:mod:`wxpaykit.gateway.committed`), without a database round trip
   (it is recognised by the id read from the verified body, before step 6);
10. nonce replay guard (409 ``REPLAYED_NONCE``), see :mod:`wxpaykit.gateway.nonce`;
    with Redis, the same round trip finds copies other processes committed;
11. ``ledger.record_notification``: one transaction; the caller acknowledges after it.

Steps 6 to 8 run before the nonce claim (issue #5 lists the claim before decryption):
they have no side effects, and claiming last means every refusal leaves no row at all,
not even a nonce.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import structlog

from wxpaykit.core.models import NotificationEnvelope, RefundResource, Transaction
from wxpaykit.core.notifications import decrypt_resource, parse_envelope, parse_resource
from wxpaykit.core.verification import TrustedKeys, extract_signed_headers, verify_signature
from wxpaykit.errors import MalformedMessageError, StaleTimestampError
from wxpaykit.gateway.committed import CommittedNotifications, DuplicateTally
from wxpaykit.gateway.committed_feed import CommittedFeed
from wxpaykit.gateway.nonce import NonceClaim, NonceGuard, NonceTicket
from wxpaykit.gateway.replies import (
    AppidMismatchError,
    BodyTooLargeError,
    MalformedHeaderError,
    MerchantMismatchError,
    ReplayedNonceError,
    UnknownMerchantError,
    UnsupportedEventError,
)
from wxpaykit.gateway.settings import GatewaySettings, MerchantSettings
from wxpaykit.storage.base import (
    Ledger,
    PaymentFacts,
    RawRequest,
    RecordOutcome,
    RecordResult,
    RefundFacts,
    VerifiedNotification,
)

__all__ = ["Clock", "IntakeResult", "NotificationIntake", "record_or_dead_letter", "utc_now"]

Clock = Callable[[], dt.datetime]
_log = structlog.get_logger("wxpaykit.gateway.intake")
# Verify the signature with an unlimited window; the window is checked right after,
# so a stale forgery is reported as a bad signature, not as a clock problem.
_NO_WINDOW = 10**12
_MAX_HEADER_CHARS = 512
_DUPLICATE = RecordResult(outcome=RecordOutcome.DUPLICATE)


@dataclass(frozen=True, slots=True, kw_only=True)
class IntakeResult:
    """An acknowledged notification: its record result, or ``None`` for an acked replay."""

    notification_id: str | None
    result: RecordResult | None

    @property
    def replayed(self) -> bool:
        """True when an identical, already acknowledged request was acknowledged again."""
        return self.result is None


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class NotificationIntake:
    """Runs the pipeline for one gateway; shared by every request."""

    def __init__(
        self,
        settings: GatewaySettings,
        ledger: Ledger,
        nonce_guard: NonceGuard,
        *,
        clock: Clock = utc_now,
        platform_keys: Mapping[str, TrustedKeys] | None = None,
        committed: CommittedNotifications | None = None,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.nonce_guard = nonce_guard
        self.clock = clock
        # Ids this process committed; copies of them skip the database (committed.py).
        self.committed = committed if committed is not None else CommittedNotifications()
        self.duplicates = DuplicateTally(ledger)
        # With Redis: the other processes' commits join ``committed`` (committed_feed.py).
        self.committed_feed: CommittedFeed | None = None
        self._settling: set[asyncio.Future[Any]] = set()
        # mchid -> keys kept current by a key manager (platform_keys = "auto").
        self.platform_keys = dict(platform_keys or {})

    def trusted_keys(self, merchant: MerchantSettings) -> TrustedKeys:
        """The keys that verify ``merchant``'s notifications."""
        return self.platform_keys.get(merchant.mchid, merchant.trusted_keys)

    def merchant(self, mchid: str) -> MerchantSettings:
        """The path's merchant; :class:`UnknownMerchantError` when not configured."""
        merchant = self.settings.merchant(mchid)
        if merchant is None:
            raise UnknownMerchantError(f"no merchant {mchid[:32]!r} is configured here")
        return merchant

    def check_size(self, body: bytes) -> None:
        """Refuse a body over the configured limit."""
        if len(body) > self.settings.max_body_bytes:
            raise BodyTooLargeError(
                f"body of {len(body)} bytes is over the {self.settings.max_body_bytes}-byte limit"
            )

    async def receive_v3(self, mchid: str, headers: Mapping[str, str], body: bytes) -> IntakeResult:
        """Run steps 1-10 for an APIv3 notification; raise a refusal or return after commit."""
        received_at_ms = int(time.time() * 1000)
        self.check_size(body)
        merchant = self.merchant(mchid)
        signed = extract_signed_headers(headers)
        _check_header_shapes(signed.timestamp, signed.nonce, signed.serial)
        now = self.clock()
        verified = verify_signature(
            signed, body, self.trusted_keys(merchant), now=now, tolerance_seconds=_NO_WINDOW
        )
        if abs(verified.skew_seconds) > self.settings.tolerance_seconds:
            raise StaleTimestampError(
                f"Wechatpay-Timestamp is {verified.skew_seconds:+d} s from now"
                f" (allowed ±{self.settings.tolerance_seconds} s)",
                skew_seconds=verified.skew_seconds,
                serial=signed.serial,
                request_id=signed.request_id,
            )
        copy_id = _peek_id(body)
        if copy_id is not None and (merchant.mchid, copy_id) in self.committed:
            # Signed by WeChat Pay for this merchant, fresh, and its id already durable
            # here: a copy. Its first copy was validated, decrypted and owner-checked
            # before it was committed, and the signature covers this body's id, so there
            # is nothing left to learn from parsing or decrypting it again. (A replay of
            # it would change nothing either, so the nonce need not be claimed.)
            return self._absorbed((merchant.mchid, copy_id))
        envelope = parse_envelope(body)
        kind = _kind_of(envelope)
        key = (merchant.mchid, envelope.id)
        plaintext = decrypt_resource(envelope, merchant.apiv3_key)
        resource = parse_resource(envelope, plaintext)
        raw = RawRequest(headers=dict(headers), body=body, received_at_ms=received_at_ms)
        notification = _verified_notification(merchant, envelope, kind, resource, raw)
        ticket = await self.nonce_guard.claim(
            mchid,
            signed.nonce,
            body,
            now_ms=int(now.timestamp() * 1000),
            notification_id=envelope.id,
        )
        if ticket.claim is NonceClaim.ACKED:
            return IntakeResult(notification_id=envelope.id, result=None)
        if ticket.claim is NonceClaim.DUPLICATE:
            self.committed.add(key)
            return self._absorbed(key)
        if ticket.claim is NonceClaim.IN_FLIGHT:
            raise ReplayedNonceError(
                "Wechatpay-Nonce was already used inside the replay window",
                serial=signed.serial,
                request_id=signed.request_id,
            )
        acknowledged = False
        try:
            result = await record_or_dead_letter(self.ledger, notification)
            acknowledged = True
            self.committed.add(key)
            if self.committed_feed is not None:
                self.committed_feed.publish(key)
        finally:
            # The answer does not wait for the mark: until it lands, a copy goes to the
            # ledger (absorbed as a duplicate) and an identical replay gets 409.
            self._settle_later(ticket, acknowledged=acknowledged)
        return IntakeResult(notification_id=envelope.id, result=result)

    def _settle_later(self, ticket: NonceTicket, *, acknowledged: bool) -> None:
        future = self.nonce_guard.settle_soon(ticket, acknowledged=acknowledged)
        if future is not None:  # the guard logs a failure; drain() waits for the rest
            self._settling.add(future)
            future.add_done_callback(self._settling.discard)

    async def drain(self) -> None:
        """Wait for nonce marks still being written (called at shutdown)."""
        while self._settling:
            await asyncio.wait(set(self._settling))

    def _absorbed(self, key: tuple[str, str]) -> IntakeResult:
        """A copy of a committed notification: acknowledged, counted, nothing recorded."""
        self.duplicates.note(key)
        return IntakeResult(notification_id=key[1], result=_DUPLICATE)


async def record_or_dead_letter(ledger: Ledger, notification: VerifiedNotification) -> RecordResult:
    """Record in one transaction; if that raises, keep an inbound dead letter and re-raise.

    The caller answers 500 on any exception, so WeChat Pay re-sends; the dead letter lets
    an operator re-drive it (``wxpaykit replay``) if the re-sends run out.
    """
    try:
        return await ledger.record_notification(notification)
    except Exception as exc:
        try:
            await ledger.record_failure(notification, error=_describe_failure(exc))
        except Exception as second:  # the database may be down: WeChat's retry is the net
            _log.warning(
                "dead_letter_not_recorded",
                notification_id=notification.notification_id,
                error=type(second).__name__,
            )
        raise


def _describe_failure(exc: BaseException) -> str:
    # Exception texts of our own code carry no secrets; driver texts may echo SQL
    # parameters, so only the type and the first line are kept.
    first_line = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first_line}"[:500]


def _peek_id(body: bytes) -> str | None:
    """The envelope's ``id`` when the (verified) body is a JSON object with a string id.

    Enough to recognise a copy of a committed notification, for a fraction of what
    validating the whole envelope costs (a copy took about 10 us less in process);
    anything else (None) takes the full path, whose parser reports what is wrong.
    """
    try:
        envelope = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    notification_id = envelope.get("id") if isinstance(envelope, dict) else None
    return notification_id if isinstance(notification_id, str) else None


def _check_header_shapes(timestamp: str, nonce: str, serial: str) -> None:
    if not timestamp.isdigit() or len(timestamp) > 11:
        hint = " (milliseconds? WeChat sends seconds)" if timestamp.isdigit() else ""
        raise MalformedHeaderError(f"Wechatpay-Timestamp is not Unix seconds{hint}")
    if len(nonce) > _MAX_HEADER_CHARS or not nonce.isascii():
        raise MalformedHeaderError("Wechatpay-Nonce is not a short ASCII string")
    if len(serial) > _MAX_HEADER_CHARS or not serial.isascii():
        raise MalformedHeaderError("Wechatpay-Serial is not a short ASCII string")


def _kind_of(envelope: NotificationEnvelope) -> str:
    event_type = str(envelope.event_type)
    original = envelope.resource.original_type
    if event_type.startswith("TRANSACTION.") and original in ("", "transaction"):
        return "payment"
    if event_type.startswith("REFUND.") and original in ("", "refund"):
        return "refund"
    raise UnsupportedEventError(f"event_type {event_type[:64]!r} is not handled by the ledger")


def _verified_notification(
    merchant: MerchantSettings,
    envelope: NotificationEnvelope,
    kind: str,
    resource: object,
    raw: RawRequest,
) -> VerifiedNotification:
    if kind == "payment":
        if not isinstance(resource, Transaction):
            raise MalformedMessageError("payment notification without a transaction resource")
        _check_owner(merchant, resource.merchant_id, resource.app_id)
        return VerifiedNotification(
            mchid=merchant.mchid,
            notification_id=envelope.id,
            api_version="v3",
            event_type=str(envelope.event_type),
            kind="payment",
            payment=payment_facts(resource),
            raw=raw,
        )
    if not isinstance(resource, RefundResource):
        raise MalformedMessageError("refund notification without a refund resource")
    _check_owner(merchant, resource.merchant_id, None)
    return VerifiedNotification(
        mchid=merchant.mchid,
        notification_id=envelope.id,
        api_version="v3",
        event_type=str(envelope.event_type),
        kind="refund",
        refund=refund_facts(resource),
        raw=raw,
    )


def _check_owner(merchant: MerchantSettings, mchid: str | None, appid: str | None) -> None:
    if mchid != merchant.mchid:
        raise MerchantMismatchError(
            f"the notification is for mchid {str(mchid)[:32]!r}, not {merchant.mchid}"
        )
    if not merchant.allows_appid(appid):
        raise AppidMismatchError(
            f"appid {str(appid)[:32]!r} is not one of merchant {merchant.mchid}'s apps"
        )


def payment_facts(transaction: Transaction) -> PaymentFacts:
    """Normalise a decrypted APIv3 transaction."""
    if transaction.amount is None:
        raise MalformedMessageError("the transaction has no amount")
    return PaymentFacts(
        out_trade_no=transaction.out_trade_no,
        transaction_id=transaction.transaction_id,
        trade_state=transaction.trade_state.value,
        total=transaction.amount.total,
        currency=transaction.amount.currency,
        payer_total=transaction.amount.payer_total,
        success_time=transaction.success_time.isoformat() if transaction.success_time else None,
        appid=transaction.app_id,
        openid=transaction.payer.openid if transaction.payer else None,
    )


def refund_facts(refund: RefundResource) -> RefundFacts:
    """Normalise a decrypted APIv3 refund."""
    return RefundFacts(
        out_trade_no=refund.out_trade_no,
        out_refund_no=refund.out_refund_no,
        refund_id=refund.refund_id,
        transaction_id=refund.transaction_id,
        refund_status=refund.refund_status.value,
        refund=refund.amount.refund,
        total=refund.amount.total,
        success_time=refund.success_time.isoformat() if refund.success_time else None,
    )
