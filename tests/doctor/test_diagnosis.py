"""``diagnose_notification``: every step runs, the verdict names the first reason, data is masked."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from wxpaykit.core.keys import WeChatPayPublicKey, load_platform_certificate
from wxpaykit.core.verification import TrustedKeys
from wxpaykit.doctor import DiagnosisReport, diagnose_notification, mask_personal_data
from wxpaykit.testing.keys import GeneratedCertificate
from wxpaykit.testing.notifications import (
    SealedNotification,
    sample_refund,
    sample_transaction,
    seal_notification,
)

KEY = "TestAPIv3Key0123456789abcdefABCD"
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.fixture
def public_keys(wechatpay_public_key: WeChatPayPublicKey) -> TrustedKeys:
    """Public-key mode only."""
    return TrustedKeys(public_keys=[wechatpay_public_key])


@pytest.fixture
def sealed(wechatpay_key_pair: tuple[str, rsa.RSAPrivateKey]) -> SealedNotification:
    """A genuine payment notification signed at ``NOW``."""
    key_id, private_key = wechatpay_key_pair
    return seal_notification(
        sample_transaction(),
        apiv3_key=KEY,
        signing_key=private_key,
        serial=key_id,
        timestamp=int(NOW.timestamp()),
    )


def _diagnose(
    sealed: SealedNotification,
    keys: TrustedKeys,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    apiv3_key: str | None = KEY,
    now: dt.datetime = NOW,
    mchid: str | None = None,
) -> DiagnosisReport:
    return diagnose_notification(
        sealed.headers if headers is None else headers,
        sealed.body if body is None else body,
        keys=keys,
        apiv3_key=apiv3_key,
        now=now,
        tolerance_seconds=300,
        mchid=mchid,
    )


def _statuses(report: DiagnosisReport) -> dict[str, str]:
    return {step.name: step.status for step in report.steps}


def _assert_no_personal_data(report: DiagnosisReport) -> None:
    everything = json.dumps(
        [
            report.verdict,
            report.likely_causes,
            [(s.summary, s.details) for s in report.steps],
            report.resource,
        ],
        ensure_ascii=False,
    )
    assert OPENID not in everything
    assert "招商银行信用卡0403" not in everything


def test_genuine_notification_passes_every_step(
    sealed: SealedNotification, public_keys: TrustedKeys
) -> None:
    report = _diagnose(sealed, public_keys)
    assert report.ok
    assert report.reason_code is None
    assert report.verdict.startswith("OK: notification ")
    assert "TRANSACTION.SUCCESS" in report.verdict
    assert set(_statuses(report).values()) == {"ok"}
    assert report.resource is not None
    assert report.resource["payer"]["openid"] == "oUpF****WeS6o"
    assert report.resource["amount"]["total"] == 100
    assert report.likely_causes == ()
    assert "public-key mode" in report.step("key").summary
    _assert_no_personal_data(report)


def test_probe_is_named_and_explained(sealed: SealedNotification, public_keys: TrustedKeys) -> None:
    headers = {**sealed.headers, "Wechatpay-Signature": "WECHATPAY/SIGNTEST/abcdef=="}
    report = _diagnose(sealed, public_keys, headers=headers)
    assert report.reason_code == "SIGNATURE_PROBE"
    assert report.verdict.startswith("FAIL: signature probe")
    assert any("re-sends a genuinely signed copy" in cause for cause in report.likely_causes)
    # The other steps still ran: the key, the clock and the decryption were fine.
    assert _statuses(report)["clock"] == "ok"
    assert _statuses(report)["decryption"] == "ok"


def test_stale_notification_still_reports_a_valid_signature(
    sealed: SealedNotification, public_keys: TrustedKeys
) -> None:
    report = _diagnose(sealed, public_keys, now=NOW + dt.timedelta(hours=1))
    assert report.reason_code == "STALE_TIMESTAMP"
    assert report.verdict == (
        "FAIL: stale timestamp: Wechatpay-Timestamp is +3600 s from now (allowed ±300 s);"
        " the signature itself is valid"
    )
    assert _statuses(report)["signature"] == "ok"
    assert any("--now" in cause for cause in report.likely_causes)


def test_stale_and_tampered_reports_both(
    sealed: SealedNotification, public_keys: TrustedKeys
) -> None:
    body = sealed.body.replace(b'"summary":"', b'"summary":"X')
    report = _diagnose(sealed, public_keys, body=body, now=NOW - dt.timedelta(hours=1))
    assert report.reason_code == "STALE_TIMESTAMP"
    assert "-3600 s" in report.verdict
    assert "signature mismatch" in report.verdict
    assert any("clock is behind" in cause for cause in report.likely_causes)


def test_milliseconds_timestamp_is_explained(
    sealed: SealedNotification, public_keys: TrustedKeys
) -> None:
    headers = {**sealed.headers, "Wechatpay-Timestamp": str(int(NOW.timestamp()) * 1000)}
    report = _diagnose(sealed, public_keys, headers=headers)
    assert report.reason_code == "STALE_TIMESTAMP"
    assert any("milliseconds" in cause for cause in report.likely_causes)


def test_wrong_apiv3_key_with_a_valid_signature(
    sealed: SealedNotification, public_keys: TrustedKeys
) -> None:
    report = _diagnose(sealed, public_keys, apiv3_key=KEY[::-1])
    assert report.reason_code == "DECRYPTION_FAILED"
    assert report.verdict.startswith("FAIL: decryption failed: AES-GCM authentication failed")
    assert _statuses(report)["signature"] == "ok"
    assert _statuses(report)["resource"] == "skipped"
    assert any("APIv3 key is wrong" in cause and "reset" in cause for cause in report.likely_causes)
    assert report.resource is None


def test_missing_apiv3_key_is_a_failure(
    sealed: SealedNotification, public_keys: TrustedKeys
) -> None:
    report = _diagnose(sealed, public_keys, apiv3_key=None)
    assert report.reason_code == "DECRYPTION_FAILED"
    assert "no APIv3 key" in report.verdict


def test_unknown_serial_lists_the_configured_keys(
    sealed: SealedNotification, platform_cert: GeneratedCertificate
) -> None:
    keys = TrustedKeys(certificates=[load_platform_certificate(platform_cert.certificate_pem)])
    report = _diagnose(sealed, keys)
    assert report.reason_code == "UNKNOWN_SERIAL"
    assert report.verdict.startswith("FAIL: unknown serial: Wechatpay-Serial PUB_KEY_ID_")
    key_step = report.step("key")
    assert any(platform_cert.serial_no in detail for detail in key_step.details)
    assert any("pub_key.pem" in cause for cause in report.likely_causes)


def test_merchant_certificate_configured_as_platform_certificate_is_recognised(
    sealed: SealedNotification, merchant_cert: GeneratedCertificate
) -> None:
    keys = TrustedKeys(certificates=[load_platform_certificate(merchant_cert.certificate_pem)])
    report = _diagnose(sealed, keys, mchid="1900007291")
    assert report.reason_code == "UNKNOWN_SERIAL"
    assert any("merchant API certificate" in cause for cause in report.likely_causes)


def test_signature_under_another_configured_key_is_pointed_out(
    sealed: SealedNotification,
    wechatpay_public_key: WeChatPayPublicKey,
    platform_cert: GeneratedCertificate,
) -> None:
    platform = load_platform_certificate(platform_cert.certificate_pem)
    keys = TrustedKeys(certificates=[platform], public_keys=[wechatpay_public_key])
    headers = {**sealed.headers, "Wechatpay-Serial": platform.serial_no}
    report = _diagnose(sealed, keys, headers=headers)
    assert report.reason_code == "SIGNATURE_MISMATCH"
    assert any("verifies under public key" in d for d in report.step("signature").details)


@pytest.mark.parametrize(
    ("alter", "cause"),
    [
        (lambda body: body + b"\n", "without the trailing newline"),
        (
            lambda body: json.dumps(json.loads(body), indent=2, ensure_ascii=False).encode(),
            "re-serialised",
        ),
        (
            lambda body: body.replace(b"TRANSACTION.SUCCESS", b"TRANSACTION.SUCCESs"),
            "differ from what WeChat Pay signed",
        ),
    ],
    ids=["trailing-newline", "pretty-printed", "tampered"],
)
def test_tampered_or_altered_body_is_a_mismatch_with_the_alteration_named(
    sealed: SealedNotification, public_keys: TrustedKeys, alter: Any, cause: str
) -> None:
    report = _diagnose(sealed, public_keys, body=alter(sealed.body))
    assert report.reason_code == "SIGNATURE_MISMATCH"
    assert report.verdict.startswith("FAIL: signature mismatch")
    assert any(cause in text for text in report.likely_causes)
    # Decryption still ran; its content is flagged as untrusted.
    decryption = report.step("decryption")
    if decryption.status == "ok":
        assert "do not trust" in decryption.summary
    _assert_no_personal_data(report)


def test_altered_body_is_flagged_by_the_body_step(
    sealed: SealedNotification, public_keys: TrustedKeys
) -> None:
    report = _diagnose(sealed, public_keys, body=sealed.body + b"\n")
    assert report.step("body").status == "warn"


@pytest.mark.parametrize(
    "missing", ["Wechatpay-Signature", "Wechatpay-Timestamp", "Wechatpay-Serial"]
)
def test_missing_header_is_the_verdict(
    sealed: SealedNotification, public_keys: TrustedKeys, missing: str
) -> None:
    headers = {k: v for k, v in sealed.headers.items() if k != missing}
    report = _diagnose(sealed, public_keys, headers=headers)
    assert report.reason_code == "MISSING_HEADER"
    assert report.verdict.startswith(f"FAIL: missing header {missing}")
    assert _statuses(report)["headers"] == "fail"


def test_framework_spellings_are_reported(
    sealed: SealedNotification, public_keys: TrustedKeys
) -> None:
    django = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in sealed.headers.items()}
    report = _diagnose(sealed, public_keys, headers=django)
    assert report.ok
    assert any("sent as 'HTTP_WECHATPAY_SIGNATURE'" in d for d in report.step("headers").details)


def test_expired_platform_certificate_is_the_verdict(
    platform_cert: GeneratedCertificate, wechatpay_public_key: WeChatPayPublicKey
) -> None:
    platform = load_platform_certificate(platform_cert.certificate_pem)
    keys = TrustedKeys(certificates=[platform])
    later = platform.not_after + dt.timedelta(days=1)
    sealed = seal_notification(
        sample_transaction(),
        apiv3_key=KEY,
        signing_key=platform_cert.private_key,
        serial=platform.serial_no,
        timestamp=int(later.timestamp()),
    )
    report = _diagnose(sealed, keys, now=later)
    assert report.reason_code == "CERTIFICATE_NOT_VALID"
    assert _statuses(report)["signature"] == "ok"


def test_refund_resource_is_masked(
    wechatpay_key_pair: tuple[str, rsa.RSAPrivateKey], public_keys: TrustedKeys
) -> None:
    key_id, private_key = wechatpay_key_pair
    sealed = seal_notification(
        sample_refund(),
        apiv3_key=KEY,
        signing_key=private_key,
        serial=key_id,
        timestamp=int(NOW.timestamp()),
        event_type="REFUND.SUCCESS",
    )
    report = _diagnose(sealed, public_keys)
    assert report.ok
    assert report.resource is not None
    assert report.resource["user_received_account"] == "招商****03"
    _assert_no_personal_data(report)


def test_masking_covers_payer_identity_and_partner_openids() -> None:
    masked = mask_personal_data(
        {
            "payer": {
                "sp_openid": OPENID,
                "sub_openid": OPENID,
                "identity": {"type": "IDCARD", "number": "110101199003071234", "name": "张三"},
            },
            "out_trade_no": "1217752501201407033233368018",
        }
    )
    assert masked == {
        "payer": {
            "sp_openid": "oUpF****WeS6o",
            "sub_openid": "oUpF****WeS6o",
            "identity": {"type": "ID****RD", "number": "1101****71234", "name": "****"},
        },
        "out_trade_no": "1217752501201407033233368018",
    }
