"""Real gateway processes sharing one database: concurrency and crash safety.

* 50 copies of one notification, sent at once through 3 gateway processes, yield one
  transition and one event, on SQLite, PostgreSQL and MariaDB, with and without Redis.
* A gateway killed with SIGKILL in the middle of a stream loses no acknowledged
  notification, and re-sending the unacknowledged ones completes the work.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from wxpaykit.storage.events import events
from wxpaykit.storage.ledger import SqlLedger
from wxpaykit.storage.schema import notifications
from wxpaykit.testing.gateway_kit import MerchantKit

from ..services import require_service, service_answers
from .conftest import seed_orders
from .databases import (
    DATABASES,
    REDIS_URL,
    fresh_database,
    open_ledger,
)
from .processes import GatewayProcess

pytestmark = pytest.mark.slow


@dataclass
class Cluster:
    """Gateway processes sharing one database: three plain, three with Redis nonces."""

    database_url: str
    plain: list[GatewayProcess]
    with_redis: list[GatewayProcess]

    def urls(self, redis: bool) -> list[str]:
        """Base URLs of the three processes of one flavour."""
        if redis and not self.with_redis:
            require_service("redis", 6379)
        return [process.url for process in (self.with_redis if redis else self.plain)]


def write_config(folder: Path, kit: MerchantKit, database_url: str, redis: bool) -> Path:
    """A gateway TOML for ``database_url`` (and Redis), with the kit's key files."""
    folder.mkdir(parents=True, exist_ok=True)
    redis_line = f'redis_url = "{REDIS_URL}"' if redis else ""
    config = folder / ("redis.toml" if redis else "plain.toml")
    config.write_text(
        "[gateway]\n"
        f'database_url = "{database_url}"\n{redis_line}\n'
        'log_level = "warning"\n\n' + kit.toml_entry(folder / "secrets")
    )
    return config


@pytest.fixture(scope="module", params=DATABASES)
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, kit: MerchantKit
) -> Iterator[Cluster]:
    """Six processes on a fresh database of each kind, started together (start-up is the
    expensive part, so every test of the module shares them)."""
    kind = str(request.param)
    folder = tmp_path_factory.mktemp(f"cluster-{kind}")
    database = fresh_database(kind, folder)
    runner = asyncio.Runner()
    url = runner.run(database.__aenter__())
    redis = service_answers(6379)
    plain_config = write_config(folder, kit, url, redis=False)
    redis_config = write_config(folder, kit, url, redis=True)
    plain = [GatewayProcess(plain_config, folder / f"plain-{i}.log") for i in range(3)]
    with_redis = (
        [GatewayProcess(redis_config, folder / f"redis-{i}.log") for i in range(3)] if redis else []
    )
    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(GatewayProcess.start, plain + with_redis))
        yield Cluster(database_url=url, plain=plain, with_redis=with_redis)
    finally:
        for process in plain + with_redis:
            process.stop()
        runner.run(database.__aexit__(None, None, None))
        runner.close()


async def events_per_order(ledger: SqlLedger, kit: MerchantKit, names: list[str]) -> dict[str, int]:
    """How many outbox events each of these orders has (orders without events omitted)."""
    keys = [f"{kit.mchid}:{name}" for name in names]
    async with ledger.engine.connect() as connection:
        rows = await connection.execute(
            select(events.c.aggregate_key, func.count())
            .where(events.c.aggregate_key.in_(keys))
            .group_by(events.c.aggregate_key)
        )
        return {str(key): int(count) for key, count in rows.all()}


