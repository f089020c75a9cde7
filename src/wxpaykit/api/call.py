"""Endpoints as values: :class:`ApiCall` describes one APIv3 request and how to read the answer.

An endpoint is written once, in the module of its product area, as a function returning
an ``ApiCall[T]``; both clients send it (``client.call(transactions.native(...))``) and
return ``T``. Nothing here does I/O: the client signs, sends, verifies and retries, then
hands the verified :class:`ApiResponse` to ``ApiCall.parse``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlencode

from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import BaseModel, ConfigDict, ValidationError

from wxpaykit.errors import MalformedMessageError

__all__ = [
    "ApiCall",
    "ApiResponse",
    "CallContext",
    "RequestModel",
    "ResponseModel",
    "encode_json_body",
    "parse_empty",
    "parse_model",
    "path_segment",
]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class RequestModel(BaseModel):
    """Base of request bodies: immutable, unknown keyword fields refused (typos fail early)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_wire(self) -> dict[str, Any]:
        """The JSON object to send: ``None`` fields omitted (the platform refuses ``null``)."""
        return self.model_dump(mode="json", exclude_none=True, by_alias=True)


class ResponseModel(BaseModel):
    """Base of response models: immutable, unknown fields kept (the platform adds keys)."""

    model_config = ConfigDict(extra="allow", frozen=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiResponse:
    """A 2xx response whose signature has already been verified (or that is unsigned)."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes

    @property
    def request_id(self) -> str | None:
        """The ``Request-ID`` header, quoted in support tickets."""
        for key, value in self.headers.items():
            if key.lower() == "request-id":
                return value
        return None

    def json(self) -> dict[str, Any]:
        """The body as a JSON object; :class:`MalformedMessageError` otherwise."""
        try:
            document = json.loads(self.content)
        except ValueError:
            raise MalformedMessageError("response body is not JSON") from None
        if not isinstance(document, dict):
            raise MalformedMessageError("response body is not a JSON object")
        return document


@dataclass(frozen=True, slots=True, kw_only=True)
class CallContext:
    """What a parser may need besides the response: the merchant, the final body, a clock.

    Prepay parsers use it to sign the client-side payment parameters with the merchant
    key, so the front end gets everything ready in one call.
    """

    mchid: str
    private_key: rsa.RSAPrivateKey = field(repr=False)
    request_body: Mapping[str, Any]
    timestamp: int
    nonce: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiCall(Generic[T]):
    """One APIv3 request and the parser of its answer.

    ``path`` is already percent-encoded (use :func:`path_segment`); ``query`` keeps its
    order, which is the order sent and signed. ``fill_mchid`` names the body key (for
    requests with a body) or query key (otherwise) that the client sets to its own
    ``mchid`` when the caller left it out; ``fill_appid`` likewise with the client's
    ``appid``. ``wechatpay_serial`` is sent as ``Wechatpay-Serial`` when the body holds
    fields encrypted for the platform (protocol reference §8). ``signed_response`` is
    false only for the bill file, which the platform does not sign.
    """

    method: str
    path: str
    parse: Callable[[ApiResponse, CallContext], T] = field(repr=False)
    query: tuple[tuple[str, str | None], ...] = ()
    body: Mapping[str, Any] | None = None
    fill_mchid: str | None = None
    fill_appid: str | None = None
    wechatpay_serial: str | None = None
    signed_response: bool = True

    def target(self, mchid: str) -> str:
        """The request target (path and query) with the merchant filled in."""
        if not self.query:
            return self.path
        pairs = [
            (key, mchid if value is None and key == self.fill_mchid else value)
            for key, value in self.query
        ]
        missing = [key for key, value in pairs if value is None]
        if missing:
            raise ValueError(f"query parameter(s) {', '.join(missing)} have no value")
        return f"{self.path}?{urlencode(pairs, quote_via=quote, safe='')}"

    def final_body(self, *, mchid: str, appid: str | None) -> dict[str, Any] | None:
        """The body with ``mchid``/``appid`` filled in when the caller left them out."""
        if self.body is None:
            return None
        body = dict(self.body)
        if self.fill_mchid and body.get(self.fill_mchid) is None:
            body[self.fill_mchid] = mchid
        if self.fill_appid and body.get(self.fill_appid) is None:
            if appid is None:
                raise ValueError(
                    f"{self.fill_appid} is required: pass it or configure the client's appid"
                )
            body[self.fill_appid] = appid
        return body


def encode_json_body(body: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON: the exact bytes that are signed and sent.

    WeChat Pay accepts only 1-3 byte UTF-8 characters (protocol reference §1), so an
    emoji is refused here with a clear message instead of a puzzling PARAM_ERROR.
    """
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    if any(ord(char) > 0xFFFF for char in text):
        raise ValueError("WeChat Pay accepts only BMP characters: remove emoji / 4-byte characters")
    return text.encode("utf-8")


def path_segment(value: str) -> str:
    """Percent-encode one path parameter (``out_trade_no``, ``out_refund_no``)."""
    if not value:
        raise ValueError("path parameters must not be empty")
    return quote(value, safe="")


def parse_model(model: type[M]) -> Callable[[ApiResponse, CallContext], M]:
    """A parser that validates the JSON body into ``model``."""

    def parse(response: ApiResponse, context: CallContext) -> M:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise MalformedMessageError(describe_validation(exc, model.__name__)) from None

    return parse


def parse_empty(response: ApiResponse, context: CallContext) -> None:
    """The parser of ``204 No Content`` answers (close order)."""
    return None


def describe_validation(exc: ValidationError, what: str) -> str:
    """Name the fields and problems of a validation error, never the values (personal data)."""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['type']}"
        for err in exc.errors()[:5]
    )
    return f"invalid {what} ({problems})"
