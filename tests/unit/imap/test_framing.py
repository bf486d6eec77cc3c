"""Framing: commands split anywhere, pipelined, with literals; every limit pushed past."""

from __future__ import annotations

import pytest

from mailfort.protocol.imap import commands as C
from mailfort.protocol.imap.framing import (
    CommandReader,
    Continue,
    Event,
    LiteralTooBig,
    Parsed,
    ParseError,
    RawLine,
)


def names(events: list[Event]) -> list[str]:
    """A compact view: command names, or event types."""
    out = []
    for e in events:
        out.append(e.command.name if isinstance(e, Parsed) else type(e).__name__)
    return out


def feed_bytewise(reader: CommandReader, wire: bytes) -> list[Event]:
    events: list[Event] = []
    for i in range(len(wire)):
        events += reader.feed(wire[i : i + 1])
    return events


SESSION = (
    b"a1 CAPABILITY\r\n"
    b"a2 LOGIN {5}\r\nalice {6}\r\nsecret\r\n"
    b'a3 SELECT "INBOX" (CONDSTORE)\r\n'
    b"a4 APPEND Drafts (\\Draft) {12+}\r\nHello\r\nWorld ~{3}\r\nb\x00c\r\n"
    b"a5 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From)])\r\n"
    b"a6 LOGOUT\r\n"
)


def test_one_command() -> None:
    events = CommandReader().feed(b"a1 NOOP\r\n")
    assert events == [Parsed(command=C.Noop(tag="a1", name="NOOP"))]


def test_pipelined_commands_come_out_in_order() -> None:
    events = CommandReader().feed(SESSION)
    assert names(events) == [
        "CAPABILITY", "Continue", "Continue", "LOGIN", "SELECT", "Continue", "APPEND", "FETCH",
        "LOGOUT",
    ]  # fmt: skip
    append = events[6]
    assert isinstance(append, Parsed) and isinstance(append.command, C.Append)
    assert [m.data for m in append.command.messages] == [b"Hello\r\nWorld", b"b\x00c"]


def test_byte_by_byte_gives_the_same_events() -> None:
    assert feed_bytewise(CommandReader(), SESSION) == CommandReader().feed(SESSION)


@pytest.mark.parametrize("cut", [1, 7, 20, 33, 40, 41, 60, 100, 150])
def test_split_anywhere_gives_the_same_events(cut: int) -> None:
    reader = CommandReader()
    assert reader.feed(SESSION[:cut]) + reader.feed(SESSION[cut:]) == CommandReader().feed(SESSION)


def test_partial_line_waits() -> None:
    reader = CommandReader()
    assert reader.feed(b"a1 NO") == []
    assert reader.feed(b"OP\r") == []
    assert names(reader.feed(b"\n")) == ["NOOP"]


def test_bare_lf_ends_a_line() -> None:
    assert names(CommandReader().feed(b"a NOOP\nb NOOP\r\n")) == ["NOOP", "NOOP"]


def test_synchronizing_literal_asks_for_continuation_first() -> None:
    reader = CommandReader()
    assert reader.feed(b"a2 LOGIN {5}\r\n") == [Continue(tag="a2", size=5)]
    assert reader.feed(b"ali") == []
    assert reader.feed(b"ce ") == []
    assert reader.feed(b"pw\r\n") == [
        Parsed(command=C.Login(tag="a2", name="LOGIN", user="alice", password="pw"))
    ]


def test_non_synchronizing_literal_needs_no_continuation() -> None:
    events = CommandReader().feed(b"a LOGIN {5+}\r\nalice pw\r\n")
    assert names(events) == ["LOGIN"]


def test_empty_literal() -> None:
    reader = CommandReader()
    assert reader.feed(b"a LOGIN {0}\r\n") == [Continue(tag="a", size=0)]
    assert reader.feed(b' ""\r\n') == [
        Parsed(command=C.Login(tag="a", name="LOGIN", user="", password=""))
    ]


# -- bad commands --------------------------------------------------------------------------------
def test_malformed_command_is_bad_and_the_next_one_works() -> None:
    events = CommandReader().feed(b"a1 FETCH 0 FLAGS\r\na2 NOOP\r\n")
    assert isinstance(events[0], ParseError)
    assert events[0].tag == "a1" and not events[0].close
    assert names(events[1:]) == ["NOOP"]


def test_untaggable_garbage_is_star_bad() -> None:
    events = CommandReader().feed(b"\x16\x03\x01 hello\r\n\r\n")  # a TLS hello on a plain port
    assert events == [
        ParseError(tag=None, text="Invalid tag"),
        ParseError(tag=None, text="Empty command line"),
    ]


