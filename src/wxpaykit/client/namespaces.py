"""Typed conveniences: ``client.transactions.jsapi(...)`` for both clients, written once.

Each namespace lists the :mod:`wxpaykit.api` factories it offers. An :class:`Endpoint`
turns a factory ``f(*args) -> ApiCall[T]`` into a bound method with the same parameters
that sends the call: it returns ``T`` on ``WeChatPay`` and ``Awaitable[T]`` on
``AsyncWeChatPay``. The types follow from the namespace's mode (:class:`Sync` or
:class:`Async`), so mypy checks arguments and results on both without two copies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, Generic, ParamSpec, TypeVar, overload

from wxpaykit.api import bills, certificates, partner, refunds, transactions
from wxpaykit.api.call import ApiCall

__all__ = [
    "Async",
    "Bills",
    "Certificates",
    "Endpoint",
    "Namespace",
    "Partner",
    "Refunds",
    "Sync",
    "Transactions",
]

P = ParamSpec("P")
T = TypeVar("T")
M = TypeVar("M")


class Sync:
    """Marker: methods return their result."""


class Async:
    """Marker: methods return an awaitable of their result."""


class Namespace(Generic[M]):
    """A group of endpoints bound to one client's ``call``."""

    def __init__(self, call: Callable[[ApiCall[Any]], Any]) -> None:
        self._call = call


class Endpoint(Generic[P, T]):
    """Descriptor exposing an ``ApiCall`` factory as a sending method."""

    def __init__(self, factory: Callable[P, ApiCall[T]]) -> None:
        self.factory = factory

    @overload
    def __get__(self, namespace: None, owner: type) -> Endpoint[P, T]: ...
    @overload
    def __get__(self, namespace: Namespace[Sync], owner: type) -> Callable[P, T]: ...
    @overload
    def __get__(self, namespace: Namespace[Async], owner: type) -> Callable[P, Awaitable[T]]: ...
    def __get__(self, namespace: Namespace[Any] | None, owner: type) -> Any:
        if namespace is None:
            return self
        factory = self.factory
        call = namespace._call

        @wraps(factory)
        def send(*args: P.args, **kwargs: P.kwargs) -> Any:
            return call(factory(*args, **kwargs))

        return send


class Transactions(Namespace[M]):
    """Direct-merchant payments: prepay, query, close."""

    prepay = Endpoint(transactions.prepay)
    jsapi = Endpoint(transactions.jsapi)
    app = Endpoint(transactions.app)
    h5 = Endpoint(transactions.h5)
    native = Endpoint(transactions.native)
    query_by_id = Endpoint(transactions.query_by_id)
    query_by_out_trade_no = Endpoint(transactions.query_by_out_trade_no)
    close = Endpoint(transactions.close)


class Refunds(Namespace[M]):
    """Refunds: create (same ``out_refund_no`` = same refund) and query."""

    create = Endpoint(refunds.create)
    query = Endpoint(refunds.query)


class Bills(Namespace[M]):
    """Apply for bills; download them with ``client.download_bill``."""

    trade_bill = Endpoint(bills.trade_bill)
    fund_flow_bill = Endpoint(bills.fund_flow_bill)


class Certificates(Namespace[M]):
    """The encrypted platform certificate list (the key manager uses it for you)."""

    download = Endpoint(certificates.download)


class Partner(Namespace[M]):
    """Partner (服务商) mode: the same calls for a ``sub_mchid``."""

    prepay = Endpoint(partner.prepay)
    jsapi = Endpoint(partner.jsapi)
    app = Endpoint(partner.app)
    h5 = Endpoint(partner.h5)
    native = Endpoint(partner.native)
    query_by_id = Endpoint(partner.query_by_id)
    query_by_out_trade_no = Endpoint(partner.query_by_out_trade_no)
    close = Endpoint(partner.close)
    refund = Endpoint(partner.refund)
    query_refund = Endpoint(partner.query_refund)
    trade_bill = Endpoint(partner.trade_bill)
