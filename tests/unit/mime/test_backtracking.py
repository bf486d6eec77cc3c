"""Regular expressions applied to what clients send cost linear time on their worst inputs.

Each case is an input built to make a backtracking engine retry (long runs of blanks, of
quoted-pairs, of near-matches), 200 KB of it, with a bound generous enough for a loaded machine
and far below what a quadratic pattern takes: the two patterns this suite caught took seconds
at 20 KB and would take minutes to hours here. The two rewritten patterns are also checked
against the old ones on short inputs, where the old ones were correct.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
import time
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailfort.mail import address, mime
from mailfort.protocol.imap import envelope, mutf7, parser, search
from mailfort.protocol.smtp import paths as smtp_paths

N = 200_000
BOUND = 2.0  # seconds; a linear pass over N octets takes milliseconds to a few hundred

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
    "smtp path": (lambda v: smtp_paths._PLAIN_PATH.match(v.decode()), b"<" + b"a." * 250 + b"@b>x"),
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


def _old_base64(data: bytes) -> bytes:
    clean = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
    extra = len(clean) % 4
    if extra == 1:
        clean = clean[:-1]
    elif extra:
        clean += b"=" * (4 - extra)
    return binascii.a2b_base64(clean)


def _old_quoted_printable(data: bytes) -> bytes:
    return binascii.a2b_qp(_OLD_QP_TRAILING_SPACE.sub(b"", data))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=30) | st.text(alphabet=" \t\r\n=x4F", max_size=30).map(str.encode))
def test_quoted_printable_is_the_old_rule(data: bytes) -> None:
    assert mime.decode_quoted_printable(data) == _old_quoted_printable(data)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.text(alphabet=" \tx=4F", max_size=76).map(str.encode), min_size=1, max_size=40),
    st.sampled_from([b"\r\n", b"\n"]),
    st.integers(0, 3),
)
def test_quoted_printable_in_slices_is_the_old_rule(
    lines: list[bytes], newline: bytes, tail: int
) -> None:
    # Long enough to be decoded in several slices, cut wherever the lines fall.
    body = newline.join(lines * (3 * mime.SLICE // max(1, len(newline.join(lines))) + 1))
    body += b" " * tail
    assert mime.decode_quoted_printable(body) == _old_quoted_printable(body)


def test_base64_in_slices_is_the_whole() -> None:
    data = bytes(range(256)) * (3 * mime.SLICE // 256 + 7)
    encoded = base64.encodebytes(data)  # lines of 76 with LF: junk to skip
    assert mime.decode_base64(encoded) == data
    for cut in (1, 2, 3, 5):  # padding missing, a stray last character
        damaged = encoded.rstrip(b"=\n")[:-cut] + b"!*"
        assert mime.decode_base64(damaged) == _old_base64(damaged)


def test_text_in_slices_is_the_whole() -> None:
    for charset, text in (
        ("utf-8", "äö€𝄞 日本 "),
        ("iso-2022-jp", "日本語 abc "),
        ("utf-16", "äö€𝄞 "),
    ):
        long = text * (mime.SLICE // 5)
        assert mime.decode_text(long.encode(charset), charset) == long


def test_python_codecs_that_are_no_charsets_are_not_used() -> None:
    # Punycode decoding is quadratic; a part may name any charset it likes.
    hostile = b"a-" + b"9a" * 100_000
    started = time.perf_counter()
    assert mime.decode_text(hostile, "punycode") == hostile.decode()
    assert time.perf_counter() - started < BOUND


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=' \ta@b<>,"\\.', max_size=24).map(str.encode))
def test_simple_address_is_the_old_rule(value: bytes) -> None:
    old = _OLD_SIMPLE_ADDRESS.match(value)
    new = envelope._SIMPLE_ADDRESS.match(value)
    assert (old and (old.span(), old.groupdict())) == (new and (new.span(), new.groupdict()))
