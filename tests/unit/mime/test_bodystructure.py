"""BODYSTRUCTURE and BODY of the hand-written messages, derived by hand from RFC 9051 7.5.2.

Counting rules used below (RFC 2046 5.1.1, RFC 9051 7.5.2):
- a part's size is its body in octets as stored; the line ending just before a boundary line
  belongs to the boundary, so the last line of a part before a boundary has no CRLF;
- lines = line endings in the body, plus 1 for a last line without one;
- fixtures are stored with LF and loaded with CRLF (see fixtures.py), so "line N: L" below
  means line N of the .eml file, L octets before its line ending, L + 2 with it.
"""

from __future__ import annotations

import pytest

from mailfort.mail.mime import parse
from mailfort.protocol.imap.bodystructure import bodystructure
from tests.unit.mime.fixtures import load

EXPECTED: dict[str, bytes] = {
    # Body: line 4 "Just a body." 12 + 2 = 14 octets, 1 line. No Content-Type at all: text/plain
    # with the RFC 2045 5.2 default charset.
    "missing-headers.eml": b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 14 1'
    b" NIL NIL NIL NIL)",
    # Line 10, 25 + 2 = 27 octets, 1 line; charset value as written (quotes removed).
    "encoded-words.eml": b'("TEXT" "PLAIN" ("CHARSET" "iso-8859-1") NIL NIL "QUOTED-PRINTABLE"'
    b" 27 1 NIL NIL NIL NIL)",
    # No MIME header fields: text/plain, US-ASCII by default even though the body is 8-bit.
    # Lines 5–6: 16 + 2 + 4 + 2 = 24 octets ("Schöne Grüße!" is 13 characters, 16 octets).
    "eightbit.eml": b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 24 2 NIL NIL NIL NIL)',
    # Line 11 "Body." 5 + 2 = 7 octets, 1 line.
    "groups.eml": b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 7 1 NIL NIL NIL NIL)',
    "nested.eml": (
        b"("
        # 1: multipart/alternative (lines 12-25)
        b"("
        # 1.1: lines 18-19: 10 + 2 + 25 (line 19's LF goes with "--inner") = 37 octets, 2 lines
        b'("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 37 2 NIL NIL NIL NIL)'
        # 1.2: line 24: 46 octets, 1 line
        b'("TEXT" "HTML" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 46 1 NIL NIL NIL NIL)'
        b' "ALTERNATIVE" ("BOUNDARY" "inner") NIL NIL NIL)'
        # 2: RFC 2231 continuations name*0*/name*1* merged into one extended name* (raw, still
        # %-encoded); line 42: 28 octets; no line count for a non-text part; then md5,
        # disposition with its params, languages "de, en" as a list, and the folded
        # Content-Location (lines 39-40) with its white space removed (RFC 2557 4.4.1).
        b'("APPLICATION" "PDF" ("NAME*" "utf-8\'\'%C3%9Cbersicht%202024.pdf")'
        b' "<att-1@example.org>" "Quarterly overview" "BASE64" 28 "Q2hlY2sgSW50ZWdyaXR5IQ=="'
        b' ("ATTACHMENT" ("FILENAME*" "utf-8\'\'%C3%9Cbersicht%202024.pdf")) ("de" "en")'
        b' "http://example.org/files/overview.pdf")'
        # multipart extension data: params, disposition, language, location
        b' "MIXED" ("BOUNDARY" "outer") NIL NIL NIL)'
    ),
    "forwarded.eml": (
        b"("
        # 1: text/plain without charset gets the default appended. Body: line 12
        # "See below." 10 + 2; line 13 is empty and its CRLF goes with "--fwd": 12 octets, 1 line.
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 12 1 NIL NIL NIL NIL)'
        # 2: message/rfc822, body = lines 18-34. Lines 18-33 are
        # 36+27+21+14+30+34+49+0+5+42+0+13+5+41+0+20 = 337 octets + 16 CRLF = 369, plus line 34
        # "--alt--" (7; its CRLF goes with "--fwd--") = 376 octets; 16 line endings + the last
        # line = 17 lines. Then the encapsulated message's envelope and body.
        b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 376'
        b' ("Wed, 1 Jan 2025 08:00:00 +0100" "plans" (("Eve" NIL "eve" "example.net"))'
        b' (("Eve" NIL "eve" "example.net")) (("Eve" NIL "eve" "example.net"))'
        b' ((NIL NIL "carol" "example.com")) NIL NIL "<earlier@example.com>" "<orig@example.net>")'
        # 2.1: line 29 "Meet at noon." 13 octets; 2.2: line 33 "<b>Meet at noon.</b>" 20 octets
        b' (("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 13 1 NIL NIL NIL NIL)'
        b'("TEXT" "HTML" ("CHARSET" "us-ascii") NIL NIL "7BIT" 20 1 NIL NIL NIL NIL)'
        b' "ALTERNATIVE" ("BOUNDARY" "alt") NIL NIL NIL)'
        b' 17 NIL ("INLINE" NIL) NIL NIL)'
        b' "MIXED" ("BOUNDARY" "fwd") NIL NIL NIL)'
    ),
    "digest.eml": (
        b"("
        # 1: no header at all (line 6 is blank): message/rfc822 is the default in a digest
        # (RFC 2046 5.1.5). Body lines 7-10: 19+2 + 12+2 + 0+2 + 6 = 43 octets, 4 lines;
        # inside it "First." is 6 octets, 1 line.
        b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 43'
        b' (NIL "one" ((NIL NIL "a" "example.com")) ((NIL NIL "a" "example.com"))'
        b' ((NIL NIL "a" "example.com")) NIL NIL NIL NIL NIL)'
        b' ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 6 1 NIL NIL NIL NIL)'
        b" 4 NIL NIL NIL NIL)"
        # 2: explicit message/rfc822, lines 14-17: 19+2 + 12+2 + 0+2 + 7 = 44 octets, 4 lines
        b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 44'
        b' (NIL "two" ((NIL NIL "b" "example.com")) ((NIL NIL "b" "example.com"))'
        b' ((NIL NIL "b" "example.com")) NIL NIL NIL NIL NIL)'
        b' ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 7 1 NIL NIL NIL NIL)'
        b" 4 NIL NIL NIL NIL)"
        b' "DIGEST" ("BOUNDARY" "d") NIL NIL NIL)'
    ),
    "lf-multipart.eml": (
        b"("
        # bare LF: line 8-9 "one\ntwo" = 3 + 1 + 3 = 7 octets (the LF before "--LF" is the
        # boundary's), 2 lines
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 7 2 NIL NIL NIL NIL)'
        # line 14 "aMOpbGxv": 8 octets, 1 line
        b'("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "BASE64" 8 1 NIL NIL NIL NIL)'
        b' "MIXED" ("BOUNDARY" "LF") NIL NIL NIL)'
    ),
    "no-final-boundary.eml": (
        b"("
        # line 8 "first": 5 octets, 1 line
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 5 1 NIL NIL NIL NIL)'
        # no close-delimiter: the part runs to the end of the message, line 12 with its CRLF:
        # 33 + 2 = 35 octets, 1 line
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 35 1 NIL NIL NIL NIL)'
        b' "MIXED" ("BOUNDARY" "cut") NIL NIL NIL)'
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bodystructure(name: str) -> None:
    assert bodystructure(parse(load(name)), extended=True) == EXPECTED[name]


