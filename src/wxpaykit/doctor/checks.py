"""The checks of ``diagnose_notification``, one function per step.

``diagnose_notification`` runs every check the verifier runs, but never stops at the
first failure: a stale notification is still checked for its signature, an unknown serial
is still tried against every configured key, a bad signature is retried against the
usual ways a body gets altered in transit. The report names the likely cause in words a
developer with a failing callback can act on. It never contains personal data in the
clear: ``openid``, ``user_received_account`` and payer identity are masked.

This is an offline tool for captured notifications. Unlike the gateway it also decrypts
a notification whose signature failed, to tell a wrong APIv3 key from a wrong signing
key; such content is marked untrusted.
"""

from __future__ import annotations

import binascii
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from wxpaykit.core.crypto import ApiV3Key, aes_gcm_open
from wxpaykit.core.keys import PlatformCertificate
from wxpaykit.core.models import NotificationEnvelope, WireModel
from wxpaykit.core.notifications import parse_envelope, parse_resource
from wxpaykit.core.signing import SIGNATURE_TYPE, build_response_message
from wxpaykit.core.verification import DEFAULT_TOLERANCE_SECONDS, PROBE_PREFIX, TrustedKeys
from wxpaykit.doctor.report import (
    DiagnosisReport,
    Recorder,
    StepStatus,
    build_report,
    mask_personal_data,
)
from wxpaykit.errors import DecryptionError, MalformedMessageError, UnknownSerialError

__all__ = ["diagnose_notification"]

_REQUIRED = ("Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Signature", "Wechatpay-Serial")
_OPTIONAL = ("Wechatpay-Signature-Type", "Request-ID")


def diagnose_notification(
    headers: Mapping[str, str],
    body: bytes,
    *,
    keys: TrustedKeys,
    apiv3_key: ApiV3Key | bytes | str | None,
    now: dt.datetime,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    mchid: str | None = None,
) -> DiagnosisReport:
    """Diagnose one notification as received (raw ``body`` bytes, headers in any casing).

    ``mchid``, when given, lets the doctor recognise a merchant certificate configured
    by mistake as a platform certificate.
    """
    run = Recorder()
    found = _check_headers(run, headers)
    _check_body(run, body)
    serial = found.get("Wechatpay-Serial", "")
    signature = found.get("Wechatpay-Signature", "")
    public_key = _choose_key(run, keys, serial, now, mchid)
    _check_clock(run, found.get("Wechatpay-Timestamp"), now, tolerance_seconds)
    signature_ok = _check_signature(run, keys, found, body, public_key)
    envelope = _parse_envelope(run, body)
    plaintext = _decrypt(run, envelope, apiv3_key, trusted=signature_ok)
    resource = _parse_resource(run, envelope, plaintext)
    if signature.startswith(PROBE_PREFIX):
        run.cause(
            "this is a WeChat Pay signature probe (WECHATPAY/SIGNTEST/): refusing it with"
            " 4xx/5xx is correct; WeChat then re-sends a genuinely signed copy"
        )
    what = f"notification {envelope.id} ({envelope.event_type})" if envelope else "notification"
    return build_report(run, what, resource)


# --- steps ----------------------------------------------------------------------------------


def _find_header(headers: Mapping[str, str], name: str) -> tuple[str, str] | None:
    django = "HTTP_" + name.upper().replace("-", "_")
    for key, value in headers.items():
        if key.lower() == name.lower() or key.upper() == django:
            return key, value
    return None


def _check_headers(run: Recorder, headers: Mapping[str, str]) -> dict[str, str]:
    found: dict[str, str] = {}
    details: list[str] = []
    missing: list[str] = []
    for name in _REQUIRED + _OPTIONAL:
        hit = _find_header(headers, name)
        if hit is None or not hit[1].strip():
            if name in _REQUIRED:
                missing.append(name)
            details.append(f"{name}: {'absent' if hit is None else 'empty'}")
            continue
        key, value = hit[0], hit[1].strip()
        found[name] = value
        shown = value if name != "Wechatpay-Signature" else f"{value[:16]}... ({len(value)} chars)"
        spelled = "" if key == name else f" (sent as {key!r})"
        details.append(f"{name}: {shown}{spelled}")
    if missing:
        run.add("headers", "fail", f"missing {', '.join(missing)}", *details)
        run.fail("MISSING_HEADER", f"missing header {missing[0]}")
        run.cause(
            "the headers were lost before your handler saw them: a proxy dropping them, or"
            " the capture does not hold the request's headers"
        )
    else:
        run.add("headers", "ok", "all four Wechatpay-* headers are present", *details)
    signature_type = found.get("Wechatpay-Signature-Type")
    if signature_type is not None and signature_type != SIGNATURE_TYPE:
        run.fail("UNSUPPORTED_SIGNATURE_TYPE", f"Wechatpay-Signature-Type is {signature_type!r}")
    return found


