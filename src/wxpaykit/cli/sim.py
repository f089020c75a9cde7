"""``wxpaykit sim``: run the local WeChat Pay simulator and drive it from a shell.

Heavy imports (uvicorn, starlette) happen inside the commands, so ``wxpaykit --help``
stays fast and works without the ``gateway`` extra.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="sim",
    help="A faithful local WeChat Pay: test without real money.",
    invoke_without_command=True,
    pretty_exceptions_show_locals=False,
)
merchant_app = typer.Typer(help="Provision simulated merchants.", no_args_is_help=True)
order_app = typer.Typer(help="Act as a merchant: signed APIv3 orders.", no_args_is_help=True)
chaos_app = typer.Typer(help="Make the simulator misbehave on purpose.", no_args_is_help=True)
app.add_typer(merchant_app, name="merchant")
app.add_typer(order_app, name="order")
app.add_typer(chaos_app, name="chaos")

DEFAULT_URL = "http://127.0.0.1:8090"
UrlOption = Annotated[str, typer.Option("--url", help="Where `wxpaykit sim` listens.")]


def _echo(text: str) -> None:
    typer.echo(text)
    sys.stdout.flush()  # subprocess readers wait for whole lines


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _call(method: str, url: str, *, json_body: Any = None) -> Any:
    import httpx

    try:
        response = httpx.request(method, url, json=json_body, timeout=30, trust_env=False)
    except httpx.HTTPError as exc:
        _fail(f"cannot reach the simulator at {url}: {exc}")
        raise  # unreachable; _fail exits
    if response.status_code >= 400:
        _fail(f"{response.status_code} {response.text}")
    return response.json() if response.content else None


@app.callback()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="API port (0 picks a free one).")] = 8090,
    tls_port: Annotated[
        int,
        typer.Option(help="APIv2 mutual-TLS port (0 picks a free one, -1 disables it)."),
    ] = 0,
    data: Annotated[Path, typer.Option(help="SQLite file holding the state.")] = Path("sim.db"),
    time_scale: Annotated[
        float, typer.Option(help="Multiply platform delays (retries, refunds).")
    ] = 1.0,
    ack_timeout: Annotated[float, typer.Option(help="Seconds a notify_url has to answer.")] = 5.0,
    refund_delay: Annotated[
        float, typer.Option(help="Platform seconds until a refund succeeds.")
    ] = 10.0,
    allow_any_notify_url: Annotated[
        bool, typer.Option(help="Accept http notify_url on any host, not only loopback.")
    ] = False,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Serve the simulator (when no subcommand is given)."""
    if ctx.invoked_subcommand is not None:
        return
    if time_scale <= 0:
        _fail("--time-scale must be positive")
    import asyncio

    from wxpaykit.simulator.config import SimulatorConfig
    from wxpaykit.simulator.server import SimulatorServer
    from wxpaykit.simulator.service import Simulator

    simulator = Simulator(
        SimulatorConfig(
            data_path=data,
            time_scale=time_scale,
            ack_timeout_seconds=ack_timeout,
            refund_delay_seconds=refund_delay,
            allow_any_notify_url=allow_any_notify_url,
        )
    )

    def announce(server: SimulatorServer) -> None:
        _echo(f"wxpaykit sim: API on {server.base_url} (data {data}, time scale {time_scale:g})")
        if server.tls_base_url:
            _echo(f"wxpaykit sim: APIv2 mutual TLS (secapi) on {server.tls_base_url}")

    server = SimulatorServer(
        simulator,
        host=host,
        port=port,
        tls_port=None if tls_port < 0 else tls_port,
        log_level=log_level,
        on_started=announce,
    )
    try:
        asyncio.run(server.serve())
    except KeyboardInterrupt:
        pass
    finally:
        simulator.close()
    if not server.base_url:
        _fail(f"could not listen on {host}:{port}")


