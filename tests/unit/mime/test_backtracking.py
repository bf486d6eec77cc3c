"""Regular expressions applied to what clients send cost linear time on their worst inputs.

Each case is an input built to make a backtracking engine retry (long runs of blanks, of
quoted-pairs, of near-matches), 200 KB of it, with a bound generous enough for a loaded machine
and far below what a quadratic pattern takes: the two patterns this suite caught took seconds
at 20 KB and would take minutes to hours here. The two rewritten patterns are also checked
against the old ones on short inputs, where the old ones were correct.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailfort.mail import address, mime, search
from mailfort.protocol.imap import envelope, mutf7, parser
from mailfort.server import smtp

N = 200_000
BOUND = 0.5  # seconds; a linear pass over N octets takes milliseconds

_OLD_QP_TRAILING_SPACE = re.compile(rb"[ \t]+(?=\r?\n|\Z)")
_OLD_SIMPLE_ADDRESS = re.compile(envelope._SIMPLE_ADDRESS.pattern.replace(rb"[ \t]*+", rb"[ \t]*"))

CASES: dict[str, tuple[Callable[[bytes], object], bytes]] = {
    "qp trailing blanks": (mime.decode_quoted_printable, b" " * N + b"x"),
    "qp trailing tabs": (mime.decode_quoted_printable, b" \t" * (N // 2) + b"=\r"),
    "address blanks": (envelope.parse_addresses, b" " * N + b"x"),
    "address blanks and tabs": (envelope.parse_addresses, b" \t" * (N // 2) + b"("),
    "address phrase": (envelope.parse_addresses, b"a " * (N // 2) + b"("),
    "address quoted": (envelope.parse_addresses, b'"' + b"\\a" * (N // 2)),
    "address literal": (envelope._tokenize, b"[\\" * (N // 2)),
    "params quoted": (lambda v: mime.parse_params(v, 0), b';a="' + b"\\x" * (N // 2) + b'" x'),
    "params unquoted": (lambda v: mime.parse_params(v, 0), b";a=" + b"b" * N + b" x"),
    "params junk": (lambda v: mime.parse_params(v, 0), b";a=b c" * (N // 6)),
    "params sections": (lambda v: mime.parse_params(v, 0), b";" + b"a*1" * (N // 3) + b"=b"),
    "comments": (mime.skip_comments, b"(" * N),
    "encoded words": (lambda v: mime.decode_words(v.decode()), b"=?a?q?a" * (N // 7)),
    "header without colon": (mime.parse, b"a" * N + b"\r\n\r\nx"),
    "header name then blanks": (mime.parse, b"a" + b" " * N + b"x:\r\n\r\nx"),
    "boundary padding": (
        mime.parse,
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        + (b"--b" + b" " * 50 + b"x\n") * (N // 55),
    ),
    "sent date": (search.sent_date, b"1" + b" " * N + b"x"),
    "imap quoted": (lambda v: parser._QUOTED.match(v), b'"' + b'\\"' * (N // 2)),
    "mailbox name": (lambda v: mutf7.decode(v.decode()), b"&-" * (N // 2)),
    "domain": (lambda v: _quietly(address.normalize, v.decode()), b"x@" + b"a." * 120 + b"@"),
    "smtp path": (lambda v: smtp._PLAIN_PATH.match(v.decode()), b"<" + b"a." * 250 + b"@b>x"),
}


def _quietly(fn: Callable[[str], object], value: str) -> None:
    with contextlib.suppress(ValueError):
        fn(value)


@pytest.mark.parametrize("case", sorted(CASES))
def test_worst_case_is_linear(case: str) -> None:
    fn, value = CASES[case]
    started = time.perf_counter()
    fn(value)
    assert time.perf_counter() - started < BOUND


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=30) | st.text(alphabet=" \t\r\n=x", max_size=30).map(str.encode))
def test_qp_trailing_space_is_the_old_rule(data: bytes) -> None:
    assert mime._QP_TRAILING_SPACE.sub(b"", data) == _OLD_QP_TRAILING_SPACE.sub(b"", data)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=' \ta@b<>,"\\.', max_size=24).map(str.encode))
def test_simple_address_is_the_old_rule(value: bytes) -> None:
    old = _OLD_SIMPLE_ADDRESS.match(value)
    new = envelope._SIMPLE_ADDRESS.match(value)
    assert (old and (old.span(), old.groupdict())) == (new and (new.span(), new.groupdict()))
