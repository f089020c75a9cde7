"""Decrypting the ``GET /v3/certificates`` payload (protocol reference §4).

Each entry's ``encrypt_certificate`` is AES-256-GCM under the APIv3 key with associated
data ``certificate``; the plaintext is the PEM certificate. The ``serial_no`` of the JSON
must equal the certificate's own serial, or the entry is refused: a mismatch would make
``Wechatpay-Serial`` lookups choose the wrong key.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from wxpaykit.core.crypto import ApiV3Key, aes_gcm_open
from wxpaykit.core.keys import PlatformCertificate, load_platform_certificate
from wxpaykit.errors import MalformedMessageError

__all__ = ["decrypt_certificates"]


def decrypt_certificates(
    payload: bytes | dict[str, Any],
    apiv3_key: ApiV3Key | bytes | str,
    *,
    now: dt.datetime | None = None,
) -> list[PlatformCertificate]:
    """Decrypt every certificate in a ``/v3/certificates`` response.

    With ``now``, certificates that are expired or not yet valid are dropped (as the
    official SDKs do), so callers only ever trust usable keys.
    """
    try:
        document = json.loads(payload) if isinstance(payload, bytes) else payload
    except ValueError:
        raise MalformedMessageError("certificates response is not JSON") from None
    entries = document.get("data") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise MalformedMessageError("certificates response lacks a 'data' list")
    certificates: list[PlatformCertificate] = []
    for index, entry in enumerate(entries):
        try:
            serial_no = str(entry["serial_no"])
            sealed = entry["encrypt_certificate"]
            pem = aes_gcm_open(
                apiv3_key,
                nonce=sealed["nonce"],
                associated_data=sealed.get("associated_data", ""),
                ciphertext=sealed["ciphertext"],
            )
        except (KeyError, TypeError) as exc:
            raise MalformedMessageError(f"certificate entry {index} lacks {exc}") from None
        certificate = load_platform_certificate(pem, source=f"/v3/certificates[{serial_no}]")
        if int(certificate.serial_no, 16) != int(serial_no, 16):
            raise MalformedMessageError(
                f"certificate entry {index}: serial_no {serial_no} differs from the"
                f" certificate's own {certificate.serial_no}"
            )
        if now is None or certificate.is_valid_at(now):
            certificates.append(certificate)
    return certificates
