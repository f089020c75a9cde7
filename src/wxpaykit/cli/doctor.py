"""``wxpaykit doctor notification``: explain a captured notification step by step.

Inputs are three files:

* ``--headers``: the request headers, one ``Name: value`` per line (a request line such as
  ``POST /notify HTTP/1.1``, blank lines and ``#`` comments are skipped), or a JSON object;
* ``--body``: the raw body bytes exactly as received (never stripped or re-encoded);
* ``--config``: a TOML file naming the keys (paths are relative to the file)::

      [merchant]
      mchid = "1900007291"
      apiv3_key_file = "apiv3.key"            # or: apiv3_key = "..." (32 characters)
      platform_certificates = ["wechatpay_5157F09EFDC096DE15EBE81A47057A7232F1B8E1.pem"]
      public_key_file = "pub_key.pem"          # with public_key_id
      public_key_id = "PUB_KEY_ID_0000000000000024101100397200000006"
      tolerance_seconds = 300

The exit code is 0 when the notification would be accepted, 1 when it would be refused and
2 when the inputs cannot be read; the reason is always the last line of output.
"""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from wxpaykit.core.crypto import ApiV3Key
from wxpaykit.core.keys import WeChatPayPublicKey, load_platform_certificate, read_key_file
from wxpaykit.core.verification import DEFAULT_TOLERANCE_SECONDS, TrustedKeys
from wxpaykit.doctor import DiagnosisReport, diagnose_notification
from wxpaykit.errors import ConfigurationError

__all__ = ["DoctorConfig", "app", "load_doctor_config", "read_headers_file"]

app = typer.Typer(name="doctor", help="Diagnose WeChat Pay messages.", no_args_is_help=True)

_LABELS = {
    "ok": "[green] ok [/]",
    "warn": "[yellow]warn[/]",
    "fail": "[red]FAIL[/]",
    "skipped": "[dim]skip[/]",
}
_MAX_HEADER_FILE_BYTES = 64 * 1024


class InputError(Exception):
    """An input file cannot be read or understood (exit code 2)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DoctorConfig:
    """What the doctor needs to know about the merchant: keys, APIv3 key, window."""

    mchid: str | None
    keys: TrustedKeys
    apiv3_key: ApiV3Key | None = field(repr=False)
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS


def load_doctor_config(path: Path) -> DoctorConfig:
    """Load the TOML config described in the module docstring."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read config {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"config {path} is not valid TOML: {exc}") from exc
    merchant = document.get("merchant")
    if not isinstance(merchant, dict):
        raise InputError(f"config {path} has no [merchant] table")
    base = path.parent

    def resolve(value: Any, key: str) -> Path:
        if not isinstance(value, str):
            raise InputError(f"config {path}: {key} must be a path string")
        return base / value

    certificates = [
        load_platform_certificate(read_key_file(file), source=str(file))
        for file in (
            resolve(v, "platform_certificates") for v in merchant.get("platform_certificates", [])
        )
    ]
    public_keys = []
    if "public_key_file" in merchant or "public_key_id" in merchant:
        key_id = merchant.get("public_key_id")
        if not isinstance(key_id, str):
            raise InputError(f"config {path}: public_key_file needs public_key_id (PUB_KEY_ID_...)")
        file = resolve(merchant.get("public_key_file"), "public_key_file")
        public_keys.append(WeChatPayPublicKey.load(read_key_file(file), key_id, source=str(file)))
    tolerance = merchant.get("tolerance_seconds", DEFAULT_TOLERANCE_SECONDS)
    if not isinstance(tolerance, int) or tolerance < 0:
        raise InputError(f"config {path}: tolerance_seconds must be a non-negative integer")
    mchid = merchant.get("mchid")
    return DoctorConfig(
        mchid=str(mchid) if mchid is not None else None,
        keys=TrustedKeys(certificates=certificates, public_keys=public_keys),
        apiv3_key=_apiv3_key(merchant, resolve),
        tolerance_seconds=tolerance,
    )


