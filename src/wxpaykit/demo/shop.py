"""The demo's sample shop: a webhook receiver that does what docs/events.md asks of yours.

It verifies the Standard Webhooks signature over the raw body before parsing it
(:func:`wxpaykit.dispatch.webhooks.verify_webhook`), checks that the body's ``id`` is
the signed ``webhook-id``, deduplicates on that id (the dispatcher delivers at least
once), counts events per type and answers 204. Refusals are 400 with a
``{code, message}`` body and change nothing.

The app runs in a server thread while the demo reads the counts from another, so
:class:`ShopInbox` guards its state with a lock. With a ``journal`` path it also
appends every verified request (signed headers and raw body, one JSON line each), so
the demo's outcome can be checked afterwards with another Standard Webhooks library.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from wxpaykit.dispatch.webhooks import WebhookSecret, verify_webhook
from wxpaykit.errors import VerificationError

__all__ = ["WEBHOOK_PATH", "ShopInbox", "ShopSnapshot", "shop_app"]

#: Where the shop listens for wxpaykit's events.
WEBHOOK_PATH = "/hooks/wxpay"
_SIGNED_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


@dataclass(frozen=True, slots=True, kw_only=True)
class ShopSnapshot:
    """The shop's counts at one moment."""

    #: event id -> event type, one entry per distinct event processed.
    processed: dict[str, str]
    #: Requests whose event id had already been processed (answered 204, not processed).
    duplicates: int
    #: Requests refused: missing headers, stale timestamp, bad signature, bad body.
    refused: int

    @property
    def by_type(self) -> dict[str, int]:
        """Distinct events processed, per event type."""
        return dict(Counter(self.processed.values()))


class ShopInbox:
    """What the shop has processed; safe to read from another thread."""

    def __init__(self, journal: Path | None = None) -> None:
        self._journal = journal
        self._lock = threading.Lock()
        self._processed: dict[str, str] = {}
        self._duplicates = 0
        self._refused = 0

    def accept(
        self, event_id: str, event_type: str, *, headers: Mapping[str, str], body: bytes
    ) -> bool:
        """Record a verified event; False (and counted) when its id was already processed."""
        with self._lock:
            if self._journal is not None:
                self._append(headers, body, duplicate=event_id in self._processed)
            if event_id in self._processed:
                self._duplicates += 1
                return False
            self._processed[event_id] = event_type
            return True

    def _append(self, headers: Mapping[str, str], body: bytes, *, duplicate: bool) -> None:
        assert self._journal is not None  # noqa: S101 - checked by the caller
        signed = {name: headers[name] for name in _SIGNED_HEADERS}
        line = {"headers": signed, "body": body.decode("utf-8"), "duplicate": duplicate}
        with self._journal.open("a", encoding="utf-8") as journal:
            journal.write(json.dumps(line) + "\n")

    def refuse(self) -> None:
        """Count a refused request."""
        with self._lock:
            self._refused += 1

    def snapshot(self) -> ShopSnapshot:
        """A consistent copy of the counts."""
        with self._lock:
            return ShopSnapshot(
                processed=dict(self._processed),
                duplicates=self._duplicates,
                refused=self._refused,
            )


def _refusal(inbox: ShopInbox, code: str, message: str) -> JSONResponse:
    inbox.refuse()
    return JSONResponse({"code": code, "message": message}, status_code=400)


def shop_app(
    secrets: Sequence[WebhookSecret],
    inbox: ShopInbox,
    *,
    now_seconds: Callable[[], float] = time.time,
) -> Starlette:
    """The shop's ASGI app: ``POST /hooks/wxpay`` receives wxpaykit's signed events."""

    async def receive(request: Request) -> Response:
        body = await request.body()
        try:  # verify the raw bytes first; nothing is parsed before this passes
            event_id = verify_webhook(
                body, request.headers, secrets, now_seconds=int(now_seconds())
            )
        except VerificationError as exc:
            return _refusal(inbox, exc.reason_code, "webhook verification failed")
        try:
            event = json.loads(body)
        except ValueError:
            return _refusal(inbox, "MALFORMED_BODY", "the body is not JSON")
        if not isinstance(event, dict) or event.get("id") != event_id:
            return _refusal(inbox, "MALFORMED_BODY", "the body's id is not the webhook-id")
        inbox.accept(event_id, str(event.get("type", "")), headers=request.headers, body=body)
        return Response(status_code=204)

    return Starlette(routes=[Route(WEBHOOK_PATH, receive, methods=["POST"])])
