"""APIv2 (legacy XML) protocol core: MD5/HMAC ``sign``, safe XML, refund ``req_info``.

Sans-I/O like the rest of :mod:`wxpaykit.core`: bytes and values in, bytes and values
out. Section numbers in docstrings refer to the team's protocol reference, §9.
"""

from __future__ import annotations

from wxpaykit.core.v2.refund import (
    PaymentNotificationV2,
    RefundReqInfo,
    decrypt_req_info,
    encrypt_req_info,
)
from wxpaykit.core.v2.signing import (
    SignType,
    app_pay_params_v2,
    build_sign_string,
    jsapi_pay_params_v2,
    sign_v2,
    verify_v2,
)
from wxpaykit.core.v2.xml import MAX_XML_BYTES, build_xml, parse_xml, reply_xml

__all__ = [
    "MAX_XML_BYTES",
    "PaymentNotificationV2",
    "RefundReqInfo",
    "SignType",
    "app_pay_params_v2",
    "build_sign_string",
    "build_xml",
    "decrypt_req_info",
    "encrypt_req_info",
    "jsapi_pay_params_v2",
    "parse_xml",
    "reply_xml",
    "sign_v2",
    "verify_v2",
]
