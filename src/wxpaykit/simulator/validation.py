"""Field checks with the platform's PARAM_ERROR detail (a JSON pointer per field)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from wxpaykit.simulator.platform_errors import param_error

__all__ = [
    "OUT_REFUND_NO",
    "OUT_TRADE_NO",
    "check_notify_url",
    "optional_int",
    "optional_str",
    "parse_rfc3339",
    "pointer_get",
    "required_int",
    "required_str",
]

OUT_TRADE_NO = re.compile(r"[0-9A-Za-z_\-|*]{6,32}")
OUT_REFUND_NO = re.compile(r"[0-9A-Za-z_\-|*@]{1,64}")
_LOOPBACK_NAMES = ("localhost",)


def pointer_get(document: dict[str, Any], pointer: str) -> Any:
    """Follow ``/a/b`` through nested objects; None when any step is missing."""
    value: Any = document
    for part in pointer.strip("/").split("/"):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def optional_str(document: dict[str, Any], pointer: str, *, max_length: int = 0) -> str:
    """A string field ("" when absent); wrong type or too long is PARAM_ERROR."""
    value = pointer_get(document, pointer)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise param_error(pointer, "字段类型应为字符串")
    if max_length and len(value) > max_length:
        raise param_error(pointer, f"长度不能超过{max_length}")
    return value


def required_str(
    document: dict[str, Any],
    pointer: str,
    *,
    max_length: int = 0,
    pattern: re.Pattern[str] | None = None,
) -> str:
    """A non-empty string field."""
    value = optional_str(document, pointer, max_length=max_length)
    if not value:
        raise param_error(pointer, f"{pointer.strip('/')} 为必填参数")
    if pattern is not None and not pattern.fullmatch(value):
        raise param_error(pointer, "格式不正确", value=value)
    return value


def optional_int(document: dict[str, Any], pointer: str) -> int | None:
    """An integer field (booleans refused)."""
    value = pointer_get(document, pointer)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise param_error(pointer, "字段类型应为整数")
    return value


def required_int(document: dict[str, Any], pointer: str, *, minimum: int | None = None) -> int:
    """A required integer field, optionally with a minimum."""
    value = optional_int(document, pointer)
    if value is None:
        raise param_error(pointer, f"{pointer.strip('/')} 为必填参数")
    if minimum is not None and value < minimum:
        raise param_error(pointer, f"应大于等于{minimum}", value=value)
    return value


def parse_rfc3339(pointer: str, text: str) -> float:
    """Unix time of an RFC 3339 date with an offset (PARAM_ERROR otherwise)."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise param_error(pointer, "时间格式应为 RFC 3339，如 2018-06-08T10:34:56+08:00") from None
    if moment.tzinfo is None:
        raise param_error(pointer, "时间必须带时区")
    return moment.timestamp()


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_notify_url(pointer: str, url: str, *, allow_any: bool) -> None:
    """Absolute http(s) URL without a query string (§10); plain http only on loopback.

    The real platform wants public HTTPS; a local simulator must reach 127.0.0.1.
    """
    if len(url) > 255:
        raise param_error(pointer, "长度不能超过255")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise param_error(pointer, "通知地址必须是完整的 http(s) URL")
    if parts.query:
        raise param_error(pointer, "通知地址不允许携带查询串")
    if parts.scheme == "http" and not allow_any and not _is_loopback(parts.hostname):
        raise param_error(pointer, "通知地址必须使用 HTTPS（模拟器只对本机地址放行 http）")
