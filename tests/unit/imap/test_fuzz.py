"""Property tests: whatever a client sends, the core answers with its own events, in bounded memory.

Inputs are random octets, token soup built from the grammar's own pieces, and mutations of valid
commands (truncated, bytes flipped, inserted or deleted, literals spliced in). They are fed in
random chunks, and the reader is driven the way the server drives it (expect_line after IDLE or
AUTHENTICATE, resume, reset). Only the documented events may come out; nothing may raise; and
the octets the reader holds never exceed `max_command + max_line`.
"""

from __future__ import annotations

import itertools
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailfort.protocol.imap.commands import Authenticate, Command, Idle
from mailfort.protocol.imap.framing import (
    CommandReader,
    Continue,
    Event,
    LiteralTooBig,
    Parsed,
    ParseError,
    RawLine,
)
from mailfort.protocol.imap.parser import ProtocolError, parse_command
from tests.unit.imap.test_framing import SESSION
from tests.unit.imap.test_parser import CASES

MAX_LINE, MAX_LITERAL, MAX_COMMAND = 200, 300, 600
# A few hundred examples keep `make test` fast; set MAILFORT_FUZZ_EXAMPLES for a long hunt.
FUZZ = settings(
    max_examples=int(os.environ.get("MAILFORT_FUZZ_EXAMPLES", "250")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

VALID: list[bytes] = [line + b"\r\n" for line, _ in CASES] + [
    b'a APPEND "INBOX" (\\Seen) {5+}\r\nhello\r\n',
    b"a APPEND Work {3}\r\none (\\Flagged) ~{4}\r\nt\x00wo\r\n",
    b"a LOGIN {5}\r\nalice {6}\r\nsecret\r\n",
    b'a FETCH 1 BODY.PEEK[HEADER.FIELDS ("x-spam" {4+}\r\nDate)]\r\n',
    b"a IDLE\r\nDONE\r\n",
    b"a AUTHENTICATE PLAIN\r\nAGFsaWNlAHB3\r\n",
    SESSION,
]

TOKENS = [
    b" ", b" ", b" ", b"(", b")", b"[", b"]", b"<", b">", b".", b":", b",", b"*", b"$", b"%",
    b'"', b'\\"', b"\\", b"{", b"}", b"{3}\r\nabc", b"{0+}\r\n", b"~{2}\r\n\x00\x01", b"{9999}\r\n",
    b"{4294967296+}\r\n", b"\r\n", b"\n", b"\r", b"\x00", b"\xff", b"\xc3\xa4", b"1", b"0", b"42",
    b"4294967295", b"99999999999999999999999", b"1:*", b"NIL", b"UID", b"FETCH", b"SEARCH",
    b"STORE", b"APPEND", b"LIST", b"STATUS", b"SELECT", b"LOGIN", b"AUTHENTICATE", b"IDLE",
    b"DONE", b"BODY", b"BODY.PEEK", b"BINARY", b"BINARY.SIZE", b"HEADER", b"HEADER.FIELDS",
    b"HEADER.FIELDS.NOT", b"MIME", b"TEXT", b"OR", b"NOT", b"CHARSET", b"RETURN", b"MODSEQ",
    b"CHANGEDSINCE", b"UNCHANGEDSINCE", b"+FLAGS.SILENT", b"\\Seen", b"USE", b"ALL", b"FULL",
    b"SINCE", b"1-Jan-2024", b'"25-Nov-2026 23:51:43 +0000"', b"=", b"AGFsaWNl", b"INBOX",
]  # fmt: skip

token_soup = st.lists(st.sampled_from(TOKENS), max_size=40).map(
    lambda parts: b"t " + b"".join(parts) + b"\r\n"
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        choice = draw(st.integers(min_value=0, max_value=5))
        at = draw(st.integers(min_value=0, max_value=len(data)))
        if choice == 0:  # truncate
            del data[at:]
        elif choice == 1 and at < len(data):  # flip a byte
            data[at] = draw(st.integers(min_value=0, max_value=255))
        elif choice == 2:  # insert random bytes
            data[at:at] = draw(st.binary(max_size=8))
        elif choice == 3:  # delete a stretch
            del data[at : at + draw(st.integers(min_value=1, max_value=10))]
        elif choice == 4:  # splice in a literal, of a size that may lie about its data
            size = draw(st.integers(min_value=0, max_value=MAX_LITERAL + 10))
            kind = draw(st.sampled_from([b"{%d}", b"{%d+}", b"~{%d}", b"~{%d+}"]))
            body = draw(st.binary(max_size=40))
            data[at:at] = b" " + kind % size + b"\r\n" + body
        else:  # another valid command, pipelined into the middle
            data[at:at] = draw(st.sampled_from(VALID))
    return bytes(data)


streams = st.lists(
    st.one_of(st.sampled_from(VALID), mutated(), token_soup, st.binary(max_size=120)),
    min_size=1,
    max_size=6,
).map(b"".join)


def check(event: Event) -> None:
    """Only the documented events, with the fields the server relies on."""
    if isinstance(event, Parsed):
        assert isinstance(event.command, Command)
        assert event.command.tag and event.command.name
    elif isinstance(event, Continue):
        assert event.tag and 0 <= event.size <= MAX_LITERAL
    elif isinstance(event, LiteralTooBig):
        assert event.tag and event.size > event.limit
    elif isinstance(event, ParseError):
        assert isinstance(event.text, str) and event.text
        assert event.tag is None or (event.tag and " " not in event.tag)
    else:
        assert isinstance(event, RawLine)
        assert isinstance(event.data, bytes) and b"\n" not in event.data


def chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@FUZZ
@given(
    data=streams,
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
    drive=st.lists(st.sampled_from(["expect_line", "resume", "reset", "nothing"]), min_size=8),
)
def test_reader_yields_only_its_events_in_bounded_memory(
    data: bytes, cuts: list[int], drive: list[str]
) -> None:
    reader = CommandReader(max_line=MAX_LINE, max_literal=MAX_LITERAL, max_command=MAX_COMMAND)
    step = 0

    def server(events: list[Event]) -> None:
        # Act on each event as a server might, choosing among the moves it is allowed.
        nonlocal step
        for event in events:
            check(event)
            assert reader.buffered <= MAX_COMMAND + MAX_LINE
            pausing = isinstance(event, RawLine) or (
                isinstance(event, Parsed) and isinstance(event.command, Authenticate | Idle)
            )
            if not pausing:
                continue
            move = drive[step % len(drive)]
            step += 1
            if move == "expect_line":
                server(reader.expect_line())
            elif move == "resume":
                server(reader.resume())
            elif move == "reset":
                reader.reset()

    for piece in chunks(data, cuts):
        server(reader.feed(piece))
        assert reader.buffered <= MAX_COMMAND + MAX_LINE


def drain(reader: CommandReader, events: list[Event]) -> list[Event]:
    while more := reader.resume():
        events += more
    return events


@FUZZ
@given(data=streams, cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_chunking_changes_nothing(data: bytes, cuts: list[int]) -> None:
    whole = CommandReader(max_line=MAX_LINE, max_literal=MAX_LITERAL, max_command=4 * 1024)
    expected = drain(whole, whole.feed(data))
    reader = CommandReader(max_line=MAX_LINE, max_literal=MAX_LITERAL, max_command=4 * 1024)
    got: list[Event] = []
    for piece in chunks(data, cuts):
        got += reader.feed(piece)
    assert drain(reader, got) == expected


segment = st.one_of(
    token_soup.map(lambda b: b.rstrip(b"\r\n")),
    st.sampled_from([line for line, _ in CASES]),
    st.binary(max_size=60),
)


@FUZZ
@given(
    first=segment,
    rest=st.lists(st.tuples(st.binary(max_size=20), segment), max_size=3),
    marker=st.sampled_from([b" {%d}", b" {%d+}", b" ~{%d}", b""]),
)
def test_parser_raises_only_protocol_errors(
    first: bytes, rest: list[tuple[bytes, bytes]], marker: bytes
) -> None:
    segments = [first]
    literals: list[bytes] = []
    for literal, line in rest:
        segments[-1] += marker % len(literal) if marker else b" {%d}" % len(literal)
        literals.append(literal)
        segments.append(line)
    try:
        parse_command(segments, literals)
    except ProtocolError as error:
        assert error.text
