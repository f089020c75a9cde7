"""A tiny in-memory stand-in for WeChat Pay, served through ``httpx.MockTransport``.

Unit tests use it where they must control what a real server cannot be made to do on
cue (tampered bytes, a stale clock, a given sequence of failures). It is built from
``wxpaykit.core`` signing and crypto, and checks each request's signature over the
raw target and body exactly as received, so a client that signs anything but the
bytes it sends fails here. The integration tests use the real simulator instead.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from wxpaykit.core.crypto import aes_gcm_seal
from wxpaykit.core.signing import build_request_message, parse_authorization, sign_response_headers
from wxpaykit.testing.keys import GeneratedCertificate

Handler = Callable[[httpx.Request], tuple[int, Any]]


@dataclass
class FakePlatform:
    """Routes, signing key choice, injected faults and a log of what arrived."""

    merchant: GeneratedCertificate
    apiv3_key: str
    certificates: list[GeneratedCertificate] = field(default_factory=list)
    public_key: tuple[str, rsa.RSAPrivateKey] | None = None
    #: "certificate" (newest in ``certificates``) or "public_key".
    sign_with: str = "certificate"
    certificates_available: bool = True
    clock: Callable[[], float] = time.time
    routes: dict[tuple[str, str], Handler] = field(default_factory=dict)
    #: Consumed one per request before routing: an int status or an exception to raise.
    faults: list[int | Exception] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    certificate_downloads: int = 0
    #: Mutates the signed response (headers, body) to simulate tampering.
    tamper: Callable[[dict[str, str], bytes], tuple[dict[str, str], bytes]] | None = None

    def route(self, method: str, path: str, handler: Handler) -> None:
        """Answer ``method path`` (path without query) with ``handler``."""
        self.routes[(method, path)] = handler

    def transport(self) -> httpx.MockTransport:
        """A sync/async transport calling :meth:`handle`."""
        return httpx.MockTransport(self.handle)

    def signing_pair(self) -> tuple[str, rsa.RSAPrivateKey]:
        """(serial, private key) responses are signed with."""
        if self.sign_with == "public_key":
            assert self.public_key is not None
            return self.public_key
        newest = self.certificates[-1]
        return newest.serial_no, newest.private_key

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Check the signature, apply faults, route, sign the answer."""
        self.requests.append(request)
        if self.faults:
            fault = self.faults.pop(0)
            if isinstance(fault, Exception):
                raise fault
            return self.error(fault, _code_for(fault), "injected")
        problem = self._check_authorization(request)
        if problem:
            return self.error(401, "SIGN_ERROR", problem)
        if request.url.path == "/v3/certificates":
            return self._certificates()
        handler = self.routes.get((request.method, request.url.path))
        if handler is None:
            return self.error(404, "NOT_FOUND", "no route")
        status, document = handler(request)
        if status >= 400:
            return self.error(status, document["code"], document["message"], document.get("detail"))
        body = b"" if document is None else json.dumps(document, separators=(",", ":")).encode()
        return self.signed(status, body)

    def signed(self, status: int, body: bytes) -> httpx.Response:
        """A response signed as the platform signs it."""
        serial, key = self.signing_pair()
        headers = sign_response_headers(
            body=body,
            private_key=key,
            serial=serial,
            timestamp=int(self.clock()),
            nonce=secrets.token_hex(16),
        )
        headers["Request-ID"] = "REQ-" + secrets.token_hex(8)
        if body:
            headers["Content-Type"] = "application/json; charset=utf-8"
        if self.tamper is not None:
            headers, body = self.tamper(headers, body)
        return httpx.Response(status, headers=headers, content=body)

    def error(self, status: int, code: str, message: str, detail: Any = None) -> httpx.Response:
        """An unsigned platform error answer."""
        document: dict[str, Any] = {"code": code, "message": message}
        if detail is not None:
            document["detail"] = detail
        return httpx.Response(
            status,
            headers={"Request-ID": "REQ-ERR-" + secrets.token_hex(4)},
            json=document,
        )

    def _check_authorization(self, request: httpx.Request) -> str | None:
        header = request.headers.get("Authorization")
        if not header:
            return "missing Authorization"
        fields = parse_authorization(header)
        message = build_request_message(
            request.method,
            request.url.raw_path.decode("ascii"),
            fields.timestamp,
            fields.nonce_str,
            request.content,
        )
        try:
            self.merchant.private_key.public_key().verify(
                base64.b64decode(fields.signature), message, padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature:
            return "sign not match"
        if fields.serial_no != self.merchant.serial_no:
            return "商户证书序列号有误。"
        return None

    def _certificates(self) -> httpx.Response:
        self.certificate_downloads += 1
        if not self.certificates_available:
            return self.error(404, "RESOURCE_NOT_EXISTS", "无可用的平台证书")
        data = []
        for certificate in self.certificates:
            nonce = secrets.token_hex(6)
            data.append(
                {
                    "serial_no": certificate.serial_no,
                    "effective_time": certificate.certificate.not_valid_before_utc.isoformat(),
                    "expire_time": certificate.certificate.not_valid_after_utc.isoformat(),
                    "encrypt_certificate": {
                        "algorithm": "AEAD_AES_256_GCM",
                        "nonce": nonce,
                        "associated_data": "certificate",
                        "ciphertext": aes_gcm_seal(
                            self.apiv3_key,
                            nonce=nonce,
                            associated_data="certificate",
                            plaintext=certificate.certificate_pem,
                        ),
                    },
                }
            )
        body = json.dumps({"data": data}, separators=(",", ":")).encode()
        return self.signed(200, body)


def _code_for(status: int) -> str:
    return {
        429: "FREQUENCY_LIMITED",
        500: "SYSTEM_ERROR",
        400: "PARAM_ERROR",
        401: "SIGN_ERROR",
    }.get(status, "SYSTEM_ERROR")


def json_body(request: httpx.Request) -> dict[str, Any]:
    """The JSON object a request carried."""
    document: dict[str, Any] = json.loads(request.content)
    return document
