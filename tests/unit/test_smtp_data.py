"""The DATA state machine (protocol/smtp/data.py); the session core that feeds it is tested in
tests/unit/smtp/test_session.py.

A line-by-line reference, written the way aiosmtpd read DATA, is the specification: the receiver
must agree with it on every stream, however the stream is cut into pieces.
"""

from __future__ import annotations

import itertools
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailfort.protocol.smtp import replies as R
from mailfort.protocol.smtp.data import END, TEXT_LINE_LIMIT, DataReceiver, Outcome, ReceivedData


def reference(
    stream: bytes, max_size: int | None, max_line: int
) -> tuple[ReceivedData, int] | None:
    """(result, octets belonging to the data), or None when the data has not ended."""
    pos = 0
    lines: list[bytes] = []
    size = 0
    outcome = Outcome.COMPLETE
    while True:
        nl = stream.find(b"\r\n", pos)
        if nl < 0:
            return None
        line = stream[pos : nl + 2]
        pos = nl + 2
        if line == b".\r\n":
            break
        if outcome is Outcome.COMPLETE and len(line) > max_line:
            outcome = Outcome.LINE_TOO_LONG
        size += len(line)
        if outcome is Outcome.COMPLETE and max_size and size > max_size:
            outcome = Outcome.TOO_BIG
        lines.append(line[1:] if line.startswith(b".") else line)
    content = b"".join(lines) if outcome is Outcome.COMPLETE else b""
    return ReceivedData(outcome=outcome, content=content, size=size), pos


def feed_pieces(receiver: DataReceiver, pieces: list[bytes]) -> int:
    taken = 0
    for piece in pieces:
        taken += receiver.feed(piece)
    return taken


