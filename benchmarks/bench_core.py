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

Two schedules, both in this run:

* interleaved (the verdict): notification by notification, the four paths run in a
  freshly shuffled order, so they share the machine's state and none is always preceded
  by the same neighbour. Caches are cold-ish for every path, but (a), (a') and (c) run the
  same library calls and keep them warm for each other, while only (b) runs its model
  validators: the strict, pessimistic figure for (b);
* blocked: each path handles 25 notifications in a row (paths shuffled per round), so
  every path runs with its own code warm.

The blocked schedule also times the pieces of (a) and (b) one by one, so the gap can be
read off.
Target: median (b) <= 1.15 x median (a), interleaved. Run with ``make bench``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime as dt
import gc
import json
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import cryptography
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from wechatpayv3 import WeChatPay, WeChatPayType

from wxpaykit.core.crypto import ApiV3Key
from wxpaykit.core.keys import WeChatPayPublicKey
from wxpaykit.core.notifications import parse_envelope, parse_notification, parse_resource
from wxpaykit.core.signing import build_response_message
from wxpaykit.core.verification import TrustedKeys, _rsa_sha256_verifies
from wxpaykit.testing.keys import (
    generate_certificate,
    generate_private_key,
    generate_public_key_id,
    public_key_pem,
)
from wxpaykit.testing.notifications import SealedNotification, sample_transaction, seal_notification

TARGET_RATIO = 1.15
BLOCK = 25
APIV3_KEY = "TestAPIv3Key0123456789abcdefABCD"
PKCS1V15 = padding.PKCS1v15()
SHA256 = hashes.SHA256()

#: A timed path takes the index of a notification in the batch.
Path = Callable[[int], object]


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


def build_paths(
    batch: list[SealedNotification], public_key: rsa.RSAPublicKey, key_id: str
) -> tuple[dict[str, Path], dict[str, Path]]:
    """The four timed paths, and the pieces of (a) and (b), over the same notifications."""
    inputs = [floor_input(n) for n in batch]
    cipher = AESGCM(APIV3_KEY.encode())

    # (a) the floor, with key objects built once.
    def floor(i: int) -> object:
        item = inputs[i]
        public_key.verify(item.signature, item.message, PKCS1V15, SHA256)
        return json.loads(cipher.decrypt(item.nonce, item.ciphertext, item.associated_data))

    # (a') the same floor starting from the wire bytes: what any implementation must add.
    def wire_floor(i: int) -> object:
        headers, body = batch[i].headers, batch[i].body
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

    # (b) ours, configured once as a service would be; reading the clock is part of it.
    keys = TrustedKeys(public_keys=[WeChatPayPublicKey(key_id=key_id, public_key=public_key)])
    apiv3_key = ApiV3Key(APIV3_KEY)

    def ours(i: int) -> object:
        notification = batch[i]
        return parse_notification(
            notification.headers,
            notification.body,
            keys=keys,
            apiv3_key=apiv3_key,
            now=dt.datetime.now(dt.UTC),
        )

    # (c) wechatpayv3 in public-key mode.
    merchant = generate_certificate("1900007291", organization="Merchant")
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

    def theirs(i: int) -> object:
        return client.callback(batch[i].headers, batch[i].body)

    paths: dict[str, Path] = {"a": floor, "w": wire_floor, "b": ours, "c": theirs}

    envelopes = [parse_envelope(n.body) for n in batch]
    plaintexts = [cipher.decrypt(x.nonce, x.ciphertext, x.associated_data) for x in inputs]
    signatures = [n.headers["Wechatpay-Signature"] for n in batch]
    ciphertexts = [e.resource.ciphertext for e in envelopes]
    a2b = binascii.a2b_base64
    pieces: dict[str, Path] = {
        "RSA verify: public_key.verify()  [a]": lambda i: public_key.verify(
            inputs[i].signature, inputs[i].message, PKCS1V15, SHA256
        ),
        "RSA verify: recover+SHA-256+compare  [b]": lambda i: _rsa_sha256_verifies(
            public_key, inputs[i].signature, inputs[i].message
        ),
        "AES-256-GCM open  [a, b]": lambda i: cipher.decrypt(
            inputs[i].nonce, inputs[i].ciphertext, inputs[i].associated_data
        ),
        "json.loads(plaintext)  [a]": lambda i: json.loads(plaintexts[i]),
        "Transaction model from plaintext  [b]": lambda i: parse_resource(
            envelopes[i], plaintexts[i]
        ),
        "NotificationEnvelope model from body  [b]": lambda i: parse_envelope(batch[i].body),
        "base64 of the signature (344 chars)  [b]": lambda i: a2b(signatures[i], strict_mode=True),
        "base64 of the ciphertext  [b]": lambda i: a2b(ciphertexts[i], strict_mode=True),
    }
    # Every path must actually accept every notification before it is timed.
    for index in range(len(batch)):
        for name, path in paths.items():
            assert path(index) is not None, name
        assert pieces["RSA verify: recover+SHA-256+compare  [b]"](index) is True
    return paths, pieces


def interleaved(paths: Mapping[str, Path], iterations: int, count: int) -> dict[str, list[int]]:
    """Per notification, every path once, in a shuffled order; ns per call."""
    samples: dict[str, list[int]] = {name: [] for name in paths}
    order, shuffle, clock = list(paths.items()), random.Random(2).shuffle, time.perf_counter_ns
    for index in range(iterations):
        shuffle(order)
        for name, run in order:
            start = clock()
            run(index % count)
            samples[name].append(clock() - start)
    return samples


def blocked(paths: Mapping[str, Path], iterations: int, count: int) -> dict[str, list[int]]:
    """Each path BLOCK notifications in a row (paths shuffled per round); ns per call."""
    samples: dict[str, list[int]] = {name: [] for name in paths}
    order, shuffle, clock = list(paths.items()), random.Random(3).shuffle, time.perf_counter_ns
    for first in range(0, iterations, BLOCK):
        shuffle(order)
        for name, run in order:
            for index in range(first, first + BLOCK):
                start = clock()
                run(index % count)
                samples[name].append(clock() - start)
    return samples


def _median_us(values: list[int]) -> float:
    return statistics.median(values) / 1000


def _mean_us(values: list[int]) -> float:
    return statistics.fmean(values) / 1000


LABELS = {
    "a": "(a) floor: RSA verify + AES-GCM open + json",
    "w": "(a') floor from the wire (+base64, envelope)",
    "b": "(b) wxpaykit parse_notification",
    "c": "(c) wechatpayv3 WeChatPay.callback()",
}


def report(title: str, samples: dict[str, list[int]]) -> float:
    """Print one schedule's table; returns median (b) / median (a)."""
    floor = _median_us(samples["a"])
    print(f"{title:46} {'median µs':>10} {'mean µs':>10} {'x floor':>8}")
    for name, label in LABELS.items():
        median = _median_us(samples[name])
        print(f"{label:46} {median:10.1f} {_mean_us(samples[name]):10.1f} {median / floor:8.2f}")
    ratio = _median_us(samples["b"]) / floor
    print(
        f"ratios (median): b/a = {ratio:.3f}, c/a = {_median_us(samples['c']) / floor:.3f}, "
        f"b/a' = {_median_us(samples['b']) / _median_us(samples['w']):.3f}"
    )
    return ratio


def measure(iterations: int, notifications: int) -> bool:
    """Run the benchmark and print the figures; True when (b) meets the target."""
    key_id, signing_key = generate_public_key_id(), generate_private_key()
    batch = make_notifications(notifications, signing_key, key_id)
    paths, pieces = build_paths(batch, signing_key.public_key(), key_id)
    print(
        f"wxpaykit core benchmark: {iterations} notifications per path ({notifications} distinct,"
        f" {len(batch[0].body)} bytes each); Python {platform.python_version()}, "
        f"cryptography {cryptography.__version__}, {platform.machine()}"
    )
    gc.collect()
    gc.disable()  # collections would land on whichever path happens to allocate last
    try:
        cold = interleaved(paths, iterations, notifications)
        # Paths and pieces in one schedule, so that load changes hit them alike.
        warm = blocked({**paths, **pieces}, iterations, notifications)
    finally:
        gc.enable()
    ratio = report("interleaved (the verdict)", cold)
    print()
    report(f"blocked ({BLOCK} in a row per path)", warm)
    print()
    print(f"{'pieces, blocked  [in a / in b]':46} {'median µs':>10}")
    ours = 0.0
    for name in pieces:
        print(f"{name:46} {_median_us(warm[name]):10.2f}")
        ours += _median_us(warm[name]) if "b]" in name else 0.0
    rest = _median_us(warm["b"]) - ours
    print(f"{'(b) blocked minus its pieces above':46} {rest:10.2f}")
    print("  (headers, timestamp window, key lookup, signed message, calls, clock)")
    verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
    print(f"{verdict}: interleaved b/a = {ratio:.3f} (target <= {TARGET_RATIO})")
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