def _check_body(run: Recorder, body: bytes) -> None:
    details = [f"{len(body)} bytes"]
    status: StepStatus = "ok"
    if body.endswith(b"\n"):
        status = "warn"
        details.append(
            "ends with a newline; WeChat Pay's bodies do not (added by a capture or editor?)"
        )
    if b"\r\n" in body or b"\n  " in body or b'": ' in body:
        status = "warn"
        details.append("contains line breaks or spaces between keys; WeChat sends compact JSON")
    try:
        json.loads(body)
    except ValueError:
        status = "warn"
        details.append("is not JSON")
    run.add(
        "body", status, "raw body as received" if status == "ok" else "body looks altered", *details
    )


def _configured_keys(keys: TrustedKeys, now: dt.datetime) -> list[str]:
    lines = [f"configured: public key {key.key_id}" for key in keys.public_keys]
    for cert in keys.certificates:
        state = "valid now" if cert.is_valid_at(now) else "NOT valid now"
        lines.append(
            f"configured: platform certificate {cert.serial_no} ({cert.not_before:%Y-%m-%d} to"
            f" {cert.not_after:%Y-%m-%d}, {state})"
        )
    return lines or ["no platform certificate and no public key is configured"]


def _choose_key(
    run: Recorder, keys: TrustedKeys, serial: str, now: dt.datetime, mchid: str | None
) -> rsa.RSAPublicKey | None:
    configured = _configured_keys(keys, now)
    if not serial:
        run.add("key", "skipped", "no Wechatpay-Serial to choose a key by", *configured)
        return None
    try:
        kind, public_key, certificate = keys.find(serial)
    except UnknownSerialError:
        run.add("key", "fail", f"Wechatpay-Serial {serial} names no configured key", *configured)
        run.fail("UNKNOWN_SERIAL", f"unknown serial: Wechatpay-Serial {serial} is not configured")
        _explain_unknown_serial(run, keys, serial, mchid)
        return None
    if certificate is None:
        run.add("key", "ok", f"WeChat Pay public key {serial} (public-key mode)", *configured)
        return public_key
    if not certificate.is_valid_at(now):
        run.add(
            "key",
            "fail",
            f"platform certificate {certificate.serial_no} is not valid now",
            *configured,
        )
        run.fail(
            "CERTIFICATE_NOT_VALID",
            f"certificate not valid: platform certificate {certificate.serial_no} is valid only"
            f" from {certificate.not_before:%Y-%m-%d} to {certificate.not_after:%Y-%m-%d}",
        )
        run.cause("download the current platform certificates (GET /v3/certificates)")
        return public_key
    run.add("key", "ok", f"platform certificate {certificate.serial_no} ({kind})", *configured)
    return public_key


def _explain_unknown_serial(
    run: Recorder, keys: TrustedKeys, serial: str, mchid: str | None
) -> None:
    merchant_like = [c.serial_no for c in keys.certificates if _is_merchant_certificate(c, mchid)]
    if merchant_like:
        run.cause(
            f"platform certificate {merchant_like[0]} is your merchant API certificate"
            " (apiclient_cert.pem), not a WeChat Pay platform certificate: verify with the"
            " platform certificate from GET /v3/certificates or with the WeChat Pay public key"
        )
    if serial.startswith("PUB_KEY_ID_"):
        run.cause(
            "WeChat Pay signed with its public key: download pub_key.pem and its id from the"
            " merchant portal (API安全 → 微信支付公钥) and configure them"
        )
    else:
        run.cause(
            "WeChat Pay signed with a platform certificate you do not have: download the"
            " current ones (GET /v3/certificates); during rotation two are in use at once"
        )


