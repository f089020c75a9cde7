"""HTTP endpoints of the notification gateway: bytes in, one reply out.

The handlers only read the body (bounded), call the intake pipeline, count, log and
answer; the pipeline and the reply table hold every decision. Success is answered only
after :meth:`Ledger.record_notification` has returned, i.e. after commit.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from wxpaykit.core.v2.xml import reply_xml
from wxpaykit.gateway.intake import NotificationIntake
from wxpaykit.gateway.intake_v2 import receive_v2
from wxpaykit.gateway.logs import new_trace_id
from wxpaykit.gateway.metrics import CONTENT_TYPE_LATEST, GatewayMetrics
from wxpaykit.gateway.replies import BodyTooLargeError, json_body, reply_for, v2_body
from wxpaykit.storage.base import RecordOutcome, RecordResult

__all__ = ["Answer", "NotificationEndpoints", "read_asgi_body", "read_body"]

_log = structlog.get_logger("wxpaykit.gateway")
_JSON = "application/json; charset=utf-8"
_XML = "text/xml; charset=utf-8"


async def read_body(request: Request, limit: int) -> bytes:
    """Read the raw body, refusing (before reading it all) anything over ``limit`` bytes."""
    return await read_asgi_body(request.receive, request.headers.get("content-length", ""), limit)


async def read_asgi_body(receive: Receive, declared: str, limit: int) -> bytes:
    """The body from ASGI ``receive`` messages, bounded by ``limit`` while it streams."""
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError(f"body of {declared} bytes is over the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnectedError("the client went away before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(f"body is over the {limit}-byte limit")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class ClientDisconnectedError(Exception):
    """The request body did not arrive (nothing is recorded; WeChat Pay re-sends)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """One reply: status, content type (None: no body) and body bytes."""

    status: int
    media_type: str | None
    body: bytes
    trace_id: str

    def asgi_headers(self) -> list[tuple[bytes, bytes]]:
        headers = [(b"x-trace-id", self.trace_id.encode("ascii"))]
        if self.media_type is not None:
            headers.append((b"content-type", self.media_type.encode("ascii")))
        if self.status != 204:
            headers.append((b"content-length", str(len(self.body)).encode("ascii")))
        return headers


_NOTIFY_PREFIXES: tuple[tuple[str, Literal["v3", "v2"]], ...] = (
    ("/notify/v3/", "v3"),
    ("/notify/v2/", "v2"),
)


def _plain_headers(scope: Scope) -> dict[str, str]:
    """The request headers as a dict, once (ASGI names are lower case): the pipeline looks
    them up several times and keeps them for audit."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


def _notify_target(scope: Scope) -> tuple[Literal["v3", "v2"], str] | None:
    """``(api, mchid)`` for ``POST /notify/v3|v2/{mchid}``, else None."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    path: str = scope["path"]
    for prefix, api in _NOTIFY_PREFIXES:
        if path.startswith(prefix):
            mchid = path[len(prefix) :]
            return (api, mchid) if mchid and "/" not in mchid else None
    return None


@dataclass(slots=True)
class NotificationEndpoints:
    """The ``/notify/v3/{mchid}`` and ``/notify/v2/{mchid}`` handlers and ``/metrics``.

    Both routes are served two ways with the same :meth:`answer`: as Starlette routes,
    and straight from ASGI by :meth:`dispatch` (what :class:`~wxpaykit.gateway.app`
    does for every ``POST /notify/...``: no router, request or response objects on the
    path every notification takes).
    """

    intake: NotificationIntake
    metrics: GatewayMetrics

    async def notify_v3(self, request: Request) -> Response:
        """APIv3 JSON notification: 204 after commit, else a specific refusal."""
        return await self._starlette(request, "v3")

    async def notify_v2(self, request: Request) -> Response:
        """APIv2 XML notification: the documented SUCCESS reply XML after commit."""
        return await self._starlette(request, "v2")

    async def metrics_endpoint(self, request: Request) -> Response:
        """Prometheus text exposition."""
        return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def dispatch(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Serve ``scope`` if it is ``POST /notify/v3|v2/{mchid}``; False otherwise."""
        target = _notify_target(scope)
        if target is None:
            return False
        api, mchid = target
        headers = _plain_headers(scope)
        limit = self.intake.settings.max_body_bytes
        declared = headers.get("content-length", "")

        async def body() -> bytes:
            return await read_asgi_body(receive, declared, limit)

        answer = await self.answer(api, mchid, headers, body)
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": answer.asgi_headers(),
            }
        )
        await send({"type": "http.response.body", "body": answer.body})
        return True

    async def _starlette(self, request: Request, api: Literal["v3", "v2"]) -> Response:
        headers = _plain_headers(request.scope)

        async def body() -> bytes:
            return await read_body(request, self.intake.settings.max_body_bytes)

        answer = await self.answer(api, str(request.path_params["mchid"]), headers, body)
        response = Response(answer.body, status_code=answer.status, media_type=answer.media_type)
        response.headers["X-Trace-Id"] = answer.trace_id
        return response

    async def answer(
        self,
        api: Literal["v3", "v2"],
        mchid: str,
        headers: dict[str, str],
        read_body: Callable[[], Awaitable[bytes]],
    ) -> Answer:
        """Read, run the pipeline, count, log; the reply to send."""
        started = time.perf_counter()
        mchid = mchid[:32]
        trace_id = new_trace_id()
        self.metrics.count("received", api)
        try:
            body = await read_body()
            if api == "v3":
                intake_result = await self.intake.receive_v3(mchid, headers, body)
                result, notification_id = intake_result.result, intake_result.notification_id
            else:
                result = await receive_v2(self.intake, mchid, headers, body)
                notification_id = None
        except Exception as exc:
            answer = self._refuse(exc, api, mchid, trace_id)
        else:
            self._count_acknowledged(api, result)
            _log.info(
                "notification_acknowledged",
                trace_id=trace_id,
                api=api,
                mchid=mchid,
                notification_id=notification_id,
                outcome=result.outcome.value if result else "replay_acked",
                events=len(result.event_ids) if result else 0,
            )
            answer = (
                Answer(204, None, b"", trace_id)
                if api == "v3"
                else Answer(200, _XML, reply_xml(True), trace_id)
            )
        self.metrics.observe_latency(api, time.perf_counter() - started)
        return answer

    def _count_acknowledged(self, api: str, result: RecordResult | None) -> None:
        outcome = result.outcome.value if result else RecordOutcome.DUPLICATE.value
        self.metrics.count("acknowledged", api, outcome)
        if result is None or result.outcome is RecordOutcome.DUPLICATE:
            self.metrics.count("duplicates", api)

    def _refuse(self, exc: Exception, api: str, mchid: str, trace_id: str) -> Answer:
        reply = reply_for(exc)
        log = _log.bind(trace_id=trace_id, api=api, mchid=mchid)
        if reply.status >= 500:
            self.metrics.count("failed", api)
            # Only the type: a driver's text may quote SQL parameters (personal data).
            log.error("notification_failed", status=reply.status, error=type(exc).__name__)
        else:
            self.metrics.count("rejected", api, reply.code)
            log.info(
                "notification_rejected",
                status=reply.status,
                reason=reply.code,
                detail=reply.message,
                serial=getattr(exc, "serial", None),
            )
        if api == "v2":
            return Answer(reply.status, _XML, v2_body(reply), trace_id)
        return Answer(reply.status, _JSON, json_body(reply), trace_id)


async def healthz(request: Request) -> Response:
    """Alive: the process answers."""
    return JSONResponse({"status": "ok"})
