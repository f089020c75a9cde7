"""Platform certificates: ``GET /v3/certificates`` (protocol reference §4).

The certificates arrive AES-256-GCM encrypted under the APIv3 key; the client's key
manager decrypts them. Merchants onboarded since late 2024 have none and get 404
``RESOURCE_NOT_EXISTS``: they use the WeChat Pay public key instead (§3.5).
"""

from __future__ import annotations

from typing import Literal

from wxpaykit.api.call import ApiCall, ApiResponse, CallContext, ResponseModel, parse_model

__all__ = [
    "CertificateList",
    "EncryptedCertificate",
    "PlatformCertificateEntry",
    "download",
    "download_raw",
    "is_no_certificates_answer",
]

#: Codes meaning "this merchant has no platform certificates" (public-key-only merchant).
NO_CERTIFICATE_CODES = frozenset({"RESOURCE_NOT_EXISTS", "NOT_FOUND"})


class EncryptedCertificate(ResponseModel):
    """``encrypt_certificate``: the PEM certificate sealed with AES-256-GCM."""

    algorithm: str
    nonce: str
    associated_data: str = ""
    ciphertext: str


class PlatformCertificateEntry(ResponseModel):
    """One entry of ``data``; ``serial_no`` is the certificate's own serial."""

    serial_no: str
    effective_time: str
    expire_time: str
    encrypt_certificate: EncryptedCertificate


class CertificateList(ResponseModel):
    """The answer of ``GET /v3/certificates``."""

    data: list[PlatformCertificateEntry]


def _query(
    algorithm_type: Literal["RSA", "SM2", "ALL"] | None,
) -> tuple[tuple[str, str | None], ...]:
    return (("algorithm_type", algorithm_type),) if algorithm_type else ()


def download(
    *, algorithm_type: Literal["RSA", "SM2", "ALL"] | None = None
) -> ApiCall[CertificateList]:
    """The encrypted certificate list (the client's key manager does this for you)."""
    return ApiCall(
        method="GET",
        path="/v3/certificates",
        query=_query(algorithm_type),
        parse=parse_model(CertificateList),
    )


def _raw(response: ApiResponse, context: CallContext) -> bytes:
    return response.content


def download_raw() -> ApiCall[bytes]:
    """The certificate list as raw bytes, for the key manager and its shared cache."""
    return ApiCall(method="GET", path="/v3/certificates", parse=_raw)


def is_no_certificates_answer(status_code: int, code: str) -> bool:
    """True for the answer of a merchant that has only the WeChat Pay public key."""
    return status_code == 404 and code in NO_CERTIFICATE_CODES
