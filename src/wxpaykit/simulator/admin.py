"""The ``/sim`` control API: merchants, chaos, faults, notifications, refund outcomes.

Unauthenticated by design: the simulator is a local test tool and must never face the
internet. Errors use the platform's ``{code, message}`` shape.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from wxpaykit.simulator.chaos import FORGERIES, ChaosSettings
from wxpaykit.simulator.clock import format_rfc3339
from wxpaykit.simulator.endpoint import simulator_of
from wxpaykit.simulator.faults import FAULT_MODES
from wxpaykit.simulator.merchants import Merchant, MerchantMode
from wxpaykit.simulator.platform_errors import PlatformError
from wxpaykit.simulator.responses import error_response
from wxpaykit.simulator.service import Simulator
from wxpaykit.simulator.state import Attempt, Delivery, Fault

__all__ = ["bundle_document", "delivery_document", "routes"]


def _json_response(document: Any, status: int = 200) -> Response:
    return JSONResponse(document, status_code=status)


async def read_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object ({} when empty)."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        document = json.loads(raw)
    except ValueError:
        raise PlatformError(400, "PARAM_ERROR", "请求体不是合法的JSON") from None
    if not isinstance(document, dict):
        raise PlatformError(400, "PARAM_ERROR", "请求体必须是JSON对象")
    return document


Handler = Callable[[Request, Simulator], Awaitable[Response]]


def _endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request, simulator_of(request))
        except PlatformError as error:
            return error_response(error)
        except ValueError as error:
            return error_response(PlatformError(400, "PARAM_ERROR", str(error)))

    return endpoint


def _merchant_or_404(simulator: Simulator, mchid: str) -> Merchant:
    merchant = simulator.merchant(mchid)
    if merchant is None:
        raise PlatformError(404, "MCH_NOT_EXISTS", f"商户号 {mchid} 不存在")
    return merchant


def bundle_document(request: Request, merchant: Merchant) -> dict[str, Any]:
    """The merchant bundle, with the addresses the caller reached us at."""
    simulator = simulator_of(request)
    bundle = merchant.bundle(
        authority_pem=simulator.authority.certificate_pem,
        api_base_url=str(request.base_url).rstrip("/"),
        tls_base_url=simulator.tls_base_url,
    )
    return bundle.to_json()


async def _create_merchant(request: Request, simulator: Simulator) -> Response:
    doc = await read_object(request)
    appids = doc.get("appids")
    if appids is not None and (
        not isinstance(appids, list) or not all(isinstance(a, str) and a for a in appids)
    ):
        raise PlatformError(400, "PARAM_ERROR", "appids must be a list of strings")
    mode = str(doc.get("mode", "certificate"))
    if mode not in {m.value for m in MerchantMode}:
        raise PlatformError(400, "PARAM_ERROR", "mode must be certificate, public_key or migration")
    mchid = doc.get("mchid")
    if mchid is not None and (not isinstance(mchid, str) or not mchid.isdigit()):
        raise PlatformError(400, "PARAM_ERROR", "mchid must be a string of digits")
    merchant = simulator.create_merchant(mode, mchid=mchid, appids=appids)
    return _json_response(bundle_document(request, merchant), 201)


async def _list_merchants(request: Request, simulator: Simulator) -> Response:
    merchants = [simulator.merchant(mchid) for mchid in simulator.state.merchant_ids()]
    return _json_response(
        {
            "merchants": [
                {
                    "mchid": m.mchid,
                    "mode": m.mode.value,
                    "appids": m.appids,
                    "serial_no": m.serial_no,
                }
                for m in merchants
                if m is not None
            ]
        }
    )


async def _get_bundle(request: Request, simulator: Simulator) -> Response:
    merchant = _merchant_or_404(simulator, request.path_params["mchid"])
    return _json_response(bundle_document(request, merchant))


async def _update_merchant(request: Request, simulator: Simulator) -> Response:
    merchant = _merchant_or_404(simulator, request.path_params["mchid"])
    doc = await read_object(request)
    if "public_key_fraction" in doc:
        value = doc["public_key_fraction"]
        if value is not None and not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
            raise PlatformError(400, "PARAM_ERROR", "public_key_fraction must be null or 0..1")
        merchant.public_key_fraction = None if value is None else float(value)
    if "refund_auto_complete" in doc:
        merchant.refund_auto_complete = bool(doc["refund_auto_complete"])
    simulator.save_merchant(merchant)
    return _json_response(
        {
            "mchid": merchant.mchid,
            "public_key_fraction": merchant.public_key_fraction,
            "refund_auto_complete": merchant.refund_auto_complete,
        }
    )


async def _rotate(request: Request, simulator: Simulator) -> Response:
    merchant = _merchant_or_404(simulator, request.path_params["mchid"])
    serial = simulator.rotate_certificate(merchant)
    return _json_response(
        {
            "serial_no": serial,
            "platform_certificates": [
                {"serial_no": c.serial_no, "pem": c.certificate_pem.decode()}
                for c in merchant.platform_certificates
            ],
        },
        201,
    )


def _scope(request: Request, doc: dict[str, Any] | None = None) -> str:
    mchid = (doc or {}).pop("mchid", None) or request.query_params.get("mchid") or "*"
    return str(mchid)


async def _put_chaos(request: Request, simulator: Simulator) -> Response:
    doc = await read_object(request)
    scope = _scope(request, doc)
    settings = ChaosSettings.from_json(doc)
    simulator.state.save_chaos(scope, settings.to_json())
    return _json_response({"scope": scope, **settings.to_json()})


async def _get_chaos(request: Request, simulator: Simulator) -> Response:
    scope = _scope(request)
    doc = simulator.state.load_chaos(scope) or ChaosSettings().to_json()
    return _json_response({"scope": scope, **doc})


async def _delete_chaos(request: Request, simulator: Simulator) -> Response:
    simulator.state.delete_chaos(_scope(request))
    return Response(status_code=204)


def _fault_document(fault: Fault) -> dict[str, Any]:
    return {
        "id": fault.id,
        "mchid": fault.mchid,
        "path": fault.path,
        "method": fault.method,
        "mode": fault.mode,
        "remaining": fault.remaining,
    }


async def _add_fault(request: Request, simulator: Simulator) -> Response:
    doc = await read_object(request)
    mode = str(doc.get("mode", ""))
    if mode not in FAULT_MODES:
        raise PlatformError(400, "PARAM_ERROR", f"mode must be one of {', '.join(FAULT_MODES)}")
    path = doc.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        raise PlatformError(400, "PARAM_ERROR", "path must be a request path such as /v3/pay/")
    count = doc.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise PlatformError(400, "PARAM_ERROR", "count must be a positive integer")
    fault = simulator.state.add_fault(
        Fault(
            mchid=str(doc.get("mchid") or ""),
            path=path,
            method=str(doc.get("method") or "").upper(),
            mode=mode,
            remaining=count,
        )
    )
    return _json_response(_fault_document(fault), 201)


async def _list_faults(request: Request, simulator: Simulator) -> Response:
    return _json_response({"faults": [_fault_document(f) for f in simulator.state.faults()]})


async def _clear_faults(request: Request, simulator: Simulator) -> Response:
    simulator.state.clear_faults()
    return Response(status_code=204)


def _attempt_document(attempt: Attempt) -> dict[str, Any]:
    return {
        "attempt": attempt.number,
        "time": format_rfc3339(attempt.at),
        "at": attempt.at,
        "status": attempt.status_code,
        "latency_ms": attempt.latency_ms,
        "response_body": attempt.response_body,
        "error": attempt.error,
        "chaos": attempt.chaos or None,
        "forged": attempt.forged,
        "acked": attempt.acked,
        "serial": attempt.serial,
    }


def delivery_document(simulator: Simulator, delivery: Delivery) -> dict[str, Any]:
    """One delivery and its attempts, as listed by ``GET /sim/notifications``."""
    return {
        "id": delivery.id,
        "notification_id": delivery.notification_id,
        "mchid": delivery.mchid,
        "api": delivery.api,
        "event_type": delivery.event_type,
        "notify_url": delivery.notify_url,
        "status": delivery.status,
        "attempt_count": delivery.attempts,
        "next_attempt_at": (
            format_rfc3339(delivery.next_at) if delivery.status == "pending" else None
        ),
        "chaos": delivery.marks,
        "forged_attempts": sum(
            1 for a in simulator.state.attempts_of(delivery.id) if a.chaos in FORGERIES
        ),
        "attempts": [_attempt_document(a) for a in simulator.state.attempts_of(delivery.id)],
    }


async def _notifications(request: Request, simulator: Simulator) -> Response:
    mchid = request.query_params.get("mchid")
    status = request.query_params.get("status")
    found = [
        delivery_document(simulator, d)
        for d in simulator.state.deliveries(mchid)
        if status is None or d.status == status
    ]
    return _json_response({"notifications": found})


async def _complete_refund(request: Request, simulator: Simulator) -> Response:
    doc = await read_object(request)
    mchid = str(doc.get("mchid", ""))
    refund = simulator.state.refund_by_out_refund_no(
        mchid, str(doc.get("sub_mchid", "")), str(doc.get("out_refund_no", ""))
    )
    if refund is None:
        raise PlatformError(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
    completed = simulator.complete_refund(refund, str(doc.get("outcome", "SUCCESS")))
    return _json_response({"refund_id": completed.refund_id, "status": completed.status})


async def _run_due(request: Request, simulator: Simulator) -> Response:
    handled = await simulator.run_due()
    return _json_response({"handled": handled})


async def _health(request: Request, simulator: Simulator) -> Response:
    return _json_response({"status": "ok", "time_scale": simulator.time_scale})


def routes() -> list[Route]:
    """The ``/sim`` control routes (the payer's routes live in ``payer``)."""
    return [
        Route("/sim/health", _endpoint(_health), methods=["GET"]),
        Route("/sim/merchants", _endpoint(_create_merchant), methods=["POST"]),
        Route("/sim/merchants", _endpoint(_list_merchants), methods=["GET"]),
        Route("/sim/merchants/{mchid}", _endpoint(_get_bundle), methods=["GET"]),
        Route("/sim/merchants/{mchid}", _endpoint(_update_merchant), methods=["PATCH"]),
        Route("/sim/merchants/{mchid}/rotate-certificate", _endpoint(_rotate), methods=["POST"]),
        Route("/sim/chaos", _endpoint(_put_chaos), methods=["PUT"]),
        Route("/sim/chaos", _endpoint(_get_chaos), methods=["GET"]),
        Route("/sim/chaos", _endpoint(_delete_chaos), methods=["DELETE"]),
        Route("/sim/faults", _endpoint(_add_fault), methods=["POST"]),
        Route("/sim/faults", _endpoint(_list_faults), methods=["GET"]),
        Route("/sim/faults", _endpoint(_clear_faults), methods=["DELETE"]),
        Route("/sim/notifications", _endpoint(_notifications), methods=["GET"]),
        Route("/sim/refunds/complete", _endpoint(_complete_refund), methods=["POST"]),
        Route("/sim/run-due", _endpoint(_run_due), methods=["POST"]),
    ]
