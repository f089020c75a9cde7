"""Refusals in the platform's own shape: HTTP status, ``code``, ``message``, ``detail``.

Business logic raises :class:`PlatformError`; the APIv3 edge turns it into a JSON
error body (§7.8) and the APIv2 edge into ``result_code=FAIL`` with ``err_code``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["REENTRY_MISMATCH", "PlatformError", "param_error"]

#: The platform's message when an ``out_trade_no``/``out_refund_no`` comes back with
#: different parameters (§7.1).
REENTRY_MISMATCH = "请求重入时，参数与首次请求时不一致"


class PlatformError(Exception):
    """A request the platform refuses; ``v2_code`` is the APIv2 ``err_code``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        detail: dict[str, Any] | None = None,
        v2_code: str | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail
        self.v2_code = v2_code or code

    def body(self) -> dict[str, Any]:
        """The JSON error body, ``{code, message[, detail]}``."""
        document: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            document["detail"] = self.detail
        return document


def param_error(
    field: str, issue: str, *, location: str = "body", value: Any = None
) -> PlatformError:
    """400 ``PARAM_ERROR`` naming the field (a JSON pointer such as ``/amount/total``)."""
    detail: dict[str, Any] = {"field": field, "location": location, "issue": issue}
    if value is not None:
        detail["value"] = value
    return PlatformError(
        400, "PARAM_ERROR", f"参数错误：{issue}", detail=detail, v2_code="PARAM_ERROR"
    )
