"""Verifying WeChat Pay's signature on notifications and responses (§3): every refusal path."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from wxpaykit.core.keys import PlatformCertificate, WeChatPayPublicKey, load_platform_certificate
from wxpaykit.core.signing import build_response_message, sign_response_headers
from wxpaykit.core.verification import (
    SignedHeaders,
    TrustedKeys,
    extract_signed_headers,
    verify_signature,
)
from wxpaykit.errors import (
    CertificateNotValidError,
    MissingHeaderError,
    SignatureMismatchError,
    SignatureProbeError,
    StaleTimestampError,
    UnknownSerialError,
    UnsupportedSignatureTypeError,
    VerificationError,
)
from wxpaykit.testing.keys import GeneratedCertificate, generate_certificate

SIGNED_AT = 1_722_850_421
NOW = dt.datetime.fromtimestamp(SIGNED_AT, dt.UTC)
BODY = b'{"id":"EV-2018022511223320873","event_type":"TRANSACTION.SUCCESS"}'
HEADER_NAMES = ("Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Signature", "Wechatpay-Serial")
NONCE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~!"
PROPERTY = settings(max_examples=40, deadline=None)


@pytest.fixture(scope="module")
def long_lived_platform_cert() -> GeneratedCertificate:
    """A platform certificate valid around ``NOW`` (2024) and today."""
    return generate_certificate(
        "Tenpay.com Root CA",
        not_before=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
        not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=365),
    )


@pytest.fixture(scope="module")
def platform(long_lived_platform_cert: GeneratedCertificate) -> PlatformCertificate:
    """The merchant-side view of the platform certificate."""
    return load_platform_certificate(long_lived_platform_cert.certificate_pem)


@pytest.fixture(scope="module")
def keys(platform: PlatformCertificate, wechatpay_public_key: WeChatPayPublicKey) -> TrustedKeys:
    """Platform certificate and public key at once, as during the migration (§3.5)."""
    return TrustedKeys(certificates=[platform], public_keys=[wechatpay_public_key])


@pytest.fixture(scope="module")
def signed(long_lived_platform_cert: GeneratedCertificate) -> dict[str, str]:
    """Headers signing ``BODY`` at ``SIGNED_AT`` with the platform certificate's key."""
    headers = sign_response_headers(
        body=BODY,
        private_key=long_lived_platform_cert.private_key,
        serial=long_lived_platform_cert.serial_no,
        timestamp=SIGNED_AT,
        nonce="ukDaEPvYjkM5choqNcYJwAjiC64BonHH",
    )
    return {**headers, "Request-ID": "08F5B8C2B506102C18FDDFEEA30620BE821E28EDC405-0"}


# --- known answer: V6 -------------------------------------------------------------------


def test_v6_verifies_with_a_fixed_clock(
    vectors: dict[str, Any], v6_keys: TrustedKeys, v6_now: dt.datetime
) -> None:
    v6 = vectors["V6"]
    verified = verify_signature(v6["headers"], v6["body"].encode("utf-8"), v6_keys, now=v6_now)
    assert verified.key_kind == "public_key"
    assert verified.serial == v6["headers"]["Wechatpay-Serial"]
    assert verified.timestamp == 1614753717
    assert verified.skew_seconds == 10


def test_v6_is_refused_as_stale_with_the_real_clock(
    vectors: dict[str, Any], v6_keys: TrustedKeys
) -> None:
    v6 = vectors["V6"]
    real_now = dt.datetime.now(dt.UTC)
    with pytest.raises(StaleTimestampError) as caught:
        verify_signature(v6["headers"], v6["body"].encode("utf-8"), v6_keys, now=real_now)
    assert caught.value.skew_seconds > 3 * 365 * 86400
    assert caught.value.serial == v6["headers"]["Wechatpay-Serial"]