@pytest.mark.parametrize("redis", [False, True], ids=["no-redis", "redis"])
async def test_fifty_concurrent_copies_through_three_processes_apply_once(
    cluster: Cluster, redis: bool, kit: MerchantKit
) -> None:
    order = "conc-" + uuid.uuid4().hex[:12]
    notification_id = str(uuid.uuid4())
    # WeChat re-signs every re-send (fresh nonce); 5 byte-identical twins model the
    # link-failover copies that carry the very same headers.
    resent = [kit.payment(order, notification_id=notification_id) for _ in range(45)]
    requests = resent + [resent[0]] * 5

    urls = cluster.urls(redis)
    async with open_ledger(cluster.database_url) as ledger:
        await seed_orders(ledger, kit, [order])
        async with httpx.AsyncClient(timeout=30.0) as http:
            answers = await asyncio.gather(
                *(
                    http.post(
                        f"{urls[i % 3]}/notify/v3/{kit.mchid}",
                        content=sealed.body,
                        headers=sealed.headers,
                    )
                    for i, sealed in enumerate(requests)
                )
            )
        statuses = [answer.status_code for answer in answers]
        stored = await ledger.get_order(kit.mchid, order)
        per_order = await events_per_order(ledger, kit, [order])
        async with ledger.engine.connect() as connection:
            recorded = await connection.scalar(
                select(func.count())
                .select_from(notifications)
                .where(notifications.c.notification_id == notification_id)
            )

    # Every re-signed copy is acknowledged (none lost to a busy lock), twins are
    # acknowledged or refused as replays, never failed.
    assert statuses[1:45] == [204] * 44, statuses
    twins = [statuses[0], *statuses[45:]]
    assert 204 in twins, statuses
    assert set(twins) <= {204, 409}, statuses
    assert stored is not None
    assert stored.state == "SUCCESS"
    assert recorded == 1
    assert list(per_order.values()) == [1], per_order


async def test_sigkill_mid_stream_loses_no_acknowledged_notification(
    cluster: Cluster, kit: MerchantKit
) -> None:
    orders = [f"kill-{uuid.uuid4().hex[:10]}-{i}" for i in range(160)]
    kill_after_acks = 50
    gateway = cluster.plain[0]
    async with open_ledger(cluster.database_url) as ledger:
        await seed_orders(ledger, kit, orders)
        acked, unacked = await _stream_and_kill(gateway, kit, orders, kill_after_acks)
        assert len(acked) >= kill_after_acks
        assert unacked, "the kill came after the whole stream: nothing was tested"

        # Restart on the same database: every acknowledged payment is there, once.
        await asyncio.to_thread(gateway.start)
        for name in acked:
            stored = await ledger.get_order(kit.mchid, name)
            assert stored is not None
            assert stored.state == "SUCCESS", name
        per_order = await events_per_order(ledger, kit, orders)
        assert all(count == 1 for count in per_order.values()), per_order
        assert len(per_order) >= len(acked)

        # WeChat Pay re-sends the unacknowledged ones (re-signed); all complete.
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30.0) as http:
            for name in unacked:
                sealed = kit.payment(name, notification_id=f"n-{name}")
                answer = await http.post(
                    f"/notify/v3/{kit.mchid}", content=sealed.body, headers=sealed.headers
                )
                assert answer.status_code == 204, answer.text
        for name in orders:
            stored = await ledger.get_order(kit.mchid, name)
            assert stored is not None
            assert stored.state == "SUCCESS", name
        per_order = await events_per_order(ledger, kit, orders)
        assert len(per_order) == len(orders)
        assert set(per_order.values()) == {1}


async def _stream_and_kill(
    gateway: GatewayProcess, kit: MerchantKit, orders: list[str], kill_after_acks: int
) -> tuple[list[str], list[str]]:
    """Send one notification per order, 16 at a time; SIGKILL the gateway part-way."""
    acked: list[str] = []
    unacked: list[str] = []
    killed = asyncio.Event()
    gate = asyncio.Semaphore(16)

    async def send(http: httpx.AsyncClient, name: str) -> None:
        async with gate:
            if killed.is_set():
                unacked.append(name)
                return
            sealed = kit.payment(name, notification_id=f"n-{name}")
            try:
                answer = await http.post(
                    f"/notify/v3/{kit.mchid}", content=sealed.body, headers=sealed.headers
                )
            except httpx.TransportError:
                unacked.append(name)
                return
            if answer.status_code == 204:
                acked.append(name)
            else:
                unacked.append(name)
            if len(acked) >= kill_after_acks and not killed.is_set():
                killed.set()
                await asyncio.to_thread(gateway.kill)

    started = time.monotonic()
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10.0) as http:
        await asyncio.gather(*(send(http, name) for name in orders))
    assert time.monotonic() - started < 60
    return acked, unacked
