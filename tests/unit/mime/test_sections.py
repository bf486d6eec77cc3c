"""BODY[section], BINARY[section] and <partial> on the hand-written messages (RFC 9051 6.4.5).

Expected bytes are written out from the fixture lines (CRLF form, see fixtures.py)."""

from __future__ import annotations

import pytest

from mailfort.mail.mime import parse
from mailfort.protocol.imap.commands import Section
from mailfort.protocol.imap.sections import binary, part_at, partial, section
from tests.unit.mime.fixtures import load


def lines(*texts: str) -> bytes:
    """CRLF-terminated lines."""
    return "".join(t + "\r\n" for t in texts).encode()


def sec(spec: str) -> Section:
    """`1.2.HEADER.FIELDS (A B)`-style spec to a Section, like the parser builds it."""
    fields: tuple[str, ...] = ()
    if " (" in spec:
        spec, _, names = spec.partition(" (")
        fields = tuple(names.rstrip(")").upper().split())
    numbers: list[int] = []
    rest = spec.split(".") if spec else []
    while rest and rest[0].isdigit():
        numbers.append(int(rest.pop(0)))
    return Section(part=tuple(numbers), text=".".join(rest) or None, fields=fields)


NESTED = {
    "": None,  # whole message, checked separately
    "HEADER": lines(
        "Return-Path: <anna@example.org>",
        "Date: Tue, 14 May 2024 09:30:00 +0200",
        'From: "Mueller, Anna" <anna@example.org>',
        "To: Bob <bob@example.net>",
        "Subject: =?UTF-8?B?w5xiZXJzaWNodA==?= =?UTF-8?B?IDIwMjQ=?=",
        "Message-ID: <nested-1@example.org>",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="outer"',
        "",
    ),
    # Original order, not the order asked for; the blank line is included.
    "HEADER.FIELDS (SUBJECT FROM)": lines(
        'From: "Mueller, Anna" <anna@example.org>',
        "Subject: =?UTF-8?B?w5xiZXJzaWNodA==?= =?UTF-8?B?IDIwMjQ=?=",
        "",
    ),
    "HEADER.FIELDS.NOT (RETURN-PATH DATE FROM TO SUBJECT)": lines(
        "Message-ID: <nested-1@example.org>",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="outer"',
        "",
    ),
    "HEADER.FIELDS (X-ABSENT)": b"\r\n",
    # Part 1 is the multipart/alternative: lines 14-25, with line 25's CRLF (line 26 is empty
    # and its CRLF goes with "--outer").
    "1": lines(
        "--inner",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
        "",
        "Hallo Bob,",
        "anbei die =C3=9Cbersicht.",
        "--inner",
        "Content-Type: text/html; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
        "",
        "<p>Hallo Bob,<br>anbei die =C3=9Cbersicht.</p>",
        "--inner--",
    ),
    "1.MIME": lines("Content-Type: multipart/alternative; boundary=inner", ""),
    "1.1": b"Hallo Bob,\r\nanbei die =C3=9Cbersicht.",
    "1.1.MIME": lines(
        "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable", ""
    ),
    "1.2": b"<p>Hallo Bob,<br>anbei die =C3=9Cbersicht.</p>",
    "2": b"JVBERi0xLjQKJcOkw7zDtsOfCg==",
    # Folded fields stay folded in the MIME header.
    "2.MIME": lines(
        "Content-Type: application/pdf;",
        " name*0*=utf-8''%C3%9Cbersicht%20;",
        " name*1*=2024.pdf",
        "Content-Disposition: attachment;",
        " filename*0*=utf-8''%C3%9Cbersicht%20;",
        " filename*1*=2024.pdf",
        "Content-Transfer-Encoding: base64",
        "Content-ID: <att-1@example.org>",
        "Content-Description: Quarterly overview",
        "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==",
        "Content-Language: de, en",
        "Content-Location: http://example.org/files/",
        " overview.pdf",
        "",
    ),
    "2.HEADER.FIELDS (CONTENT-LOCATION)": b"",  # part 2 is no message/rfc822
    # Nonexistent parts are the empty string.
    "3": b"",
    "3.MIME": b"",
    "1.1.1": b"",
    "1.1.HEADER": b"",
    "0": b"",
}


@pytest.mark.parametrize("spec", [s for s in NESTED if s])
def test_nested_sections(spec: str) -> None:
    data = load("nested.eml")
    assert section(data, parse(data), sec(spec)) == NESTED[spec]


def test_whole_message_and_text() -> None:
    data = load("nested.eml")
    root = parse(data)
    assert section(data, root, sec("")) == data
    header = section(data, root, sec("HEADER"))
    text = section(data, root, sec("TEXT"))
    assert header is not None and text is not None
    assert header + text == data


