"""Fixtures shared by the core tests: the section-13 vectors and the official public key."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from wxpaykit.core.keys import WeChatPayPublicKey, load_public_key
from wxpaykit.core.verification import TrustedKeys

VECTOR_FILE = Path(__file__).parents[2] / "vectors" / "apiv3.json"


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    """Known answers V1-V7 of protocol reference §13 (``tests/vectors/apiv3.json``)."""
    data: dict[str, Any] = json.loads(VECTOR_FILE.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="session")
def official_public_key(vectors: dict[str, Any]) -> rsa.RSAPublicKey:
    """The public half of the official test key, as printed in §13."""
    return load_public_key(vectors["official_key"]["public_key_pem"], source="§13 public key")


@pytest.fixture(scope="session")
def v6_keys(vectors: dict[str, Any], official_public_key: rsa.RSAPublicKey) -> TrustedKeys:
    """Trust the official public key under the V6 notification's ``PUB_KEY_ID``."""
    key_id = vectors["V6"]["headers"]["Wechatpay-Serial"]
    return TrustedKeys(
        public_keys=[WeChatPayPublicKey(key_id=key_id, public_key=official_public_key)]
    )


@pytest.fixture(scope="session")
def v6_now(vectors: dict[str, Any]) -> dt.datetime:
    """A clock frozen ten seconds after V6 was signed."""
    timestamp = int(vectors["V6"]["headers"]["Wechatpay-Timestamp"])
    return dt.datetime.fromtimestamp(timestamp + 10, dt.UTC)
