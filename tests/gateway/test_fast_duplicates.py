"""Copies of committed notifications are acknowledged without a database transaction.

The fast path (gateway/committed.py, and the committed marker in the Redis nonce
script) must keep every guarantee of the slow one: the copy is verified like any
other message, is answered 204 only when its original is durable, changes no state,
and is still counted as a duplicate in the ledger.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from sqlalchemy import select

from wxpaykit.core.signing import sign_response_headers
from wxpaykit.gateway.app import create_app
from wxpaykit.gateway.committed import CommittedNotifications
from wxpaykit.gateway.committed_feed import CommittedFeed, feed_channel
from wxpaykit.gateway.intake import NotificationIntake, _peek_id
from wxpaykit.gateway.metrics import GatewayMetrics
from wxpaykit.gateway.nonce import LedgerNonceGuard, NonceClaim, RedisNonceGuard
from wxpaykit.gateway.redis_batch import RedisBatcher
from wxpaykit.gateway.settings import GatewaySettings
from wxpaykit.storage.ledger import SqlLedger
from wxpaykit.storage.schema import notifications
from wxpaykit.testing.gateway_kit import MerchantKit
from wxpaykit.testing.notifications import SealedNotification

from .conftest import RowCounts, seed_orders
from .databases import REDIS_URL, migrate_all

V3 = "/notify/v3/{mchid}"


async def duplicate_count(ledger: SqlLedger, notification_id: str) -> int:
    async with ledger.engine.connect() as connection:
        return int(
            await connection.scalar(
                select(notifications.c.duplicate_count).where(
                    notifications.c.notification_id == notification_id
                )
            )
            or 0
        )


#: Guards made by :func:`redis_guard` in the running test (each keeps a connection).
_GUARDS: list[RedisNonceGuard] = []


@pytest.fixture(autouse=True)
async def _close_guards() -> AsyncIterator[None]:
    yield
    while _GUARDS:
        await _GUARDS.pop().batcher.aclose()


def redis_guard(
    redis: Redis, ledger: SqlLedger, settings: GatewaySettings, prefix: str
) -> RedisNonceGuard:
    """A Redis nonce guard under its own key prefix, falling back to ``ledger``; its
    connection is closed after the test."""
    guard = RedisNonceGuard(
        redis,
        LedgerNonceGuard(ledger, tolerance_seconds=settings.tolerance_seconds),
        tolerance_seconds=settings.tolerance_seconds,
        key_prefix=prefix,
    )
    _GUARDS.append(guard)
    return guard


async def notify(
    http: httpx.AsyncClient,
    kit: MerchantKit,
    sealed: SealedNotification,
    *,
    body: bytes | None = None,
) -> httpx.Response:
    """POST ``sealed`` (or ``body`` under its headers) to the merchant's APIv3 notify URL."""
    return await http.post(
        V3.format(mchid=kit.mchid),
        content=sealed.body if body is None else body,
        headers=sealed.headers,
    )


