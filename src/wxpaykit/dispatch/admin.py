"""Admin API for deliveries: a Starlette router the gateway mounts (e.g. at ``/admin``).

::

    GET  /events?status=dead&sink=shop&since=…&until=…&limit=50&before_id=…
    GET  /events/{event_id}
    POST /events/{event_id}/replay          {"sink": "shop"}            (optional body)
    POST /replay                            {"sink": "shop", "since": "…", "until": "…"}

Every request needs ``Authorization: Bearer <token>`` (compared in constant time).
Errors are ``{"code", "message"}`` with the matching status.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router

from wxpaykit.dispatch.clock import Clock, SystemClock
from wxpaykit.dispatch.history import list_deliveries, replay, show_event
from wxpaykit.storage.events import DeliveryStatus

__all__ = ["admin_router"]

_STATUSES = {DeliveryStatus.PENDING, DeliveryStatus.DELIVERED, DeliveryStatus.DEAD}


class _BadRequest(Exception):
    pass


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def _time_ms(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise _BadRequest(f"{name} must be an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def _int(value: str | None, name: str, default: int | None) -> int | None:
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise _BadRequest(f"{name} must be an integer") from None


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise _BadRequest("body must be a JSON object") from None
    if not isinstance(body, dict):
        raise _BadRequest("body must be a JSON object")
    return body


def admin_router(engine: AsyncEngine, *, token: str, clock: Clock | None = None) -> Router:
    """The routes above, guarded by ``token``."""
    if len(token) < 16:
        raise ValueError("the admin token must have at least 16 characters")
    expected = token.encode()
    now = clock or SystemClock()

    def authorised(request: Request) -> bool:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), expected)

    async def guarded(request: Request, handler: Any) -> Response:
        if not authorised(request):
            return _error(401, "UNAUTHORIZED", "a valid bearer token is required")
        try:
            return await handler(request)  # type: ignore[no-any-return]
        except _BadRequest as exc:
            return _error(400, "INVALID_REQUEST", str(exc))

    async def list_events(request: Request) -> Response:
        query = request.query_params
        status = query.get("status")
        if status is not None and status not in _STATUSES:
            raise _BadRequest("status must be pending, delivered or dead")
        rows = await list_deliveries(
            engine,
            status=status,
            sink=query.get("sink"),
            since_ms=_time_ms(query.get("since"), "since"),
            until_ms=_time_ms(query.get("until"), "until"),
            limit=_int(query.get("limit"), "limit", 50) or 50,
            before_id=_int(query.get("before_id"), "before_id", None),
        )
        return JSONResponse({"deliveries": [row.as_dict() for row in rows]})

    async def show(request: Request) -> Response:
        detail = await show_event(engine, request.path_params["event_id"])
        if detail is None:
            return _error(404, "NOT_FOUND", "no such event")
        return JSONResponse(detail.as_dict())

    async def replay_one(request: Request) -> Response:
        body = await _json_body(request)
        event_id = request.path_params["event_id"]
        if await show_event(engine, event_id) is None:
            return _error(404, "NOT_FOUND", "no such event")
        count = await replay(engine, now_ms=now.now_ms(), event_id=event_id, sink=body.get("sink"))
        return JSONResponse({"replayed": count})

    async def replay_many(request: Request) -> Response:
        body = await _json_body(request)
        sink, since, until = body.get("sink"), body.get("since"), body.get("until")
        if sink is None and since is None and until is None:
            raise _BadRequest("give sink and/or since/until")
        count = await replay(
            engine,
            now_ms=now.now_ms(),
            sink=sink,
            since_ms=_time_ms(since, "since"),
            until_ms=_time_ms(until, "until"),
        )
        return JSONResponse({"replayed": count})

    def route(path: str, handler: Any, method: str) -> Route:
        async def endpoint(request: Request) -> Response:
            return await guarded(request, handler)

        return Route(path, endpoint, methods=[method])

    return Router(
        routes=[
            route("/events", list_events, "GET"),
            route("/events/{event_id}", show, "GET"),
            route("/events/{event_id}/replay", replay_one, "POST"),
            route("/replay", replay_many, "POST"),
        ]
    )
