"""Serial numbers as WeChat writes them (§4)."""

from __future__ import annotations

import pytest

from wxpaykit.core.serials import format_serial, is_public_key_id, normalize_serial


def test_format_serial_is_upper_hex_without_leading_zeros() -> None:
    assert format_serial(0x0408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB) == (
        "408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB"
    )
    assert format_serial(0x0ABC) == "ABC"


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        (" 5157f09efdc096de15ebe81a47057a7232f1b8e1 ", "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"),
        ("0ABC", "ABC"),
        (
            "PUB_KEY_ID_0000000000000024101100397200000006",
            "PUB_KEY_ID_0000000000000024101100397200000006",
        ),
        ("not-hex", "NOT-HEX"),
    ],
)
def test_normalize_serial(raw: str, normal: str) -> None:
    assert normalize_serial(raw) == normal


def test_public_key_ids_are_recognised_by_prefix() -> None:
    assert is_public_key_id("PUB_KEY_ID_0000000000000024101100397200000006")
    assert not is_public_key_id("5157F09EFDC096DE15EBE81A47057A7232F1B8E1")
