"""``wxpaykit doctor notification``: exit codes, the verdict on the last line, masked output."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from typer.testing import CliRunner

from wxpaykit.cli.main import app
from wxpaykit.testing.keys import GeneratedCertificate, public_key_pem
from wxpaykit.testing.notifications import SealedNotification, sample_transaction, seal_notification

KEY = "TestAPIv3Key0123456789abcdefABCD"
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
SIGNED_AT = int(dt.datetime.now(dt.UTC).timestamp())


@dataclass(frozen=True)
class Capture:
    """Files of one captured notification plus the config to diagnose it with."""

    directory: Path
    headers: Path
    body: Path
    config: Path

    def args(self, *extra: str) -> list[str]:
        """Command-line arguments for ``wxpaykit``."""
        return [
            "doctor",
            "notification",
            "--headers",
            str(self.headers),
            "--body",
            str(self.body),
            "--config",
            str(self.config),
            *extra,
        ]


def _write_capture(
    directory: Path,
    sealed: SealedNotification,
    key_id: str,
    public_key: rsa.RSAPublicKey,
    *,
    apiv3_key: str = KEY,
    extra_config: str = "",
) -> Capture:
    headers = directory / "headers.txt"
    headers.write_text(
        "POST /wechatpay/notify HTTP/1.1\n# captured by nginx\n"
        + "".join(f"{name}: {value}\n" for name, value in sealed.headers.items())
        + "Content-Type: application/json\n",
        encoding="utf-8",
    )
    body = directory / "body.json"
    body.write_bytes(sealed.body)
    (directory / "pub_key.pem").write_bytes(public_key_pem(public_key))
    (directory / "apiv3.key").write_text(apiv3_key + "\n", encoding="utf-8")
    config = directory / "wxpay.toml"
    config.write_text(
        "[merchant]\n"
        'mchid = "1900007291"\n'
        'apiv3_key_file = "apiv3.key"\n'
        'public_key_file = "pub_key.pem"\n'
        f'public_key_id = "{key_id}"\n'
        "tolerance_seconds = 300\n" + extra_config,
        encoding="utf-8",
    )
    return Capture(directory=directory, headers=headers, body=body, config=config)


@pytest.fixture
def sealed(wechatpay_key_pair: tuple[str, rsa.RSAPrivateKey]) -> SealedNotification:
    """A genuine payment notification signed now."""
    key_id, private_key = wechatpay_key_pair
    return seal_notification(
        sample_transaction(),
        apiv3_key=KEY,
        signing_key=private_key,
        serial=key_id,
        timestamp=SIGNED_AT,
    )


@pytest.fixture
def capture(
    tmp_path: Path, sealed: SealedNotification, wechatpay_key_pair: tuple[str, rsa.RSAPrivateKey]
) -> Capture:
    """The genuine notification written to files, with a matching config."""
    key_id, private_key = wechatpay_key_pair
    return _write_capture(tmp_path, sealed, key_id, private_key.public_key())


def _run(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, list(args))
    lines = [line for line in result.output.splitlines() if line.strip()]
    return result.exit_code, lines


def test_genuine_notification_exits_zero_with_ok_last(capture: Capture) -> None:
    code, lines = _run(*capture.args())
    assert code == 0, lines
    assert lines[-1].startswith("OK: notification ")
    output = "\n".join(lines)
    assert OPENID not in output
    assert '"openid": "oUpF****WeS6o"' in output
    assert "\x1b[" not in output  # no colour codes when not a terminal


def test_headers_as_json_object(capture: Capture, sealed: SealedNotification) -> None:
    capture.headers.write_text(json.dumps({k.lower(): v for k, v in sealed.headers.items()}))
    code, lines = _run(*capture.args())
    assert code == 0
    assert lines[-1].startswith("OK:")


def test_probe_fails_with_the_reason_last(capture: Capture, sealed: SealedNotification) -> None:
    text = capture.headers.read_text().replace(
        sealed.headers["Wechatpay-Signature"], "WECHATPAY/SIGNTEST/c2lnbmF0dXJl"
    )
    capture.headers.write_text(text)
    code, lines = _run(*capture.args())
    assert code == 1
    assert lines[-1].startswith("FAIL: signature probe")
    assert any("WECHATPAY/SIGNTEST/" in line for line in lines[:-1])


def test_stale_capture_fails_now_and_passes_with_now(capture: Capture) -> None:
    code, lines = _run(*capture.args("--now", str(SIGNED_AT + 3600)))
    assert code == 1
    assert lines[-1] == (
        "FAIL: stale timestamp: Wechatpay-Timestamp is +3600 s from now (allowed ±300 s);"
        " the signature itself is valid"
    )
    code, lines = _run(*capture.args("--now", str(SIGNED_AT + 30)))
    assert code == 0
    assert lines[-1].startswith("OK:")


def test_wrong_apiv3_key(
    tmp_path: Path, sealed: SealedNotification, wechatpay_key_pair: tuple[str, rsa.RSAPrivateKey]
) -> None:
    key_id, private_key = wechatpay_key_pair
    capture = _write_capture(
        tmp_path, sealed, key_id, private_key.public_key(), apiv3_key=KEY[::-1]
    )
    code, lines = _run(*capture.args())
    assert code == 1
    assert lines[-1].startswith("FAIL: decryption failed")
    assert any("APIv3 key is wrong" in line for line in lines)


def test_unknown_serial(
    tmp_path: Path, sealed: SealedNotification, platform_cert: GeneratedCertificate
) -> None:
    other = _write_capture(
        tmp_path,
        sealed,
        "PUB_KEY_ID_0000000000000000000000000000000099",
        platform_cert.private_key.public_key(),
    )
    code, lines = _run(*other.args())
    assert code == 1
    assert lines[-1].startswith("FAIL: unknown serial: Wechatpay-Serial PUB_KEY_ID_")
    assert any(
        "configured: public key PUB_KEY_ID_0000000000000000000000000000000099" in line
        for line in lines
    )


def test_tampered_body(capture: Capture, sealed: SealedNotification) -> None:
    capture.body.write_bytes(sealed.body.replace(b"TRANSACTION.SUCCESS", b"TRANSACTION.SUCCESs"))
    code, lines = _run(*capture.args())
    assert code == 1
    assert lines[-1].startswith("FAIL: signature mismatch")
    assert OPENID not in "\n".join(lines)


def test_body_saved_with_a_final_newline_is_explained(
    capture: Capture, sealed: SealedNotification
) -> None:
    capture.body.write_bytes(sealed.body + b"\n")
    code, lines = _run(*capture.args())
    assert code == 1
    assert any("without the trailing newline" in line for line in lines)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda c: c.config.unlink(), "cannot read config"),
        (lambda c: c.config.write_text("[merchant\n"), "not valid TOML"),
        (lambda c: c.config.write_text("mchid = 1\n"), "no [merchant] table"),
        (lambda c: (c.directory / "apiv3.key").write_text("short\n"), "APIv3 key must be 32 bytes"),
        (lambda c: (c.directory / "pub_key.pem").write_text(""), "pub_key.pem: file is empty"),
        (lambda c: c.headers.write_text("not a header line\n"), "expected 'Name: value'"),
        (lambda c: c.body.unlink(), "cannot read body file"),
    ],
    ids=[
        "no-config",
        "bad-toml",
        "no-table",
        "short-key",
        "empty-public-key",
        "bad-headers",
        "no-body",
    ],
)
def test_unusable_inputs_exit_2_with_the_reason_last(
    capture: Capture, mutate: object, reason: str
) -> None:
    mutate(capture)  # type: ignore[operator]
    code, lines = _run(*capture.args())
    assert code == 2
    assert lines[-1].startswith("FAIL: ")
    assert reason in lines[-1]


def test_installed_command_runs_in_a_subprocess(capture: Capture) -> None:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "60"}
    result = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "wxpaykit.cli.main", *capture.args()],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    last = result.stdout.rstrip("\n").splitlines()[-1]
    assert last.startswith("OK: notification ")
    assert OPENID not in result.stdout
