"""Safe reading and writing of APIv2's flat XML documents (protocol reference §9.2–§9.4).

Every APIv2 document is one root element whose children each carry one value, in a
CDATA section or as bare text::

    <xml><return_code><![CDATA[SUCCESS]]></return_code><total_fee>1</total_fee></xml>

Why a byte scan runs before the parser: expat expands internal entities declared in a
DOCTYPE (billion laughs) and resolves declared external ones on request (XXE), and
``defusedxml`` is not a dependency. So :func:`parse_xml` first refuses input over the
size limit, every ``<!`` construct except CDATA sections and comments (which covers
``<!DOCTYPE`` and ``<!ENTITY``), and every processing instruction except the XML
declaration. The scan skips CDATA sections and comments exactly as expat does, so a
value that merely *contains* ``<!DOCTYPE`` is still accepted. The parser then runs
with handlers that refuse a DOCTYPE, an entity declaration or a processing
instruction a second time, so a gap in one layer is not enough.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from xml.parsers import expat

from wxpaykit.errors import MalformedMessageError, UnsafeXmlError

__all__ = ["MAX_XML_BYTES", "build_xml", "parse_xml", "reply_xml"]

#: Default size limit for :func:`parse_xml`; real APIv2 documents are a few KiB.
MAX_XML_BYTES = 64 * 1024

_UTF8_BOM = b"\xef\xbb\xbf"
_XML_WHITESPACE = " \t\r\n"
_SPACE_BYTES = (b" ", b"\t", b"\r", b"\n")
_DECLARED_ENCODING = re.compile(rb"""\sencoding\s*=\s*(["'])([^"']*)\1""")
_ELEMENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def parse_xml(
    data: bytes, *, max_bytes: int = MAX_XML_BYTES, root_tag: str = "xml"
) -> dict[str, str]:
    """Parse a flat APIv2 document into ``{child tag: text}``.

    ``root_tag`` is ``xml`` for requests, responses and notifications, and ``root`` for
    a decrypted refund ``req_info``. Attributes carry no meaning in APIv2 and are
    ignored; an empty element yields ``""``.

    Raises:
        UnsafeXmlError: over ``max_bytes``, a DOCTYPE or entity declaration, or a
            processing instruction other than the XML declaration; all refused
            before parsing.
        MalformedMessageError: not UTF-8 (or declared otherwise), not well-formed, an
            unexpected root, text or nested elements inside it, or a repeated child.
    """
    if len(data) > max_bytes:
        raise UnsafeXmlError(f"XML of {len(data)} bytes is over the {max_bytes}-byte limit")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedMessageError("XML is not valid UTF-8") from exc
    _refuse_unsafe_markup(data)
    return _FlatDocumentReader(root_tag).read(data)


def build_xml(params: Mapping[str, str | int]) -> bytes:
    """Serialise ``params`` as ``<xml><k><![CDATA[v]]></k>...</xml>`` in UTF-8.

    Integers are written bare, strings in CDATA in the mapping's order. Values round-trip
    exactly through :func:`parse_xml`, including ``]]>`` and carriage returns.

    Raises:
        ValueError: a key is not a plain XML element name, or a value holds a
            character XML 1.0 cannot carry (most C0 controls, lone surrogates).
        TypeError: a value is neither ``str`` nor ``int`` (``bool`` included).
    """
    parts = ["<xml>"]
    for key, value in params.items():
        if not _ELEMENT_NAME.fullmatch(key):
            raise ValueError(f"{key!r} cannot be an XML element name")
        parts.append(f"<{key}>{_element_text(value)}</{key}>")
    parts.append("</xml>")
    return "".join(parts).encode("utf-8")


def reply_xml(success: bool, message: str = "OK") -> bytes:
    """Return the acknowledgement body for an APIv2 notification (§9.3).

    ``reply_xml(True)`` is byte for byte the documented success reply; the platform
    treats anything else (plain ``success``, JSON, an HTML page) as a failure.
    ``reply_xml(False, reason)`` answers ``FAIL`` with the reason.
    """
    return build_xml({"return_code": "SUCCESS" if success else "FAIL", "return_msg": message})


def _element_text(value: str | int) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(f"APIv2 values are str or int, not {type(value).__name__}")
    if isinstance(value, int):
        return str(value)
    if _NOT_XML_CHAR.search(value):
        raise ValueError("the value holds a character that XML 1.0 cannot carry")
    # "]]>" would end the section: close it after "]]" and reopen before ">".
    body = value.replace("]]>", "]]]]><![CDATA[>")
    # Parsers turn CR and CRLF into LF even inside CDATA; a character reference
    # between two sections survives, so the value (and its signature) is preserved.
    body = body.replace("\r", "]]>&#13;<![CDATA[")
    return f"<![CDATA[{body}]]>"


def _refuse_unsafe_markup(data: bytes) -> None:
    # Every delimiter is ASCII and UTF-8 never uses ASCII bytes inside a multi-byte
    # sequence, so scanning bytes cannot be fooled by the text around them.
    position = len(_UTF8_BOM) if data.startswith(_UTF8_BOM) else 0
    if data.startswith(b"<?xml", position) and data[position + 5 : position + 6] in _SPACE_BYTES:
        end = data.find(b"?>", position)
        if end == -1:
            raise MalformedMessageError("the XML declaration is not terminated")
        _require_utf8_declaration(data[position:end])
        position = end + 2
    while (position := data.find(b"<", position)) != -1:
        if data.startswith(b"<![CDATA[", position):
            position = _index_after(data, b"]]>", position + 9, "CDATA section")
        elif data.startswith(b"<!--", position):
            position = _index_after(data, b"-->", position + 4, "comment")
        elif data.startswith(b"<!", position):
            raise UnsafeXmlError("DOCTYPE, entity and other declarations are refused")
        elif data.startswith(b"<?", position):
            raise UnsafeXmlError("processing instructions are refused")
        else:
            position += 1


def _index_after(data: bytes, terminator: bytes, start: int, construct: str) -> int:
    end = data.find(terminator, start)
    if end == -1:
        raise MalformedMessageError(f"a {construct} is not terminated")
    return end + len(terminator)


def _require_utf8_declaration(declaration: bytes) -> None:
    # The parser is told the input is UTF-8 whatever it declares; a document that
    # declares GBK would otherwise be read as the wrong text and fail only its signature.
    match = _DECLARED_ENCODING.search(declaration)
    if match is not None and match.group(2).lower() not in (b"utf-8", b"utf8"):
        raise MalformedMessageError("only UTF-8 XML is accepted")


class _FlatDocumentReader:
    """Expat callbacks that collect one root's children and refuse anything deeper."""

    def __init__(self, root_tag: str) -> None:
        self._root_tag = root_tag
        self._values: dict[str, str] = {}
        self._depth = 0
        self._current_key = ""
        self._current_text: list[str] = []

    def read(self, data: bytes) -> dict[str, str]:
        parser = expat.ParserCreate(encoding="UTF-8")
        parser.StartDoctypeDeclHandler = self._refuse_doctype
        parser.EntityDeclHandler = self._refuse_entity
        parser.ProcessingInstructionHandler = self._refuse_processing_instruction
        parser.StartElementHandler = self._start_element
        parser.EndElementHandler = self._end_element
        parser.CharacterDataHandler = self._character_data
        try:
            parser.Parse(data, True)
        except expat.ExpatError as exc:
            raise MalformedMessageError(f"XML is not well-formed ({exc})") from exc
        return self._values

    def _start_element(self, name: str, attributes: object) -> None:
        if self._depth == 0 and name != self._root_tag:
            raise MalformedMessageError(f"the root element must be <{self._root_tag}>")
        if self._depth == 1:
            if name in self._values:
                raise MalformedMessageError("an element appears twice")
            self._current_key = name
            self._current_text = []
        elif self._depth >= 2:
            raise MalformedMessageError("nested elements are not allowed in APIv2 XML")
        self._depth += 1

    def _end_element(self, name: str) -> None:
        self._depth -= 1
        if self._depth == 1:
            self._values[self._current_key] = "".join(self._current_text)

    def _character_data(self, text: str) -> None:
        if self._depth == 2:
            self._current_text.append(text)
        elif text.strip(_XML_WHITESPACE):
            raise MalformedMessageError("text outside the child elements")

    def _refuse_doctype(self, *args: object) -> None:
        raise UnsafeXmlError("DOCTYPE declarations are refused")

    def _refuse_entity(self, *args: object) -> None:
        raise UnsafeXmlError("entity declarations are refused")

    def _refuse_processing_instruction(self, *args: object) -> None:
        raise UnsafeXmlError("processing instructions are refused")
