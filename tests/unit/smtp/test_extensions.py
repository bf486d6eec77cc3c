"""One extension table for the server's EHLO answer; the same module reads a server's answer for
the client, and `replies` reads its enhanced codes."""

from __future__ import annotations

import re

import pytest
from aiosmtplib.esmtp import parse_esmtp_extensions
from hypothesis import given
from hypothesis import strategies as st

from mailfort.protocol.smtp.extensions import COMMAND_LINE, Offer, ehlo_reply, parse_ehlo
from mailfort.protocol.smtp.replies import enhanced_status


def text_of(reply: bytes) -> str:
    """The reply as a client library hands it over: the lines without their codes."""
    return "\n".join(line[4:] for line in reply.decode().split("\r\n") if line)


def test_the_client_reads_what_the_server_offers() -> None:
    offer = Offer(max_size=35_000_000, starttls=True, auth=("LOGIN", "PLAIN"))
    reply, mail_limit = ehlo_reply("mx.test", offer)
    assert reply.startswith(b"250-mx.test\r\n") and reply.endswith(b"250 HELP\r\n")
    assert mail_limit == COMMAND_LINE + 26 + 10
    assert parse_ehlo(text_of(reply)) == {
        "size": "35000000",
        "8bitmime": "",
        "smtputf8": "",
        "starttls": "",
        "auth": "LOGIN PLAIN",
        "pipelining": "",
        "chunking": "",
        "enhancedstatuscodes": "",
        "help": "",
    }


def test_without_size_there_is_no_size_line_and_no_room_for_it() -> None:
    reply, mail_limit = ehlo_reply("mx.test", Offer(max_size=0, starttls=False, auth=()))
    assert b"SIZE" not in reply and b"STARTTLS" not in reply and b"AUTH" not in reply
    assert mail_limit == COMMAND_LINE + 10


@given(
    lines=st.lists(
        st.one_of(
            st.sampled_from(["SIZE 1000", "8BITMIME", "AUTH PLAIN LOGIN", "AUTH=LOGIN", "X-ONE a"]),
            st.text(alphabet="ABZaz09- =\t", max_size=20),
        ),
        max_size=8,
    )
)
def test_keywords_as_aiosmtplib_reads_them(lines: list[str]) -> None:
    """The client used aiosmtplib's reading of the EHLO answer; ours finds the same keywords
    (aiosmtplib also takes lines that are no keyword at all, such as "=": ours skips them)."""
    text = "\n".join(["mx.test", *lines])
    ours = parse_ehlo(text)
    theirs, _ = parse_esmtp_extensions(text)
    assert set(ours) == {k for k in theirs if re.fullmatch(r"[a-z0-9][a-z0-9-]*", k)}
    for keyword in ("size", "8bitmime", "smtputf8", "starttls"):
        assert ours.get(keyword, "").strip() == theirs.get(keyword, "").strip()


@pytest.mark.parametrize(
    ("code", "text", "expected"),
    [
        (550, "5.1.1 No such user", "5.1.1"),
        (550, "4.1.1 class from the reply code", "5.1.1"),
        (451, "  4.3.0 leading space", "4.3.0"),
        (550, "No enhanced code", "5.0.0"),
        (550, "5.1.1x glued text", "5.0.0"),
        (250, "2.0.0", "2.0.0"),
        (354, "Go ahead", "4.0.0"),  # out of protocol here: try again
    ],
)
def test_enhanced_status_of_a_reply(code: int, text: str, expected: str) -> None:
    assert enhanced_status(code, text) == expected
