"""HTTP endpoints of the notification gateway: bytes in, one reply out.

The handlers only read the body (bounded), call the intake pipeline, count, log and
answer; the pipeline and the reply table hold every decision. Success is answered only
after :meth:`Ledger.record_notification` has returned, i.e. after commit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from wxpaykit.core.v2.xml import reply_xml
from wxpaykit.gateway.intake import NotificationIntake
from wxpaykit.gateway.intake_v2 import receive_v2
from wxpaykit.gateway.logs import new_trace_id
from wxpaykit.gateway.metrics import CONTENT_TYPE_LATEST, GatewayMetrics
from wxpaykit.gateway.replies import BodyTooLargeError, json_body, reply_for, v2_body
from wxpaykit.storage.base import RecordOutcome, RecordResult

__all__ = ["NotificationEndpoints", "read_body"]

_log = structlog.get_logger("wxpaykit.gateway")
_JSON = "application/json; charset=utf-8"
_XML = "text/xml; charset=utf-8"


async def read_body(request: Request, limit: int) -> bytes:
    """Read the raw body, refusing (before reading it all) anything over ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError(f"body of {declared} bytes is over the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(f"body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass(slots=True)
class NotificationEndpoints:
    """The ``/notify/v3/{mchid}`` and ``/notify/v2/{mchid}`` handlers and ``/metrics``."""

    intake: NotificationIntake
    metrics: GatewayMetrics

    async def notify_v3(self, request: Request) -> Response:
        """APIv3 JSON notification: 204 after commit, else a specific refusal."""
        return await self._handle(request, "v3")

    async def notify_v2(self, request: Request) -> Response:
        """APIv2 XML notification: the documented SUCCESS reply XML after commit."""
        return await self._handle(request, "v2")

    async def metrics_endpoint(self, request: Request) -> Response:
        """Prometheus text exposition."""
        return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def _handle(self, request: Request, api: Literal["v3", "v2"]) -> Response:
        started = time.perf_counter()
        mchid = str(request.path_params["mchid"])[:32]
        trace_id = new_trace_id()
        log = _log.bind(trace_id=trace_id, api=api, mchid=mchid)
        self.metrics.received.labels(api).inc()
        try:
            body = await read_body(request, self.intake.settings.max_body_bytes)
            if api == "v3":
                # A plain dict once (ASGI names are lower case): the pipeline looks headers
                # up several times and keeps them for audit; Starlette's Headers scans its
                # list on every lookup.
                headers = {
                    name.decode("latin-1"): value.decode("latin-1")
                    for name, value in request.scope["headers"]
                }
                intake_result = await self.intake.receive_v3(mchid, headers, body)
                result, notification_id = intake_result.result, intake_result.notification_id
            else:
                result = await receive_v2(self.intake, mchid, request.headers, body)
                notification_id = None
        except Exception as exc:
            response = self._refuse(exc, api, log, trace_id)
        else:
            self._count_acknowledged(api, result)
            log.info(
                "notification_acknowledged",
                notification_id=notification_id,
                outcome=result.outcome.value if result else "replay_acked",
                events=len(result.event_ids) if result else 0,
            )
            response = (
                Response(status_code=204)
                if api == "v3"
                else Response(reply_xml(True), status_code=200, media_type=_XML)
            )
        response.headers["X-Trace-Id"] = trace_id
        self.metrics.latency.labels(api).observe(time.perf_counter() - started)
        return response

    def _count_acknowledged(self, api: str, result: RecordResult | None) -> None:
        outcome = result.outcome.value if result else RecordOutcome.DUPLICATE.value
        self.metrics.acknowledged.labels(api, outcome).inc()
        if result is None or result.outcome is RecordOutcome.DUPLICATE:
            self.metrics.duplicates.labels(api).inc()

    def _refuse(
        self, exc: Exception, api: str, log: structlog.typing.FilteringBoundLogger, trace_id: str
    ) -> Response:
        reply = reply_for(exc)
        if reply.status >= 500:
            self.metrics.failed.labels(api).inc()
            # Only the type: a driver's text may quote SQL parameters (personal data).
            log.error("notification_failed", status=reply.status, error=type(exc).__name__)
        else:
            self.metrics.rejected.labels(api, reply.code).inc()
            log.info(
                "notification_rejected",
                status=reply.status,
                reason=reply.code,
                detail=reply.message,
                serial=getattr(exc, "serial", None),
            )
        if api == "v2":
            return Response(v2_body(reply), status_code=reply.status, media_type=_XML)
        return Response(json_body(reply), status_code=reply.status, media_type=_JSON)


async def healthz(request: Request) -> Response:
    """Alive: the process answers."""
    return JSONResponse({"status": "ok"})
