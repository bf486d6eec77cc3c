"""The BDAT receiver (protocol/smtp/chunks.py); the session that feeds it is tested in
tests/unit/smtp/test_bdat.py.

A reference that judges the chunks joined, line by line, is the specification: the receiver must
agree with it on every list of chunks, however each chunk's octets are cut into pieces.
"""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailfort.protocol.smtp import replies as R
from mailfort.protocol.smtp.chunks import ChunkReceiver
from mailfort.protocol.smtp.data import Outcome, ReceivedData
from tests.unit.smtp.helpers import Sink
from tests.unit.test_smtp_data import cut


def reference(chunks: list[bytes], max_size: int | None, max_line: int) -> ReceivedData:
    """The message of `chunks` (the last one being LAST), judged on the chunks joined: each
    announcement against the size limit first, then its octets' lines against the line limit
    (a line not finished yet counts without a CR that may begin its CRLF)."""
    outcome = Outcome.COMPLETE
    announced = 0
    stream = b""
    for index, chunk in enumerate(chunks):
        announced += len(chunk)
        if outcome is Outcome.COMPLETE and max_size and announced > max_size:
            outcome = Outcome.TOO_BIG
        stream += chunk
        if outcome is not Outcome.COMPLETE:
            continue
        *finished, open_line = stream.split(b"\r\n")
        if index < len(chunks) - 1 and open_line.endswith(b"\r"):
            open_line = open_line[:-1]
        lengths = [len(line) + 2 for line in finished] + [len(open_line) + 2]
        if max(lengths) > max_line:
            outcome = Outcome.LINE_TOO_LONG
    content = stream if outcome is Outcome.COMPLETE else b""
    return ReceivedData(outcome=outcome, content=content, size=len(stream))


def receive(
    chunks: list[bytes], points: list[int], *, max_size: int | None, max_line: int
) -> ReceivedData:
    receiver = ChunkReceiver(max_size=max_size, max_line=max_line)
    for index, chunk in enumerate(chunks):
        receiver.chunk(len(chunk), last=index == len(chunks) - 1)
        pieces = cut(chunk, points)
        for n, piece in enumerate(pieces):
            # The last piece comes with what follows the chunk on the wire, which is not taken.
            after = b"NEXT COMMAND\r\n" if n == len(pieces) - 1 else b""
            assert receiver.feed(piece + after) == len(piece)
        assert receiver.remaining == 0
    assert receiver.done
    return receiver.result()


TOKENS = [b"\r", b"\n", b".", b"a", b"bc", b"\r\n", b"\r\n.", b".\r\n", b"x" * 7, b"\r\n.\r\n"]
text = st.lists(st.sampled_from(TOKENS), max_size=12).map(b"".join)


@settings(max_examples=2000, deadline=None)
@given(
    chunks=st.lists(text, min_size=1, max_size=5),
    points=st.lists(st.integers(min_value=0, max_value=10_000), max_size=6),
    max_line=st.integers(min_value=3, max_value=24),
    max_size=st.one_of(st.none(), st.integers(min_value=0, max_value=80)),
)
def test_agrees_with_the_reference_however_cut(
    chunks: list[bytes], points: list[int], max_line: int, max_size: int | None
) -> None:
    got = receive(chunks, points, max_size=max_size, max_line=max_line)
    assert got == reference(chunks, max_size, max_line)


def test_octets_are_raw() -> None:
    """No transparency and no end marker: dots, the DATA end marker and bare CR/LF are octets of
    the message, kept as they came (RFC 3030 2)."""
    message = b"Subject: x\r\n\r\n.dot\r\n.\r\nMAIL FROM:<x@y>\r\nbare\nlf and\rcr\r\n"
    got = receive([message], [], max_size=None, max_line=1001)
    assert got == ReceivedData(outcome=Outcome.COMPLETE, content=message, size=len(message))


def test_a_crlf_across_two_chunks_is_one_line_end() -> None:
    line = b"y" * 8
    assert receive([line + b"\r", b"\n" + line], [], max_size=None, max_line=10).content == (
        line + b"\r\n" + line
    )
    # Not followed by its LF, the CR is an octet of the line, which is then too long.
    assert receive([line + b"\r", b"z\r\n"], [], max_size=None, max_line=10).refusal == (
        R.LINE_TOO_LONG
    )


def test_an_empty_message_and_a_last_line_without_crlf() -> None:
    assert receive([b""], [], max_size=10, max_line=10).content == b""
    assert receive([b"abc", b""], [], max_size=10, max_line=10).content == b"abc"
    assert receive([b"ends in cr\r"], [], max_size=None, max_line=20).content == b"ends in cr\r"


def test_too_big_is_known_when_announced() -> None:
    receiver = ChunkReceiver(max_size=100)
    receiver.chunk(60, last=False)
    assert receiver.feed(b"a" * 60) == 60 and receiver.refusal is None
    receiver.chunk(41, last=True)
    assert receiver.refusal == R.DATA_TOO_BIG  # before any of its octets
    assert receiver.feed(b"b" * 41) == 41
    assert receiver.result() == ReceivedData(outcome=Outcome.TOO_BIG, content=b"", size=101)


def test_spooled_past_the_threshold() -> None:
    sinks: list[Sink] = []

    def spool() -> Sink:
        sinks.append(Sink())
        return sinks[-1]

    receiver = ChunkReceiver(max_size=None, spool=spool, spool_threshold=100)
    receiver.chunk(80, last=False)
    receiver.feed(b"a" * 78 + b"\r\n")
    assert sinks == []
    receiver.chunk(80, last=True)
    receiver.feed(b"b" * 40)
    assert len(sinks) == 1 and bytes(sinks[0].data) == b"a" * 78 + b"\r\n" + b"b" * 40
    receiver.feed(b"c" * 38 + b"\r\n")
    got = receiver.result()
    assert got.spooled is sinks[0] and got.content == b"" and got.size == 160
    assert bytes(sinks[0].data) == b"a" * 78 + b"\r\n" + b"b" * 40 + b"c" * 38 + b"\r\n"


def test_misuse_is_refused() -> None:
    receiver = ChunkReceiver(max_size=None)
    with pytest.raises(RuntimeError):
        receiver.result()
    receiver.chunk(3, last=False)
    with pytest.raises(RuntimeError):
        receiver.chunk(3, last=True)  # the first is still open


def test_memory_stays_bounded_past_the_size_limit() -> None:
    receiver = ChunkReceiver(max_size=1000)
    receiver.chunk(50_000_000, last=True)
    piece = (b"z" * 998 + b"\r\n") * 64
    tracemalloc.start()
    try:
        for _ in range(200):
            receiver.feed(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * len(piece), peak
    assert receiver.remaining == 50_000_000 - 200 * len(piece)