@merchant_app.command("create")
def merchant_create(
    out: Annotated[
        Path, typer.Option(help="Directory for the portal-style files and bundle.json.")
    ],
    mode: Annotated[
        str, typer.Option(help="certificate, public_key or migration.")
    ] = "certificate",
    url: UrlOption = DEFAULT_URL,
    mchid: Annotated[str | None, typer.Option(help="Choose the merchant id (digits).")] = None,
) -> None:
    """Create a merchant and write its bundle (keys, certificates, APIv3/APIv2 keys)."""
    from wxpaykit.simulator.bundle import MerchantBundle

    body: dict[str, Any] = {"mode": mode}
    if mchid:
        body["mchid"] = mchid
    bundle = MerchantBundle.from_json(
        _call("POST", f"{url.rstrip('/')}/sim/merchants", json_body=body)
    )
    bundle.write(out)
    _echo(f"mchid {bundle.mchid} ({bundle.mode.value}), appid {bundle.appid}")
    _echo(f"merchant certificate serial {bundle.merchant_serial_no}")
    if bundle.public_key_id:
        _echo(f"WeChat Pay public key id {bundle.public_key_id}")
    for serial, _ in bundle.platform_certificates:
        _echo(f"platform certificate {serial}")
    _echo(f"wrote {out}/ (bundle.json holds the APIv3 and APIv2 keys)")


@order_app.command("create")
def order_create(
    bundle_dir: Annotated[
        Path, typer.Option("--bundle", help="Directory written by `merchant create`.")
    ],
    notify_url: Annotated[str, typer.Option(help="Where the simulator sends the notification.")],
    amount: Annotated[int, typer.Option(help="Amount in fen.")] = 1,
    trade_type: Annotated[str, typer.Option("--type", help="native, jsapi, app or h5.")] = "native",
    out_trade_no: Annotated[str | None, typer.Option(help="Defaults to a random one.")] = None,
    description: Annotated[str, typer.Option(help="Goods description.")] = "wxpaykit sim order",
    openid: Annotated[
        str, typer.Option(help="Payer openid (jsapi).")
    ] = "oSimulatedPayer000000000000",
    url: Annotated[
        str | None, typer.Option("--url", help="Defaults to the bundle's api_base_url.")
    ] = None,
) -> None:
    """Place an order with a signed APIv3 request and verify the signed answer."""
    import datetime as dt

    import httpx

    from wxpaykit.core.verification import verify_signature
    from wxpaykit.errors import WxPayKitError
    from wxpaykit.simulator.bundle import MerchantBundle
    from wxpaykit.testing.signed_requests import signed_headers

    bundle = MerchantBundle.read(bundle_dir)
    base = (url or bundle.api_base_url or DEFAULT_URL).rstrip("/")
    order: dict[str, Any] = {
        "appid": bundle.appid,
        "mchid": bundle.mchid,
        "description": description,
        "out_trade_no": out_trade_no or uuid.uuid4().hex,
        "notify_url": notify_url,
        "amount": {"total": amount, "currency": "CNY"},
    }
    if trade_type == "jsapi":
        order["payer"] = {"openid": openid}
    if trade_type == "h5":
        order["scene_info"] = {"payer_client_ip": "127.0.0.1", "h5_info": {"type": "Wap"}}
    body = json.dumps(order, ensure_ascii=False).encode("utf-8")
    target = f"{base}/v3/pay/transactions/{trade_type}"
    headers = signed_headers(
        bundle, "POST", target, body, wechatpay_serial=bundle.public_key_id or None
    )
    try:
        response = httpx.post(target, content=body, headers=headers, timeout=30, trust_env=False)
    except httpx.HTTPError as exc:
        _fail(f"cannot reach {target}: {exc}")
        return
    if response.status_code != 200:
        _fail(f"{response.status_code} {response.text}")
    try:
        verify_signature(
            response.headers, response.content, bundle.trusted_keys(), now=dt.datetime.now(dt.UTC)
        )
    except WxPayKitError as exc:
        _fail(f"the answer's signature does not verify: {exc}")
    _echo(
        json.dumps({"out_trade_no": order["out_trade_no"], **response.json()}, ensure_ascii=False)
    )