def test_unknown_command_with_sync_literal_is_refused_before_the_literal() -> None:
    # RFC 9051 7.5: a BAD instead of the continuation; the client sends nothing more of it.
    reader = CommandReader()
    events = reader.feed(b"a XFOO {100}\r\n")
    assert events == [ParseError(tag="a", text="Unknown command XFOO")]
    assert names(reader.feed(b"b NOOP\r\n")) == ["NOOP"]


def test_bad_tag_with_sync_literal_is_star_bad() -> None:
    events = CommandReader().feed(b"a+ LOGIN {100}\r\n")
    assert events == [ParseError(tag=None, text="Invalid tag")]


def test_unknown_command_with_non_sync_literal_skips_the_literal() -> None:
    reader = CommandReader()
    events = reader.feed(b"a XFOO {10+}\r\nb NOOP\r\nx {3+}\r\nc\r\n\r\nb NOOP\r\n")
    assert events[0] == ParseError(tag="a", text="Unknown command XFOO")
    assert names(events[1:]) == ["NOOP"]
    assert reader.buffered == 0


# -- limits --------------------------------------------------------------------------------------
def test_sync_literal_over_the_limit_is_too_big_without_continuation() -> None:
    reader = CommandReader(max_literal=1000)
    assert reader.feed(b"a APPEND INBOX {1001}\r\n") == [
        LiteralTooBig(tag="a", size=1001, limit=1000)
    ]
    # The client abandons the command; the next line is a new one.
    assert names(reader.feed(b"b NOOP\r\n")) == ["NOOP"]
    assert reader.buffered == 0


def test_huge_literal_size_is_too_big_not_an_overflow() -> None:
    reader = CommandReader()
    events = reader.feed(b"a APPEND INBOX {99999999999999999999999999999999}\r\n")
    assert len(events) == 1 and isinstance(events[0], LiteralTooBig)


def test_non_sync_literal_over_the_limit_closes() -> None:
    reader = CommandReader(max_literal=1000)
    events = reader.feed(b"a APPEND INBOX {1001+}\r\n" + b"x" * 1001 + b"\r\nb NOOP\r\n")
    assert events == [ParseError(tag="a", text="Literal too big", close=True, code="TOOBIG")]
    assert reader.closed
    assert reader.feed(b"c NOOP\r\n") == []
    assert reader.buffered == 0


def test_the_limit_can_be_lowered_before_login() -> None:
    reader = CommandReader()
    reader.max_literal = 256
    assert reader.feed(b"a LOGIN {300}\r\n") == [LiteralTooBig(tag="a", size=300, limit=256)]


def test_multiappend_is_bounded_by_max_command() -> None:
    reader = CommandReader(max_line=100, max_literal=1000, max_command=1500)
    assert reader.feed(b"a APPEND INBOX {900}\r\n") == [Continue(tag="a", size=900)]
    events = reader.feed(b"x" * 900 + b" {900}\r\n")
    assert len(events) == 1 and isinstance(events[0], LiteralTooBig)
    assert events[0].limit < 900
    assert reader.buffered == 0


def test_literal_count_is_bounded() -> None:
    reader = CommandReader(max_literals=3)
    events = reader.feed(b"a LOGIN {0+}\r\n {0+}\r\n {0+}\r\n {0}\r\n")
    assert isinstance(events[-1], LiteralTooBig)


def test_over_long_line_is_refused_and_skipped_without_buffering() -> None:
    reader = CommandReader(max_line=1024)
    events = reader.feed(b"a7 LOGIN " + b"x" * 2000)
    assert events == [ParseError(tag="a7", text="Line too long", close=True, code="TOOBIG")]
    for _ in range(100):  # the rest of the line is dropped as it comes
        assert reader.feed(b"y" * 1000) == []
        assert reader.buffered == 0
    # If the server reads on anyway, the stream continues after the line's end.
    assert names(reader.feed(b"zzz\r\nb NOOP\r\n")) == ["NOOP"]


def test_over_long_line_in_one_chunk() -> None:
    reader = CommandReader(max_line=64)
    events = reader.feed(b"a NOOP " + b"x" * 100 + b"\r\nb NOOP\r\n")
    assert events[0] == ParseError(tag="a", text="Line too long", close=True, code="TOOBIG")
    assert names(events[1:]) == ["NOOP"]


def test_a_line_of_exactly_max_line_is_fine() -> None:
    line = b"a LOGIN x " + b"y" * 50
    reader = CommandReader(max_line=len(line) + 2)
    assert names(reader.feed(line + b"\r\n")) == ["LOGIN"]
    reader = CommandReader(max_line=len(line) + 1)
    assert isinstance(reader.feed(line + b"\r\n")[0], ParseError)


