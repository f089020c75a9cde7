"""The public surface: SDK names importable from ``wxpaykit``, listed in a sorted ``__all__``."""

from __future__ import annotations

import wxpaykit


def test_all_is_sorted_and_complete() -> None:
    assert wxpaykit.__all__ == sorted(wxpaykit.__all__)
    assert len(set(wxpaykit.__all__)) == len(wxpaykit.__all__)
    for name in wxpaykit.__all__:
        assert getattr(wxpaykit, name) is not None


def test_core_sdk_names_are_exported() -> None:
    for name in (
        "WeChatPay",
        "AsyncWeChatPay",
        "RetryPolicy",
        "MerchantCredentials",
        "WeChatPayPublicKey",
        "parse_notification",
        "ApiError",
        "transactions",
    ):
        assert name in wxpaykit.__all__
