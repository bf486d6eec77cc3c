"""The originator fields as submission reads them: one clear answer, or a named problem."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailfort.mail.originator import (
    MAX_FIELD,
    MAX_HEADER_BLOCK,
    OriginatorError,
    Originators,
    Problem,
    originators,
)


def parse(head: bytes) -> Originators:
    return originators(head + b"\r\n\r\nbody\r\n")


@pytest.mark.parametrize(
    ("head", "authors", "sender"),
    [
        (b"From: alice@example.test", ("alice@example.test",), None),
        (b"From: Alice <Alice@Example.TEST>", ("alice@example.test",), None),
        (b"FROM:alice@example.test", ("alice@example.test",), None),
        (b"From: alice@example.test (Bob the banker)", ("alice@example.test",), None),
        (b"From: (c) alice@example.test (c)", ("alice@example.test",), None),
        (b"From: John Q. Public <alice@example.test>", ("alice@example.test",), None),
        (b'From: "bob@bank.example" <alice@example.test>', ("alice@example.test",), None),
        (b"From: =?utf-8?q?B=C3=B6b?= <alice@example.test>", ("alice@example.test",), None),
        (b"From: Alice\r\n <alice@example.test>", ("alice@example.test",), None),
        (
            b"From: =?utf-8?b?w6lsaXNl?= <\xc3\xa9lise@example.test>",
            ("\xe9lise@example.test",),
            None,
        ),
        (
            b"From: alice@example.test, bob@example.test\r\nSender: alice@example.test",
            ("alice@example.test", "bob@example.test"),
            "alice@example.test",
        ),
        (
            b"From: Team: alice@example.test, a+b@example.test;\r\nSender: <alice@example.test>",
            ("alice@example.test", "a+b@example.test"),
            "alice@example.test",
        ),
        (
            b"Sender: bob@example.test\r\nFrom: alice@example.test",
            ("alice@example.test",),
            "bob@example.test",
        ),
        (b"X-Raw: caf\xe9\r\nFrom: alice@example.test", ("alice@example.test",), None),
    ],
)
def test_clear_originators(head: bytes, authors: tuple[str, ...], sender: str | None) -> None:
    assert parse(head) == Originators(authors=authors, sender=sender)


def test_header_only_message_and_empty_body() -> None:
    assert originators(b"From: alice@example.test\r\n").authors == ("alice@example.test",)
    assert originators(b"From: alice@example.test").authors == ("alice@example.test",)
    assert originators(b"From: alice@example.test\r\n\r\n").authors == ("alice@example.test",)


@pytest.mark.parametrize(
    ("head", "problem"),
    [
        (b"Subject: no author", Problem.NO_FROM),
        (b"", Problem.NO_FROM),
        (b"From: alice@example.test\r\nFrom: bob@bank.example", Problem.FROM_TWICE),
        (
            b"From: a@example.test\r\nSender: a@example.test\r\nSender: b@x.test",
            Problem.SENDER_TWICE,
        ),
        (b"From: a@example.test, b@example.test", Problem.NEED_SENDER),
        (b"From: Team: a@example.test, b@example.test;", Problem.NEED_SENDER),
        (b"From: Undisclosed:;", Problem.BAD_FROM),
        (b"From: ", Problem.BAD_FROM),
        (b"From: alice", Problem.BAD_FROM),
        (b"From: garbage <<<", Problem.BAD_FROM),
        (b"From: <alice@example.test", Problem.BAD_FROM),
        # A lenient reader would show the second address; email sees the first and a defect.
        (b"From: alice@example.test <bob@bank.example>", Problem.BAD_FROM),
        (b"From: alice@example.test;", Problem.BAD_FROM),
        # RFC 2047 5: no encoded word inside an address; decoded it would be another one.
        (b"From: =?us-ascii?q?bob?=@bank.example", Problem.BAD_FROM),
        (b"From: =?us-ascii?q?alice?= @example.test", Problem.BAD_FROM),
        (b"From: alice@=?us-ascii?q?example.test?=", Problem.BAD_FROM),
        (b"From: alice(x)@example.test", Problem.BAD_FROM),
        (b'From: "alice"@example.test', Problem.BAD_FROM),
        (b"From: <\xe9lise@example.test>", Problem.BAD_FROM),  # not UTF-8
        (b"From: a@example.test\r\nSender: a@example.test, b@example.test", Problem.BAD_SENDER),
        (b"From: a@example.test\r\nSender: nobody", Problem.BAD_SENDER),
        (b"From: a@example.test\r\nSender: G:;", Problem.BAD_SENDER),
        # Field boundaries every reader must agree on (RFC 5322 2.2).
        (b"From: alice@example.test\r\nFrom : bob@bank.example", Problem.MALFORMED_HEADER),
        (b"From : bob@bank.example", Problem.MALFORMED_HEADER),
        (b"Subject: x\r\ngarbage\r\nFrom: bob@bank.example", Problem.MALFORMED_HEADER),
        (b" folded\r\nFrom: alice@example.test", Problem.MALFORMED_HEADER),
        (b"From: alice@example.test\nFrom: bob@bank.example", Problem.MALFORMED_HEADER),
        (b"From: alice@example.test\rFrom: bob@bank.example", Problem.MALFORMED_HEADER),
        (b"From: alice@example.test\r\nX-A: 1\n\nFrom: bob@bank.example", Problem.MALFORMED_HEADER),
        (b"From alice Mon Jan  1 00:00:00 2026\r\nFrom: a@example.test", Problem.MALFORMED_HEADER),
    ],
)
def test_problems(head: bytes, problem: Problem) -> None:
    with pytest.raises(OriginatorError) as raised:
        parse(head)
    assert raised.value.problem is problem


def test_a_message_that_starts_with_an_empty_line_has_no_fields() -> None:
    with pytest.raises(OriginatorError) as raised:
        originators(b"\r\nFrom: alice@example.test\r\n\r\n")
    assert raised.value.problem is Problem.NO_FROM


def test_the_header_block_is_bounded() -> None:
    filler = b"X-Filler: " + b"v" * 70 + b"\r\n"
    fits = filler * ((MAX_HEADER_BLOCK - 100) // len(filler)) + b"From: alice@example.test"
    assert originators(fits + b"\r\n\r\n" + b"x" * MAX_HEADER_BLOCK).authors
    too_big = filler * (MAX_HEADER_BLOCK // len(filler) + 1) + b"From: alice@example.test"
    with pytest.raises(OriginatorError) as raised:
        originators(too_big + b"\r\n\r\nbody\r\n")
    assert raised.value.problem is Problem.HEADER_TOO_LARGE
    # Only the start is needed: the caller hands over MAX_HEADER_BLOCK + 4 octets.
    with pytest.raises(OriginatorError):
        originators((too_big + b"\r\n\r\nbody\r\n")[: MAX_HEADER_BLOCK + 4])


@pytest.mark.parametrize(
    "value",
    [
        b"(" * 900 + b")" * 900 + b"a@example.test",  # deep comments: RecursionError inside email
        b", ".join(b"u%d@example.test" % i for i in range(200)),
        b" ".join(b"=?utf-8?q?abc?=" for _ in range(300)) + b" <a@example.test>",
    ],
    ids=["nested-comments", "many-addresses", "many-encoded-words"],
)
def test_hostile_fields_are_answered_quickly(value: bytes) -> None:
    # CPU time of this thread, not the wall clock: other processes on a loaded machine do not
    # count. Generous: the bound is MAX_FIELD characters, ~10 ms of parsing.
    started = time.thread_time()
    with pytest.raises(OriginatorError):
        parse(b"From: " + value)
    assert time.thread_time() - started < 1.0
    assert len(value) > MAX_FIELD or value.startswith(b"(")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_input_gives_an_answer_or_a_problem(data: bytes) -> None:
    try:
        found = originators(b"From: " + data + b"\r\n\r\n")
    except OriginatorError:
        return
    assert found.authors
    for address in found.addresses:
        assert "@" in address and address == address.lower()
