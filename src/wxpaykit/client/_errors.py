"""Translating answers and transport failures into the exception tree, once, at the edge."""

from __future__ import annotations

import json
from collections.abc import Mapping

import httpx

from wxpaykit.errors import (
    ApiError,
    BadRequestError,
    ForbiddenError,
    NotFoundError,
    PlatformServerError,
    RateLimitedError,
    RequestTimeoutError,
    TransportError,
    UnauthorizedError,
)

__all__ = ["api_error", "transport_error"]

_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    429: RateLimitedError,
}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    for key, candidate in headers.items():
        if key.lower() == name.lower():
            return candidate
    return None


def api_error(status_code: int, headers: Mapping[str, str], content: bytes) -> ApiError:
    """The :class:`ApiError` subclass for a non-2xx answer, with code, message and detail.

    Error bodies are not signed by the platform (protocol reference §3.3), so nothing in
    them is trusted beyond being reported: the caller decides what to do by status/code.
    """
    code, message, detail = f"HTTP_{status_code}", "", None
    try:
        document = json.loads(content) if content else None
    except ValueError:
        document = None
    if isinstance(document, dict):
        code = str(document.get("code") or code)
        message = str(document.get("message") or "")
        detail = document.get("detail")
    if not message:
        message = _reason(status_code)
    if status_code >= 500:
        error_class: type[ApiError] = PlatformServerError
    else:
        error_class = _BY_STATUS.get(status_code, ApiError)
    return error_class(
        status_code=status_code,
        code=code,
        message=message,
        detail=detail,
        request_id=_header(headers, "Request-ID"),
    )


def _reason(status_code: int) -> str:
    return httpx.codes.get_reason_phrase(status_code) or "unexpected status"


def transport_error(exc: httpx.TransportError, *, method: str, path: str) -> TransportError:
    """Name the failure without echoing headers or bodies."""
    if isinstance(exc, httpx.TimeoutException):
        return RequestTimeoutError(f"{method} {path}: timed out ({type(exc).__name__})")
    return TransportError(f"{method} {path}: {type(exc).__name__}: {exc}")
