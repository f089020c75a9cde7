"""Endpoints as values, one module per product area.

``transactions`` (prepay, query, close), ``refunds``, ``bills``, ``certificates`` and
``partner``. Each function returns an :class:`ApiCall`; either client sends it.
"""

from __future__ import annotations

from wxpaykit.api import bills, certificates, partner, refunds, transactions
from wxpaykit.api.call import ApiCall, ApiResponse, CallContext

__all__ = [
    "ApiCall",
    "ApiResponse",
    "CallContext",
    "bills",
    "certificates",
    "partner",
    "refunds",
    "transactions",
]