def _is_merchant_certificate(certificate: PlatformCertificate, mchid: str | None) -> bool:
    # Merchant API certificates name the merchant: CN = mchid, O = 微信商户系统.
    subject = x509.load_pem_x509_certificate(certificate.pem).subject
    names = [a.value for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    orgs = [a.value for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return (mchid is not None and mchid in names) or any("商户" in str(o) for o in orgs)


def _check_clock(run: Recorder, text: str | None, now: dt.datetime, tolerance_seconds: int) -> None:
    if text is None:
        run.add("clock", "skipped", "no Wechatpay-Timestamp")
        return
    if not (text.isascii() and text.isdigit()) or len(text) > 11:
        run.add("clock", "fail", f"Wechatpay-Timestamp {text!r} is not Unix seconds")
        run.fail(
            "STALE_TIMESTAMP", f"stale timestamp: Wechatpay-Timestamp {text!r} is not Unix seconds"
        )
        if text.isascii() and text.isdigit() and len(text) == 13:
            run.cause("the timestamp is in milliseconds; WeChat Pay sends seconds")
        return
    skew = int(now.timestamp()) - int(text)
    sent = dt.datetime.fromtimestamp(int(text), dt.UTC)
    details = (
        f"sent {sent:%Y-%m-%d %H:%M:%S} UTC, now {now.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC",
    )
    if abs(skew) <= tolerance_seconds:
        run.add("clock", "ok", f"skew {skew:+d} s (allowed ±{tolerance_seconds} s)", *details)
        return
    run.add("clock", "fail", f"skew {skew:+d} s is outside ±{tolerance_seconds} s", *details)
    run.fail(
        "STALE_TIMESTAMP",
        f"stale timestamp: Wechatpay-Timestamp is {skew:+d} s from now (allowed ±{tolerance_seconds} s)",
    )
    if skew > 0:
        run.cause(
            "the notification is older than the window: a replayed capture (diagnose it with"
            " the time it arrived: --now), or this server's clock is ahead (check NTP)"
        )
    else:
        run.cause("the timestamp is in the future: this server's clock is behind (check NTP)")


def _verifies(public_key: rsa.RSAPublicKey, signature: bytes, message: bytes) -> bool:
    try:
        public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def _check_signature(
    run: Recorder,
    keys: TrustedKeys,
    found: Mapping[str, str],
    body: bytes,
    chosen: rsa.RSAPublicKey | None,
) -> bool:
    text = found.get("Wechatpay-Signature", "")
    timestamp, nonce = found.get("Wechatpay-Timestamp"), found.get("Wechatpay-Nonce")
    if text.startswith(PROBE_PREFIX):
        run.add("signature", "fail", "signature probe (WECHATPAY/SIGNTEST/), deliberately invalid")
        run.fail(
            "SIGNATURE_PROBE", "signature probe: WeChat Pay sent a deliberately wrong signature"
        )
        return False
    if not text or timestamp is None or nonce is None:
        run.add("signature", "skipped", "the headers it covers are missing")
        return False
    try:
        signature = binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        run.add("signature", "fail", "Wechatpay-Signature is not base64")
        run.fail("SIGNATURE_MISMATCH", "signature mismatch: Wechatpay-Signature is not base64")
        return False
    message = build_response_message(timestamp, nonce, body)
    if chosen is not None and _verifies(chosen, signature, message):
        run.add("signature", "ok", "valid over the raw body under the chosen key")
        return True
    details = _explain_mismatch(run, keys, signature, timestamp, nonce, body, chosen)
    summary = "does not match" if chosen is not None else "no key chosen"
    run.add("signature", "fail", summary, *details)
    run.fail(
        "SIGNATURE_MISMATCH",
        "signature mismatch: the signature does not verify over the raw body under the chosen key"
        if chosen is not None
        else "signature not checked: no configured key matches Wechatpay-Serial",
    )
    return False


def _body_variants(body: bytes) -> list[tuple[str, bytes]]:
    variants = [("without the trailing newline", body.rstrip(b"\r\n"))]
    variants.append(("with CRLF turned into LF", body.replace(b"\r\n", b"\n")))
    try:
        document = json.loads(body)
    except ValueError:
        return variants
    compact = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    variants.append(("re-serialised compactly (the bytes WeChat sent were compact)", compact))
    return [(label, variant) for label, variant in variants if variant != body]


def _explain_mismatch(
    run: Recorder,
    keys: TrustedKeys,
    signature: bytes,
    timestamp: str,
    nonce: str,
    body: bytes,
    chosen: rsa.RSAPublicKey | None,
) -> list[str]:
    details: list[str] = []
    message = build_response_message(timestamp, nonce, body)
    candidates = [(f"public key {k.key_id}", k.public_key) for k in keys.public_keys]
    candidates += [(f"platform certificate {c.serial_no}", c.public_key) for c in keys.certificates]
    for label, public_key in candidates:
        if public_key is not chosen and _verifies(public_key, signature, message):
            details.append(f"it verifies under {label} instead")
            run.cause(
                f"the signature is valid under {label}, but Wechatpay-Serial names another key"
            )
            return details
    if chosen is None:
        return details
    for label, variant in _body_variants(body):
        if _verifies(chosen, signature, build_response_message(timestamp, nonce, variant)):
            details.append(f"it verifies over the body {label}")
            run.cause(
                f"the body was altered after it arrived ({label}): verify the raw request"
                " bytes before any parsing, decoding or re-serialising"
            )
            return details
    run.cause(
        "the body or the Wechatpay-Timestamp/Nonce headers differ from what WeChat Pay signed"
        " (a proxy or framework changed them), or the configured key is not WeChat Pay's"
    )
    return details


def _parse_envelope(run: Recorder, body: bytes) -> NotificationEnvelope | None:
    try:
        return parse_envelope(body)
    except MalformedMessageError as exc:
        run.add("decryption", "skipped", f"envelope not parsed: {exc}")
        run.fail("MALFORMED", f"malformed envelope: {exc}")
        return None


def _decrypt(
    run: Recorder,
    envelope: NotificationEnvelope | None,
    apiv3_key: ApiV3Key | bytes | str | None,
    *,
    trusted: bool,
) -> bytes | None:
    if envelope is None:
        return None
    resource = envelope.resource
    info = (
        f"{resource.algorithm}, nonce {resource.nonce!r}, associated_data {resource.associated_data!r}",
    )
    if apiv3_key is None:
        run.add("decryption", "skipped", "no APIv3 key configured", *info)
        run.fail("DECRYPTION_FAILED", "cannot decrypt: no APIv3 key is configured")
        return None
    try:
        plaintext = aes_gcm_open(
            apiv3_key,
            nonce=resource.nonce,
            associated_data=resource.associated_data,
            ciphertext=resource.ciphertext,
        )
    except DecryptionError as exc:
        run.add("decryption", "fail", str(exc), *info)
        run.fail("DECRYPTION_FAILED", f"decryption failed: {exc}")
        if trusted:
            run.cause(
                "the APIv3 key is wrong: it is not the key set in the merchant portal"
                " (API安全 → APIv3密钥), which may have been reset; the signature is valid,"
                " so the ciphertext is as WeChat Pay sent it"
            )
        else:
            run.cause("the APIv3 key is wrong, or the ciphertext was changed in transit")
        return None
    note = "" if trusted else " (signature not valid: do not trust this content)"
    run.add("decryption", "ok", f"AES-256-GCM opened, {len(plaintext)} bytes{note}", *info)
    return plaintext


def _parse_resource(
    run: Recorder, envelope: NotificationEnvelope | None, plaintext: bytes | None
) -> dict[str, Any] | None:
    if envelope is None or plaintext is None:
        run.add("resource", "skipped", "nothing decrypted")
        return None
    try:
        parsed = parse_resource(envelope, plaintext)
    except MalformedMessageError as exc:
        run.add("resource", "fail", str(exc))
        run.fail("MALFORMED", f"malformed resource: {exc}")
        return None
    data = (
        parsed.model_dump(mode="json", exclude_none=True)
        if isinstance(parsed, WireModel)
        else parsed
    )
    masked: dict[str, Any] = mask_personal_data(data)
    kind = type(parsed).__name__ if isinstance(parsed, WireModel) else "JSON object"
    run.add("resource", "ok", f"{envelope.event_type} parsed as {kind}")
    return masked
