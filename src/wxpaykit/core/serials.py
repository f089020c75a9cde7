"""Certificate serial numbers as WeChat writes them.

WeChat Pay identifies certificates by their X.509 serial in upper-case hex. SDKs
disagree about a leading zero nibble (go keeps it, java drops it; protocol reference
section 4), so we normalise to "no leading zeros, upper case" and compare as integers.
"""

from __future__ import annotations

PUBLIC_KEY_ID_PREFIX = "PUB_KEY_ID_"


def format_serial(serial_number: int) -> str:
    """Return the upper-case hex form of an X.509 serial number, without leading zeros."""
    return f"{serial_number:X}"


def normalize_serial(serial: str) -> str:
    """Normalise a serial string: public key ids are kept as-is, hex serials upper-cased."""
    text = serial.strip()
    if is_public_key_id(text):
        return text
    try:
        return format_serial(int(text, 16))
    except ValueError:
        return text.upper()


def is_public_key_id(serial: str) -> bool:
    """True when ``serial`` is a WeChat Pay public key id (``PUB_KEY_ID_...``)."""
    return serial.startswith(PUBLIC_KEY_ID_PREFIX)
