"""docs/sdk.md runs as written against the simulator (the README's SDK section)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from wxpaykit.simulator.merchants import MerchantMode
from wxpaykit.testing.simulator import ServedSimulator, build_notification, payment_resource

DOC = Path(__file__).parents[3] / "docs" / "sdk.md"
_BLOCK = re.compile(r"(<!-- not-run[^>]*-->\s*)?```python\n(.*?)```", re.DOTALL)


def runnable_blocks(text: str) -> list[str]:
    """The ``python`` blocks of a page, except those marked ``<!-- not-run ... -->``."""
    return [match.group(2) for match in _BLOCK.finditer(text) if match.group(1) is None]


def test_doc_has_runnable_and_framework_examples() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert len(runnable_blocks(text)) >= 8
    for framework in ("fastapi", "flask", "django"):
        assert f"<!-- not-run: needs {framework} -->" in text


def test_sdk_doc_examples_run_against_the_simulator(
    sim: ServedSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = sim.create_merchant(MerchantMode.CERTIFICATE)
    bundle.write(tmp_path)
    for name, value in {
        "WXPAY_BASE_URL": sim.base_url,
        "WXPAY_MCHID": bundle.mchid,
        "WXPAY_APPID": bundle.appid,
        "WXPAY_APIV3_KEY": bundle.apiv3_key,
        "WXPAY_KEY_DIR": str(tmp_path),
    }.items():
        monkeypatch.setenv(name, value)
    namespace: dict[str, Any] = {"__name__": "docs_sdk"}
    for block in runnable_blocks(DOC.read_text(encoding="utf-8")):
        exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102 - our own documentation

    # The Starlette notification example: a genuine notification is acknowledged with
    # 204 and stored, a tampered one gets 400 with the platform's failure shape.
    merchant = sim.merchant(bundle.mchid)
    headers, body = build_notification(
        merchant, "TRANSACTION.SUCCESS", payment_resource(merchant, out_trade_no="doc_n1", total=1)
    )

    async def deliver() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=namespace["app"])
        async with httpx.AsyncClient(transport=transport, base_url="http://merchant") as http:
            good = await http.post("/wxpay/notify", headers=headers, content=body)
            bad = await http.post(
                "/wxpay/notify", headers=headers, content=body.replace(b'"id"', b'"id" ')
            )
        await namespace["notifications"].aclose()
        return good, bad

    good, bad = asyncio.run(deliver())
    assert good.status_code == 204
    assert namespace["received"][0].out_trade_no == "doc_n1"
    assert bad.status_code == 400
    assert bad.json()["code"] == "FAIL"


README = Path(__file__).parents[3] / "README.md"


def readme_sdk_section() -> str:
    """The README's "The SDK" section, up to the next second-level heading."""
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## The SDK\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def test_readme_sdk_section_runs_against_the_simulator(
    sim: ServedSimulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bundle = sim.create_merchant(MerchantMode.CERTIFICATE)
    bundle.write(tmp_path)
    for name, value in {
        "WXPAY_BASE_URL": sim.base_url,
        "WXPAY_MCHID": bundle.mchid,
        "WXPAY_APPID": bundle.appid,
        "WXPAY_APIV3_KEY": bundle.apiv3_key,
        "WXPAY_KEY_DIR": str(tmp_path),
    }.items():
        monkeypatch.setenv(name, value)
    blocks = runnable_blocks(readme_sdk_section())
    assert len(blocks) == 2
    namespace: dict[str, Any] = {"__name__": "readme_sdk"}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - our own documentation
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("weixin://wxpay/bizpayurl")
    assert printed[1] == "NOTPAY"
    # The refund of an unpaid order is a business error with the platform's fields.
    status, code, request_id = printed[2].split(" ")
    assert status == "400"
    assert code
    assert request_id
