"""The SDK clients: ``WeChatPay`` (sync) and ``AsyncWeChatPay`` over one I/O-free base."""

from __future__ import annotations

from wxpaykit.client.async_client import AsyncWeChatPay
from wxpaykit.client.key_cache import (
    CachedCertificates,
    CertificateCache,
    FileCertificateCache,
    RedisCertificateCache,
)
from wxpaykit.client.keys import PlatformKeyManager, SensitiveEncryptor
from wxpaykit.client.retry import RetryPolicy
from wxpaykit.client.sync_client import WeChatPay

__all__ = [
    "AsyncWeChatPay",
    "CachedCertificates",
    "CertificateCache",
    "FileCertificateCache",
    "PlatformKeyManager",
    "RedisCertificateCache",
    "RetryPolicy",
    "SensitiveEncryptor",
    "WeChatPay",
]
