"""The MIME tree: header values, RFC 2231/2047 decoding, bounds, and that parsing never fails."""

from __future__ import annotations

import datetime
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailfort.mail.mime import (
    MAX_PARTS,
    Part,
    decode_base64,
    decode_words,
    parse,
    parse_params,
)
from mailfort.protocol.imap.bodystructure import bodystructure
from mailfort.protocol.imap.commands import SearchKey, Section
from mailfort.protocol.imap.envelope import envelope
from mailfort.protocol.imap.search import LazyMessage, matches
from mailfort.protocol.imap.sections import binary, part_at, section
from tests.unit.mime.fixtures import load, names


def test_nested_attachment_parameters_decode() -> None:
    attachment = parse(load("nested.eml")).children[1]
    # RFC 2231 3 + 4: continuations joined, charset applied, %-escapes undone.
    assert attachment.filename == "Übersicht 2024.pdf"
    assert attachment.param("name") == "Übersicht 2024.pdf"
    assert attachment.disposition == b"attachment"
    assert attachment.language == (b"de", b"en")


@pytest.mark.parametrize(
    ("value", "params"),
    [
        (
            b'; charset="us-ascii" (comment); format=flowed',
            (("charset", b"us-ascii"), ("format", b"flowed")),
        ),
        (b";CHARSET=UTF-8", (("charset", b"UTF-8"),)),
        (b'; name="a \\"b\\".txt"', (("name", b'a "b".txt'),)),
        (b"; junk; x=1", (("x", b"1"),)),
        (b'; name="unterminated', (("name", b"unterminated"),)),
        # RFC 2231 3: plain continuations join into the plain name
        (b"; title*1=world; title*0=hello_", (("title", b"hello_world"),)),
        # mixed: the plain segment is %-encoded into the extended value
        (b"; t*0*=us-ascii'en'a%20b; t*1=\" c\"", (("t*", b"us-ascii'en'a%20b%20c"),)),
        # no segment 0 is extended: an empty charset'language' prefix is supplied
        (b"; t*0=a; t*1*=%41", (("t*", b"''a%41"),)),
        (b"; t*99999999999=x", (("t*99999999999", b"x"),)),  # not a section number we accept
    ],
)
def test_parse_params(value: bytes, params: tuple[tuple[str, bytes], ...]) -> None:
    assert parse_params(value, 0) == params


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ("=?UTF-8?B?w5xiZXJzaWNodA==?= =?UTF-8?B?IDIwMjQ=?=", "Übersicht 2024"),
        (
            "=?ISO-8859-1?Q?Caf=E9_cr=E8me?= =?ISO-8859-1?Q?_br=FBl=E9e?= and more",
            "Café crème brûlée and more",
        ),
        ("a =?utf-8?q?b?= c", "a b c"),  # white space next to plain text is kept
        ("=?utf-8?B?4oI=?= =?utf-8?B?rA==?=", "€"),  # a character split over two words
        ("=?utf-8*en?q?x?=", "x"),  # RFC 2231 5 language suffix
        ("=?x-unknown?q?caf=E9?=", "café"),  # unknown charset: Latin-1 fallback
        ("=?utf-8?q?bad", "=?utf-8?q?bad"),
        ("plain", "plain"),
    ],
)
def test_decode_words(raw: str, text: str) -> None:
    assert decode_words(raw) == text


def test_decode_base64_is_lenient() -> None:
    assert decode_base64(b"aGVs\r\nbG8") == b"hello"
    assert decode_base64(b"!!aGVsbG8=*=") == b"hello"
    assert decode_base64(b"a") == b""


def test_part_budget_bounds_work() -> None:
    data = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"--b\r\n\r\nx\r\n" * (
        MAX_PARTS + 100
    )
    root = parse(data)
    assert len(root.children) < MAX_PARTS


def test_boundary_prefix_of_nested_boundary() -> None:
    # "--ab-1" must not be taken for the outer boundary "ab" (RFC 2046 5.1.1 line syntax).
    data = (
        b"Content-Type: multipart/mixed; boundary=ab\r\n\r\n--ab\r\n"
        b"Content-Type: multipart/alternative; boundary=ab-1\r\n\r\n"
        b"--ab-1\r\n\r\none\r\n--ab-1\r\n\r\ntwo\r\n--ab-1--\r\n--ab\r\n\r\nthree\r\n--ab--\r\n"
    )
    root = parse(data)
    assert [len(c.children) for c in root.children] == [2, 0]
    assert section(data, root, Section(part=(1, 2))) == b"two"
    assert section(data, root, Section(part=(2,))) == b"three"


