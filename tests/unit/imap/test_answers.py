"""Named answers: the exact lines clients see, and texts that cannot break a line."""

from __future__ import annotations

import re

import pytest

from mailfort.protocol.imap import answers as A

_STATUS_LINE = re.compile(rb"(\*|[!#$&'+-Z^-z|}~]+) (OK|NO|BAD|BYE) (\[[^\]\r\n]+\] )?[^\r\n]+\r\n")


def test_tagged_lines() -> None:
    assert A.no_such_mailbox("Work").line("a1") == b"a1 NO [NONEXISTENT] no mailbox Work\r\n"
    assert A.completed("UID FETCH").line("x") == b"x OK UID FETCH completed\r\n"
    assert A.BUSY.line("t") == b"t NO [UNAVAILABLE] server busy, try again later\r\n"
    assert A.BAD_CHARSET.line("t") == b"t NO [BADCHARSET (UTF-8 US-ASCII)] unsupported charset\r\n"
    assert A.opened(readonly=True).line("t") == b"t OK [READ-ONLY] EXAMINE completed\r\n"
    assert A.opened(readonly=False).line("t") == b"t OK [READ-WRITE] SELECT completed\r\n"
    assert A.appended(7, "3:4").line("t") == b"t OK [APPENDUID 7 3:4] APPEND completed\r\n"
    assert A.store_modified("1,3").line("t") == (
        b"t OK [MODIFIED 1,3] conditional STORE failed for some messages\r\n"
    )
    assert A.not_allowed("FETCH", "authenticated").line("t") == (
        b"t BAD FETCH is not allowed in the authenticated state\r\n"
    )
    assert A.LITERAL_TOO_BIG.line("*") == b"* NO [TOOBIG] literal too large\r\n"


@pytest.mark.parametrize("name", ["a\r\n* 1 EXISTS", "a\rb", "a\nb", "nul\x00", "del\x7f"])
def test_a_quoted_name_cannot_end_the_line_early(name: str) -> None:
    """A mailbox name a client sent as a literal may hold CR LF: it must not become a second
    response line (the client would read `* 1 EXISTS` as the server's)."""
    for answer in (A.no_such_mailbox(name), A.try_create(name), A.already_exists(name)):
        line = answer.line("a1")
        assert line.count(b"\r\n") == 1 and line.endswith(b"\r\n") and b"\n" not in line[:-2]
        assert _STATUS_LINE.fullmatch(line), line


def test_text_that_is_not_unicode_still_goes_out() -> None:
    assert A.no_such_mailbox("x\udcff").line("a") == b"a NO [NONEXISTENT] no mailbox x?\r\n"


def test_untagged_status_lines() -> None:
    assert A.BYE_SHUTDOWN == b"* BYE [UNAVAILABLE] server shutting down, please reconnect\r\n"
    assert A.BYE_LOGOUT == b"* BYE logging out\r\n"
    assert A.MAILBOX_CLOSED == b"* OK [CLOSED] previous mailbox closed\r\n"
    assert A.moved(A.copyuid(9, "1:2", "5:6")) == b"* OK [COPYUID 9 1:2 5:6] moved\r\n"
    assert A.alert("maintenance\r\ntonight") == b"* OK [ALERT] maintenance tonight\r\n"
    assert A.permanent_flags(()) == b"* OK [PERMANENTFLAGS ()] read-only\r\n"
    assert A.permanent_flags(("\\Seen", "\\*")) == (
        b"* OK [PERMANENTFLAGS (\\Seen \\*)] flags permitted\r\n"
    )
    assert A.greeting("mx", "IMAP4rev1 IDLE") == (
        b"* OK [CAPABILITY IMAP4rev1 IDLE] mx mailfort IMAP ready\r\n"
    )
    assert A.EMPTY_CHALLENGE == b"+ \r\n"


def test_every_named_answer_is_one_well_formed_status_line() -> None:
    named = {k: v for k, v in vars(A).items() if k.isupper() and isinstance(v, A.Answer | bytes)}
    assert len(named) > 40
    for key, value in named.items():
        line = value.line("a1") if isinstance(value, A.Answer) else value
        if line.startswith(b"+ "):
            continue
        assert _STATUS_LINE.fullmatch(line), (key, line)
