"""Every refusal: its status and code, counted, and the ledger left exactly as it was."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest

from wxpaykit.core.signing import sign_response_headers
from wxpaykit.core.v2 import SignType
from wxpaykit.gateway.metrics import GatewayMetrics
from wxpaykit.testing.gateway_kit import MerchantKit
from wxpaykit.testing.keys import generate_private_key
from wxpaykit.testing.notifications import SealedNotification

from .conftest import RowCounts

V3 = "/notify/v3/1900007291"
V2 = "/notify/v2/1900007291"


@dataclass(frozen=True)
class Case:
    """One bad request: where it goes, what it carries, and the expected answer."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    code: str


def _without(sealed: SealedNotification, header: str) -> Case:
    headers = {k: v for k, v in sealed.headers.items() if k != header}
    return Case(V3, headers, sealed.body, 400, "MISSING_HEADER")


def _resigned(kit: MerchantKit, body: bytes, **changes: str) -> dict[str, str]:
    headers = sign_response_headers(
        body=body,
        private_key=kit.platform.private_key,
        serial=kit.platform.serial_no,
        timestamp=int(time.time()),
        nonce="n" * 32,
    )
    headers.update(changes)
    return headers


CASES: dict[str, Callable[[MerchantKit], Case]] = {
    "oversized_body": lambda kit: Case(
        V3, kit.payment("o-big").headers, b"{" + b" " * 5000 + b"}", 413, "BODY_TOO_LARGE"
    ),
    "unknown_merchant": lambda kit: Case(
        "/notify/v3/1234567890", *_parts(kit.payment("o1")), 404, "UNKNOWN_MERCHANT"
    ),
    "missing_signature": lambda kit: _without(kit.payment("o1"), "Wechatpay-Signature"),
    "missing_nonce": lambda kit: _without(kit.payment("o1"), "Wechatpay-Nonce"),
    "missing_timestamp": lambda kit: _without(kit.payment("o1"), "Wechatpay-Timestamp"),
    "missing_serial": lambda kit: _without(kit.payment("o1"), "Wechatpay-Serial"),
    "millisecond_timestamp": lambda kit: Case(
        V3,
        {**kit.payment("o1").headers, "Wechatpay-Timestamp": str(int(time.time() * 1000))},
        kit.payment("o1").body,
        400,
        "MALFORMED_HEADER",
    ),
    "unsupported_signature_type": lambda kit: Case(
        V3,
        {**kit.payment("o1").headers, "Wechatpay-Signature-Type": "WECHATPAY2-SM2-WITH-SM3"},
        kit.payment("o1").body,
        401,
        "UNSUPPORTED_SIGNATURE_TYPE",
    ),
    "unknown_serial": lambda kit: Case(
        V3,
        {**kit.payment("o1").headers, "Wechatpay-Serial": "5157F09EFDC096DE15EBE81A47057A72"},
        kit.payment("o1").body,
        401,
        "UNKNOWN_SERIAL",
    ),
    "signature_probe": lambda kit: Case(
        V3,
        {**kit.payment("o1").headers, "Wechatpay-Signature": "WECHATPAY/SIGNTEST/aGVsbG8="},
        kit.payment("o1").body,
        401,
        "SIGNATURE_PROBE",
    ),
    "tampered_body": lambda kit: Case(
        V3,
        kit.payment("o1").headers,
        kit.payment("o1").body.replace(b'"TRANSACTION.SUCCESS"', b'"TRANSACTION.SUCCESZ"'),
        401,
        "SIGNATURE_MISMATCH",
    ),
    "forged_with_other_key": lambda kit: Case(
        V3,
        sign_response_headers(
            body=kit.payment("o1").body,
            private_key=generate_private_key(),
            serial=kit.platform.serial_no,
            timestamp=int(time.time()),
            nonce="f" * 32,
        ),
        kit.payment("o1").body,
        401,
        "SIGNATURE_MISMATCH",
    ),
    "signature_not_base64": lambda kit: Case(
        V3,
        {**kit.payment("o1").headers, "Wechatpay-Signature": "%%%not-base64%%%"},
        kit.payment("o1").body,
        401,
        "SIGNATURE_MISMATCH",
    ),
    "stale_timestamp": lambda kit: Case(
        V3, *_parts(kit.payment("o1", timestamp=int(time.time()) - 301)), 401, "STALE_TIMESTAMP"
    ),
    "future_timestamp": lambda kit: Case(
        V3, *_parts(kit.payment("o1", timestamp=int(time.time()) + 301)), 401, "STALE_TIMESTAMP"
    ),
    "signed_but_not_json": lambda kit: Case(
        V3, _resigned(kit, b"not json"), b"not json", 400, "MALFORMED_BODY"
    ),
    "unsupported_event_type": lambda kit: Case(
        V3,
        *_parts(kit.seal({"x": 1}, event_type="PAYSCORE.USER_CONFIRM")),
        400,
        "UNSUPPORTED_EVENT_TYPE",
    ),
    "wrong_apiv3_key": lambda kit: Case(
        V3,
        *_parts(kit.seal({"out_trade_no": "o1"}, apiv3_key="K" * 32)),
        400,
        "DECRYPTION_FAILED",
    ),
    "decrypted_resource_malformed": lambda kit: Case(
        V3, *_parts(kit.seal({"out_trade_no": "o1"})), 400, "MALFORMED_BODY"
    ),
    "mchid_mismatch": lambda kit: Case(
        V3, *_parts(kit.payment("o1", mchid="1900000002")), 403, "MCHID_MISMATCH"
    ),
    "appid_mismatch": lambda kit: Case(
        V3, *_parts(kit.payment("o1", appid="wx0000000000000000")), 403, "APPID_MISMATCH"
    ),
    "v2_oversized": lambda kit: Case(
        V2, {}, b"<xml>" + b" " * 5000 + b"</xml>", 413, "BODY_TOO_LARGE"
    ),
    "v2_unknown_merchant": lambda kit: Case(
        "/notify/v2/1234567890", {}, kit.v2_payment("o1"), 404, "UNKNOWN_MERCHANT"
    ),
    "v2_malformed_xml": lambda kit: Case(V2, {}, b"<xml><a>1</b></xml>", 400, "MALFORMED_XML"),
    "v2_doctype": lambda kit: Case(
        V2,
        {},
        b'<!DOCTYPE x [<!ENTITY e "e">]><xml><a>&e;</a></xml>',
        400,
        "UNSAFE_XML",
    ),
    "v2_bad_sign": lambda kit: Case(
        V2,
        {},
        kit.v2_payment("o1").replace(b"<total_fee>", b"<total_fee>9"),
        401,
        "SIGNATURE_MISMATCH",
    ),
    "v2_hmac_bad_sign": lambda kit: Case(
        V2,
        {},
        kit.v2_payment("o1", sign_type=SignType.HMAC_SHA256, attach="x").replace(b"[x]", b"[y]"),
        401,
        "SIGNATURE_MISMATCH",
    ),
    "v2_payment_mchid_mismatch": lambda kit: Case(
        "/notify/v2/1900007291",
        {},
        MerchantKit(mchid="1900000002", apiv2_key=kit.apiv2_key, platform=kit.platform).v2_payment(
            "o1"
        ),
        403,
        "MCHID_MISMATCH",
    ),
    "v2_refund_wrong_key": lambda kit: Case(
        V2, {}, kit.v2_refund("o1", "r1", apiv2_key="W" * 32), 400, "DECRYPTION_FAILED"
    ),
    "v2_refund_appid_mismatch": lambda kit: Case(
        V2, {}, kit.v2_refund("o1", "r1", appid="wx0000000000000000"), 403, "APPID_MISMATCH"
    ),
    "v2_not_success": lambda kit: Case(
        V2, {}, b"<xml><return_code>FAIL</return_code></xml>", 400, "MALFORMED_BODY"
    ),
}


