"""wxpaykit: WeChat Pay SDK, notification gateway and local simulator.

SDK users import from here, as with httpx::

    from wxpaykit import WeChatPay, MerchantCredentials, WeChatPayPublicKey, transactions

Service pieces (gateway, storage, dispatch, simulator) are imported from their own
modules.
"""

from __future__ import annotations

from wxpaykit import errors
from wxpaykit.api import bills, certificates, partner, refunds, transactions
from wxpaykit.api.bills import BillInfo
from wxpaykit.api.call import ApiCall, ApiResponse
from wxpaykit.api.refunds import Refund
from wxpaykit.api.transactions import PrepayResult
from wxpaykit.client import (
    AsyncWeChatPay,
    FileCertificateCache,
    PlatformKeyManager,
    RedisCertificateCache,
    RetryPolicy,
    SensitiveEncryptor,
    WeChatPay,
)
from wxpaykit.core.crypto import ApiV3Key
from wxpaykit.core.keys import (
    ClientCertificate,
    MerchantCredentials,
    PlatformCertificate,
    WeChatPayPublicKey,
    load_client_certificate_p12,
    load_client_certificate_pem,
    load_platform_certificate,
    load_private_key,
    load_public_key,
    read_key_file,
)
from wxpaykit.core.models import (
    EventType,
    NotificationEnvelope,
    RefundResource,
    RefundStatus,
    TradeState,
    TradeType,
    Transaction,
)
from wxpaykit.core.notifications import Notification, parse_notification
from wxpaykit.errors import (
    ApiError,
    BadRequestError,
    ConfigurationError,
    DecryptionError,
    ForbiddenError,
    KeyLoadError,
    MalformedMessageError,
    NotFoundError,
    PlatformServerError,
    RateLimitedError,
    RequestTimeoutError,
    SignatureMismatchError,
    StaleTimestampError,
    TransportError,
    UnauthorizedError,
    UnknownSerialError,
    VerificationError,
    WxPayKitError,
)

__version__ = "0.1.0"

__all__ = [
    "ApiCall",
    "ApiError",
    "ApiResponse",
    "ApiV3Key",
    "AsyncWeChatPay",
    "BadRequestError",
    "BillInfo",
    "ClientCertificate",
    "ConfigurationError",
    "DecryptionError",
    "EventType",
    "FileCertificateCache",
    "ForbiddenError",
    "KeyLoadError",
    "MalformedMessageError",
    "MerchantCredentials",
    "NotFoundError",
    "Notification",
    "NotificationEnvelope",
    "PlatformCertificate",
    "PlatformKeyManager",
    "PlatformServerError",
    "PrepayResult",
    "RateLimitedError",
    "RedisCertificateCache",
    "Refund",
    "RefundResource",
    "RefundStatus",
    "RequestTimeoutError",
    "RetryPolicy",
    "SensitiveEncryptor",
    "SignatureMismatchError",
    "StaleTimestampError",
    "TradeState",
    "TradeType",
    "Transaction",
    "TransportError",
    "UnauthorizedError",
    "UnknownSerialError",
    "VerificationError",
    "WeChatPay",
    "WeChatPayPublicKey",
    "WxPayKitError",
    "bills",
    "certificates",
    "errors",
    "load_client_certificate_p12",
    "load_client_certificate_pem",
    "load_platform_certificate",
    "load_private_key",
    "load_public_key",
    "parse_notification",
    "partner",
    "read_key_file",
    "refunds",
    "transactions",
]
