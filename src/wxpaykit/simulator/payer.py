"""The payer: ``POST /sim/pay`` for programs and a small cashier page for people.

An order is found by ``prepay_id``, by ``code_url`` (``weixin://wxpay/bizpayurl?pr=...``)
or by ``out_trade_no`` with ``mchid`` (and ``sub_mchid`` for partners). ``outcome``
``success`` pays it and queues TRANSACTION.SUCCESS; ``fail`` leaves it PAYERROR (the
platform announces only successful payments, §6.1).

The cashier page (``GET /sim/cashier?prepay_id=...`` or ``?pr=...``) is what an
``h5_url`` opens, and what a demo links a ``code_url`` to: the order and a Pay button.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from wxpaykit.simulator.admin import read_object
from wxpaykit.simulator.endpoint import simulator_of
from wxpaykit.simulator.notifications import transaction_resource
from wxpaykit.simulator.platform_errors import PlatformError
from wxpaykit.simulator.responses import error_response
from wxpaykit.simulator.service import Simulator
from wxpaykit.simulator.state import Order

__all__ = ["find_order", "routes"]


def _code_token(code_url: str) -> str:
    values = parse_qs(urlsplit(code_url).query).get("pr", [])
    return values[0] if values else ""


def find_order(simulator: Simulator, query: dict[str, str]) -> Order:
    """The order named by ``prepay_id``, ``code_url``/``pr`` or ``mchid`` + ``out_trade_no``."""
    state = simulator.state
    order: Order | None = None
    if query.get("prepay_id"):
        order = state.order_by_prepay_id(query["prepay_id"])
    elif query.get("code_url") or query.get("pr"):
        order = state.order_by_code_token(query.get("pr") or _code_token(query["code_url"]))
    elif query.get("out_trade_no") and query.get("mchid"):
        order = state.order_by_out_trade_no(
            query["mchid"], query.get("sub_mchid", ""), query["out_trade_no"]
        )
    else:
        raise PlatformError(
            400, "PARAM_ERROR", "need prepay_id, code_url, or mchid with out_trade_no"
        )
    if order is None:
        raise PlatformError(404, "ORDER_NOT_EXIST", "订单不存在")
    return order


def _outcome(value: Any) -> bool:
    if value not in ("success", "fail"):
        raise PlatformError(400, "PARAM_ERROR", "outcome must be success or fail")
    return bool(value == "success")


async def _pay(request: Request) -> Response:
    simulator = simulator_of(request)
    try:
        doc = await read_object(request)
        order = find_order(simulator, {k: str(v) for k, v in doc.items() if isinstance(v, str)})
        openid = doc.get("openid")
        paid = simulator.pay(
            order,
            success=_outcome(doc.get("outcome", "success")),
            openid=openid if isinstance(openid, str) else None,
        )
    except PlatformError as error:
        return error_response(error)
    return JSONResponse(transaction_resource(paid))


_PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>微信支付 · 模拟收银台</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:sans-serif;max-width:28rem;margin:3rem auto;text-align:center}}
.amount{{font-size:2.5rem;margin:1rem 0}}button{{font-size:1.2rem;padding:.6rem 2rem;margin:.3rem;
border:0;border-radius:.4rem;color:#fff;background:#07c160}}button.fail{{background:#999}}</style>
</head><body><p>wxpaykit simulator — no real money moves</p>
<h1>{description}</h1><p>商户号 {mchid} · 订单号 {out_trade_no}</p>
<p class="amount">¥{yuan}</p><p>状态：{state}</p>{form}</body></html>"""

_FORM = """<form method="post" action="{action}">
<input type="hidden" name="prepay_id" value="{prepay_id}">
<button name="outcome" value="success">立即支付 Pay</button>
<button class="fail" name="outcome" value="fail">支付失败 Fail</button></form>"""


def _render(request: Request, order: Order, note: str = "") -> HTMLResponse:
    form = ""
    if order.trade_state in ("NOTPAY", "PAYERROR"):
        form = _FORM.format(
            action=html.escape(str(request.url_for("cashier_pay"))),
            prepay_id=html.escape(order.prepay_id),
        )
    page = _PAGE.format(
        description=html.escape(order.description),
        mchid=html.escape(order.sub_mchid or order.mchid),
        out_trade_no=html.escape(order.out_trade_no),
        yuan=f"{order.total / 100:.2f}",
        state=html.escape(order.trade_state) + (f" — {html.escape(note)}" if note else ""),
        form=form,
    )
    return HTMLResponse(page)


async def _cashier(request: Request) -> Response:
    simulator = simulator_of(request)
    try:
        order = find_order(simulator, dict(request.query_params))
    except PlatformError as error:
        return HTMLResponse(f"<p>{html.escape(error.message)}</p>", status_code=error.status)
    return _render(request, order)


async def _cashier_pay(request: Request) -> Response:
    simulator = simulator_of(request)
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8")).items()}
    try:
        order = find_order(simulator, {"prepay_id": form.get("prepay_id", "")})
        order = simulator.pay(order, success=_outcome(form.get("outcome")))
    except PlatformError as error:
        return HTMLResponse(f"<p>{html.escape(error.message)}</p>", status_code=error.status)
    return _render(request, order, "支付成功" if order.trade_state == "SUCCESS" else "支付失败")


def routes() -> list[Route]:
    """The payer's routes."""
    return [
        Route("/sim/pay", _pay, methods=["POST"]),
        Route("/sim/cashier", _cashier, methods=["GET"], name="cashier"),
        Route("/sim/cashier", _cashier_pay, methods=["POST"], name="cashier_pay"),
    ]
