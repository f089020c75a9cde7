"""The demo scenario, step by step (see :mod:`wxpaykit.demo`).

1. start the simulator (its notification sender runs 50× faster than the platform);
2. create a merchant there and write the gateway's config from its downloads;
3. migrate a SQLite ledger and start the gateway with the production wiring;
4. turn chaos on: duplicates (spaced, then concurrent twins), reordering, probes,
   stale/tampered/unknown-serial forgeries and slow acks (no lost notifications:
   recovering those needs the order query, which is reconciliation, not intake);
5. create orders through ``POST /api/orders`` and pay each in the simulator, with
   live progress, plus one notification forged by hand with an attacker's key;
6. wait until the ledger holds every payment and the simulator has nothing left to
   send, then report from the gateway's metrics, the ledger and the simulator.

Hook: events land in the ledger's outbox; ``wxpaykit worker`` (the dispatch worker)
delivers them to the shop's webhook. Pass ``--webhook`` once the demo wires it in.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from wxpaykit.demo.report import (
    DemoReport,
    count_double_applications,
    metric_totals,
    render_report,
)
from wxpaykit.demo.servers import ThreadedServer, bind_loopback
from wxpaykit.gateway.metrics import GatewayMetrics
from wxpaykit.gateway.settings import load_settings
from wxpaykit.gateway.wiring import build_app
from wxpaykit.simulator.chaos import FORGERIES
from wxpaykit.simulator.merchants import MerchantBundle, MerchantMode
from wxpaykit.simulator.server import SimulatorServer
from wxpaykit.simulator.service import Simulator, SimulatorConfig
from wxpaykit.storage import migrate
from wxpaykit.storage.ledger import SqlLedger
from wxpaykit.testing.keys import generate_private_key
from wxpaykit.testing.notifications import sample_transaction, seal_notification

__all__ = ["DemoOptions", "run_demo"]

_CHAOS: dict[str, Any] = {
    "duplicate_rate": 0.3,
    "reorder_rate": 0.15,
    "reorder_delay_seconds": 5.0,
    "probe_rate": 0.1,
    "stale_timestamp_rate": 0.03,
    "tampered_rate": 0.03,
    "unknown_serial_rate": 0.03,
    "slow_ack_rate": 0.03,
}


@dataclass(kw_only=True)
class DemoOptions:
    """How big, how random, where, and whether to keep serving afterwards."""

    orders: int = 300
    once: bool = False
    seed: int = 7
    workdir: Path | None = None
    concurrency: int = 16
    timeout_seconds: float = 180.0
    time_scale: float = 0.02


def write_gateway_config(
    bundle: MerchantBundle,
    folder: Path,
    *,
    database_url: str,
    gateway_url: str,
    simulator_url: str,
    api_token: str,
) -> Path:
    """Lay out the merchant's downloads as key files and write ``wxpaykit.toml``."""
    secrets_dir = folder / "secrets"
    secrets_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "apiv3.key": bundle.apiv3_key.encode(),
        "apiv2.key": bundle.apiv2_key.encode(),
        "apiclient_key.pem": bundle.apiclient_key_pem,
        "api_token": api_token.encode(),
        "pub_key.pem": bundle.public_key_pem,
    }
    for serial, pem in bundle.platform_certificates:
        files[f"wechatpay_{serial}.pem"] = pem
    for name, data in files.items():
        path = secrets_dir / name
        path.write_bytes(data)
        path.chmod(0o600)
    certificates = ", ".join(
        f'"secrets/wechatpay_{serial}.pem"' for serial, _ in bundle.platform_certificates
    )
    public_key = (
        f'platform_public_key_file = "secrets/pub_key.pem"\n'
        f'platform_public_key_id = "{bundle.public_key_id}"\n'
        if bundle.public_key_id
        else ""
    )
    config = folder / "wxpaykit.toml"
    config.write_text(
        f"""# Written by `wxpaykit demo`: a gateway for the simulator's merchant.
[gateway]
database_url = "{database_url}"
public_url = "{gateway_url}"
wechatpay_base_url = "{simulator_url}"
api_token_file = "secrets/api_token"
log_level = "warning"

[[merchants]]
mchid = "{bundle.mchid}"
appids = [{", ".join(f'"{a}"' for a in bundle.appids)}]
apiv3_key_file = "secrets/apiv3.key"
apiv2_key_file = "secrets/apiv2.key"
private_key_file = "secrets/apiclient_key.pem"
certificate_serial = "{bundle.merchant_serial_no}"
{public_key}platform_certificate_files = [{certificates}]
""",
        encoding="utf-8",
    )
    return config