@app.command("pay")
def pay(
    prepay_id: Annotated[str, typer.Option(help="Pay the order with this prepay_id.")] = "",
    code_url: Annotated[
        str, typer.Option(help="Pay the order behind this weixin:// code_url.")
    ] = "",
    out_trade_no: Annotated[str, typer.Option(help="Pay by out_trade_no (needs --mchid).")] = "",
    mchid: Annotated[str, typer.Option(help="Merchant of --out-trade-no.")] = "",
    outcome: Annotated[str, typer.Option(help="success or fail.")] = "success",
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Be the payer: make a payment succeed (or fail)."""
    body = {
        key: value
        for key, value in {
            "prepay_id": prepay_id,
            "code_url": code_url,
            "out_trade_no": out_trade_no,
            "mchid": mchid,
            "outcome": outcome,
        }.items()
        if value
    }
    result = _call("POST", f"{url.rstrip('/')}/sim/pay", json_body=body)
    _echo(
        f"{result['out_trade_no']}: {result['trade_state']}"
        + (f" (transaction_id {result['transaction_id']})" if "transaction_id" in result else "")
    )


def _chaos_value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            continue
    return text


@chaos_app.command("set")
def chaos_set(
    settings: Annotated[list[str], typer.Argument(help="KEY=VALUE, e.g. probe_rate=0.2 seed=7.")],
    mchid: Annotated[str | None, typer.Option(help="Only this merchant (default: global).")] = None,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Set chaos rates (replaces earlier settings of the same scope)."""
    body: dict[str, Any] = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep:
            _fail(f"expected KEY=VALUE, got {item!r}")
        body[key] = _chaos_value(value)
    if mchid:
        body["mchid"] = mchid
    _echo(json.dumps(_call("PUT", f"{url.rstrip('/')}/sim/chaos", json_body=body)))


@chaos_app.command("show")
def chaos_show(
    mchid: Annotated[str | None, typer.Option()] = None, url: UrlOption = DEFAULT_URL
) -> None:
    """Show the chaos settings of a scope."""
    query = f"?mchid={mchid}" if mchid else ""
    _echo(json.dumps(_call("GET", f"{url.rstrip('/')}/sim/chaos{query}")))


@chaos_app.command("off")
def chaos_off(
    mchid: Annotated[str | None, typer.Option()] = None, url: UrlOption = DEFAULT_URL
) -> None:
    """Turn chaos off for a scope."""
    query = f"?mchid={mchid}" if mchid else ""
    _call("DELETE", f"{url.rstrip('/')}/sim/chaos{query}")
    _echo("chaos off")


@app.command("notifications")
def notifications(
    mchid: Annotated[str | None, typer.Option()] = None,
    url: UrlOption = DEFAULT_URL,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List notification deliveries and their attempts."""
    query = f"?mchid={mchid}" if mchid else ""
    found = _call("GET", f"{url.rstrip('/')}/sim/notifications{query}")["notifications"]
    if as_json:
        _echo(json.dumps(found, ensure_ascii=False))
        return
    for delivery in found:
        _echo(
            f"#{delivery['id']} {delivery['event_type']} {delivery['status']} -> {delivery['notify_url']}"
            + (f" chaos={','.join(delivery['chaos'])}" if delivery["chaos"] else "")
        )
        for attempt in delivery["attempts"]:
            mark = f" [{attempt['chaos']}]" if attempt["chaos"] else ""
            _echo(
                f"    {attempt['time']} attempt {attempt['attempt']}: "
                f"{attempt['status'] or attempt['error']} {attempt['latency_ms']} ms{mark}"
            )


if __name__ == "__main__":
    app()