def test_accepts_both_key_kinds_during_migration(
    keys: TrustedKeys,
    signed: dict[str, str],
    wechatpay_key_pair: tuple[str, rsa.RSAPrivateKey],
) -> None:
    assert verify_signature(signed, BODY, keys, now=NOW).key_kind == "certificate"
    key_id, private_key = wechatpay_key_pair
    by_public_key = sign_response_headers(
        body=BODY, private_key=private_key, serial=key_id, timestamp=SIGNED_AT, nonce="n"
    )
    assert verify_signature(by_public_key, BODY, keys, now=NOW).key_kind == "public_key"


@pytest.mark.parametrize("transform", [str.lower, lambda s: "0" + s, lambda s: f"  {s} "])
def test_serial_is_matched_as_a_number(
    keys: TrustedKeys, signed: dict[str, str], transform: Any
) -> None:
    headers = {**signed, "Wechatpay-Serial": transform(signed["Wechatpay-Serial"])}
    assert verify_signature(headers, BODY, keys, now=NOW).key_kind == "certificate"


def test_signature_by_another_key_under_a_known_serial_is_a_mismatch(
    keys: TrustedKeys, wechatpay_key_pair: tuple[str, rsa.RSAPrivateKey], signed: dict[str, str]
) -> None:
    _, other_key = wechatpay_key_pair
    forged = sign_response_headers(
        body=BODY,
        private_key=other_key,
        serial=signed["Wechatpay-Serial"],
        timestamp=SIGNED_AT,
        nonce="n",
    )
    with pytest.raises(SignatureMismatchError):
        verify_signature(forged, BODY, keys, now=NOW)


# --- headers ----------------------------------------------------------------------------


@pytest.mark.parametrize("missing", HEADER_NAMES)
@pytest.mark.parametrize("how", ["absent", "empty", "blank"])
def test_missing_header_is_named(
    keys: TrustedKeys, signed: dict[str, str], missing: str, how: str
) -> None:
    headers = dict(signed)
    if how == "absent":
        del headers[missing]
    else:
        headers[missing] = "" if how == "empty" else "   "
    with pytest.raises(MissingHeaderError) as caught:
        verify_signature(headers, BODY, keys, now=NOW)
    assert caught.value.header == missing
    assert missing in str(caught.value)
    assert caught.value.request_id == signed["Request-ID"]


@pytest.mark.parametrize(
    "rename",
    [
        str.lower,  # ASGI (Starlette, FastAPI)
        str.upper,
        lambda name: "HTTP_" + name.upper().replace("-", "_"),  # Django request.META
    ],
    ids=["asgi-lower", "upper", "django-meta"],
)
def test_header_casing_variants_are_found(
    keys: TrustedKeys, signed: dict[str, str], rename: Any
) -> None:
    headers = {rename(name): value for name, value in signed.items()}
    verified = verify_signature(headers, BODY, keys, now=NOW)
    assert verified.request_id == signed["Request-ID"]
    assert verified.serial == signed["Wechatpay-Serial"]


def test_extract_signed_headers_keeps_request_id_and_signature_type(signed: dict[str, str]) -> None:
    extracted = extract_signed_headers({k.lower(): v for k, v in signed.items()})
    assert extracted == SignedHeaders(
        timestamp=str(SIGNED_AT),
        nonce=signed["Wechatpay-Nonce"],
        signature=signed["Wechatpay-Signature"],
        serial=signed["Wechatpay-Serial"],
        signature_type="WECHATPAY2-SHA256-RSA2048",
        request_id=signed["Request-ID"],
    )


def test_accepts_pre_extracted_headers(keys: TrustedKeys, signed: dict[str, str]) -> None:
    assert verify_signature(extract_signed_headers(signed), BODY, keys, now=NOW).timestamp == (
        SIGNED_AT
    )


def test_other_signature_type_is_refused(keys: TrustedKeys, signed: dict[str, str]) -> None:
    headers = {**signed, "Wechatpay-Signature-Type": "WECHATPAY2-SM2-WITH-SM3"}
    with pytest.raises(UnsupportedSignatureTypeError):
        verify_signature(headers, BODY, keys, now=NOW)


