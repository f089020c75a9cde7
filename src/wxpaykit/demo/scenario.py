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
   send;
7. wait (bounded) until the sample shop's webhook (:mod:`wxpaykit.demo.shop`) has
   processed every event of the outbox: the gateway's embedded worker delivers them,
   signed per Standard Webhooks, and the shop verifies and deduplicates on the id;
8. report from the gateway's metrics, the ledger, the simulator and the shop.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from wxpaykit.demo.config import DemoEndpoints, DemoSecrets, write_gateway_config
from wxpaykit.demo.outbox import DeliveryTally, tally, wait_until_delivered
from wxpaykit.demo.report import (
    DemoReport,
    count_double_applications,
    metric_totals,
    render_report,
)
from wxpaykit.demo.servers import ThreadedServer, bind_loopback
from wxpaykit.demo.shop import WEBHOOK_PATH, ShopInbox, shop_app
from wxpaykit.dispatch.webhooks import generate_webhook_secret
from wxpaykit.gateway.committed import DuplicateTally
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

__all__ = ["SHOP_JOURNAL", "DemoOptions", "run_demo"]

#: In the work folder: every webhook the shop verified, one JSON line each.
SHOP_JOURNAL = "shop_webhooks.jsonl"

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
    #: After the payments settled, how long to wait for the shop to receive every event.
    delivery_timeout_seconds: float = 60.0
    time_scale: float = 0.02


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
        sock, shop_sock = bind_loopback(), bind_loopback()
        gateway_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        demo_secrets = DemoSecrets(
            api_token=secrets.token_urlsafe(24),
            admin_token=secrets.token_urlsafe(24),
            webhook_secret=generate_webhook_secret(),
        )
        inbox = ShopInbox(journal=folder / SHOP_JOURNAL)
        shop = ThreadedServer(shop_app([demo_secrets.webhook_secret], inbox), shop_sock)
        endpoints = DemoEndpoints(
            database_url=database_url,
            gateway_url=gateway_url,
            simulator_url=sim.base_url,
            shop_webhook_url=shop.url + WEBHOOK_PATH,
        )
        config = write_gateway_config(bundle, folder, endpoints, demo_secrets)
        app = build_app(load_settings(config))
        metrics: GatewayMetrics = app.state.metrics
        token = demo_secrets.api_token
        with shop, ThreadedServer(app, sock):
            console.print(f"shop       {endpoints.shop_webhook_url}  (sample webhook receiver)")
            console.print(f"gateway    {gateway_url}  config {config}")
            async with SqlLedger.from_url(database_url) as ledger:
                report = await _drive(
                    options,
                    console,
                    sim,
                    bundle,
                    gateway_url,
                    token,
                    ledger,
                    inbox,
                    app.state.intake.duplicates,
                )
                report.elapsed_seconds = time.monotonic() - started
                report.notifications_received = int(
                    sum(metric_totals(metrics, "received", "api").values())
                )
                report.acknowledged = metric_totals(metrics, "acknowledged", "outcome")
                report.rejections = metric_totals(metrics, "rejected", "reason")
            console.print(render_report(report))
            verdict = "[bold green]exactly once: yes" if report.exactly_once else "[bold red]FAILED"
            console.print(verdict)
            console.print(
                "[bold green]every event delivered to the shop: yes"
                if report.delivered_once
                else "[bold red]event delivery to the shop: FAILED"
            )
            if not options.once:
                console.print(
                    f"\nstill serving (Ctrl-C to stop)\n  gateway   {gateway_url}/metrics\n"
                    f"  orders    {gateway_url}/api/orders  (Authorization: Bearer {token})\n"
                    f"  events    {gateway_url}/admin/events"
                    f"  (Authorization: Bearer {demo_secrets.admin_token})\n"
                    f"  shop      {endpoints.shop_webhook_url}\n"
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
    inbox: ShopInbox,
    duplicates: DuplicateTally,
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
            delivered = progress.add_task("events delivered (shop webhook)", total=None)

            def show_delivery(current: DeliveryTally) -> None:
                progress.update(delivered, total=len(current.emitted), completed=current.received)

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
            watcher = asyncio.create_task(_watch(ledger, progress, applied, inbox, show_delivery))
            await orders
            forged_status = await _send_forged(gateway, bundle)
            settled = await _settle(ledger, platform, options)
            watcher.cancel()
            shop_tally = await wait_until_delivered(
                ledger.engine,
                inbox,
                timeout_seconds=options.delivery_timeout_seconds,
                on_progress=show_delivery,
            )
            # Copies absorbed without the ledger are counted in it once a second.
            await _duplicates_written(duplicates)
            stats = await ledger.stats()
            progress.update(applied, completed=stats.orders_by_state.get("SUCCESS", 0))
        if not settled:
            console.print("[bold red]timed out waiting for deliveries to settle")
        if shop_tally.lost:
            console.print(f"[bold red]timed out: {shop_tally.lost} event(s) not at the shop yet")
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
        delivery=shop_tally,
    )


async def _duplicates_written(duplicates: DuplicateTally, timeout_seconds: float = 10.0) -> None:
    """Wait until the gateway (another thread) has written its duplicate counts."""
    deadline = time.monotonic() + timeout_seconds
    while duplicates.pending and time.monotonic() < deadline:  # noqa: ASYNC110 - another thread's loop owns it
        await asyncio.sleep(0.1)


async def _set_chaos(platform: httpx.AsyncClient, mchid: str, seed: int, mode: str) -> None:
    answer = await platform.put(
        "/sim/chaos", json={"mchid": mchid, "seed": seed, "duplicate_mode": mode, **_CHAOS}
    )
    answer.raise_for_status()


async def _watch(
    ledger: SqlLedger,
    progress: Progress,
    task: Any,
    inbox: ShopInbox,
    show_delivery: Callable[[DeliveryTally], None],
) -> None:
    while True:
        stats = await ledger.stats()
        progress.update(task, completed=stats.orders_by_state.get("SUCCESS", 0))
        show_delivery(await tally(ledger.engine, inbox))
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