@contextmanager
def _simulator(options: DemoOptions, folder: Path) -> Iterator[SimulatorServer]:
    simulator = Simulator(
        SimulatorConfig(data_path=folder / "simulator.db", time_scale=options.time_scale)
    )
    server = SimulatorServer(simulator, tls_port=None)
    try:
        with server.in_thread():
            yield server
    finally:
        simulator.close()


async def run_demo(options: DemoOptions, console: Console) -> DemoReport:
    """Run the whole scenario and return the report (printed as it finishes)."""
    folder = options.workdir or Path(tempfile.mkdtemp(prefix="wxpaykit-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with _simulator(options, folder) as sim:
        merchant = sim.simulator.create_merchant(MerchantMode.MIGRATION)
        bundle = merchant.bundle(
            authority_pem=sim.simulator.authority.certificate_pem,
            api_base_url=sim.base_url,
            tls_base_url="",
        )
        console.print(f"simulator  {sim.base_url}  merchant {bundle.mchid} ({bundle.mode})")
        database_url = f"sqlite:///{folder / 'gateway.db'}"
        await migrate.upgrade(database_url)
        sock = bind_loopback()
        gateway_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        token = secrets.token_urlsafe(24)
        config = write_gateway_config(
            bundle,
            folder,
            database_url=database_url,
            gateway_url=gateway_url,
            simulator_url=sim.base_url,
            api_token=token,
        )
        app = build_app(load_settings(config))
        metrics: GatewayMetrics = app.state.metrics
        with ThreadedServer(app, sock):
            console.print(f"gateway    {gateway_url}  config {config}")
            async with SqlLedger.from_url(database_url) as ledger:
                report = await _drive(options, console, sim, bundle, gateway_url, token, ledger)
                report.elapsed_seconds = time.monotonic() - started
                report.notifications_received = int(
                    sum(metric_totals(metrics, "received", "api").values())
                )
                report.acknowledged = metric_totals(metrics, "acknowledged", "outcome")
                report.rejections = metric_totals(metrics, "rejected", "reason")
            console.print(render_report(report))
            verdict = "[bold green]exactly once: yes" if report.exactly_once else "[bold red]FAILED"
            console.print(verdict)
            if not options.once:
                console.print(
                    f"\nstill serving (Ctrl-C to stop)\n  gateway   {gateway_url}/metrics\n"
                    f"  orders    {gateway_url}/api/orders  (Authorization: Bearer {token})\n"
                    f"  simulator {sim.base_url}/sim/cashier?pr=...  (console)\n"
                    f"  files     {folder}"
                )
                await _serve_forever()
    return report


async def _serve_forever() -> None:
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        return


async def _drive(
    options: DemoOptions,
    console: Console,
    sim: SimulatorServer,
    bundle: MerchantBundle,
    gateway_url: str,
    token: str,
    ledger: SqlLedger,
) -> DemoReport:
    rng = random.Random(options.seed)  # noqa: S311 - demo amounts, not security
    gate = asyncio.Semaphore(options.concurrency)
    auth = {"Authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(base_url=gateway_url, timeout=30.0, trust_env=False) as gateway,
        httpx.AsyncClient(base_url=sim.base_url, timeout=30.0, trust_env=False) as platform,
    ):
        await _set_chaos(platform, bundle.mchid, options.seed, "spaced")
        with Progress(
            TextColumn("{task.description:<34}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            created = progress.add_task("orders created (gateway API)", total=options.orders)
            paid = progress.add_task("orders paid (simulator)", total=options.orders)
            applied = progress.add_task("payments applied (ledger)", total=options.orders)

            async def one_order(index: int) -> None:
                async with gate:
                    answer = await gateway.post(
                        "/api/orders",
                        json={
                            "description": f"demo order {index}",
                            "total": rng.randint(1, 99_999),
                            "trade_type": "NATIVE",
                        },
                        headers=auth,
                    )
                    answer.raise_for_status()
                    progress.advance(created)
                    if index == options.orders // 2:  # second half: concurrent twins
                        await _set_chaos(platform, bundle.mchid, options.seed, "concurrent")
                    pay = await platform.post(
                        "/sim/pay", json={"code_url": answer.json()["code_url"]}
                    )
                    pay.raise_for_status()
                    progress.advance(paid)

            orders = asyncio.gather(*(one_order(i) for i in range(options.orders)))
            watcher = asyncio.create_task(_watch(ledger, progress, applied))
            await orders
            forged_status = await _send_forged(gateway, bundle)
            settled = await _settle(ledger, platform, options)
            watcher.cancel()
            stats = await ledger.stats()
            progress.update(applied, completed=stats.orders_by_state.get("SUCCESS", 0))
        if not settled:
            console.print("[bold red]timed out waiting for deliveries to settle")
        deliveries = (await platform.get("/sim/notifications")).json()["notifications"]
    chaos: dict[str, int] = {}
    forged_acked = 0
    paid_ids: set[str] = set()
    for delivery in deliveries:
        for mark in delivery["chaos"] or []:
            if mark not in FORGERIES:  # forged attempts are counted one by one below
                chaos[str(mark)] = chaos.get(str(mark), 0) + 1
        for attempt in delivery["attempts"]:
            if attempt["forged"] or attempt["chaos"] in FORGERIES:
                chaos[str(attempt["chaos"])] = chaos.get(str(attempt["chaos"]), 0) + 1
                forged_acked += 1 if attempt["acked"] else 0
        if delivery["event_type"] == "TRANSACTION.SUCCESS":
            paid_ids.add(str(delivery["notification_id"]))
    return DemoReport(
        orders=options.orders,
        paid_in_simulator=len(paid_ids),
        applied_in_ledger=stats.orders_by_state.get("SUCCESS", 0),
        notifications_received=0,
        duplicates_absorbed=stats.duplicates_absorbed,
        events=stats.events,
        double_applications=await count_double_applications(ledger),
        chaos=chaos,
        forged_acknowledged=forged_acked,
        forged_direct_status=forged_status,
        elapsed_seconds=0.0,
    )


async def _set_chaos(platform: httpx.AsyncClient, mchid: str, seed: int, mode: str) -> None:
    answer = await platform.put(
        "/sim/chaos", json={"mchid": mchid, "seed": seed, "duplicate_mode": mode, **_CHAOS}
    )
    answer.raise_for_status()


async def _watch(ledger: SqlLedger, progress: Progress, task: Any) -> None:
    while True:
        stats = await ledger.stats()
        progress.update(task, completed=stats.orders_by_state.get("SUCCESS", 0))
        await asyncio.sleep(0.25)


async def _settle(ledger: SqlLedger, platform: httpx.AsyncClient, options: DemoOptions) -> bool:
    """Poll until every order is paid in the ledger and the simulator has nothing pending."""
    deadline = time.monotonic() + options.timeout_seconds
    while time.monotonic() < deadline:
        stats = await ledger.stats()
        pending = (await platform.get("/sim/notifications", params={"status": "pending"})).json()
        if (
            stats.orders_by_state.get("SUCCESS", 0) >= options.orders
            and not pending["notifications"]
        ):
            return True
        await asyncio.sleep(0.25)
    return False


async def _send_forged(gateway: httpx.AsyncClient, bundle: MerchantBundle) -> int:
    """An attacker's notification: right format, the platform's serial, the wrong key."""
    resource = sample_transaction(mchid=bundle.mchid, appid=bundle.appid, out_trade_no="forged")
    serial = bundle.public_key_id or bundle.platform_certificates[0][0]
    forged = seal_notification(
        resource,
        apiv3_key=bundle.apiv3_key,
        signing_key=generate_private_key(),
        serial=serial,
        timestamp=int(time.time()),
    )
    answer = await gateway.post(
        f"/notify/v3/{bundle.mchid}", content=forged.body, headers=forged.headers
    )
    return answer.status_code
