"""The baseline: a notify handler written the way users write it today.

FastAPI + ``wechatpayv3``'s ``callback()`` (verify + decrypt) + Redis ``SET NX`` on the
notification id ("seen it") + SQLAlchemy (async, asyncpg) to mark the order paid and
write an event. Run with 2 uvicorn workers by ``bench_gateway.py``; configured by
environment variables ``BASELINE_*`` (written by the benchmark, never by users).

Its known flaws (issue #5) are kept on purpose: the Redis mark is set before the
database work (a failed first attempt is then skipped on every retry), and the
check-then-update is not conditional. It is a throughput baseline, not a model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from wechatpayv3 import WeChatPay, WeChatPayType

_env = os.environ
wxpay = WeChatPay(
    wechatpay_type=WeChatPayType.NATIVE,
    mchid=_env["BASELINE_MCHID"],
    private_key=Path(_env["BASELINE_PRIVATE_KEY_FILE"]).read_text(),
    cert_serial_no=_env["BASELINE_CERT_SERIAL"],
    appid=_env["BASELINE_APPID"],
    apiv3_key=Path(_env["BASELINE_APIV3_KEY_FILE"]).read_text().strip(),
    public_key=Path(_env["BASELINE_PUBLIC_KEY_FILE"]).read_text(),
    public_key_id=_env["BASELINE_PUBLIC_KEY_ID"],
)
engine = create_async_engine(_env["BASELINE_DATABASE_URL"], pool_size=10, max_overflow=10)
redis = Redis.from_url(_env["BASELINE_REDIS_URL"])
app = FastAPI()


@app.post("/notify")
async def notify(request: Request) -> Any:
    body = await request.body()
    result = wxpay.callback(dict(request.headers), body)
    if not result or result.get("event_type") != "TRANSACTION.SUCCESS":
        return JSONResponse({"code": "FAIL", "message": "验签失败"}, status_code=400)
    resource = result["resource"]
    if not await redis.set(f"baseline:notify:{result['id']}", 1, nx=True, ex=86400):
        return {"code": "SUCCESS", "message": "成功"}
    async with engine.begin() as connection:
        row = (
            await connection.execute(
                text("SELECT state FROM bl_orders WHERE out_trade_no = :no"),
                {"no": resource["out_trade_no"]},
            )
        ).first()
        if row is not None and row.state != "SUCCESS":
            await connection.execute(
                text("UPDATE bl_orders SET state = 'SUCCESS' WHERE out_trade_no = :no"),
                {"no": resource["out_trade_no"]},
            )
            await connection.execute(
                text("INSERT INTO bl_events (out_trade_no, payload) VALUES (:no, :payload)"),
                {"no": resource["out_trade_no"], "payload": json.dumps(resource)},
            )
    return {"code": "SUCCESS", "message": "成功"}