def test_absent_signature_type_is_tolerated(keys: TrustedKeys, signed: dict[str, str]) -> None:
    headers = {k: v for k, v in signed.items() if k != "Wechatpay-Signature-Type"}
    assert verify_signature(headers, BODY, keys, now=NOW).key_kind == "certificate"


# --- probes, serials, certificate validity ----------------------------------------------


@settings(max_examples=30, deadline=None)
@given(suffix=st.text(max_size=80))
def test_probe_prefix_is_its_own_outcome(
    keys: TrustedKeys, signed: dict[str, str], suffix: str
) -> None:
    headers = {**signed, "Wechatpay-Signature": "WECHATPAY/SIGNTEST/" + suffix}
    with pytest.raises(SignatureProbeError) as caught:
        verify_signature(headers, BODY, keys, now=NOW)
    assert caught.value.reason_code == "SIGNATURE_PROBE"
    assert caught.value.request_id == signed["Request-ID"]


@pytest.mark.parametrize(
    "serial",
    [
        "5157F09EFDC096DE15EBE81A47057A7232F1B8E1",
        "PUB_KEY_ID_0000000000000000000000000000000001",
        "not-hex",
    ],
)
def test_unknown_serial_carries_serial_and_request_id(
    keys: TrustedKeys, signed: dict[str, str], serial: str
) -> None:
    with pytest.raises(UnknownSerialError) as caught:
        verify_signature({**signed, "Wechatpay-Serial": serial}, BODY, keys, now=NOW)
    assert caught.value.serial == serial
    assert caught.value.request_id == signed["Request-ID"]
    assert serial in str(caught.value)


@pytest.mark.parametrize(
    ("not_before", "not_after"),
    [
        (dt.datetime(2010, 1, 1, tzinfo=dt.UTC), dt.datetime(2015, 1, 1, tzinfo=dt.UTC)),
        (dt.datetime(2030, 1, 1, tzinfo=dt.UTC), dt.datetime(2035, 1, 1, tzinfo=dt.UTC)),
    ],
    ids=["expired", "not-yet-valid"],
)
def test_platform_certificate_outside_its_validity_is_refused(
    not_before: dt.datetime, not_after: dt.datetime
) -> None:
    generated = generate_certificate(
        "Tenpay.com Root CA", not_before=not_before, not_after=not_after
    )
    keys = TrustedKeys(certificates=[load_platform_certificate(generated.certificate_pem)])
    headers = sign_response_headers(
        body=BODY,
        private_key=generated.private_key,
        serial=generated.serial_no,
        timestamp=SIGNED_AT,
        nonce="n",
    )
    with pytest.raises(CertificateNotValidError) as caught:
        verify_signature(headers, BODY, keys, now=NOW)
    assert caught.value.serial == generated.serial_no


# --- the timestamp window -----------------------------------------------------------------


@PROPERTY
@given(
    tolerance=st.integers(min_value=0, max_value=86_400),
    delta=st.sampled_from([-1, 0, 1]),
    direction=st.sampled_from([1, -1]),
)
def test_window_is_inclusive_at_the_tolerance_both_ways(
    keys: TrustedKeys, signed: dict[str, str], tolerance: int, delta: int, direction: int
) -> None:
    skew = direction * (tolerance + delta)
    now = NOW + dt.timedelta(seconds=skew)
    if abs(skew) <= tolerance:
        verified = verify_signature(signed, BODY, keys, now=now, tolerance_seconds=tolerance)
        assert verified.skew_seconds == skew
    else:
        with pytest.raises(StaleTimestampError) as caught:
            verify_signature(signed, BODY, keys, now=now, tolerance_seconds=tolerance)
        assert caught.value.skew_seconds == skew


