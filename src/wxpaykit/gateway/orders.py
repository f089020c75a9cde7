"""The orders API: ``POST /api/orders`` (register + prepay) and ``GET /api/orders/{no}``.

Protected by a bearer token (``api_token`` in the settings); without one configured
the API is disabled. The order is written to the ledger *before* prepay, so a payment
notification can never arrive for an order the ledger does not know; creating the same
order twice with the same fields is idempotent (the ledger's rule), and so is prepay
with the same parameters (the platform returns the same ``prepay_id``, §7.1).
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from wxpaykit.errors import ApiError, ConfigurationError, StorageError, TransportError
from wxpaykit.gateway.settings import GatewaySettings, MerchantSettings
from wxpaykit.storage.base import Ledger, OrderRecord

__all__ = ["CreateOrder", "order_routes"]

if TYPE_CHECKING:
    from wxpaykit.client.async_client import AsyncWeChatPay

_log = structlog.get_logger("wxpaykit.gateway.orders")


class CreateOrder(BaseModel):
    """The body of ``POST /api/orders``; amounts in fen."""

    model_config = ConfigDict(extra="forbid")

    mchid: str | None = None
    out_trade_no: str | None = Field(default=None, min_length=6, max_length=32)
    description: str = Field(min_length=1, max_length=127)
    total: int = Field(ge=1)
    currency: str = "CNY"
    trade_type: Literal["JSAPI", "APP", "H5", "NATIVE"] = "NATIVE"
    appid: str | None = None
    payer_openid: str | None = None
    payer_client_ip: str | None = None
    attach: str | None = Field(default=None, max_length=128)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def order_routes(
    settings: GatewaySettings, ledger: Ledger, clients: Mapping[str, AsyncWeChatPay]
) -> list[Route]:
    """Routes of the orders API; ``clients`` maps mchid → ``AsyncWeChatPay``."""

    def authorised(request: Request) -> JSONResponse | None:
        if not settings.api_token:
            return _error(403, "API_DISABLED", "set api_token to enable the orders API")
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), settings.api_token.encode()
        ):
            response = _error(401, "UNAUTHORIZED", "a valid bearer token is required")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        return None

    def merchant_for(mchid: str | None) -> MerchantSettings | JSONResponse:
        if mchid is None and len(settings.merchants) == 1:
            return settings.merchants[0]
        merchant = settings.merchant(mchid or "")
        if merchant is None:
            return _error(404, "UNKNOWN_MERCHANT", "name a configured mchid")
        return merchant

    async def create(request: Request) -> Response:
        refusal = authorised(request)
        if refusal is not None:
            return refusal
        try:
            order = CreateOrder.model_validate_json(await request.body())
        except ValidationError as exc:
            fields = ", ".join(".".join(map(str, e["loc"])) for e in exc.errors()[:5])
            return _error(400, "PARAM_ERROR", f"invalid order ({fields})")
        merchant = merchant_for(order.mchid)
        if isinstance(merchant, JSONResponse):
            return merchant
        appid = order.appid or min(merchant.appids, default=None)
        if not merchant.allows_appid(appid):
            return _error(400, "APPID_MISMATCH", "appid is not one of the merchant's apps")
        client = clients.get(merchant.mchid)
        if client is None:
            return _error(503, "NO_CLIENT", "merchant has no private_key_file for prepay")
        out_trade_no = order.out_trade_no or _new_out_trade_no()
        try:
            await ledger.create_order(
                OrderRecord(
                    mchid=merchant.mchid,
                    out_trade_no=out_trade_no,
                    appid=appid,
                    description=order.description,
                    total=order.total,
                    currency=order.currency,
                    state="NOTPAY",
                )
            )
        except StorageError:
            return _error(500, "FAIL", "storage unavailable, retry later")
        except (ValueError, ConfigurationError) as exc:
            return _error(409, "ORDER_CONFLICT", str(exc)[:200])
        try:
            result = await client.transactions.prepay(
                order.trade_type,
                **_prepay_fields(settings, merchant, order, out_trade_no, appid),
            )
        except ApiError as exc:
            return _error(502, exc.code, exc.message[:200])
        except TransportError as exc:
            return _error(504, "PLATFORM_UNREACHABLE", str(exc)[:200])
        except ValueError as exc:
            return _error(400, "PARAM_ERROR", str(exc)[:200])
        _log.info("order_created", mchid=merchant.mchid, out_trade_no=out_trade_no)
        return JSONResponse(
            {
                "mchid": merchant.mchid,
                "out_trade_no": out_trade_no,
                "trade_type": order.trade_type,
                "prepay_id": result.prepay_id,
                "code_url": result.code_url,
                "h5_url": result.h5_url,
                "pay_params": result.pay_params,
            },
            status_code=201,
        )

    async def show(request: Request) -> Response:
        refusal = authorised(request)
        if refusal is not None:
            return refusal
        merchant = merchant_for(request.query_params.get("mchid"))
        if isinstance(merchant, JSONResponse):
            return merchant
        try:
            order = await ledger.get_order(merchant.mchid, request.path_params["out_trade_no"])
        except StorageError:
            return _error(500, "FAIL", "storage unavailable, retry later")
        if order is None:
            return _error(404, "ORDER_NOT_EXIST", "no such order")
        return Response(
            json.dumps(asdict(order), ensure_ascii=False).encode(),
            media_type="application/json",
        )

    return [
        Route("/api/orders", create, methods=["POST"]),
        Route("/api/orders/{out_trade_no}", show, methods=["GET"]),
    ]


def _new_out_trade_no() -> str:
    # 32 characters at most (§7.1): a millisecond timestamp and random hex.
    return f"{int(time.time() * 1000)}{secrets.token_hex(6)}"


def _prepay_fields(
    settings: GatewaySettings,
    merchant: MerchantSettings,
    order: CreateOrder,
    out_trade_no: str,
    appid: str | None,
) -> dict[str, Any]:
    from wxpaykit.api.transactions import Amount, H5Info, SceneInfo

    fields: dict[str, Any] = {
        "description": order.description,
        "out_trade_no": out_trade_no,
        "notify_url": settings.notify_url(merchant),
        "amount": Amount(total=order.total, currency=order.currency),
        "appid": appid,
        "mchid": merchant.mchid,
    }
    if order.payer_openid:
        fields["payer_openid"] = order.payer_openid
    if order.attach:
        fields["attach"] = order.attach
    if order.trade_type == "H5":
        fields["scene_info"] = SceneInfo(
            payer_client_ip=order.payer_client_ip or "127.0.0.1", h5_info=H5Info(type="Wap")
        )
    return fields
