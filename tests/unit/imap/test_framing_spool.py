"""Framing with a spool: APPEND message literals go to the server's sink as they arrive.

The property that matters: spooling changes nothing a client can see. Whatever the stream, the
threshold and the chunking, the reader gives the same events with a spool as without one, once
each sink is read back; every sink ends in exactly one parsed command or is discarded exactly
once; and what the reader holds stays within `max_held + max_line`.
"""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailfort.protocol.imap import commands as C
from mailfort.protocol.imap.framing import (
    CommandReader,
    Continue,
    Event,
    LiteralTooBig,
    Parsed,
    ParseError,
)
from mailfort.protocol.imap.parser import append_data
from tests.unit.imap.test_fuzz import FUZZ, streams

MAX_LINE, MAX_LITERAL, MAX_COMMAND = 200, 300, 4096


class MemorySink:
    """A spool in memory: what a real spool file would hold, and whether it was discarded."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.data = bytearray()
        self.discarded = 0

    def write(self, data: bytes | bytearray) -> None:
        self.data += data

    def discard(self) -> None:
        self.discarded += 1


class MemorySpool:
    def __init__(self) -> None:
        self.sinks: list[MemorySink] = []

    def __call__(self, size: int) -> MemorySink:
        sink = MemorySink(size)
        self.sinks.append(sink)
        return sink


def spooled_sinks(events: list[Event]) -> list[MemorySink]:
    return [
        m.data
        for e in events
        if isinstance(e, Parsed) and isinstance(e.command, C.Append)
        for m in e.command.messages
        if isinstance(m.data, MemorySink)
    ]


def read_back(event: Event) -> Event:
    """The event as it would be without a spool: every sink replaced by its octets."""
    if not (isinstance(event, Parsed) and isinstance(event.command, C.Append)):
        return event
    messages = tuple(
        dataclasses.replace(m, data=bytes(m.data.data)) if isinstance(m.data, MemorySink) else m
        for m in event.command.messages
    )
    return Parsed(command=dataclasses.replace(event.command, messages=messages))


def drain(reader: CommandReader, events: list[Event]) -> list[Event]:
    while more := reader.resume():
        events += more
    return events


def chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@st.composite
def appends(draw: st.DrawFn) -> bytes:
    """APPEND in its forms: mailbox as atom, quoted or literal; one message or several
    (MULTIAPPEND), with flags and a date or not, as {n}, {n+}, ~{n} or ~{n+}."""
    tag = draw(st.sampled_from([b"a", b"A1", b"x.2"]))
    kind = draw(st.sampled_from([b"{%d}", b"{%d+}"]))
    mailbox = draw(st.sampled_from([b"INBOX", b'"Sent Items"', kind % 5 + b"\r\nDraft"]))
    out = tag + b" APPEND " + mailbox
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        if draw(st.booleans()):
            out += b" (\\Seen $Junk)"
        if draw(st.booleans()):
            out += b' "25-Nov-2026 23:51:43 +0000"'
        data = draw(st.binary(max_size=120))
        marker = draw(st.sampled_from([b"{%d}", b"{%d+}", b"~{%d}", b"~{%d+}"]))
        out += b" " + marker % len(data) + b"\r\n" + data
    return out + b"\r\n"


mixed = st.lists(st.one_of(appends(), streams), min_size=1, max_size=4).map(b"".join)


@FUZZ
@given(
    data=mixed,
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
    threshold=st.integers(min_value=0, max_value=130),
)
def test_spooling_changes_nothing_the_client_sees(
    data: bytes, cuts: list[int], threshold: int
) -> None:
    plain = CommandReader(max_line=MAX_LINE, max_literal=MAX_LITERAL, max_command=MAX_COMMAND)
    expected = drain(plain, plain.feed(data))
    spool = MemorySpool()
    reader = CommandReader(
        max_line=MAX_LINE,
        max_literal=MAX_LITERAL,
        max_command=MAX_COMMAND,
        spool=spool,
        spool_threshold=threshold,
        max_held=MAX_COMMAND,  # as without a spool: only where the octets go may differ
    )
    got: list[Event] = []
    for piece in chunks(data, cuts):
        got += reader.feed(piece)
    got = drain(reader, got)
    assert [read_back(e) for e in got] == expected
    handed = spooled_sinks(got)
    # The input may end inside a literal (`a APPEND {1}` and no octet): the connection closes,
    # and that abandons the sink of the command in progress too.
    reader.close()
    for sink in spool.sinks:
        assert sink.size > threshold
        if any(sink is h for h in handed):
            assert sink.discarded == 0 and len(sink.data) == sink.size
        else:
            assert sink.discarded == 1  # abandoned with its command, exactly once
    assert all(any(h is s for s in spool.sinks) for h in handed)


@settings(max_examples=300, deadline=None)
@given(
    data=mixed,
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
    threshold=st.integers(min_value=0, max_value=130),
    max_held=st.integers(min_value=MAX_LINE, max_value=600),
)
def test_what_the_reader_holds_stays_within_max_held(
    data: bytes, cuts: list[int], threshold: int, max_held: int
) -> None:
    spool = MemorySpool()
    reader = CommandReader(
        max_line=MAX_LINE,
        max_literal=MAX_LITERAL,
        max_command=MAX_COMMAND,
        spool=spool,
        spool_threshold=threshold,
        max_held=max_held,
    )
    events: list[Event] = []
    for piece in chunks(data, cuts):
        events += reader.feed(piece)
        assert reader.buffered <= max_held + MAX_LINE
        events += reader.resume()
    reader.close()  # the client went away: nothing may stay undiscarded
    handed = spooled_sinks(events)
    for sink in spool.sinks:
        assert (sink.discarded == 1) != any(sink is h for h in handed), sink.discarded


# -- which literals go to the spool ------------------------------------------------------------
@pytest.mark.parametrize(
    ("first", "index", "expected"),
    [
        (b"a APPEND INBOX {5}", 0, True),
        (b"a APPEND INBOX (\\Seen) ~{5+}", 0, True),
        (b'a append "Sent" "25-Nov-2026 23:51:43 +0000" {5}', 0, True),
        (b"a APPEND {5}", 0, False),  # that literal is the mailbox name
        (b"a APPEND {5}", 1, True),
        (b"a APPEND ~{5}", 0, False),
        (b"a LOGIN {5}", 0, False),
        (b"a SEARCH TEXT {5}", 0, False),
        (b"a UID APPEND INBOX {5}", 0, False),
        (b"bad tag( APPEND INBOX {5}", 0, False),
    ],
)
def test_append_data_is_only_a_message_of_append(first: bytes, index: int, expected: bool) -> None:
    assert append_data(first, index) is expected


def big_reader(spool: MemorySpool, **limits: int) -> CommandReader:
    return CommandReader(max_line=1024, max_literal=10_000_000, spool=spool, **limits)


def test_a_large_literal_goes_to_the_sink_not_to_memory() -> None:
    spool = MemorySpool()
    reader = big_reader(spool, spool_threshold=1000)
    message = b"Subject: big\r\n\r\n" + b"x" * 5_000_000
    assert reader.feed(b"a APPEND INBOX {%d}\r\n" % len(message)) == [
        Continue(tag="a", size=len(message))
    ]
    for at in range(0, len(message), 65536):
        assert reader.feed(message[at : at + 65536]) == []
        assert reader.buffered < 2048  # the line only; the octets are in the sink
    (event,) = reader.feed(b"\r\n")
    assert isinstance(event, Parsed) and isinstance(event.command, C.Append)
    (appended,) = event.command.messages
    assert appended.data is spool.sinks[0] and spool.sinks[0].data == message


def test_small_literals_stay_in_memory_until_they_would_not_fit() -> None:
    spool = MemorySpool()
    reader = CommandReader(
        max_line=200, max_literal=10**6, spool=spool, spool_threshold=100, max_held=1500
    )
    (event,) = reader.feed(b"a APPEND INBOX" + (b" {90+}\r\n" + b"m" * 90) * 18 + b"\r\n")
    assert isinstance(event, Parsed) and isinstance(event.command, C.Append)
    kept = [m.data for m in event.command.messages]
    # Held before the n-th literal: the first line (22), then 90 + 8 per literal before it.
    # The 14th would leave less than max_line (200) of max_held (1500) for the lines still
    # to come, so it and the rest go to the spool.
    assert kept[:13] == [b"m" * 90] * 13
    assert len(spool.sinks) == 5
    assert all(k is s for k, s in zip(kept[13:], spool.sinks, strict=True))
    assert all(s.data == b"m" * 90 for s in spool.sinks)


def test_other_literals_must_fit_max_held_with_a_spool() -> None:
    spool = MemorySpool()
    reader = big_reader(spool, max_held=4096)
    assert reader.feed(b"a SEARCH TEXT {5000}\r\n") == [
        LiteralTooBig(tag="a", size=5000, limit=4096 - len(b"a SEARCH TEXT {5000}\r\n"))
    ]
    assert spool.sinks == []
    plain = CommandReader(max_line=1024, max_literal=10_000_000)  # no spool: as before
    assert plain.feed(b"a SEARCH TEXT {5000}\r\n") == [Continue(tag="a", size=5000)]


def test_the_mailbox_literal_of_append_is_never_spooled() -> None:
    spool = MemorySpool()
    reader = big_reader(spool, spool_threshold=0)
    events = reader.feed(b"a APPEND {5+}\r\nDraft {4+}\r\nbody\r\n")
    assert len(spool.sinks) == 1 and spool.sinks[0].data == b"body"
    (event,) = events
    assert isinstance(event, Parsed) and isinstance(event.command, C.Append)
    assert event.command.mailbox == "Draft"


@pytest.mark.parametrize(
    ("wire", "event"),
    [
        # MULTIAPPEND whose second literal is too big: the first, spooled, goes with it
        (b"a APPEND INBOX {2000+}\r\n" + b"x" * 2000 + b" {99999999}\r\n", LiteralTooBig),
        # a malformed command (a bad date) is refused after its literal arrived
        (b'a APPEND INBOX "31-Foo-2026 1:2:3" {2000+}\r\n' + b"x" * 2000 + b"\r\n", ParseError),
        # a line too long after the literal
        (b"a APPEND INBOX {2000+}\r\n" + b"x" * 2000 + b" " + b"y" * 2000 + b"\r\n", ParseError),
    ],
)
def test_an_abandoned_command_discards_its_sinks(wire: bytes, event: type) -> None:
    spool = MemorySpool()
    reader = big_reader(spool, spool_threshold=1000)
    events = reader.feed(wire)
    assert isinstance(events[-1], event)
    assert [s.discarded for s in spool.sinks] == [1]


@pytest.mark.parametrize("end", ["close", "reset"])
def test_a_client_gone_mid_literal_leaves_nothing(end: str) -> None:
    spool = MemorySpool()
    reader = big_reader(spool, spool_threshold=1000)
    reader.feed(b"a APPEND INBOX {9000000+}\r\n" + b"x" * 100_000)
    (sink,) = spool.sinks
    assert len(sink.data) == 100_000 and sink.discarded == 0
    getattr(reader, end)()
    assert sink.discarded == 1
    assert reader.buffered == 0


def test_the_unauthenticated_literal_limit_still_holds_with_a_spool() -> None:
    spool = MemorySpool()
    reader = big_reader(spool, spool_threshold=1000)
    reader.max_literal = 8 * 1024  # what the server sets before login
    assert reader.feed(b"a APPEND INBOX {9000}\r\n") == [
        LiteralTooBig(tag="a", size=9000, limit=8 * 1024)
    ]
    assert spool.sinks == []