@pytest.mark.parametrize(("skew", "accepted"), [(299, True), (300, True), (301, False)])
@pytest.mark.parametrize("direction", [1, -1], ids=["sender-behind", "sender-ahead"])
def test_default_window_is_300_seconds(
    keys: TrustedKeys, signed: dict[str, str], skew: int, accepted: bool, direction: int
) -> None:
    now = NOW + dt.timedelta(seconds=direction * skew)
    if accepted:
        verify_signature(signed, BODY, keys, now=now)
    else:
        with pytest.raises(StaleTimestampError):
            verify_signature(signed, BODY, keys, now=now)


@pytest.mark.parametrize(
    "timestamp", [str(SIGNED_AT * 1000), "17228504２1", "1722850²21", "abc", "-1"]
)
def test_non_second_timestamps_are_refused_as_stale(
    keys: TrustedKeys, signed: dict[str, str], timestamp: str
) -> None:
    with pytest.raises(StaleTimestampError, match="not a Unix time in seconds"):
        verify_signature({**signed, "Wechatpay-Timestamp": timestamp}, BODY, keys, now=NOW)


def test_milliseconds_timestamp_is_explained(keys: TrustedKeys, signed: dict[str, str]) -> None:
    headers = {**signed, "Wechatpay-Timestamp": str(SIGNED_AT * 1000)}
    with pytest.raises(StaleTimestampError, match="milliseconds"):
        verify_signature(headers, BODY, keys, now=NOW)


