"""The floor: uvicorn answering 204 to every POST without looking at it.

No verification, no Redis, no database: what the same uvicorn (httptools + uvloop,
same workers) costs per request on this machine. ``bench_gateway.py`` runs it in the
same way as the two real systems, so the table shows how much of each system's time
is the HTTP server itself, which no notify handler can go below.
"""

from __future__ import annotations

from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})