def test_over_long_continuation_line_keeps_the_tag() -> None:
    reader = CommandReader(max_line=64)
    events = reader.feed(b"a9 LOGIN {1+}\r\nx " + b"p" * 100)
    assert events == [ParseError(tag="a9", text="Line too long", close=True, code="TOOBIG")]


def test_buffer_stays_bounded_under_a_flood() -> None:
    reader = CommandReader(max_line=4096, max_literal=8192)
    for _ in range(2000):
        reader.feed(b"\x00garbage{} " * 10)
        assert reader.buffered <= reader.max_command + reader.max_line


# -- mode switches -------------------------------------------------------------------------------
def test_idle_then_done_as_the_server_drives_it() -> None:
    reader = CommandReader()
    assert names(reader.feed(b"a IDLE\r\n")) == ["IDLE"]
    assert reader.expect_line() == []
    assert reader.feed(b"DONE\r\n") == [RawLine(data=b"DONE")]
    assert names(reader.feed(b"b NOOP\r\n")) == ["NOOP"]


def test_reader_stops_after_idle_even_if_the_client_ran_ahead() -> None:
    reader = CommandReader()
    assert names(reader.feed(b"a IDLE\r\nDONE\r\nb NOOP\r\n")) == ["IDLE"]
    assert reader.expect_line() == [RawLine(data=b"DONE")]
    assert names(reader.resume()) == ["NOOP"]


def test_authenticate_exchange() -> None:
    reader = CommandReader()
    assert names(reader.feed(b"a AUTHENTICATE PLAIN\r\n")) == ["AUTHENTICATE"]
    reader.expect_line()
    assert reader.feed(b"AGFsaWNlAHB3\r\n") == [RawLine(data=b"AGFsaWNlAHB3")]
    reader.expect_line()  # a mechanism with a second step
    assert reader.feed(b"*\r\n") == [RawLine(data=b"*")]
    assert names(reader.feed(b"b NOOP\r\n")) == ["NOOP"]


def test_authenticate_with_initial_response_needs_no_raw_line() -> None:
    reader = CommandReader()
    assert names(reader.feed(b"a AUTHENTICATE PLAIN AGFsaWNlAHB3\r\nb NOOP\r\n")) == [
        "AUTHENTICATE"
    ]
    assert names(reader.resume()) == ["NOOP"]


def test_raw_line_keeps_spaces_and_is_bounded() -> None:
    reader = CommandReader(max_line=32)
    reader.feed(b"a IDLE\r\n")
    reader.expect_line()
    assert reader.feed(b" done \r\n") == [RawLine(data=b" done ")]
    reader.feed(b"b IDLE\r\n")
    reader.expect_line()
    events = reader.feed(b"D" * 40)
    assert events == [ParseError(tag=None, text="Line too long", close=True, code="TOOBIG")]


def test_starttls_drops_what_was_sent_before_the_handshake() -> None:
    reader = CommandReader()
    assert names(reader.feed(b"a STARTTLS\r\nb LOGIN alice secret\r\n")) == ["STARTTLS"]
    reader.reset()
    assert reader.feed(b"") == []
    assert names(reader.feed(b"c CAPABILITY\r\n")) == ["CAPABILITY"]


def test_too_much_run_ahead_after_a_stop_closes() -> None:
    reader = CommandReader(max_line=100, max_literal=100, max_command=200)
    events = reader.feed(b"a IDLE\r\n" + b"x" * 300)
    assert names(events) == ["IDLE", "ParseError"]
    assert isinstance(events[1], ParseError) and events[1].close


def test_resume_cancels_expect_line() -> None:
    reader = CommandReader()
    reader.feed(b"a IDLE\r\n")
    reader.expect_line()
    assert reader.resume() == []
    assert names(reader.feed(b"b NOOP\r\n")) == ["NOOP"]


def test_a_closed_reader_stays_closed() -> None:
    reader = CommandReader(max_literal=10)
    reader.feed(b"a LOGIN {11+}\r\n")
    assert reader.closed
    assert reader.expect_line() == []
    reader.reset()
    assert reader.closed and reader.feed(b"b NOOP\r\n") == []


def test_command_over_max_command_closes() -> None:
    reader = CommandReader(max_line=100, max_literal=100, max_command=120)
    events = reader.feed(b"a LOGIN {50+}\r\n" + b"x" * 50 + b" " + b"y" * 80 + b"\r\n")
    assert events == [ParseError(tag="a", text="Command too long", close=True, code="TOOBIG")]


def test_expect_line_in_the_middle_of_a_command_is_our_bug() -> None:
    reader = CommandReader()
    reader.feed(b"a LOGIN {5}\r\nal")
    with pytest.raises(RuntimeError):
        reader.expect_line()
