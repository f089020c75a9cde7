"""Cost of accepting one APIv3 notification, against its crypto floor, in one run.

Per notification (realistic V6-like payment notifications, sealed and signed with keys
generated at start-up):

(a) the crypto floor: one RSA-2048 PKCS#1 v1.5 verify + one AES-256-GCM open + one
    ``json.loads`` of the decrypted plaintext, with ``cryptography`` called directly on
    pre-decoded inputs and pre-loaded key objects;
(b) ``wxpaykit.core.notifications.parse_notification``: header lookup, timestamp window,
    verify, envelope parse, decrypt and typed model parse;
(a') for reference, the same floor starting from the wire: base64-decode the signature
    and ciphertext, build the signed message, ``json.loads`` the envelope;
(c) ``wechatpayv3``'s ``WeChatPay.callback()`` in public-key mode (no network; it has no
    timestamp check, see protocol reference §3.3).

The three are interleaved notification by notification so that they share the same machine
state. Target: median (b) <= 1.15 x median (a). Run with ``make bench``.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import cryptography
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from wechatpayv3 import WeChatPay, WeChatPayType

from wxpaykit.core.crypto import ApiV3Key
from wxpaykit.core.keys import WeChatPayPublicKey
from wxpaykit.core.notifications import parse_notification
from wxpaykit.core.signing import build_response_message
from wxpaykit.core.verification import TrustedKeys
from wxpaykit.testing.keys import (
    generate_certificate,
    generate_private_key,
    generate_public_key_id,
    public_key_pem,
)
from wxpaykit.testing.notifications import SealedNotification, sample_transaction, seal_notification

TARGET_RATIO = 1.15
WIRE_LABEL = "(a') floor from the wire (+base64, envelope)"
APIV3_KEY = "TestAPIv3Key0123456789abcdefABCD"
PKCS1V15 = padding.PKCS1v15()
SHA256 = hashes.SHA256()


@dataclass(frozen=True, slots=True)
class FloorInput:
    """What the floor needs, decoded ahead of time: no base64, no header lookup, no envelope."""

    signature: bytes
    message: bytes
    nonce: bytes
    ciphertext: bytes
    associated_data: bytes


def make_notifications(
    count: int, signing_key: rsa.RSAPrivateKey, key_id: str
) -> list[SealedNotification]:
    """``count`` distinct payment notifications signed now (order numbers and openids vary)."""
    timestamp = int(time.time())
    notifications = []
    for index in range(count):
        resource = sample_transaction(
            out_trade_no=f"1217752501201407{index:016d}",
            transaction_id=f"42000009852021030{index:011d}",
            payer={"openid": f"oUpF8uMuAJO_M2pxb1Q9zNj{index:05d}"},
            amount={
                "total": 100 + index,
                "payer_total": 100 + index,
                "currency": "CNY",
                "payer_currency": "CNY",
            },
        )
        notifications.append(
            seal_notification(
                resource,
                apiv3_key=APIV3_KEY,
                signing_key=signing_key,
                serial=key_id,
                timestamp=timestamp,
            )
        )
    return notifications


def floor_input(notification: SealedNotification) -> FloorInput:
    """Pre-decode everything the floor measurement must not pay for."""
    headers = notification.headers
    resource = json.loads(notification.body)["resource"]
    return FloorInput(
        signature=base64.b64decode(headers["Wechatpay-Signature"]),
        message=build_response_message(
            headers["Wechatpay-Timestamp"], headers["Wechatpay-Nonce"], notification.body
        ),
        nonce=resource["nonce"].encode(),
        ciphertext=base64.b64decode(resource["ciphertext"]),
        associated_data=resource["associated_data"].encode(),
    )


def measure(iterations: int, notifications: int) -> bool:
    """Run the benchmark and print the figures; True when (b) meets the target."""
    key_id, signing_key = generate_public_key_id(), generate_private_key()
    public_key = signing_key.public_key()
    merchant = generate_certificate("1900007291", organization="Merchant")
    batch = make_notifications(notifications, signing_key, key_id)
    inputs = [floor_input(n) for n in batch]

    # (a) the floor, with key objects built once.
    cipher = AESGCM(APIV3_KEY.encode())

    def floor(item: FloorInput) -> object:
        public_key.verify(item.signature, item.message, PKCS1V15, SHA256)
        return json.loads(cipher.decrypt(item.nonce, item.ciphertext, item.associated_data))

    # (a') the same floor starting from the wire bytes: what any implementation must add.
    def wire_floor(notification: SealedNotification) -> object:
        headers, body = notification.headers, notification.body
        signature = base64.b64decode(headers["Wechatpay-Signature"])
        message = build_response_message(
            headers["Wechatpay-Timestamp"], headers["Wechatpay-Nonce"], body
        )
        public_key.verify(signature, message, PKCS1V15, SHA256)
        resource = json.loads(body)["resource"]
        plaintext = cipher.decrypt(
            resource["nonce"].encode(),
            base64.b64decode(resource["ciphertext"]),
            resource["associated_data"].encode(),
        )
        return json.loads(plaintext)

    # (b) ours, configured once as a service would be.
    keys = TrustedKeys(public_keys=[WeChatPayPublicKey(key_id=key_id, public_key=public_key)])
    apiv3_key = ApiV3Key(APIV3_KEY)

    def ours(notification: SealedNotification) -> object:
        return parse_notification(
            notification.headers,
            notification.body,
            keys=keys,
            apiv3_key=apiv3_key,
            now=dt.datetime.now(dt.UTC),
        )

    # (c) wechatpayv3 in public-key mode.
    client = WeChatPay(
        wechatpay_type=WeChatPayType.JSAPI,
        mchid="1900007291",
        private_key=merchant.private_key_pem.decode(),
        cert_serial_no=merchant.serial_no,
        appid="wxd678efh567hg6787",
        apiv3_key=APIV3_KEY,
        public_key=public_key_pem(public_key).decode(),
        public_key_id=key_id,
    )

    def theirs(notification: SealedNotification) -> object:
        return client.callback(notification.headers, notification.body)

    # Every path must actually accept every notification before it is timed.
    for notification, item in zip(batch, inputs, strict=True):
        assert floor(item) is not None
        assert wire_floor(notification) is not None
        assert ours(notification) is not None
        assert theirs(notification) is not None

    samples: dict[str, list[int]] = {"a": [], "w": [], "b": [], "c": []}
    runs: list[tuple[str, Callable[[object], object]]] = [
        ("a", floor),  # type: ignore[list-item]
        ("w", wire_floor),  # type: ignore[list-item]
        ("b", ours),  # type: ignore[list-item]
        ("c", theirs),  # type: ignore[list-item]
    ]
    clock = time.perf_counter_ns
    gc.collect()
    gc.disable()  # collections would land on whichever path happens to allocate last
    try:
        for index in range(iterations):
            notification, item = batch[index % len(batch)], inputs[index % len(batch)]
            for name, run in runs[index % 4 :] + runs[: index % 4]:  # rotate who goes first
                argument = item if name == "a" else notification
                start = clock()
                run(argument)
                samples[name].append(clock() - start)
    finally:
        gc.enable()

    def stats(name: str) -> tuple[float, float]:
        values = samples[name]
        return statistics.median(values) / 1000, statistics.fmean(values) / 1000

    (a_med, a_mean), (w_med, w_mean) = stats("a"), stats("w")
    (b_med, b_mean), (c_med, c_mean) = stats("b"), stats("c")
    print(
        f"wxpaykit core benchmark: {iterations} notifications ({notifications} distinct, "
        f"{len(batch[0].body)} bytes each); Python {platform.python_version()}, "
        f"cryptography {cryptography.__version__}, {platform.machine()}"
    )
    print(f"{'':44} {'median µs':>10} {'mean µs':>10} {'x floor':>8}")
    print(
        f"{'(a) floor: RSA verify + AES-GCM open + json':44} {a_med:10.1f} {a_mean:10.1f} {1:8.2f}"
    )
    print(f"{WIRE_LABEL:44} {w_med:10.1f} {w_mean:10.1f} {w_med / a_med:8.2f}")
    print(
        f"{'(b) wxpaykit parse_notification':44} {b_med:10.1f} {b_mean:10.1f} {b_med / a_med:8.2f}"
    )
    print(
        f"{'(c) wechatpayv3 WeChatPay.callback()':44} {c_med:10.1f} {c_mean:10.1f} {c_med / a_med:8.2f}"
    )
    ratio = b_med / a_med
    print(
        f"ratios (median): b/a = {ratio:.3f}, c/a = {c_med / a_med:.3f}; (mean) b/a = {b_mean / a_mean:.3f}, c/a = {c_mean / a_mean:.3f}"
    )
    print(
        f"for reference: b/a' = {b_med / w_med:.3f} (a': the floor plus the base64 and envelope JSON work it skips)"
    )
    verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
    print(f"{verdict}: b/a = {ratio:.3f} (target <= {TARGET_RATIO})")
    return verdict == "PASS"


def main(argv: list[str] | None = None) -> int:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=6000, help="notifications timed per path")
    parser.add_argument(
        "--distinct", type=int, default=200, help="distinct notifications to cycle through"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when (b) misses the target")
    options = parser.parse_args(argv)
    passed = measure(options.iterations, options.distinct)
    return 0 if passed or not options.strict else 1


if __name__ == "__main__":
    sys.exit(main())