def _parts(sealed: SealedNotification) -> tuple[dict[str, str], bytes]:
    return sealed.headers, sealed.body


@pytest.mark.parametrize("name", sorted(CASES))
async def test_refusal_has_its_status_and_changes_nothing(
    name: str,
    kit: MerchantKit,
    client: httpx.AsyncClient,
    row_counts: RowCounts,
    metrics: GatewayMetrics,
) -> None:
    case = CASES[name](kit)
    before = await row_counts()

    response = await client.post(case.path, content=case.body, headers=case.headers)

    assert response.status_code == case.status, response.text
    if case.path.startswith("/notify/v2"):
        assert b"<return_code><![CDATA[FAIL]]></return_code>" in response.content
        assert case.code.encode() in response.content
    else:
        assert response.json()["code"] == case.code
        assert response.json()["message"]
    assert await row_counts() == before
    api = "v2" if "/v2/" in case.path else "v3"
    assert (
        metrics.snapshot()[f"wxpaykit_notifications_rejected_total{{api={api},reason={case.code}}}"]
        == 1
    )


async def test_replayed_nonce_is_refused_without_a_second_record(
    kit: MerchantKit, client: httpx.AsyncClient, row_counts: RowCounts
) -> None:
    first = kit.payment("o-replay", nonce="N" * 32)
    assert (await client.post(V3, content=first.body, headers=first.headers)).status_code == 204
    after_first = await row_counts()

    # Another authentic notification reusing the nonce inside the window.
    replay = kit.payment("o-replay-2", nonce="N" * 32)
    response = await client.post(V3, content=replay.body, headers=replay.headers)

    assert response.status_code == 409
    assert response.json()["code"] == "REPLAYED_NONCE"
    assert await row_counts() == after_first


async def test_the_platform_resend_under_a_fresh_nonce_is_acknowledged_as_duplicate(
    kit: MerchantKit, client: httpx.AsyncClient, row_counts: RowCounts, metrics: GatewayMetrics
) -> None:
    first = kit.payment("o-dup", notification_id="EV-dup-1")
    again = kit.payment("o-dup", notification_id="EV-dup-1")
    assert (await client.post(V3, content=first.body, headers=first.headers)).status_code == 204
    counts = await row_counts()

    response = await client.post(V3, content=again.body, headers=again.headers)

    assert response.status_code == 204
    assert {k: v for k, v in (await row_counts()).items() if k != "seen_nonces"} == {
        k: v for k, v in counts.items() if k != "seen_nonces"
    }
    assert metrics.snapshot()["wxpaykit_notifications_duplicates_total{api=v3}"] == 1


async def test_refusal_bodies_and_logs_hold_no_secret(
    kit: MerchantKit, client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    sealed = kit.seal({"out_trade_no": "o1"}, apiv3_key="K" * 32)
    response = await client.post(V3, content=sealed.body, headers=sealed.headers)

    assert response.status_code == 400
    captured = capsys.readouterr()
    for text in (response.text, captured.out, captured.err):
        assert kit.apiv3_key not in text
        assert sealed.headers["Wechatpay-Signature"] not in text
        assert base64.b64encode(kit.apiv3_key.encode()).decode() not in text
    assert json.loads(response.text)["message"]
