"""Bills: apply for a trade or fund-flow bill, then download it (protocol reference §7.7).

Applying returns a :class:`BillInfo` with ``download_url`` and ``hash_value``. The file
itself is fetched by the client (``client.bills.download(info, sink)``): the request is
signed, the answer is not, so the file is checked against ``hash_value`` instead. The
hash covers the *decompressed* file; :class:`BillDigest` gunzips and hashes chunk by
chunk so a large bill never sits in memory.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import zlib
from typing import Literal
from urllib.parse import urlsplit

from wxpaykit.api.call import ApiCall, ResponseModel, parse_model
from wxpaykit.errors import MalformedMessageError, VerificationError

__all__ = ["BillDigest", "BillInfo", "download_target", "fund_flow_bill", "trade_bill"]

BillType = Literal["ALL", "SUCCESS", "REFUND"]
AccountType = Literal["BASIC", "OPERATION", "FEES"]


class BillInfo(ResponseModel):
    """Where to fetch a bill and the SHA-1 (hex) of its decompressed content."""

    hash_type: str
    hash_value: str
    download_url: str


def _bill_date(value: dt.date | str) -> str:
    text = value.isoformat() if isinstance(value, dt.date) else value
    try:
        # Python 3.11 also accepts the basic form 20240102; the platform does not.
        if len(text) != 10:
            raise ValueError(text)
        dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"bill_date must be YYYY-MM-DD, got {text!r}") from None
    return text


def trade_bill(
    bill_date: dt.date | str,
    *,
    bill_type: BillType = "ALL",
    gzip: bool = True,
    sub_mchid: str | None = None,
) -> ApiCall[BillInfo]:
    """``GET /v3/bill/tradebill``: the trade bill of one day (ready after ~10:00 next day)."""
    # Alphabetical, as the official go SDK encodes it; any order is signed as sent.
    query: list[tuple[str, str | None]] = [
        ("bill_date", _bill_date(bill_date)),
        ("bill_type", bill_type),
    ]
    if sub_mchid:
        query.append(("sub_mchid", sub_mchid))
    if gzip:
        query.append(("tar_type", "GZIP"))
    return ApiCall(
        method="GET", path="/v3/bill/tradebill", query=tuple(query), parse=parse_model(BillInfo)
    )


def fund_flow_bill(
    bill_date: dt.date | str, *, account_type: AccountType = "BASIC", gzip: bool = True
) -> ApiCall[BillInfo]:
    """``GET /v3/bill/fundflowbill``: the fund-flow bill of one account for one day."""
    query: list[tuple[str, str | None]] = [
        ("bill_date", _bill_date(bill_date)),
        ("account_type", account_type),
    ]
    if gzip:
        query.append(("tar_type", "GZIP"))
    return ApiCall(
        method="GET", path="/v3/bill/fundflowbill", query=tuple(query), parse=parse_model(BillInfo)
    )


def download_target(download_url: str) -> str:
    """The request target (path and query) of ``download_url``.

    The client sends it to its own base URL: signed requests only ever go to the
    configured platform host, whatever host the URL names.
    """
    parts = urlsplit(download_url)
    if not parts.path.startswith("/v3/billdownload/"):
        raise MalformedMessageError("download_url does not point at /v3/billdownload/")
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


class BillDigest:
    """Gunzip (when asked) and SHA-1 a bill chunk by chunk, then check ``hash_value``.

    ``feed`` returns the decompressed bytes of each chunk for the caller to store;
    ``verify`` compares the digest with ``hash_value`` in constant time.
    """

    def __init__(self, info: BillInfo, *, gzip: bool) -> None:
        if info.hash_type.upper() != "SHA1":
            raise MalformedMessageError(f"unsupported bill hash_type {info.hash_type!r}")
        self._expected = info.hash_value.lower()
        self._sha1 = hashlib.sha1()  # noqa: S324 - the platform's own integrity hash
        # wbits=31: gzip container; the bill is one gzip member.
        self._decompressor = zlib.decompressobj(wbits=31) if gzip else None
        self.size = 0

    def feed(self, chunk: bytes) -> bytes:
        """Digest one chunk of the file as received; return its decompressed bytes."""
        if self._decompressor is not None:
            try:
                chunk = self._decompressor.decompress(chunk)
            except zlib.error:
                raise MalformedMessageError("bill file is not valid gzip") from None
        self._sha1.update(chunk)
        self.size += len(chunk)
        return chunk

    def finish(self) -> bytes:
        """Flush the decompressor; return the last bytes."""
        if self._decompressor is None:
            return b""
        if not self._decompressor.eof:
            raise MalformedMessageError("bill file ends before the gzip stream does")
        tail = self._decompressor.flush()
        self._sha1.update(tail)
        self.size += len(tail)
        return tail

    def verify(self) -> None:
        """Raise :class:`VerificationError` unless the content matches ``hash_value``."""
        if not hmac.compare_digest(self._sha1.hexdigest().encode(), self._expected.encode()):
            raise VerificationError("bill content does not match hash_value (SHA-1)")
