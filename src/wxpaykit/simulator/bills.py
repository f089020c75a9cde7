"""Trade and fund-flow bills: apply, then download (protocol reference §7.7).

``GET /v3/bill/tradebill`` and ``/v3/bill/fundflowbill`` answer ``hash_type`` SHA1,
``hash_value`` (SHA-1 hex of the *decompressed* file) and a ``download_url`` on
``/v3/billdownload/file?token=...``. The download request is signed like any other;
the response is not (the file is not JSON), gzip-compressed when ``tar_type=GZIP``.

A bill for day D exists from D+1 (Beijing time, by the simulator clock); asking for
today gives 400 ``STATEMENT_CREATING``, for a future day 400 ``PARAM_ERROR``.
Amounts in the file are yuan; every value is prefixed with a back-tick, as in the
real files, so spreadsheets keep long numbers intact.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import secrets
from collections.abc import Iterable

from starlette.responses import Response
from starlette.routing import Route

from wxpaykit.simulator.clock import BEIJING
from wxpaykit.simulator.endpoint import V3Call, v3_endpoint
from wxpaykit.simulator.platform_errors import PlatformError, param_error
from wxpaykit.simulator.state import Order, Refund, SimulatorState

__all__ = ["fund_flow_bill", "routes", "trade_bill"]

_TRADE_HEADER = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,"
    "付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,"
    "退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注"
)
_TRADE_SUMMARY = (
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
)
_FUND_HEADER = (
    "记账时间,微信支付业务单号,资金流水单号,业务名称,业务类型,收支类型,收支金额（元）,账户结余（元）,"
    "资金变更提交申请人,备注,业务凭证号"
)
_FUND_SUMMARY = "资金流水总笔数,收入笔数,收入金额,支出笔数,支出金额"
_FEE_RATE = 0.006


def _yuan(fen: float) -> str:
    return f"{fen / 100:.2f}"


def _row(values: Iterable[object]) -> str:
    return ",".join(f"`{value}" for value in values)


def _on_day(timestamp: float | None, day: dt.date) -> bool:
    return timestamp is not None and dt.datetime.fromtimestamp(timestamp, BEIJING).date() == day


def _beijing(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def _order_columns(order: Order, at: float, trade_state: str) -> list[object]:
    """The trade bill's first twelve columns, shared by payment and refund rows."""
    return [
        _beijing(at),
        order.appid,
        order.mchid,
        order.sub_mchid or "0",
        "",  # device number (设备号)
        order.transaction_id,
        order.out_trade_no,
        order.openid,
        order.trade_type,
        trade_state,
        "OTHERS",  # paying bank (付款银行)
        order.currency,
    ]


def _day_events(
    state: SimulatorState, mchid: str, sub_mchid: str | None, day: dt.date
) -> tuple[list[Order], list[tuple[Refund, Order]]]:
    orders = [o for o in state.orders_of(mchid) if sub_mchid is None or o.sub_mchid == sub_mchid]
    paid = [o for o in orders if _on_day(o.success_time, day)]
    refunds = [
        (r, o)
        for o in orders
        for r in state.refunds_of_order(o.id)
        if r.status == "SUCCESS" and _on_day(r.success_time, day)
    ]
    return paid, refunds


def trade_bill(
    state: SimulatorState, mchid: str, day: dt.date, bill_type: str, sub_mchid: str | None = None
) -> bytes:
    """The trade bill (交易账单) of one merchant and day."""
    paid, refunds = _day_events(state, mchid, sub_mchid, day)
    lines = [_TRADE_HEADER]
    settled = fees = ordered = refunded = 0.0
    count = 0
    if bill_type in ("ALL", "SUCCESS"):
        for o in paid:
            fee = o.total * _FEE_RATE
            lines.append(
                _row(
                    [
                        *_order_columns(o, o.success_time or o.created_at, "SUCCESS"),
                        _yuan(o.total),
                        "0.00",
                        "0",
                        "0",
                        "0.00",
                        "0.00",
                        "",
                        "",
                        o.description,
                        o.attach,
                        f"{fee / 100:.5f}",
                        "0.60%",
                        _yuan(o.total),
                        "0.00",
                        "",
                    ]
                )
            )
            count += 1
            settled += o.total
            ordered += o.total
            fees += fee
    if bill_type in ("ALL", "REFUND"):
        for r, o in refunds:
            lines.append(
                _row(
                    [
                        *_order_columns(o, r.success_time or r.created_at, "REFUND"),
                        "0.00",
                        "0.00",
                        r.refund_id,
                        r.out_refund_no,
                        _yuan(r.refund),
                        "0.00",
                        "ORIGINAL",
                        "SUCCESS",
                        o.description,
                        o.attach,
                        "0.00000",
                        "0.60%",
                        "0.00",
                        _yuan(r.refund),
                        "",
                    ]
                )
            )
            count += 1
            refunded += r.refund
    lines.append(_TRADE_SUMMARY)
    lines.append(
        _row(
            [
                count,
                _yuan(settled),
                _yuan(refunded),
                "0.00",
                f"{fees / 100:.5f}",
                _yuan(ordered),
                _yuan(refunded),
            ]
        )
    )
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _fund_row(
    at: float,
    business_id: str,
    business: str,
    direction: str,
    amount: int,
    balance: float,
    voucher_no: str,
) -> str:
    """One fund-flow line: ``business`` (交易/退款) is both name and type; amounts in fen."""
    return _row(
        [
            _beijing(at),
            business_id,
            f"{business_id}01",  # fund flow number (资金流水单号)
            business,
            business,
            direction,
            _yuan(amount),
            _yuan(balance),
            "system",
            "",
            voucher_no,
        ]
    )


