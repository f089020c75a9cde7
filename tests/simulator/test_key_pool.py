"""The test key pool: distinct keys within a window, reuse after it, opt-in only."""

from __future__ import annotations

import threading

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from wxpaykit.simulator import SimulatorConfig
from wxpaykit.simulator.merchants import provision_merchant
from wxpaykit.testing.keys import KeyPool, generate_private_key, shared_key_pool
from wxpaykit.testing.simulator import new_merchant, running_simulator, serve_simulator


def _numbers(key: rsa.RSAPrivateKey) -> int:
    return key.private_numbers().public_numbers.n


def test_pool_hands_out_distinct_keys_then_the_same_keys_again() -> None:
    pool = KeyPool(size=3, bits=1024)
    first = [_numbers(pool()) for _ in range(3)]
    assert len(set(first)) == 3
    assert pool.generated == 3
    again = [_numbers(pool()) for _ in range(4)]
    assert again == [*first, first[0]]
    assert pool.generated == 3


def test_pool_is_safe_to_share_between_threads() -> None:
    pool = KeyPool(size=4, bits=1024)
    drawn: list[int] = []
    lock = threading.Lock()

    def draw() -> None:
        key = _numbers(pool())
        with lock:
            drawn.append(key)

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(drawn)) == 4
    assert pool.generated == 4


def test_pool_refuses_to_be_empty() -> None:
    with pytest.raises(ValueError, match="at least one key"):
        KeyPool(size=0)


def test_production_config_generates_fresh_keys() -> None:
    assert SimulatorConfig().key_source is generate_private_key


def test_a_pooled_merchant_has_distinct_keys() -> None:
    merchant = provision_merchant("migration", now=0.0, key_source=KeyPool(size=3, bits=1024))
    public_key = merchant.public_key_private
    assert public_key is not None
    keys = {
        _numbers(merchant.api_private_key),
        _numbers(merchant.platform_certificates[0].private_key),
        _numbers(public_key),
    }
    assert len(keys) == 3


async def test_testing_kit_draws_from_the_shared_pool_unless_configured() -> None:
    async with running_simulator() as sim:
        assert sim.simulator.config.key_source is shared_key_pool()
    async with running_simulator(SimulatorConfig(run_worker=False)) as sim:
        assert sim.simulator.config.key_source is generate_private_key
    with serve_simulator(mutual_tls=False) as served:
        assert served.simulator.config.key_source is shared_key_pool()


def test_offline_merchants_draw_from_the_shared_pool() -> None:
    pool = shared_key_pool()
    pooled = {_numbers(pool()) for _ in range(pool.size)}
    assert _numbers(new_merchant().api_private_key) in pooled
    own = new_merchant(key_source=generate_private_key)
    assert _numbers(own.api_private_key) not in pooled