def _apiv3_key(merchant: dict[str, Any], resolve: Any) -> ApiV3Key | None:
    if "apiv3_key" in merchant:
        value = merchant["apiv3_key"]
        if not isinstance(value, str):
            raise InputError("apiv3_key must be a string")
        return ApiV3Key(value)
    if "apiv3_key_file" in merchant:
        file = resolve(merchant["apiv3_key_file"], "apiv3_key_file")
        # An editor's final newline is not part of the key.
        return ApiV3Key(read_key_file(file).rstrip(b"\r\n"))
    return None


def read_headers_file(path: Path) -> dict[str, str]:
    """Read headers as ``Name: value`` lines or as a JSON object."""
    try:
        raw = path.read_bytes()[: _MAX_HEADER_FILE_BYTES + 1]
    except OSError as exc:
        raise InputError(f"cannot read headers file {path}: {exc.strerror or exc}") from exc
    if len(raw) > _MAX_HEADER_FILE_BYTES:
        raise InputError(f"headers file {path} is over {_MAX_HEADER_FILE_BYTES} bytes")
    text = raw.decode("utf-8", errors="replace")
    if text.lstrip().startswith("{"):
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise InputError(f"headers file {path} is not valid JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise InputError(f"headers file {path} must hold a JSON object")
        return {str(key): str(value) for key, value in document.items()}
    headers: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or (number == 1 and " HTTP/" in stripped):
            continue
        name, sep, value = stripped.partition(":")
        if not sep or not name.strip():
            raise InputError(f"headers file {path}, line {number}: expected 'Name: value'")
        headers[name.strip()] = value.strip()
    return headers


def _print_report(console: Console, report: DiagnosisReport) -> None:
    for step in report.steps:
        console.print(f"{_LABELS[step.status]} [bold]{step.name:<10}[/] ", end="")
        console.print(step.summary, markup=False)
        for detail in step.details:
            console.print(f"                {detail}", markup=False)
    if report.likely_causes:
        console.print("\n[bold]Likely causes[/]")
        for cause in report.likely_causes:
            console.print(f"  - {cause}", markup=False)
    if report.resource is not None:
        console.print("\n[bold]Decoded resource[/] (personal data masked)")
        console.print(json.dumps(report.resource, ensure_ascii=False, indent=2), markup=False)


@app.command("notification")
def notification(
    headers: Annotated[
        Path, typer.Option("--headers", help="Headers file: 'Name: value' lines or JSON.")
    ],
    body: Annotated[Path, typer.Option("--body", help="Raw body file, bytes exactly as received.")],
    config: Annotated[Path, typer.Option("--config", help="TOML file with the merchant's keys.")],
    now: Annotated[
        int | None,
        typer.Option("--now", help="Unix seconds to use as 'now' (to replay old captures)."),
    ] = None,
) -> None:
    """Explain why a notification is accepted or refused; exit 0 only if it is accepted."""
    console = Console(highlight=False, soft_wrap=True)
    try:
        loaded = load_doctor_config(config)
        header_map = read_headers_file(headers)
        try:
            raw_body = body.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read body file {body}: {exc.strerror or exc}") from exc
    except (InputError, ConfigurationError) as exc:
        console.print(f"FAIL: {exc}", markup=False)
        raise typer.Exit(code=2) from None
    clock = dt.datetime.fromtimestamp(now, dt.UTC) if now is not None else dt.datetime.now(dt.UTC)
    report = diagnose_notification(
        header_map,
        raw_body,
        keys=loaded.keys,
        apiv3_key=loaded.apiv3_key,
        now=clock,
        tolerance_seconds=loaded.tolerance_seconds,
        mchid=loaded.mchid,
    )
    _print_report(console, report)
    console.print()
    console.print(report.verdict, markup=False, style="bold green" if report.ok else "bold red")
    if not report.ok:
        raise typer.Exit(code=1)
