"""Session-wide fixtures: keys generated at test time (never committed), a fixed clock.

The one committed key is WeChat's official *public* test key in ``tests/vectors/``.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from wxpaykit.core.keys import WeChatPayPublicKey, load_private_key
from wxpaykit.core.verification import TrustedKeys
from wxpaykit.testing.keys import (
    GeneratedCertificate,
    generate_certificate,
    generate_private_key,
    generate_public_key_id,
)

VECTORS = Path(__file__).parent / "vectors"

#: In CI (``WXPAYKIT_REQUIRE_SERVICES=1``) a missing database or broker fails the run.
REQUIRE_SERVICES = os.environ.get("WXPAYKIT_REQUIRE_SERVICES") == "1"


@pytest.fixture(scope="session")
def official_private_key() -> rsa.RSAPrivateKey:
    """WeChat's published test key (protocol reference §13); public test data."""
    return load_private_key(
        (VECTORS / "official_test_private_key.pem").read_bytes(), source="official test key"
    )


@pytest.fixture(scope="session")
def merchant_cert() -> GeneratedCertificate:
    """The merchant API key pair and certificate (``apiclient_key.pem``/``apiclient_cert.pem``)."""
    return generate_certificate("1900007291", organization="Merchant")


@pytest.fixture(scope="session")
def platform_cert() -> GeneratedCertificate:
    """A WeChat Pay platform certificate and its private key (the simulator's side)."""
    return generate_certificate("Tenpay.com Root CA")


@pytest.fixture(scope="session")
def wechatpay_key_pair() -> tuple[str, rsa.RSAPrivateKey]:
    """A WeChat Pay public-key-mode key id and private key."""
    return generate_public_key_id(), generate_private_key()


@pytest.fixture(scope="session")
def wechatpay_public_key(wechatpay_key_pair: tuple[str, rsa.RSAPrivateKey]) -> WeChatPayPublicKey:
    """The merchant-side view of the WeChat Pay public key."""
    key_id, private_key = wechatpay_key_pair
    return WeChatPayPublicKey(key_id=key_id, public_key=private_key.public_key())


@pytest.fixture
def trusted_keys(
    platform_cert: GeneratedCertificate, wechatpay_public_key: WeChatPayPublicKey
) -> TrustedKeys:
    """Both kinds of platform key, as during a public-key migration."""
    from wxpaykit.core.keys import load_platform_certificate

    return TrustedKeys(
        certificates=[load_platform_certificate(platform_cert.certificate_pem)],
        public_keys=[wechatpay_public_key],
    )


@pytest.fixture
def apiv3_key() -> str:
    """A 32-byte APIv3 key."""
    return "TestAPIv3Key0123456789abcdefABCD"


@pytest.fixture
def now() -> dt.datetime:
    """A fixed 'now' for verification (the clock is always injected)."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)