# BODY is BODYSTRUCTURE without extension data (RFC 9051 7.5.2).
EXPECTED_BODY: dict[str, bytes] = {
    "missing-headers.eml": b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 14 1)',
    "nested.eml": (
        b'((("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 37 2)'
        b'("TEXT" "HTML" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 46 1) "ALTERNATIVE")'
        b'("APPLICATION" "PDF" ("NAME*" "utf-8\'\'%C3%9Cbersicht%202024.pdf")'
        b' "<att-1@example.org>" "Quarterly overview" "BASE64" 28) "MIXED")'
    ),
    "forwarded.eml": (
        b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 12 1)'
        b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 376'
        b' ("Wed, 1 Jan 2025 08:00:00 +0100" "plans" (("Eve" NIL "eve" "example.net"))'
        b' (("Eve" NIL "eve" "example.net")) (("Eve" NIL "eve" "example.net"))'
        b' ((NIL NIL "carol" "example.com")) NIL NIL "<earlier@example.com>" "<orig@example.net>")'
        b' (("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 13 1)'
        b'("TEXT" "HTML" ("CHARSET" "us-ascii") NIL NIL "7BIT" 20 1) "ALTERNATIVE") 17)'
        b' "MIXED")'
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_BODY))
def test_body(name: str) -> None:
    assert bodystructure(parse(load(name)), extended=False) == EXPECTED_BODY[name]


def test_rfc3501_example_shape() -> None:
    """The RFC 3501 7.4.2 BODY example's second part, rebuilt from a message."""
    data = (
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\nabc\r\n--x\r\n"
        b'Content-Type: TEXT/PLAIN; CHARSET="US-ASCII"; NAME="cc.diff"\r\n'
        b"Content-ID: <960723163407.20117h@cac.washington.edu>\r\n"
        b"Content-Description: Compiler diff\r\n"
        b"Content-Transfer-Encoding: BASE64\r\n\r\nAAAA\r\n--x--\r\n"
    )
    assert bodystructure(parse(data), extended=False) == (
        b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3 1)'
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff")'
        b' "<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4 1) "MIXED")'
    )


def test_multipart_without_boundary_is_text() -> None:
    # RFC 2046 5.1.1 requires the boundary; without one the part cannot be split.
    data = b"Content-Type: multipart/mixed\r\n\r\n--x\r\nhello\r\n"
    assert bodystructure(parse(data), extended=False) == (
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 12 2)'
    )


def test_multipart_without_parts_gets_an_empty_text_part() -> None:
    # body-type-mpart = 1*body: a multipart with no parts is described with one empty part.
    data = b"Content-Type: multipart/mixed; boundary=x\r\n\r\nno boundary here\r\n"
    assert bodystructure(parse(data), extended=False) == (
        b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0) "MIXED")'
    )


def test_invalid_content_type_defaults() -> None:
    # RFC 2045 5.2: a syntactically invalid Content-Type is text/plain; charset=us-ascii.
    data = b"Content-Type: garbage\r\n\r\nx"
    assert bodystructure(parse(data), extended=False) == (
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1 1)'
    )


def test_8bit_parameter_and_description_are_literals() -> None:
    data = (
        'Content-Type: application/octet-stream; name="Grüße.txt"\r\n'
        "Content-Description: über\r\n\r\nx"
    ).encode()
    assert bodystructure(parse(data), extended=False) == (
        b'("APPLICATION" "OCTET-STREAM" ("NAME" {11}\r\n'
        + "Grüße.txt".encode()
        + b") NIL {5}\r\n"
        + "über".encode()
        + b' "7BIT" 1)'
    )


def test_depth_is_capped() -> None:
    depth = 60
    head = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
        for i in range(depth)
    )
    data = head + b"\r\ninnermost\r\n"
    structure = bodystructure(parse(data), extended=False)
    assert b'"APPLICATION" "OCTET-STREAM"' in structure
    assert structure.count(b'"MIXED"') == 50