def test_transport_padding_after_boundary() -> None:
    data = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b \t\r\n\r\nx\r\n--b--  \r\n"
    root = parse(data)
    assert section(data, root, Section(part=(1,))) == b"x"


# -- properties -----------------------------------------------------------------------------------
_STRING = rb'"(?:[^"\\\r\n]|\\.)*"'
_TOKEN = re.compile(rb"\(|\)|NIL|\d+|" + _STRING + rb"|\{(\d+)\}\r\n| ")


def well_formed(wire: bytes) -> bool:
    """A tiny reader for the IMAP body/envelope grammar's lexical shape: balanced lists of
    NIL, numbers, quoted strings and literals, separated by single spaces."""
    depth, pos = 0, 0
    while pos < len(wire):
        m = _TOKEN.match(wire, pos)
        if m is None:
            return False
        tok = m.group()
        if m.group(1) is not None:
            pos = m.end() + int(m.group(1))
            if pos > len(wire):
                return False
            continue
        depth += tok == b"("
        depth -= tok == b")"
        if depth < 0:
            return False
        pos = m.end()
    return depth == 0 and wire.startswith(b"(")


def check_offsets(part: Part, lo: int, hi: int) -> None:
    assert lo <= part.header_start <= part.fields_end <= part.header_end <= part.body_end <= hi
    if part.message is not None:
        assert (part.message.header_start, part.message.body_end) == (
            part.body_start,
            part.body_end,
        )
        check_offsets(part.message, part.body_start, part.body_end)
    previous = part.body_start
    for child in part.children:
        check_offsets(child, previous, part.body_end)
        previous = child.body_end
    if part.is_multipart:
        assert part.children


def paths(root: Part) -> list[tuple[int, ...]]:
    """Every valid part number path (RFC 9051 6.4.5), a bounded number of them."""
    out: list[tuple[int, ...]] = []
    frontier: list[tuple[int, ...]] = [()]
    while frontier and len(out) < 300:
        prefix = frontier.pop()
        n = 1
        while len(prefix) < 8 and n <= 50 and part_at(root, (*prefix, n)) is not None:
            out.append((*prefix, n))
            frontier.append((*prefix, n))
            n += 1
    return out


SEARCHES = [
    SearchKey(name="TEXT", text="é"),
    SearchKey(name="BODY", text="x"),
    SearchKey(name="SUBJECT", text=""),
    SearchKey(name="SENTON", date=datetime.date(2025, 1, 1)),
]


def check_everything(data: bytes) -> None:
    msg = LazyMessage(
        uid=1,
        flags=frozenset(),
        internal_date=datetime.datetime(2025, 1, 1),
        size=len(data),
        data=data,
    )
    for k in SEARCHES:
        matches(k, msg, seq=1, largest_seq=1, largest_uid=1)
    root = parse(data)
    check_offsets(root, 0, len(data))
    assert well_formed(bodystructure(root, extended=True))
    assert well_formed(bodystructure(root, extended=False))
    assert well_formed(envelope(root))
    for path in paths(root):
        part = part_at(root, path)
        assert part is not None
        for text in (None, "MIME", "HEADER", "TEXT", "HEADER.FIELDS"):
            got = section(data, root, Section(part=path, text=text, fields=("SUBJECT",)))
            assert got is not None
            if text != "HEADER.FIELDS":
                assert got in data  # a contiguous slice of the stored bytes
            assert len(got) <= len(data)
        binary(data, root, Section(part=path))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(data: bytes) -> None:
    check_everything(data)


_PIECES = [
    b"\r\n",
    b"\n",
    b"--",
    b"--outer",
    b"--inner--",
    b"--fwd",
    b"--d",
    b"--LF",
    b"--cut",
    b":",
    b";",
    b'"',
    b"(",
    b")",
    b"\\",
    b"=?utf-8?q?",
    b"?=",
    b"*0*=",
    b"'",
    b"%",
    b"\x00",
    b"\xff",
    b"Content-Type: multipart/mixed; boundary=",
    b"Content-Type: message/rfc822\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b" ",
    b"\t",
    b"<",
    b">",
    b"@",
    b",",
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(load(draw(st.sampled_from(names()))))
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["insert", "delete", "duplicate"]))
        if action == "insert":
            data[at:at] = draw(st.sampled_from(_PIECES))
        elif action == "delete":
            del data[at : at + draw(st.integers(1, 40))]
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 200))]
    return bytes(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_messages_never_raise(data: bytes) -> None:
    check_everything(data)


@pytest.mark.parametrize("name", names())
def test_fixtures_are_consistent(name: str) -> None:
    check_everything(load(name))
