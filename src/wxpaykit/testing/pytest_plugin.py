"""pytest fixtures for testing against the WeChat Pay simulator.

Registered through the ``pytest11`` entry point, so installing wxpaykit makes them
available in every test suite. Importing this module imports only pytest: the
simulator (uvicorn, starlette) is loaded when a fixture is first used.

* ``wxpaykit_simulator``: a simulator on free loopback ports for the whole session
  (:class:`~wxpaykit.testing.simulator.ServedSimulator`; ``base_url``, ``tls_base_url``);
* ``wxpaykit_merchant`` / ``wxpaykit_public_key_merchant``: a fresh merchant bundle on it;
* ``wxpaykit_fake_clock``: a :class:`~wxpaykit.testing.simulator.FakeClock`.

The session simulator draws its RSA keys from the shared test key pool
(:func:`~wxpaykit.testing.keys.shared_key_pool`), so a merchant costs milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from wxpaykit.testing.simulator import FakeClock, MerchantBundle, ServedSimulator


@pytest.fixture(scope="session")
def wxpaykit_simulator() -> Iterator[ServedSimulator]:
    """A simulator served for the session (in-memory state, real time, mutual TLS on, pooled keys)."""
    from wxpaykit.testing.simulator import serve_simulator

    with serve_simulator() as simulator:
        yield simulator


@pytest.fixture
def wxpaykit_merchant(wxpaykit_simulator: ServedSimulator) -> MerchantBundle:
    """A certificate-mode merchant on the session simulator."""
    return wxpaykit_simulator.create_merchant("certificate")


@pytest.fixture
def wxpaykit_public_key_merchant(wxpaykit_simulator: ServedSimulator) -> MerchantBundle:
    """A public-key-mode merchant (``PUB_KEY_ID_...``, no platform certificate)."""
    return wxpaykit_simulator.create_merchant("public_key")


@pytest.fixture
def wxpaykit_fake_clock() -> FakeClock:
    """A clock that moves only when the test advances it."""
    from wxpaykit.testing.simulator import FakeClock

    return FakeClock()