FORWARDED = {
    # 2 is the message/rfc822 part: its body is the whole encapsulated message (lines 18-34,
    # 376 octets as counted in test_bodystructure.py).
    "2.HEADER": lines(
        "Date: Wed, 1 Jan 2025 08:00:00 +0100",
        "From: Eve <eve@example.net>",
        "To: carol@example.com",
        "Subject: plans",
        "Message-ID: <orig@example.net>",
        "In-Reply-To: <earlier@example.com>",
        "Content-Type: multipart/alternative; boundary=alt",
        "",
    ),
    "2.HEADER.FIELDS (subject)": lines("Subject: plans", ""),
    "2.MIME": lines("Content-Type: message/rfc822", "Content-Disposition: inline", ""),
    "2.TEXT": lines(
        "--alt",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "Meet at noon.",
        "--alt",
        "Content-Type: text/html; charset=us-ascii",
        "",
        "<b>Meet at noon.</b>",
    )
    + b"--alt--",
    # 2.1 and 2.2 are the parts of the encapsulated multipart.
    "2.1": b"Meet at noon.",
    "2.2": b"<b>Meet at noon.</b>",
    "2.2.MIME": lines("Content-Type: text/html; charset=us-ascii", ""),
    "1": b"See below.\r\n",
    "1.HEADER": b"",  # HEADER after a part number needs a message/rfc822 part
    "2.3": b"",
}


@pytest.mark.parametrize("spec", sorted(FORWARDED))
def test_forwarded_sections(spec: str) -> None:
    data = load("forwarded.eml")
    assert section(data, parse(data), sec(spec)) == FORWARDED[spec]


def test_forwarded_encapsulated_message_is_part_2() -> None:
    data = load("forwarded.eml")
    body = section(data, parse(data), sec("2"))
    assert body is not None and len(body) == 376
    assert body.startswith(b"Date: Wed, 1 Jan 2025") and body.endswith(b"--alt--")


def test_single_part_message_has_part_1() -> None:
    # RFC 9051 6.4.5: a non-multipart message has only part 1, its body; 1.MIME is its header.
    data = load("missing-headers.eml")
    root = parse(data)
    assert section(data, root, sec("1")) == b"Just a body.\r\n"
    assert section(data, root, sec("1.MIME")) == section(data, root, sec("HEADER"))
    assert section(data, root, sec("2")) == b""
    assert part_at(root, (1,)) is root


def test_digest_parts_without_header() -> None:
    data = load("digest.eml")
    root = parse(data)
    assert section(data, root, sec("1.MIME")) == b"\r\n"  # the part's header is just the blank
    assert section(data, root, sec("1.HEADER")) == lines("From: a@example.com", "Subject: one", "")
    assert section(data, root, sec("1.1")) == b"First."  # the encapsulated message's body
    assert section(data, root, sec("2.TEXT")) == b"Second."


def test_bare_lf_sections() -> None:
    data = load("lf-multipart.eml")
    root = parse(data)
    assert section(data, root, sec("HEADER")) == (
        b"From: lf@example.com\nSubject: bare LF\nContent-Type: multipart/mixed; boundary=LF\n\n"
    )
    assert section(data, root, sec("1")) == b"one\ntwo"
    assert section(data, root, sec("2.MIME")) == (
        b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
    )
    assert section(data, root, sec("HEADER.FIELDS (SUBJECT)")) == b"Subject: bare LF\n\n"


def test_header_without_blank_line() -> None:
    # RFC 9051 6.4.5: the blank line is included "except in the case of a message which has no
    # body and no blank line".
    data = b"Subject: x\r\nFrom: a@b\r\n"
    root = parse(data)
    assert section(data, root, sec("HEADER")) == data
    assert section(data, root, sec("TEXT")) == b""
    assert section(data, root, sec("HEADER.FIELDS (FROM)")) == b"From: a@b\r\n"


def test_invalid_spec_is_none() -> None:
    data = load("nested.eml")
    assert section(data, parse(data), Section(text="MIME")) is None


def test_binary() -> None:
    data = load("nested.eml")
    root = parse(data)
    assert binary(data, root, sec("1.1")) == "Hallo Bob,\r\nanbei die Übersicht.".encode()
    assert binary(data, root, sec("2")) == b"%PDF-1.4\n%" + "äüöß".encode() + b"\n"
    assert binary(data, root, sec("")) == data
    assert binary(data, root, sec("7")) == b""
    lf = load("lf-multipart.eml")
    assert binary(lf, parse(lf), sec("2")) == "héllo".encode()
    with pytest.raises(ValueError):
        binary(data, root, sec("1.MIME"))


def test_binary_unknown_encoding_is_none() -> None:
    data = b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n"
    assert binary(data, parse(data), sec("1")) is None


@pytest.mark.parametrize(
    ("origin", "count", "expected"),
    [(0, 4, b"0123"), (8, 5, b"89"), (10, 3, b""), (99, 1, b""), (2, 0, b"")],
)
def test_partial(origin: int, count: int, expected: bytes) -> None:
    assert partial(b"0123456789", origin, count) == expected
