"""Fault injection for client tests: the next N matching requests fail on purpose.

``POST /sim/faults`` arms a fault ``{path, mode, count[, mchid][, method]}``; ``path``
is a prefix of the request path. Modes:

* ``FREQUENCY_LIMITED``: 429 ``{"code":"FREQUENCY_LIMITED","message":"频率超限"}``;
* ``SYSTEM_ERROR``: 500 ``{"code":"SYSTEM_ERROR","message":"系统错误"}``;
* ``DROP_CONNECTION``: response headers promise a body that never comes and the
  connection is closed (over a socket, httpx raises ``RemoteProtocolError``; in
  process through ``ASGITransport``, the same exception is raised to the caller).

APIv2 paths answer ``return_code=FAIL`` XML instead of JSON. This is plain ASGI
middleware so a dropped connection really drops, without a framework turning it into
a 500.
"""

from __future__ import annotations

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wxpaykit.core.signing import parse_authorization
from wxpaykit.core.v2 import build_xml
from wxpaykit.errors import MalformedMessageError
from wxpaykit.simulator.notifications import compact_json
from wxpaykit.simulator.responses import JSON_CONTENT_TYPE, new_request_id
from wxpaykit.simulator.service import Simulator

__all__ = ["CLIENT_CERTIFICATE_SCOPE_KEY", "FAULT_MODES", "FaultInjection", "MutualTlsMarker"]

#: Set in the ASGI scope of requests that came through the mutual-TLS listener.
CLIENT_CERTIFICATE_SCOPE_KEY = "wxpaykit.client_certificate_verified"

FAULT_MODES = {
    "FREQUENCY_LIMITED": (429, "频率超限"),
    "SYSTEM_ERROR": (500, "系统错误"),
    "DROP_CONNECTION": (0, ""),
}


def _claimed_mchid(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            try:
                return parse_authorization(value.decode("latin-1")).mchid
            except MalformedMessageError:
                return ""
    return ""


class FaultInjection:
    """ASGI middleware consuming armed faults before the app sees the request."""

    def __init__(self, app: ASGIApp, simulator: Simulator) -> None:
        self.app = app
        self.simulator = simulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or path.startswith("/sim/"):
            await self.app(scope, receive, send)
            return
        fault = self.simulator.state.take_fault(_claimed_mchid(scope), path, str(scope["method"]))
        if fault is None:
            await self.app(scope, receive, send)
            return
        await self._drain(receive)
        if fault.mode == "DROP_CONNECTION":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"1024")],
                }
            )
            raise httpx.RemoteProtocolError("simulated connection drop (wxpaykit sim fault)")
        status, message = FAULT_MODES[fault.mode]
        if path.startswith("/v3/"):
            body = compact_json({"code": fault.mode, "message": message})
            content_type = JSON_CONTENT_TYPE.encode()
        else:
            body = build_xml({"return_code": "FAIL", "return_msg": f"{fault.mode} {message}"})
            content_type = b"text/xml; charset=utf-8"
        start: Message = {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                (b"request-id", new_request_id(status * 1000 + 1).encode()),
            ],
        }
        await send(start)
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _drain(receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return


class MutualTlsMarker:
    """Wraps the app on the mutual-TLS listener: its TLS layer already demanded and
    verified a client certificate, which the ASGI scope cannot show, so say so."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {**scope, CLIENT_CERTIFICATE_SCOPE_KEY: True}
        await self.app(scope, receive, send)
