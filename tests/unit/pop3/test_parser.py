"""The POP3 grammar (RFC 1939 §3–7, RFC 2449, RFC 5034) and the bounded line reader."""

from __future__ import annotations

import contextlib
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailfort.protocol.pop3 import commands as C
from mailfort.protocol.pop3.parser import (
    MAX_COMMAND_LINE,
    LineReader,
    LineTooLong,
    ParseError,
    parse_command,
)

FUZZ = settings(
    max_examples=int(os.environ.get("MAILFORT_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

CASES: list[tuple[bytes, C.Command]] = [
    (b"USER alice@example.test", C.User(name="alice@example.test")),
    (b"user Alice", C.User(name="Alice")),
    (b"PASS two words ", C.Pass(password="two words ")),  # RFC 1939 §7: spaces belong to it
    (b"PASS  lead", C.Pass(password=" lead")),
    (b"AUTH", C.Auth(mechanism=None)),
    (b"AUTH plain", C.Auth(mechanism="PLAIN")),
    (b"AUTH PLAIN AGFsaWNlAHg=", C.Auth(mechanism="PLAIN", initial="AGFsaWNlAHg=")),
    (b"AUTH PLAIN =", C.Auth(mechanism="PLAIN", initial="=")),
    (b"STLS", C.Stls()),
    (b"capa", C.Capa()),
    (b"STAT", C.Stat()),
    (b"LIST", C.List()),
    (b"LIST 2", C.List(number=2)),
    (b"LIST 0", C.List(number=0)),  # parses; the maildrop says there is no message 0
    (b"RETR 1", C.Retr(number=1)),
    (b"DELE 12", C.Dele(number=12)),
    (b"NOOP", C.Noop()),
    (b"RSET", C.Rset()),
    (b"TOP 1 0", C.Top(number=1, lines=0)),
    (b"TOP 3 10", C.Top(number=3, lines=10)),
    (b"UIDL", C.Uidl()),
    (b"UIDL 5", C.Uidl(number=5)),
    (b"QUIT", C.Quit()),
    (b"Quit", C.Quit()),
]


@pytest.mark.parametrize(("line", "expected"), CASES, ids=[c[0].decode() for c in CASES])
def test_valid_commands(line: bytes, expected: C.Command) -> None:
    assert parse_command(line) == expected


BAD = [
    b"",
    b"FOO",
    b"APOP alice 0123456789abcdef",  # not offered (no timestamp in the greeting)
    b"LAST",
    b"USER",
    b"USER   ",
    b"PASS",
    b"RETR",
    b"RETR x",
    b"RETR -1",
    b"RETR 1 2",
    b"RETR 99999999999",
    b"DELE",
    b"TOP 1",
    b"TOP 1 x",
    b"TOP 1 2 3",
    b"LIST 1 2",
    b"UIDL a",
    b"STAT now",
    b"QUIT please",
    b"AUTH PLAIN a b",
    b"RETR \xd9\xa1",  # a non-ASCII digit
    "ſtat".encode(),  # upper() maps it to STAT; it is not
    b"USER a\0b",
]


@pytest.mark.parametrize("line", BAD, ids=[repr(b) for b in BAD])
def test_invalid_commands_raise_parse_error(line: bytes) -> None:
    with pytest.raises(ParseError) as info:
        parse_command(line)
    assert info.value.text and "\n" not in info.value.text


@FUZZ
@given(st.binary(max_size=300))
def test_any_line_parses_or_is_a_parse_error(line: bytes) -> None:
    try:
        command = parse_command(line)
    except ParseError:
        return
    assert isinstance(command, C.Command)


TOKENS = [b"USER", b"PASS", b"LIST", b"TOP", b"RETR", b"AUTH", b"PLAIN", b" ", b"  ", b"1", b"0"]


@FUZZ
@given(st.lists(st.sampled_from(TOKENS) | st.binary(max_size=4), max_size=12))
def test_token_soup_parses_or_is_a_parse_error(tokens: list[bytes]) -> None:
    with contextlib.suppress(ParseError):
        parse_command(b"".join(tokens))


# -- the line reader ----------------------------------------------------------------------------
def lines_of(reader: LineReader) -> list[bytes | LineTooLong]:
    out: list[bytes | LineTooLong] = []
    while (line := reader.next_line()) is not None:
        out.append(line)
    return out


def test_lines_end_at_crlf_or_bare_lf() -> None:
    reader = LineReader()
    reader.feed(b"STAT\r\nLIST\nNOOP\r")
    assert lines_of(reader) == [b"STAT", b"LIST"]
    reader.feed(b"\n")
    assert lines_of(reader) == [b"NOOP"]


def test_a_line_of_255_octets_with_crlf_is_accepted_256_is_not() -> None:
    reader = LineReader()
    ok = b"USER " + b"a" * (MAX_COMMAND_LINE - 7) + b"\r\n"
    assert len(ok) == MAX_COMMAND_LINE
    reader.feed(ok + b"USER " + b"a" * (MAX_COMMAND_LINE - 6) + b"\r\nNOOP\r\n")
    got = lines_of(reader)
    assert got[0] == ok[:-2]
    assert got[1] == LineTooLong(limit=MAX_COMMAND_LINE)
    assert got[2:] == [b"NOOP"]


def test_an_endless_line_is_refused_once_and_not_buffered() -> None:
    reader = LineReader()
    reader.feed(b"x" * 1000)
    assert reader.next_line() == LineTooLong(limit=MAX_COMMAND_LINE)
    assert reader.buffered == 0
    for _ in range(100):
        reader.feed(b"y" * 10_000)
        assert reader.next_line() is None
        assert reader.buffered == 0
    reader.feed(b"tail\r\nSTAT\r\n")
    assert lines_of(reader) == [b"STAT"]


@FUZZ
@given(
    st.lists(st.binary(max_size=300).map(lambda b: b.replace(b"\n", b"")), max_size=8),
    st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=10),
)
def test_chunking_never_changes_the_lines(lines: list[bytes], cuts: list[int]) -> None:
    wire = b"".join(line + b"\r\n" for line in lines)
    whole = LineReader()
    whole.feed(wire)
    expected = lines_of(whole)
    reader = LineReader()
    got: list[bytes | LineTooLong] = []
    pos, i = 0, 0
    while pos < len(wire):
        step = cuts[i % len(cuts)]
        reader.feed(wire[pos : pos + step])
        pos, i = pos + step, i + 1
        got += lines_of(reader)
        # Once the complete lines are out, at most the line in progress, below the limit.
        assert reader.buffered < MAX_COMMAND_LINE
    assert got == expected
    assert len(got) == len(lines)
