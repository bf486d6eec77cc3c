"""ENVELOPE of the hand-written messages, derived by hand from RFC 9051 7.5.2 / RFC 3501 7.4.2:
(date subject from sender reply-to to cc bcc in-reply-to message-id); raw header text, unfolded,
encoded-words left encoded; names and local parts with RFC 5322 quoting removed; Sender and
Reply-To default to From; absent fields NIL, present-but-empty strings "".
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailfort.mail.mime import parse
from mailfort.protocol.imap.envelope import _parse_general, envelope, nstring, parse_addresses
from tests.unit.mime.fixtures import load

ANNA = b'(("Mueller, Anna" NIL "anna" "example.org"))'
EVE_FROM = b'(("=?ISO-8859-1?Q?Andr=E9?= Pirard" NIL "PIRARD" "vm1.ulg.ac.be"))'
BOB_SMITH = b'(("Smith, Robert \\"Bob\\"" NIL "bob" "example.com"))'

EXPECTED: dict[str, bytes] = {
    # Return-Path is no envelope field; the subject's two encoded-words stay as written.
    "nested.eml": b'("Tue, 14 May 2024 09:30:00 +0200"'
    b' "=?UTF-8?B?w5xiZXJzaWNodA==?= =?UTF-8?B?IDIwMjQ=?=" '
    + b" ".join([ANNA, ANNA, ANNA])
    + b' (("Bob" NIL "bob" "example.net")) NIL NIL NIL "<nested-1@example.org>")',
    # The Subject is folded over lines 4-5: unfolding removes the CRLF and keeps the space.
    "encoded-words.eml": b'("Wed, 1 Jan 2025 00:00:01 -0000"'
    b' "=?ISO-8859-1?Q?Caf=E9_cr=E8me?= =?ISO-8859-1?Q?_br=FBl=E9e?= and more" '
    + b" ".join([EVE_FROM, EVE_FROM, EVE_FROM])
    + b' (("=?utf-8?q?J=C3=B6rg_Schmidt?=" NIL "joerg" "example.de")) NIL NIL NIL'
    b' "<ew@example.de>")',
    # No Date, Subject, From (so no Sender/Reply-To default either), Message-ID: all NIL.
    "missing-headers.eml": b'(NIL NIL NIL NIL NIL ((NIL NIL "someone" "example.com"))'
    b" NIL NIL NIL NIL)",
    # 8-bit (RFC 6532) text cannot be a quoted string (QUOTED-CHAR is 7-bit): literals.
    # "Grüße aus Köln" is 14 characters, 17 octets; "Zoë" 4 octets.
    "eightbit.eml": b'("Fri, 3 Jan 2025 12:00:00 +0100" {17}\r\n'
    + "Grüße aus Köln".encode()
    + b" "
    + b" ".join([b"(({4}\r\n" + "Zoë".encode() + b' NIL "zoe" "example.com"))'] * 3)
    + b" NIL NIL NIL NIL NIL)",
    # Sender's name comes from its comment; Reply-To is empty, so it defaults to From.
    # To: the group "Friends" (start marker, members, end marker), then an empty group.
    # Cc: an obs-route keeps its at-domain-list as adl; a quoted local part is unquoted.
    # Subject: present but empty -> "".
    "groups.eml": b'("Sat, 4 Jan 2025 13:14:15 +0000" "" '
    + BOB_SMITH
    + b' (("Office Secretary" NIL "secretary" "example.com")) '
    + BOB_SMITH
    + b' ((NIL NIL "Friends" NIL)(NIL NIL "alice" "example.com")'
    b'("Carol C." NIL "carol" "example.com")(NIL NIL NIL NIL)'
    b'(NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL))'
    b' ((NIL "@relay.example.net" "dave" "example.org")(NIL NIL "john doe" "example.com"))'
    b' NIL NIL "<groups@example.com>")',
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_envelope(name: str) -> None:
    data = load(name)
    assert envelope(parse(data)) == EXPECTED[name]
    assert envelope(data) == EXPECTED[name]  # the header-only path agrees


def test_forwarded_envelope_of_the_encapsulated_message() -> None:
    part = parse(load("forwarded.eml")).children[1]
    assert part.message is not None
    assert envelope(part.message) == (
        b'("Wed, 1 Jan 2025 08:00:00 +0100" "plans" (("Eve" NIL "eve" "example.net"))'
        b' (("Eve" NIL "eve" "example.net")) (("Eve" NIL "eve" "example.net"))'
        b' ((NIL NIL "carol" "example.com")) NIL NIL "<earlier@example.com>" "<orig@example.net>")'
    )


def test_first_occurrence_wins_and_empty_strings() -> None:
    data = b"Subject: one\r\nSubject: two\r\nIn-Reply-To:\r\nMessage-ID: \r\n\r\n"
    assert envelope(data) == b'(NIL "one" NIL NIL NIL NIL NIL NIL "" "")'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"a@b", [(None, None, b"a", b"b")]),
        (b"John  Q. Public <jqp@x.test>", [(b"John Q. Public", None, b"jqp", b"x.test")]),
        (b'"a\\"b" <c@d>', [(b'a"b', None, b"c", b"d")]),
        (b"a@b (Real Name), c@d", [(b"Real Name", None, b"a", b"b"), (None, None, b"c", b"d")]),
        (b"Name (comment) <x@y>", [(b"Name", None, b"x", b"y")]),
        (b"<>", [(None, None, b"", b"")]),  # null path: never NIL, a NIL host means a group
        (b"nodomain", [(None, None, b"nodomain", b"")]),
        (b"a@[127.0.0.1]", [(None, None, b"a", b"[127.0.0.1]")]),
        (b"g: a@b", [(None, None, b"g", None), (None, None, b"a", b"b"), (None,) * 4]),
        (b"", []),
        (b" , ,", []),
    ],
)
def test_parse_addresses(value: bytes, expected: list[tuple[bytes | None, ...]]) -> None:
    assert parse_addresses(value) == expected


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (None, b"NIL"),
        (b"", b'""'),
        (b'say "hi" \\o/', b'"say \\"hi\\" \\\\o/"'),
        (b"line\r\nbreak", b"{11}\r\nline\r\nbreak"),
        (b"nul\x00", b"{3}\r\nnul"),  # NUL is no CHAR8: dropped
        (b"x" * 2000, b"{2000}\r\n" + b"x" * 2000),
    ],
)
def test_nstring(value: bytes | None, wire: bytes) -> None:
    assert nstring(value) == wire


_WORD = st.text("abcXYZ09.-_=?!#'", min_size=1, max_size=6).map(str.encode)
_SPACE = st.sampled_from([b"", b" ", b"  ", b"\t"])
_QUOTED = st.text('ab ,;<>@.\\"()', max_size=8).map(
    lambda t: b'"' + t.encode().replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
)


@st.composite
def address_lists(draw: st.DrawFn) -> bytes:
    items = []
    for _ in range(draw(st.integers(1, 4))):
        spec = draw(_WORD) + b"@" + draw(_WORD)
        shape = draw(st.sampled_from(["bare", "angle", "phrase", "quoted"]))
        if shape == "bare":
            item = spec
        elif shape == "angle":
            item = b"<" + spec + b">"
        elif shape == "phrase":
            words = draw(st.lists(_WORD, min_size=1, max_size=3))
            item = draw(_SPACE).join(words) + draw(_SPACE) + b"<" + spec + b">"
        else:
            item = draw(_QUOTED) + draw(_SPACE) + b"<" + spec + b">"
        items.append(draw(_SPACE) + item + draw(_SPACE))
    return b",".join(items) + draw(st.sampled_from([b"", b",", b" (c)", b";"]))


@settings(max_examples=150, deadline=None)
@given(address_lists())
def test_fast_path_agrees_with_the_general_parser(value: bytes) -> None:
    assert parse_addresses(value) == _parse_general(value)