def app_client(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")  # type: ignore[arg-type]


async def test_a_copy_of_a_committed_notification_skips_the_ledger_and_is_counted(
    client: httpx.AsyncClient,
    ledger: SqlLedger,
    kit: MerchantKit,
    metrics: GatewayMetrics,
    row_counts: RowCounts,
) -> None:
    await seed_orders(ledger, kit, ["fast-1"])
    first = kit.payment("fast-1", notification_id="N-fast-1")
    assert (await notify(client, kit, first)).status_code == 204
    before = await row_counts()

    # WeChat re-signs each re-send: a fresh nonce, the same notification id.
    copies = [kit.payment("fast-1", notification_id="N-fast-1") for _ in range(3)]
    for copy in copies:
        answer = await notify(client, kit, copy)
        assert answer.status_code == 204

    assert await row_counts() == before  # no nonce row, no notification row, no event
    assert metrics.value("duplicates", "v3") == 3
    # The counts reach the ledger in one write per flush.
    assert await duplicate_count(ledger, "N-fast-1") == 0
    intake: NotificationIntake = client._transport.app.state.intake  # type: ignore[attr-defined]
    assert intake.duplicates.pending == 3
    await intake.duplicates.flush()
    assert intake.duplicates.pending == 0
    assert await duplicate_count(ledger, "N-fast-1") == 3


async def test_a_forged_copy_of_a_committed_notification_is_still_refused(
    client: httpx.AsyncClient, ledger: SqlLedger, kit: MerchantKit
) -> None:
    await seed_orders(ledger, kit, ["fast-2"])
    first = kit.payment("fast-2", notification_id="N-fast-2")
    assert (await notify(client, kit, first)).status_code == 204
    copy = kit.payment("fast-2", notification_id="N-fast-2")
    tampered = copy.body.replace(b'"N-fast-2"', b'"N-fast-2" ')
    answer = await notify(client, kit, copy, body=tampered)
    assert answer.status_code == 401
    assert answer.json()["code"] == "SIGNATURE_MISMATCH"


async def test_a_copy_is_not_taken_for_committed_while_its_original_is_in_flight(
    settings: GatewaySettings, ledger: SqlLedger, kit: MerchantKit
) -> None:
    # Nothing is marked committed before record_notification returns: concurrent
    # copies all go to the ledger, which applies exactly one.
    await seed_orders(ledger, kit, ["fast-3"])
    app = create_app(settings, ledger)
    copies = [kit.payment("fast-3", notification_id="N-fast-3") for _ in range(10)]
    async with app_client(app) as http:
        answers = await asyncio.gather(*(notify(http, kit, c) for c in copies))
    assert [a.status_code for a in answers] == [204] * 10
    order = await ledger.get_order(kit.mchid, "fast-3")
    assert order is not None
    assert order.state == "SUCCESS"
    intake: NotificationIntake = app.state.intake
    assert (kit.mchid, "N-fast-3") in intake.committed
    await intake.duplicates.flush()
    assert await duplicate_count(ledger, "N-fast-3") == 9


async def test_redis_tells_another_process_the_notification_is_committed(
    settings: GatewaySettings,
    ledger: SqlLedger,
    kit: MerchantKit,
    redis: Redis,
    row_counts: RowCounts,
) -> None:
    await seed_orders(ledger, kit, ["fast-4"])
    prefix = f"wxptest:{uuid.uuid4().hex}:"

    def gateway() -> object:
        guard = redis_guard(redis, ledger, settings, prefix)
        return create_app(settings, ledger, nonce_guard=guard)

    first_process, second_process = gateway(), gateway()
    original = kit.payment("fast-4", notification_id="N-fast-4")
    async with app_client(first_process) as http:
        answer = await notify(http, kit, original)
        assert answer.status_code == 204
    # The nonce mark and the committed marker are written just after the answer.
    await first_process.state.intake.drain()  # type: ignore[attr-defined]
    before = await row_counts()
    copy = kit.payment("fast-4", notification_id="N-fast-4")
    async with app_client(second_process) as http:
        answer = await notify(http, kit, copy)
        assert answer.status_code == 204
        # The very same request again is a replay of an acknowledged message: 204 too.
        again = await notify(http, kit, copy)
        assert again.status_code == 204
    assert await row_counts() == before
    intake: NotificationIntake = second_process.state.intake  # type: ignore[attr-defined]
    assert (kit.mchid, "N-fast-4") in intake.committed
    assert await redis.exists(f"{prefix}done:{{{kit.mchid}}}:N-fast-4") == 1
    keys = [key async for key in redis.scan_iter(match=f"{prefix}*")]
    await redis.delete(*keys)


async def test_other_processes_hear_a_commit_and_absorb_its_copies_alone(
    settings: GatewaySettings,
    ledger: SqlLedger,
    kit: MerchantKit,
    redis: Redis,
    row_counts: RowCounts,
) -> None:
    await seed_orders(ledger, kit, ["feed-1"])
    with_redis = dataclasses.replace(settings, redis_url=REDIS_URL)
    first_process, second_process = (create_app(with_redis, ledger) for _ in range(2))
    notification_id = f"N-feed-{uuid.uuid4().hex}"
    async with (
        first_process.router.lifespan_context(first_process),
        second_process.router.lifespan_context(second_process),
    ):
        first: NotificationIntake = first_process.state.intake
        second: NotificationIntake = second_process.state.intake
        original = kit.payment("feed-1", notification_id=notification_id)
        async with app_client(first_process) as http:
            answer = await notify(http, kit, original)
            assert answer.status_code == 204
        for _ in range(200):  # the feed is published after the answer
            if (kit.mchid, notification_id) in second.committed:
                break
            await asyncio.sleep(0.01)
        assert (kit.mchid, notification_id) in second.committed
        assert second.committed_feed is not None
        assert second.committed_feed.heard == 1
        assert first.committed_feed is not None
        assert first.committed_feed.heard == 0  # its own message is not news to it
        before = await row_counts()
        copy = kit.payment("feed-1", notification_id=notification_id)
        async with app_client(second_process) as http:
            answer = await notify(http, kit, copy)
            assert answer.status_code == 204
        nonce = copy.headers["Wechatpay-Nonce"]
        # Absorbed from the set: no Redis claim, no database row.
        assert await redis.exists(f"{with_redis.key_prefix}nonce:{{{kit.mchid}}}:{nonce}") == 0
        assert await row_counts() == before
        assert second.duplicates.pending == 1


def test_a_feed_message_adds_only_well_formed_keys_of_other_processes() -> None:
    committed = CommittedNotifications()
    feed = CommittedFeed(
        Redis.from_url(REDIS_URL), RedisBatcher(Redis.from_url(REDIS_URL)), committed, channel="c"
    )
    feed.receive(b"another-process\n1900000109\tN-1\nno-separator\n\tN-2\n1900000109\t")
    assert len(committed) == 1
    assert ("1900000109", "N-1") in committed
    feed.receive(b"just-a-token")
    assert len(committed) == 1


def test_each_database_has_its_own_feed_channel() -> None:
    prod = feed_channel("wxpaykit:", "postgresql://gw:s3cret@db/prod")
    assert prod == feed_channel("wxpaykit:", "postgresql://gw:s3cret@db/prod")
    assert prod != feed_channel("wxpaykit:", "postgresql://gw:s3cret@db/staging")
    assert prod.startswith("wxpaykit:committed:")
    assert "s3cret" not in prod


async def test_the_claim_script_is_reloaded_after_a_redis_script_flush(
    settings: GatewaySettings, ledger: SqlLedger, redis: Redis
) -> None:
    prefix = f"wxptest:{uuid.uuid4().hex}:"
    guard = redis_guard(redis, ledger, settings, prefix)
    await redis.script_flush()
    ticket = await guard.claim("1900000109", "nonce-1", b"{}", now_ms=0, notification_id="n-1")
    assert ticket.claim is NonceClaim.CLAIMED
    assert ticket.via_redis
    await guard.settle(ticket, acknowledged=True)
    # A new nonce for the committed id: a duplicate; the acked nonce again: ACKED.
    fresh = await guard.claim("1900000109", "nonce-2", b"{}", now_ms=0, notification_id="n-1")
    assert fresh.claim is NonceClaim.DUPLICATE
    replay = await guard.claim("1900000109", "nonce-1", b"{}", now_ms=0, notification_id="n-1")
    assert replay.claim is NonceClaim.ACKED
    other_body = await guard.claim("1900000109", "nonce-1", b"[]", now_ms=0, notification_id="n-1")
    assert other_body.claim is NonceClaim.IN_FLIGHT
    keys = [key async for key in redis.scan_iter(match=f"{prefix}*")]
    await redis.delete(*keys)


async def test_redis_claims_follow_the_commit_not_the_first_sighting(
    settings: GatewaySettings, ledger: SqlLedger, redis: Redis
) -> None:
    prefix = f"wxptest:{uuid.uuid4().hex}:"
    guard = redis_guard(redis, ledger, settings, prefix)
    mchid = "1900000109"
    first = await guard.claim(mchid, "n-a", b"{1}", now_ms=0, notification_id="id-a")
    assert first.claim is NonceClaim.CLAIMED
    # Same nonce and body while the first is still being recorded: refused, not acked.
    twin = await guard.claim(mchid, "n-a", b"{1}", now_ms=0, notification_id="id-a")
    assert twin.claim is NonceClaim.IN_FLIGHT
    # The recording failed: the claim is released and the identical retry goes on.
    await guard.settle(first, acknowledged=False)
    retry = await guard.claim(mchid, "n-a", b"{1}", now_ms=0, notification_id="id-a")
    assert retry.claim is NonceClaim.CLAIMED
    await guard.settle(retry, acknowledged=True)
    # A copy under a new nonce is a duplicate; a replay of that copy is durable too.
    copy = await guard.claim(mchid, "n-b", b"{2}", now_ms=0, notification_id="id-a")
    assert copy.claim is NonceClaim.DUPLICATE
    again = await guard.claim(mchid, "n-b", b"{2}", now_ms=0, notification_id="id-a")
    assert again.claim is NonceClaim.ACKED
    forged = await guard.claim(mchid, "n-b", b"{3}", now_ms=0, notification_id="id-a")
    assert forged.claim is NonceClaim.IN_FLIGHT
    # Without a notification id the nonce itself carries the acknowledgement.
    bare = await guard.claim(mchid, "n-c", b"{4}", now_ms=0)
    assert bare.claim is NonceClaim.CLAIMED
    assert (await guard.claim(mchid, "n-c", b"{4}", now_ms=0)).claim is NonceClaim.IN_FLIGHT
    await guard.settle(bare, acknowledged=True)
    assert (await guard.claim(mchid, "n-c", b"{4}", now_ms=0)).claim is NonceClaim.ACKED
    keys = [key async for key in redis.scan_iter(match=f"{prefix}*")]
    await redis.delete(*keys)


async def test_redis_batcher_shares_pipelines_and_keeps_errors_per_caller(redis: Redis) -> None:
    batcher = RedisBatcher(redis)
    prefix = f"wxptest:{uuid.uuid4().hex}:"
    await redis.set(f"{prefix}text", "not a number")
    results = await asyncio.gather(
        *(batcher.execute("INCR", f"{prefix}n") for _ in range(40)),
        batcher.execute("INCR", f"{prefix}text"),
        return_exceptions=True,
    )
    counted, failed = results[:40], results[40]
    assert sorted(counted) == list(range(1, 41))  # type: ignore[type-var]
    assert isinstance(failed, ResponseError)
    assert batcher.average_batch > 1
    await batcher.aclose()
    await redis.delete(f"{prefix}n", f"{prefix}text")


async def test_duplicate_counts_survive_a_failed_flush(kit: MerchantKit) -> None:
    # A ledger whose database is unreachable: the flush fails, the counts are kept.
    from wxpaykit.gateway.committed import DuplicateTally

    unreachable = SqlLedger.from_url("postgresql://postgres@127.0.0.1:1/none")
    tally = DuplicateTally(unreachable)
    tally.note((kit.mchid, "N-x"))
    tally.note((kit.mchid, "N-x"))
    await tally.flush()
    assert tally.pending == 2
    await unreachable.aclose()


def test_committed_notifications_forget_the_oldest_first() -> None:
    from wxpaykit.gateway.committed import CommittedNotifications

    committed = CommittedNotifications(capacity=2)
    committed.add(("m", "a"))
    committed.add(("m", "b"))
    committed.add(("m", "c"))
    assert ("m", "a") not in committed
    assert ("m", "b") in committed
    assert ("m", "c") in committed
    assert len(committed) == 2


async def test_deployments_sharing_a_redis_database_never_share_committed_markers(
    tmp_path: Path, settings: GatewaySettings, kit: MerchantKit, redis: Redis
) -> None:
    # Two gateways (say staging and production) for one merchant, each with its own
    # database, on one Redis database. A copy reaching the second one must be recorded
    # there, not answered as a duplicate of what only the first one recorded.
    deployments = []
    for name in ("staging", "production"):
        url = f"sqlite+aiosqlite:///{tmp_path / name}.db"
        await migrate_all(url)
        ledger = SqlLedger.from_url(url)
        await seed_orders(ledger, kit, ["shared-1"])
        own = dataclasses.replace(settings, redis_url=REDIS_URL, database_url=url)
        deployments.append((own, ledger, create_app(own, ledger)))
    assert deployments[0][0].key_prefix != deployments[1][0].key_prefix
    notification_id = f"N-shared-{uuid.uuid4().hex}"
    try:
        for _own, _ledger, app in deployments:
            async with app.router.lifespan_context(app), app_client(app) as http:
                sealed = kit.payment("shared-1", notification_id=notification_id)
                assert (await notify(http, kit, sealed)).status_code == 204
                await app.state.intake.drain()
        states = [
            await ledger.get_order(kit.mchid, "shared-1") for _own, ledger, _app in deployments
        ]
        # Applied in both, each by its own ledger (with one key space, the second
        # gateway answered its copy as a duplicate and never recorded the payment).
        assert [order.state if order else None for order in states] == ["SUCCESS", "SUCCESS"]
        for own, _ledger, _app in deployments:
            marker = f"{own.key_prefix}done:{{{kit.mchid}}}:{notification_id}"
            assert await redis.exists(marker) == 1
    finally:
        for own, ledger, _app in deployments:
            keys = [key async for key in redis.scan_iter(match=f"{own.key_prefix}*")]
            if keys:
                await redis.delete(*keys)
            await ledger.aclose()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"id":"EV-1","event_type":"TRANSACTION.SUCCESS"}', "EV-1"),
        (b' {\n "event_type": "x", "id" : "EV-\\u0032" } ', "EV-2"),  # any JSON layout
        (b'{"id":12}', None),  # not a string: the full parser says what is wrong
        (b'{"event_type":"TRANSACTION.SUCCESS"}', None),
        (b'["id", "EV-1"]', None),
        (b'"EV-1"', None),
        (b"{not json", None),
        (b"", None),
    ],
)
def test_a_copy_is_recognised_by_the_id_in_its_verified_body(
    body: bytes, expected: str | None
) -> None:
    assert _peek_id(body) == expected


async def test_a_copy_laid_out_differently_is_still_absorbed(
    client: httpx.AsyncClient, ledger: SqlLedger, kit: MerchantKit, row_counts: RowCounts
) -> None:
    await seed_orders(ledger, kit, ["fast-3"])
    first = kit.payment("fast-3", notification_id="N-fast-3")
    assert (await notify(client, kit, first)).status_code == 204
    before = await row_counts()

    # Re-serialised with indentation and re-signed: the same id, other bytes.
    body = json.dumps(json.loads(first.body), indent=2).encode()
    headers = sign_response_headers(
        body=body,
        private_key=kit.platform.private_key,
        serial=kit.platform.serial_no,
        timestamp=int(time.time()),
        nonce=uuid.uuid4().hex,
    )
    answer = await client.post(V3.format(mchid=kit.mchid), content=body, headers=headers)

    assert answer.status_code == 204
    assert await row_counts() == before
