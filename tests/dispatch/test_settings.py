"""Dispatch settings: clear errors without echoing secrets; retry policy limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from wxpaykit.dispatch.config import HttpSinkConfig, load_dispatch_settings, parse_dispatch_settings
from wxpaykit.dispatch.retry import RetryPolicy
from wxpaykit.errors import ConfigurationError


def test_invalid_settings_name_the_field_and_hide_the_secret() -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_dispatch_settings(
            {
                "sinks": [
                    {
                        "name": "shop",
                        "type": "http",
                        "url": "ftp://x",
                        "secrets": ["whsec_TOPSECRET"],
                    }
                ]
            }
        )
    assert "url" in str(caught.value)
    assert "TOPSECRET" not in str(caught.value)
    with pytest.raises(ConfigurationError, match="duplicate sink names: a"):
        parse_dispatch_settings(
            {"sinks": [{"name": "a", "type": "redis"}, {"name": "a", "type": "nats"}]}
        )


def test_toml_file_with_secret_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3\n")
    config = tmp_path / "sinks.toml"
    config.write_text(
        f"""
[[sinks]]
name = "shop"
type = "http"
url = "https://shop.example/hooks"
secret_files = ["{secret_file}"]
event_types = ["payment.*"]
"""
    )
    settings = load_dispatch_settings(config)
    (sink,) = settings.sinks
    assert isinstance(sink, HttpSinkConfig)
    assert sink.secret_texts() == ["whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3"]
    assert sink.accepts("payment.succeeded")
    assert not sink.accepts("refund.succeeded")


def test_relative_secret_files_are_read_next_to_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `wxpaykit worker` and `serve` must read the same file whatever the working folder.
    folder = tmp_path / "etc"
    (folder / "secrets").mkdir(parents=True)
    (folder / "secrets" / "hook").write_text("whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3\n")
    config = folder / "sinks.toml"
    config.write_text(
        '[[sinks]]\nname = "shop"\ntype = "http"\nurl = "https://shop.example/hooks"\n'
        'secret_files = ["secrets/hook"]\n'
    )
    monkeypatch.chdir(tmp_path)  # not the config's folder
    (sink,) = load_dispatch_settings(config).sinks
    assert isinstance(sink, HttpSinkConfig)
    assert sink.secret_files == (folder / "secrets" / "hook",)
    assert sink.secret_texts() == ["whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3"]
    # Without a base folder (a mapping from code), paths are taken as given.
    (plain,) = parse_dispatch_settings(
        {
            "sinks": [
                {
                    "name": "s",
                    "type": "http",
                    "url": "https://x.example/h",
                    "secret_files": ["secrets/hook"],
                }
            ]
        }
    ).sinks
    assert isinstance(plain, HttpSinkConfig)
    assert plain.secret_files == (Path("secrets/hook"),)


def test_retry_policy_backs_off_with_full_jitter_and_ends() -> None:
    policy = RetryPolicy(base_seconds=15, cap_seconds=3600, max_attempts=5, max_age_seconds=None)
    delays = [
        (
            policy.next_attempt_at_ms(
                attempts=n, now_ms=0, window_started_at_ms=0, random=lambda: 1.0
            )
            or 0
        )
        for n in range(1, 5)
    ]
    assert delays == [15_000, 30_000, 60_000, 120_000]
    assert (
        policy.next_attempt_at_ms(attempts=1, now_ms=0, window_started_at_ms=0, random=lambda: 0.0)
        == 0
    )
    assert policy.next_attempt_at_ms(attempts=5, now_ms=0, window_started_at_ms=0) is None
    default = RetryPolicy()
    assert (
        default.next_attempt_at_ms(attempts=1, now_ms=0, window_started_at_ms=0, permanent=True)
        is not None
    )
    assert (
        RetryPolicy(dead_letter_permanent=True).next_attempt_at_ms(
            attempts=1, now_ms=0, window_started_at_ms=0, permanent=True
        )
        is None
    )
    # the age limit: the last attempt lands on the deadline, then dead letter
    day = 24 * 3600 * 1000 + 240_000
    late = default.next_attempt_at_ms(
        attempts=30, now_ms=day - 1000, window_started_at_ms=0, random=lambda: 1.0
    )
    assert late == day
    assert default.next_attempt_at_ms(attempts=31, now_ms=day, window_started_at_ms=0) is None
    with pytest.raises(ValueError, match="retries must end"):
        RetryPolicy(max_attempts=None, max_age_seconds=None)
