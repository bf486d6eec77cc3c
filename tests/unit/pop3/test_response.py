"""Multi-line responses: CRLF normalization, dot-stuffing, sizes, TOP (RFC 1939 §3, §7)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailfort.protocol.pop3 import replies as R
from mailfort.protocol.pop3.response import (
    multiline,
    stuffed_chunks,
    to_crlf,
    top,
    wire_size,
)
from tests.unit.pop3.helpers import unstuff

FUZZ = settings(
    max_examples=int(os.environ.get("MAILFORT_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# Messages made of the octets that matter here, so lines, dots and line ends are common.
MESSAGE = st.lists(
    st.sampled_from([b"\r\n", b"\n", b"\r", b".", b"..", b"a", b"Subject: x", b" "]), max_size=60
).map(b"".join)


def respond(data: bytes, chunk_size: int = 64 * 1024) -> bytes:
    return b"+OK\r\n" + b"".join(stuffed_chunks(data, chunk_size))


def test_crlf_message_goes_out_byte_for_byte() -> None:
    data = b"Subject: a\r\n\r\nline\r\n"
    assert to_crlf(data) is data
    assert respond(data) == b"+OK\r\n" + data + b".\r\n"
    assert wire_size(data) == len(data)


def test_dot_stuffing_and_terminator() -> None:
    data = b".starts\r\nmid.dle\r\n.\r\n..\r\nend\r\n"
    assert respond(data) == b"+OK\r\n..starts\r\nmid.dle\r\n..\r\n...\r\nend\r\n.\r\n"
    assert unstuff(respond(data)) == data


def test_bare_lf_becomes_crlf_and_a_last_line_gets_its_end() -> None:
    data = b"Subject: a\n\nbody\r\nlast"
    sent = to_crlf(data)
    assert sent == b"Subject: a\r\n\r\nbody\r\nlast\r\n"
    assert wire_size(data) == len(sent)
    assert unstuff(respond(data)) == sent


def test_lone_cr_is_data() -> None:
    data = b"a\rb\r\n"
    assert to_crlf(data) == data and wire_size(data) == len(data)


def test_empty_message() -> None:
    assert wire_size(b"") == 0
    assert respond(b"") == b"+OK\r\n.\r\n"


@FUZZ
@given(MESSAGE, st.integers(min_value=1, max_value=40))
def test_what_is_sent_is_the_normalized_message_and_its_size(data: bytes, chunk: int) -> None:
    sent = respond(data, chunk)
    body = sent[len(b"+OK\r\n") :]
    # The terminator is the only line that is a lone dot.
    assert body.endswith(b".\r\n")
    assert b"\r\n.\r\n" not in b"\r\n" + body[: -len(b".\r\n")]
    assert unstuff(sent) == to_crlf(data)
    assert wire_size(data) == len(to_crlf(data))
    # Every LF of the wire form ends a CRLF line.
    assert body.count(b"\n") == body.count(b"\r\n")
    assert sent == respond(data)  # the chunking does not show


@FUZZ
@given(MESSAGE, st.integers(min_value=0, max_value=8))
def test_top_is_a_prefix_of_retr(data: bytes, lines: int) -> None:
    full = to_crlf(data)
    part = top(data, lines)
    assert full.startswith(part)
    assert top(data, 10**6) == full


def test_top_header_blank_line_and_n_body_lines() -> None:
    data = b"A: 1\r\nB: 2\r\n\r\none\r\ntwo\r\nthree\r\n"
    assert top(data, 0) == b"A: 1\r\nB: 2\r\n\r\n"
    assert top(data, 2) == b"A: 1\r\nB: 2\r\n\r\none\r\ntwo\r\n"
    assert top(b"\r\nbody\r\nmore\r\n", 1) == b"\r\nbody\r\n"  # no header at all
    assert top(b"A: 1\r\nB: 2\r\n", 0) == b"A: 1\r\nB: 2\r\n"  # all header
    assert top(b"A: 1\n\nx\ny\n", 1) == b"A: 1\r\n\r\nx\r\n"


def test_multiline_stuffs_and_ends() -> None:
    got = multiline(R.ok("list"), [b"1 20", b".odd"])
    assert got == b"+OK list\r\n1 20\r\n..odd\r\n.\r\n"
    assert multiline(R.ok("none"), []) == b"+OK none\r\n.\r\n"


def test_reply_text_never_carries_line_breaks() -> None:
    assert R.err("bad\r\nUSER x\0") == b"-ERR bad??USER x?\r\n"
    assert R.err("x", R.Code.IN_USE) == b"-ERR [IN-USE] x\r\n"
