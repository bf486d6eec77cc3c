"""BDAT (RFC 3030, CHUNKING) in the session core: bytes in, replies and messages out."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailfort.protocol.smtp import replies as R
from mailfort.protocol.smtp import session as core
from tests.unit.smtp.helpers import (
    MAX_SIZE,
    PASSWORD,
    USER,
    Peer,
    mx_config,
    replies,
    same_however_cut,
    submission_config,
)
from tests.unit.smtp.test_session import plain, ready
from tests.unit.test_smtp_data import cut

ENVELOPE = b"MAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"
BAD_SIZE = (501, "5.5.4 Syntax: BDAT chunk-size [LAST]")
LOST = (421, R.BDAT_LOST[4:])
TOO_MANY_DIGITS = b"BDAT " + b"9" * (core.MAX_CHUNK_DIGITS + 1)


def bdat(data: bytes, *, last: bool = True) -> bytes:
    return b"BDAT %d%s\r\n" % (len(data), b" LAST" if last else b"") + data


def contents(peer: Peer) -> list[bytes]:
    return [content for _, content in peer.messages]


def test_one_chunk_is_one_message() -> None:
    peer = ready()
    message = b"Subject: hi\r\n\r\n.no transparency: this dot stays\r\n"
    out = peer.send(ENVELOPE + bdat(message))
    assert replies(out)[2] == (250, "2.0.0 OK queued as Q1")
    envelope, content = peer.messages[0]
    assert [r.address for r in envelope.recipients] == ["alice@example.test"]
    assert content == message
    assert not peer.core.in_transaction


def test_each_chunk_is_answered_and_the_last_one_by_the_transaction() -> None:
    peer = ready()
    peer.send(ENVELOPE)
    assert replies(peer.send(bdat(b"Subject: x\r", last=False))) == [
        (250, "2.0.0 11 octets received")
    ]
    assert peer.core.in_transaction and peer.messages == []
    assert replies(peer.send(bdat(b"\n\r\nbody", last=False))) == [(250, "2.0.0 7 octets received")]
    assert replies(peer.send(bdat(b"\r\n"))) == [(250, "2.0.0 OK queued as Q1")]
    assert contents(peer) == [b"Subject: x\r\n\r\nbody\r\n"]


def test_bdat_0_last() -> None:
    peer = ready()
    assert peer.codes(ENVELOPE + bdat(b"hello\r\n", last=False) + b"BDAT 0 LAST\r\n") == [250] * 4
    assert peer.codes(ENVELOPE + b"BDAT 0 LAST\r\n") == [250] * 3
    assert contents(peer) == [b"hello\r\n", b""]


def test_states() -> None:
    peer = ready()
    peer.send(ENVELOPE + b"BDAT 10\r\nabc")
    assert peer.core.state is core.State.CHUNK and peer.core.receiving_data
    peer.send(b"defghij")
    assert peer.core.state is core.State.RCPT and peer.core.receiving_data  # between chunks
    peer.send(b"RSET\r\n")
    assert peer.core.state is core.State.READY and not peer.core.receiving_data


@pytest.mark.parametrize(
    "payload",
    [
        b"hi\r\n.\r\nMAIL FROM:<x@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nevil\r\n",
        b"hi\n.\nMAIL FROM:<x@example.test>\nRCPT TO:<bob@example.test>\nBDAT 4 LAST\nevil",
        b"hi\r.\rMAIL FROM:<x@example.test>\rRCPT TO:<bob@example.test>\r",
    ],
    ids=["crlf", "lf", "cr"],
)
def test_commands_inside_a_chunk_are_data(payload: bytes) -> None:
    """The chunk is counted octets: nothing in it ends it or runs as a command, and its bare CR
    and LF are kept as they came, as DATA keeps them."""
    peer = ready()
    assert peer.codes(ENVELOPE + bdat(payload) + b"QUIT\r\n") == [250, 250, 250, 221]
    assert len(peer.messages) == 1
    envelope, content = peer.messages[0]
    assert [r.address for r in envelope.recipients] == ["alice@example.test"]
    assert content == payload


NEED_RCPT = (503, "5.5.1 Error: need RCPT command")
EHLO = b"EHLO client.test\r\n"
MAIL = b"MAIL FROM:<s@remote.test>\r\n"


@pytest.mark.parametrize(
    ("before", "expected"),
    [
        (b"", (503, "5.5.1 Error: send HELO first")),
        (EHLO, NEED_RCPT),
        (EHLO + MAIL, NEED_RCPT),
        (EHLO + MAIL + b"RCPT TO:<nobody@example.test>\r\n", NEED_RCPT),
    ],
    ids=["before EHLO", "no MAIL", "no RCPT", "RCPT refused"],
)
def test_a_refused_chunk_is_still_read(before: bytes, expected: tuple[int, str]) -> None:
    """RFC 3030 2: the octets of a refused BDAT are read and dropped before its answer; what
    they hold (commands here) never runs."""
    peer = Peer()
    peer.send(before)
    payload = b"MAIL FROM:<x@example.test>\r\nRCPT TO:<bob@example.test>\r\nBDAT 1 LAST\r\nx"
    out = peer.send(b"BDAT %d LAST\r\n" % len(payload) + payload[:10])
    assert out == b""  # answered only once its octets are in
    assert replies(peer.send(payload[10:] + b"NOOP\r\n")) == [expected, (250, "2.0.0 OK")]
    assert peer.messages == [] and not peer.core.in_transaction


def test_submission_needs_a_login_before_bdat() -> None:
    peer = Peer(submission_config(tls=True, starttls=False))
    peer.send(b"EHLO client.test\r\n")
    assert replies(peer.send(bdat(b"x\r\n") + b"NOOP\r\n")) == [
        (530, "5.7.0 Authentication required"),
        (250, "2.0.0 OK"),
    ]
    assert peer.codes(b"AUTH PLAIN " + plain("", USER, PASSWORD) + b"\r\n") == [235]
    wire = b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\n" + bdat(b"x\r\n")
    assert peer.codes(wire) == [250, 250, 250]
    assert contents(peer) == [b"x\r\n"]


def test_a_failed_chunk_fails_the_transaction_until_mail() -> None:
    """RFC 3030 2: after a failed BDAT the client sends no more chunks, but those already in
    the pipeline are read and dropped (503), until RSET and MAIL begin a new transaction."""
    peer = ready()
    wire = (
        ENVELOPE
        + bdat(b"one", last=False)
        + b"BDAT 3 LATER\r\nabc"  # a bad end marker: the size is known, the stream stays in step
        + bdat(b"two", last=False)
        + bdat(b"end")
        + b"RSET\r\n"
        + ENVELOPE
        + bdat(b"ok\r\n")
    )
    assert peer.codes(wire) == [250, 250, 250, 501, 503, 503, 250, 250, 250, 250]
    assert contents(peer) == [b"ok\r\n"]


def test_rset_between_chunks_forgets_them() -> None:
    peer = ready()
    peer.send(ENVELOPE + bdat(b"one", last=False))
    assert peer.codes(b"RSET\r\n" + bdat(b"lost")) == [250, 503]
    assert peer.codes(ENVELOPE + bdat(b"two", last=False) + bdat(b"\r\n")) == [250] * 4
    assert contents(peer) == [b"two\r\n"]


def test_data_after_bdat_is_out_of_sequence() -> None:
    peer = ready()
    peer.send(ENVELOPE + bdat(b"a", last=False))
    assert replies(peer.send(b"DATA\r\n")) == [(503, R.DATA_AFTER_BDAT[4:])]
    assert peer.codes(b"MAIL FROM:<s@remote.test>\r\n") == [503]  # still in the transaction
    assert peer.codes(bdat(b"b")) == [250]
    assert contents(peer) == [b"ab"]
    # After DATA's message a new transaction may use BDAT, and BDAT after the last is 503.
    wire = ENVELOPE + b"DATA\r\nc\r\n.\r\n" + bdat(b"d")
    assert peer.codes(wire) == [250, 250, 354, 250, 503]


@pytest.mark.parametrize(
    "line",
    [b"BDAT", b"BDAT x", b"BDAT -1", b"BDAT +1", b"BDAT 1e3", b"BDAT \xc2\xb2", TOO_MANY_DIGITS],
)
def test_a_chunk_size_that_is_no_count_closes_the_session(line: bytes) -> None:
    """Where its octets end is unknown: reading on would run what the client sent as data."""
    peer = ready()
    out = peer.send(ENVELOPE + line + b"\r\nMAIL FROM:<evil@example.test>\r\nQUIT\r\n")
    assert replies(out) == [(250, "2.1.0 Sender OK"), (250, "2.1.5 Recipient OK"), BAD_SIZE, LOST]
    assert peer.closed and peer.messages == []


def test_a_bdat_line_too_long_closes_the_session() -> None:
    peer = ready()
    out = peer.send(b"BDAT 5" + b" " * 600 + b"\r\nRSET\r\n")
    assert replies(out) == [(500, "5.5.2 Command line too long"), LOST]
    assert peer.closed


def test_the_size_limit_counts_every_chunk_and_the_octets_are_still_read() -> None:
    peer = ready()
    line = b"y" * 998 + b"\r\n"
    assert peer.codes(ENVELOPE + bdat(line * 6, last=False)) == [250, 250, 250]
    # 6,000 + 5,000 > MAX_SIZE: refused when announced; its octets go by unkept.
    peer.send(b"BDAT 5000 LAST\r\n")
    assert peer.core.state is core.State.CHUNK
    for _ in range(4):
        assert peer.send(line) == b""
        assert peer.core.buffered == 0
    out = peer.send(line + b"NOOP\r\n")
    assert replies(out) == [(552, "5.3.4 Error: Too much mail data"), (250, "2.0.0 OK")]
    assert peer.messages == [] and not peer.core.in_transaction
    # Exactly the limit is fine.
    assert peer.codes(ENVELOPE + bdat(line * 10)) == [250, 250, 250]
    assert len(contents(peer)[0]) == MAX_SIZE


def test_a_line_too_long_is_refused_as_in_data() -> None:
    peer = ready()
    long_line = b"z" * 1200 + b"\r\n"
    out = peer.send(ENVELOPE + bdat(b"ok\r\n" + long_line, last=False) + bdat(b"x"))
    assert replies(out)[2:] == [(500, R.LINE_TOO_LONG[4:]), (503, "5.5.1 Error: need RCPT command")]
    assert peer.messages == []


def test_a_chunk_never_waits_whole_in_memory() -> None:
    """Past the spool threshold the octets go to the spool as they arrive; the core buffers
    none of them."""
    peer = Peer(mx_config(max_size=0), spool_threshold=1000)
    peer.send(b"EHLO client.test\r\n" + ENVELOPE + b"BDAT 300000 LAST\r\n")
    line = b"x" * 98 + b"\r\n"
    for n in range(299):
        assert peer.send(line * 10) == b""
        assert peer.core.buffered == 0
        if n == 2:
            assert len(peer.sinks) == 1 and len(peer.sinks[0].data) >= 2000
    assert peer.codes(line * 10) == [250]
    assert contents(peer) == [line * 3000]
    assert len(peer.sinks) == 1


def test_pipelined_chunks_are_answered_together() -> None:
    """RFC 2920 with RFC 3030: BDAT commands and their octets may all come at once; the replies
    leave together, in order, before the core asks for more."""
    peer = Peer()
    wire = EHLO + ENVELOPE + bdat(b"abc", last=False) + bdat(b"def") + b"NOOP\r\n"
    assert peer.codes(wire) == [250] * 6
    assert sum(isinstance(e, core.NeedData) for e in peer.events) == 1
    assert contents(peer) == [b"abcdef"]


def test_the_call_budget_bounds_tiny_chunks() -> None:
    peer = ready(mx_config(call_limits={"*": 1000, "BDAT": 100}))
    peer.send(ENVELOPE)
    codes = peer.codes(b"BDAT 1\r\nx" * 101)
    assert codes == [250] * 100 + [421]
    assert replies(bytes(peer.sent))[-1] == (421, "4.7.0 BDAT sent too many times")
    assert peer.closed


def test_starttls_forgets_the_chunks() -> None:
    peer = ready()
    peer.send(ENVELOPE + bdat(b"clear", last=False))
    peer.send(b"STARTTLS\r\n")
    assert peer.core.tls and not peer.core.receiving_data
    peer.send(b"EHLO client.test\r\n")
    assert peer.codes(ENVELOPE + bdat(b"tls\r\n")) == [250, 250, 250]
    assert contents(peer) == [b"tls\r\n"]


# -- however the input is cut -------------------------------------------------------------------

STEPS = [
    b"EHLO client.test\r\n",
    b"MAIL FROM:<s@remote.test>\r\n",
    b"RCPT TO:<alice@example.test>\r\n",
    b"RCPT TO:<nobody@example.test>\r\n",
    bdat(b"Subject: x\r\n\r\nbare\nlf\r", last=False),
    bdat(b"\n.\r\nMAIL FROM:<x@y>\r\n", last=False),
    bdat(b"end\r\n"),
    b"BDAT 0 LAST\r\n",
    b"BDAT 4 LATER\r\nabcd",
    bdat(b"y" * 1200 + b"\r\n", last=False),
    bdat(b"z" * 3000, last=False),  # past MAX_SIZE after a few
    b"DATA\r\n",
    b"data\r\n.\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"BDAT x\r\n",  # closes the session: what follows is never read, cut or not
]


@settings(max_examples=400, deadline=None)
@given(
    script=st.lists(st.sampled_from(STEPS), max_size=25),
    points=st.lists(st.integers(0, 100_000), max_size=12),
)
def test_the_same_answers_however_the_input_is_cut(script: list[bytes], points: list[int]) -> None:
    wire = b"".join(script)
    same_however_cut(wire, cut(wire, points), mx_config(call_limits={"*": 1000}))