def test_naive_clock_is_a_caller_error(keys: TrustedKeys, signed: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_signature(signed, BODY, keys, now=dt.datetime(2024, 8, 5))


# --- any flipped byte is refused ----------------------------------------------------------


@PROPERTY
@given(data=st.data())
def test_any_flipped_body_byte_is_a_mismatch(
    keys: TrustedKeys, signed: dict[str, str], data: st.DataObject
) -> None:
    index = data.draw(st.integers(min_value=0, max_value=len(BODY) - 1))
    mask = data.draw(st.integers(min_value=1, max_value=255))
    tampered = bytearray(BODY)
    tampered[index] ^= mask
    with pytest.raises(SignatureMismatchError):
        verify_signature(signed, bytes(tampered), keys, now=NOW)


@PROPERTY
@given(data=st.data())
def test_any_flipped_signature_byte_is_a_mismatch(
    keys: TrustedKeys, signed: dict[str, str], data: st.DataObject
) -> None:
    raw = bytearray(base64.b64decode(signed["Wechatpay-Signature"]))
    index = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    raw[index] ^= data.draw(st.integers(min_value=1, max_value=255))
    headers = {**signed, "Wechatpay-Signature": base64.b64encode(bytes(raw)).decode()}
    with pytest.raises(SignatureMismatchError):
        verify_signature(headers, BODY, keys, now=NOW)


@pytest.mark.parametrize("signature", ["not base64!", "QUJD", "====", "QUJD\n"])
def test_signature_that_is_not_base64_of_a_signature_is_a_mismatch(
    keys: TrustedKeys, signed: dict[str, str], signature: str
) -> None:
    with pytest.raises(SignatureMismatchError):
        verify_signature({**signed, "Wechatpay-Signature": signature}, BODY, keys, now=NOW)


@PROPERTY
@given(data=st.data())
def test_any_changed_nonce_character_is_a_mismatch(
    keys: TrustedKeys, signed: dict[str, str], data: st.DataObject
) -> None:
    nonce = signed["Wechatpay-Nonce"]
    index = data.draw(st.integers(min_value=0, max_value=len(nonce) - 1))
    replacement = data.draw(st.sampled_from(NONCE_ALPHABET).filter(lambda c: c != nonce[index]))
    headers = {**signed, "Wechatpay-Nonce": nonce[:index] + replacement + nonce[index + 1 :]}
    with pytest.raises(SignatureMismatchError):
        verify_signature(headers, BODY, keys, now=NOW)


@PROPERTY
@given(data=st.data(), tolerance=st.sampled_from([300, 10**10]))
def test_any_changed_timestamp_character_is_refused(
    keys: TrustedKeys, signed: dict[str, str], data: st.DataObject, tolerance: int
) -> None:
    text = signed["Wechatpay-Timestamp"]
    index = data.draw(st.integers(min_value=0, max_value=len(text) - 1))
    replacement = data.draw(st.sampled_from("0123456789x²٣").filter(lambda c: c != text[index]))
    changed = text[:index] + replacement + text[index + 1 :]
    headers = {**signed, "Wechatpay-Timestamp": changed}
    # Within the window the signature catches the change; outside it the clock does.
    expected: type[VerificationError] = StaleTimestampError
    if changed.isascii() and changed.isdigit() and abs(int(changed) - SIGNED_AT) <= tolerance:
        expected = SignatureMismatchError
    with pytest.raises(expected):
        verify_signature(headers, BODY, keys, now=NOW, tolerance_seconds=tolerance)


# --- the trusted key set ------------------------------------------------------------------


def test_trusted_keys_find_replace_and_encryption_key(
    platform: PlatformCertificate, wechatpay_public_key: WeChatPayPublicKey
) -> None:
    keys = TrustedKeys(certificates=[platform])
    assert keys.knows(platform.serial_no)
    assert keys.knows(platform.serial_no.lower())
    assert not keys.knows(wechatpay_public_key.key_id)
    assert keys.encryption_key() == (platform.serial_no, platform.public_key)
    assert keys.newest_certificate() is platform

    keys.add_public_key(wechatpay_public_key)
    assert keys.knows(wechatpay_public_key.key_id)
    # The public key wins for sensitive-field encryption (§8): it never rotates under us.
    assert keys.encryption_key() == (wechatpay_public_key.key_id, wechatpay_public_key.public_key)

    keys.replace_certificates([])
    assert keys.certificates == []
    assert not keys.knows(platform.serial_no)
    assert keys.public_keys == [wechatpay_public_key]


def test_newest_certificate_is_the_latest_to_become_valid() -> None:
    older = load_platform_certificate(
        generate_certificate(
            "old",
            not_before=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
            not_after=dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
        ).certificate_pem
    )
    newer = load_platform_certificate(
        generate_certificate(
            "new",
            not_before=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
            not_after=dt.datetime(2029, 1, 1, tzinfo=dt.UTC),
        ).certificate_pem
    )
    assert TrustedKeys(certificates=[older, newer]).newest_certificate() is newer


def test_empty_key_set_has_no_encryption_key() -> None:
    keys = TrustedKeys()
    assert keys.newest_certificate() is None
    with pytest.raises(UnknownSerialError, match="no platform certificate"):
        keys.encryption_key()


# --- RSA encode-and-compare edge: a signature one byte short ------------------------------


def test_signature_with_its_leading_zero_byte_dropped_is_refused(
    long_lived_platform_cert: GeneratedCertificate, platform: PlatformCertificate
) -> None:
    # OpenSSL's recover would accept k-1 octets; RFC 8017 §8.2.2 step 1 demands exactly k.
    private_key = long_lived_platform_cert.private_key
    public_key = private_key.public_key()
    keys = TrustedKeys(certificates=[platform])
    for attempt in range(5000):
        nonce = f"nonce{attempt:027d}"
        message = build_response_message(SIGNED_AT, nonce, BODY)
        raw = private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        if raw[0] == 0:
            break
    else:  # pragma: no cover - probability about (255/256)**5000
        pytest.fail("no signature with a leading zero byte found")
    public_key.verify(raw, message, padding.PKCS1v15(), hashes.SHA256())  # the full one is good
    headers = {
        "Wechatpay-Timestamp": str(SIGNED_AT),
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Serial": platform.serial_no,
        "Wechatpay-Signature": base64.b64encode(raw[1:]).decode(),
    }
    with pytest.raises(SignatureMismatchError):
        verify_signature(headers, BODY, keys, now=NOW)
    headers["Wechatpay-Signature"] = base64.b64encode(raw).decode()
    assert verify_signature(headers, BODY, keys, now=NOW).serial == platform.serial_no
