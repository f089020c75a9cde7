"""One rule for tests that need a local service: skip locally when it is down, fail in CI.

CI sets ``WXPAYKIT_REQUIRE_SERVICES=1``, so a missing database or broker fails the run
instead of silently skipping what it was meant to prove.
"""

from __future__ import annotations

import socket

import pytest

from tests.conftest import REQUIRE_SERVICES


def service_answers(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections at ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_service(name: str, port: int, host: str = "127.0.0.1") -> None:
    """Return when the service answers; otherwise skip, or fail under CI."""
    if service_answers(port, host):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if REQUIRE_SERVICES:
        pytest.fail(message + " (WXPAYKIT_REQUIRE_SERVICES=1)")
    pytest.skip(message)