def cut(stream: bytes, points: list[int]) -> list[bytes]:
    bounds = [0, *sorted({p % (len(stream) + 1) for p in points}), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


# Streams made of the pieces that matter: CR, LF, dots, line ends, the end marker and its parts.
TOKENS = [b"\r", b"\n", b".", b"a", b"bc", b"\r\n", b"\r\n.", b".\r\n", b"..", b"x" * 7, END]
streams = st.lists(st.sampled_from(TOKENS), max_size=40).map(b"".join)


@settings(max_examples=2000, deadline=None)
@given(
    stream=streams,
    points=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
    max_line=st.integers(min_value=3, max_value=24),
    max_size=st.one_of(st.none(), st.integers(min_value=0, max_value=80)),
)
def test_agrees_with_the_line_by_line_reference_however_cut(
    stream: bytes, points: list[int], max_line: int, max_size: int | None
) -> None:
    expected = reference(stream, max_size, max_line)
    receiver = DataReceiver(max_size=max_size, max_line=max_line)
    taken = feed_pieces(receiver, cut(stream, points))
    if expected is None:
        assert not receiver.done
        assert taken == len(stream)
        return
    result, length = expected
    assert receiver.done
    assert taken == length  # not one octet of what follows the end
    assert receiver.result() == result


@settings(max_examples=500, deadline=None)
@given(stream=streams, points=st.lists(st.integers(0, 10_000), max_size=12))
def test_one_octet_at_a_time_is_the_same(stream: bytes, points: list[int]) -> None:
    whole = DataReceiver(max_size=60, max_line=12)
    whole.feed(stream + END)
    single = DataReceiver(max_size=60, max_line=12)
    for i in range(len(stream) + len(END)):
        single.feed((stream + END)[i : i + 1])
    assert whole.done and single.done
    assert whole.result() == single.result()


def run(stream: bytes, **limits: int | None) -> ReceivedData:
    receiver = DataReceiver(max_size=limits.get("max_size"), max_line=TEXT_LINE_LIMIT)
    assert receiver.feed(stream) == len(stream)
    assert receiver.done
    return receiver.result()


def test_empty_message_and_transparency() -> None:
    assert run(b".\r\n").content == b""
    assert run(b"\r\n.\r\n").content == b"\r\n"
    data = run(b"..\r\n.x\r\nkeep.dot\r\n...\r\n.\r\n")
    assert data.content == b".\r\nx\r\nkeep.dot\r\n..\r\n"
    assert data.size == len(b"..\r\n.x\r\nkeep.dot\r\n...\r\n")  # as sent, dots included


@pytest.mark.parametrize(
    ("fake_end", "kept"),
    [
        (b"\n.\n", b"\n.\n"),
        (b"\r.\r", b"\r.\r"),
        (b"\n.\r\n", b"\n.\r\n"),
        (b"\r\n.\n", b"\r\n\n"),
        (b"\r\n.\r", b"\r\n\r"),
        (b"\r.\r\n", b"\r.\r\n"),
    ],
)
def test_only_crlf_dot_crlf_ends_the_data(fake_end: bytes, kept: bytes) -> None:
    """RFC 5321 4.1.1.4; the cases of tests/integration/test_smtp_limits.py::test_smuggling."""
    smuggled = b"MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\nevil\r\n"
    receiver = DataReceiver(max_size=None)
    stream = b"hi" + fake_end + smuggled + b".\r\nQUIT\r\n"
    taken = receiver.feed(stream)
    assert stream[taken:] == b"QUIT\r\n"
    assert receiver.result().content == b"hi" + kept + smuggled


def test_line_limit_counts_the_crlf_and_the_transparency_dot() -> None:
    longest = b"z" * (TEXT_LINE_LIMIT - 2) + b"\r\n"
    assert run(longest + b".\r\n").outcome is Outcome.COMPLETE
    assert run(b"." + longest + b".\r\n").outcome is Outcome.LINE_TOO_LONG
    too_long = run(b"ok\r\n" + b"y" * 1200 + b"\r\nafter\r\n.\r\n")
    assert too_long.outcome is Outcome.LINE_TOO_LONG and too_long.content == b""
    assert too_long.refusal == R.LINE_TOO_LONG


def test_size_limit_counts_octets_as_sent() -> None:
    body = b"12345678\r\n" * 10  # 100 octets
    assert run(body + b".\r\n", max_size=100).outcome is Outcome.COMPLETE
    over = run(body + b"x\r\n.\r\n", max_size=100)
    assert over.outcome is Outcome.TOO_BIG and over.refusal == R.DATA_TOO_BIG
    assert over.size == 103
    assert run(body + b".\r\n", max_size=None).outcome is Outcome.COMPLETE
    assert run(body + b".\r\n", max_size=0).outcome is Outcome.COMPLETE  # 0: no limit


def test_the_first_offending_line_decides() -> None:
    long_line = b"y" * 1500 + b"\r\n"
    # The long line also passes the size limit: too long wins within one line.
    assert run(long_line + b".\r\n", max_size=1000).outcome is Outcome.LINE_TOO_LONG
    # An earlier line passed the size limit: too big, whatever comes after.
    small = b"abc\r\n" * 300
    assert run(small + long_line + b".\r\n", max_size=1000).outcome is Outcome.TOO_BIG
    # Fed in pieces, with the long line's start already too long before its end arrives.
    receiver = DataReceiver(max_size=10_000)
    receiver.feed(b"abc\r\n" + b"y" * 1500)
    receiver.feed(b"y\r\n.\r\n")
    assert receiver.result().outcome is Outcome.LINE_TOO_LONG


def test_result_before_the_end_is_a_misuse() -> None:
    receiver = DataReceiver(max_size=None)
    receiver.feed(b"no end yet\r\n")
    assert not receiver.done
    with pytest.raises(RuntimeError):
        receiver.result()
    assert receiver.feed(b".\r\nMAIL") == 3
    assert receiver.feed(b"more") == 0  # done: nothing more is its own


def test_memory_stays_bounded_past_the_size_limit() -> None:
    chunk = (b"0123456789" * 99 + b"\r\n") * 64  # 64 KB of lines
    receiver = DataReceiver(max_size=1_000_000)
    tracemalloc.start()
    try:
        for _ in range(160):  # 10 MB
            receiver.feed(chunk)
        receiver.feed(b".\r\n")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert receiver.result().outcome is Outcome.TOO_BIG
    assert peak < 3_000_000, peak


def test_pending_and_needed_say_what_may_be_read() -> None:
    receiver = DataReceiver(max_size=None)
    assert (receiver.pending, receiver.needed) == (2, 3)  # as if after a CRLF
    receiver.feed(b"abc")
    assert (receiver.pending, receiver.needed) == (0, 5)
    receiver.feed(b"\r\n.")
    assert (receiver.pending, receiver.needed) == (3, 2)
    receiver.feed(b"\r")
    assert (receiver.pending, receiver.needed) == (4, 1)