def fund_flow_bill(state: SimulatorState, mchid: str, day: dt.date, account_type: str) -> bytes:
    """The fund-flow bill (资金账单) of one merchant and day; only BASIC has entries."""
    lines = [_FUND_HEADER]
    income = expense = 0.0
    income_count = expense_count = 0
    balance = 0.0
    if account_type == "BASIC":
        paid, refunds = _day_events(state, mchid, None, day)
        for o in paid:
            balance += o.total
            income += o.total
            income_count += 1
            lines.append(
                _fund_row(
                    o.success_time or o.created_at,
                    o.transaction_id,
                    "交易",
                    "收入",
                    o.total,
                    balance,
                    o.out_trade_no,
                )
            )
        for r, _order in refunds:
            balance -= r.refund
            expense += r.refund
            expense_count += 1
            lines.append(
                _fund_row(
                    r.success_time or r.created_at,
                    r.refund_id,
                    "退款",
                    "支出",
                    r.refund,
                    balance,
                    r.out_refund_no,
                )
            )
    lines.append(_FUND_SUMMARY)
    lines.append(
        _row(
            [
                income_count + expense_count,
                income_count,
                _yuan(income),
                expense_count,
                _yuan(expense),
            ]
        )
    )
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _bill_day(call: V3Call) -> dt.date:
    text = call.query("bill_date")
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise param_error("bill_date", "账单日期格式应为 YYYY-MM-DD", location="query") from None
    today = dt.datetime.fromtimestamp(call.simulator.clock.now(), BEIJING).date()
    if day > today:
        raise param_error("bill_date", "账单日期不能晚于今天", location="query")
    if day == today:
        raise PlatformError(400, "STATEMENT_CREATING", "账单生成中，请次日10点后再下载")
    return day


def _answer(call: V3Call, content: bytes) -> dict[str, str]:
    tar_type = call.query("tar_type", required=False)
    if tar_type not in ("", "GZIP"):
        raise param_error("tar_type", "tar_type 只支持 GZIP", location="query")
    token = secrets.token_urlsafe(24)
    stored = gzip.compress(content, mtime=0) if tar_type == "GZIP" else content
    call.simulator.state.save_bill(token, call.merchant.mchid, stored, gzip=tar_type == "GZIP")
    return {
        "hash_type": "SHA1",
        "hash_value": hashlib.sha1(content).hexdigest(),  # noqa: S324 - the platform's choice
        "download_url": f"{call.base_url}/v3/billdownload/file?token={token}",
    }


async def _trade_bill(call: V3Call) -> dict[str, str]:
    day = _bill_day(call)
    bill_type = call.query("bill_type", required=False) or "ALL"
    if bill_type not in ("ALL", "SUCCESS", "REFUND"):
        raise param_error(
            "bill_type", "bill_type 取值应为 ALL、SUCCESS 或 REFUND", location="query"
        )
    sub_mchid = call.query("sub_mchid", required=False) or None
    return _answer(
        call, trade_bill(call.simulator.state, call.merchant.mchid, day, bill_type, sub_mchid)
    )


async def _fund_flow_bill(call: V3Call) -> dict[str, str]:
    day = _bill_day(call)
    account_type = call.query("account_type", required=False) or "BASIC"
    if account_type not in ("BASIC", "OPERATION", "FEES"):
        raise param_error(
            "account_type", "account_type 取值应为 BASIC、OPERATION 或 FEES", location="query"
        )
    return _answer(
        call, fund_flow_bill(call.simulator.state, call.merchant.mchid, day, account_type)
    )


async def _download(call: V3Call) -> Response:
    found = call.simulator.state.load_bill(call.query("token"))
    if found is None or found[0] != call.merchant.mchid:
        raise PlatformError(404, "RESOURCE_NOT_EXISTS", "账单文件不存在或已过期")
    _, content, _ = found
    # Not signed: the one APIv3 response the SDKs do not verify (§3.3).
    return Response(content=content, media_type="application/octet-stream")


def routes() -> list[Route]:
    """The bill routes."""
    return [
        Route("/v3/bill/tradebill", v3_endpoint(_trade_bill), methods=["GET"]),
        Route("/v3/bill/fundflowbill", v3_endpoint(_fund_flow_bill), methods=["GET"]),
        Route("/v3/billdownload/file", v3_endpoint(_download), methods=["GET"]),
    ]
