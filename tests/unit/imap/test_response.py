"""The response writer: strings that survive the round trip, exact labels, dates, sets."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailfort.protocol.imap import response as R
from mailfort.protocol.imap.commands import FetchAtt, FetchKind, Section
from mailfort.protocol.imap.framing import CommandReader, Parsed
from mailfort.protocol.imap.parser import parse_line


@pytest.mark.parametrize(
    ("value", "utf8", "wire"),
    [
        ("INBOX", False, b'"INBOX"'),
        ("", False, b'""'),
        ('say "hi" \\o/', False, b'"say \\"hi\\" \\\\o/"'),
        ("two\r\nlines", False, b"{10}\r\ntwo\r\nlines"),
        ("nul\x00", False, b"{4}\r\nnul\x00"),
        ("Grüße", False, b"{7}\r\nGr\xc3\xbc\xc3\x9fe"),
        ("Grüße", True, '"Grüße"'.encode()),
        (b"\xff\xfe", True, b"{2}\r\n\xff\xfe"),  # not UTF-8: a literal even with UTF-8 on
        ("x" * 1000, False, b'"' + b"x" * 1000 + b'"'),
        ("x" * 1001, False, b"{1001}\r\n" + b"x" * 1001),
    ],
)
def test_quoted_picks_quoted_or_literal(value: str | bytes, utf8: bool, wire: bytes) -> None:
    assert R.quoted(value, utf8=utf8) == wire


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        ("INBOX", b"INBOX"),
        ("Foo]", b"Foo]"),
        ("Sent Items", b'"Sent Items"'),
        ("", b'""'),
        ("NIL", b'"NIL"'),
        ("nil", b'"nil"'),
        ("a%b", b'"a%b"'),
        ("a*", b'"a*"'),
        ("(x)", b'"(x)"'),
        ("{5}", b'"{5}"'),
        ("&AOQ-", b"&AOQ-"),
    ],
)
def test_astring(value: str, wire: bytes) -> None:
    assert R.astring(value) == wire


def test_text_that_is_not_unicode_still_goes_out() -> None:
    assert R.quoted(b"caf\xe9".decode("utf-8", "surrogateescape")) == b"{4}\r\ncaf\xe9"
    assert R.quoted("a\ud800") == b'"a?"'
    assert R.tagged("a", "NO", "bad \udcff name") == b"a NO bad \xff name\r\n"


def test_nstring_and_literals() -> None:
    assert R.nstring(None) == b"NIL"
    assert R.nstring("NIL") == b'"NIL"'
    assert R.literal(b"abc") == b"{3}\r\nabc"
    assert R.literal(b"a\x00c", binary=True) == b"~{3}\r\na\x00c"


# Strings the writer produces read back as the same string through the reader and parser.
TEXT = st.text(
    alphabet=st.one_of(
        st.characters(exclude_categories=("Cs",)), st.sampled_from('"\\\r\n\x00 ()%*{}]~+')
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(user=TEXT, password=TEXT, utf8=st.booleans())
def test_written_strings_read_back(user: str, password: str, utf8: bool) -> None:
    if "\x00" in user + password:
        return  # NUL cannot travel in an IMAP string at all (CHAR8 excludes it)
    wire = b"a LOGIN " + R.astring(user, utf8=utf8) + b" " + R.astring(password, utf8=utf8)
    events = CommandReader().feed(wire + b"\r\n")
    assert len(events) >= 1
    last = events[-1]
    assert isinstance(last, Parsed), events
    assert (last.command.user, last.command.password) == (user, password)  # type: ignore[attr-defined]


def test_status_lines() -> None:
    assert R.tagged("a1", "OK", "LOGIN completed") == b"a1 OK LOGIN completed\r\n"
    assert R.tagged("a1", "NO", "Too big", code="TOOBIG") == b"a1 NO [TOOBIG] Too big\r\n"
    assert (
        R.tagged("a2", "OK", "Done", code="COPYUID 7 1:3 10:12")
        == b"a2 OK [COPYUID 7 1:3 10:12] Done\r\n"
    )
    # Nothing a client or a message supplied can end the line early or inject a response.
    assert R.tagged("a", "BAD", "x\r\n* OK injected") == b"a BAD x * OK injected\r\n"
    assert R.tagged("a", "OK", "") == b"a OK Completed\r\n"
    assert R.untagged("5 EXISTS") == b"* 5 EXISTS\r\n"
    assert R.untagged(b"FLAGS (\\Seen)") == b"* FLAGS (\\Seen)\r\n"
    assert R.untagged_status("BYE", "Logging out") == b"* BYE Logging out\r\n"
    assert R.continuation("Ready for literal") == b"+ Ready for literal\r\n"
    assert R.continuation() == b"+ \r\n"
    assert R.continuation(b"dGVzdA==") == b"+ dGVzdA==\r\n"
    with pytest.raises(ValueError):
        R.tagged("a", "MAYBE", "x")


@pytest.mark.parametrize(
    ("request_", "label"),
    [
        (b"BODY.PEEK[1.2.HEADER.FIELDS (Subject From)]<0.100>",
         b"BODY[1.2.HEADER.FIELDS (SUBJECT FROM)]<0>"),
        (b"BODY[]", b"BODY[]"),
        (b"BODY.PEEK[]<512.1024>", b"BODY[]<512>"),
        (b"BODY[HEADER]", b"BODY[HEADER]"),
        (b"BODY[TEXT]", b"BODY[TEXT]"),
        (b"BODY[3.MIME]", b"BODY[3.MIME]"),
        (b"BODY[2]", b"BODY[2]"),
        (b'BODY[HEADER.FIELDS.NOT ("X Odd" date)]', b'BODY[HEADER.FIELDS.NOT ("X ODD" DATE)]'),
        (b"BINARY.PEEK[1]<0.10>", b"BINARY[1]<0>"),
        (b"BINARY[]", b"BINARY[]"),
        (b"BINARY.SIZE[4.1]", b"BINARY.SIZE[4.1]"),
        (b"RFC822.SIZE", b"RFC822.SIZE"),
        (b"BODY", b"BODY"),
        (b"BODYSTRUCTURE", b"BODYSTRUCTURE"),
        (b"MODSEQ", b"MODSEQ"),
        (b"uid", b"UID"),
    ],
)  # fmt: skip
def test_fetch_labels_answer_the_request(request_: bytes, label: bytes) -> None:
    command = parse_line(b"a FETCH 1 " + request_)
    assert R.fetch_label(command.atts[0]) == label  # type: ignore[attr-defined]


def test_fetch_label_of_a_hand_built_attribute() -> None:
    att = FetchAtt(kind=FetchKind.BODY_SECTION, section=Section(part=(1,), text="HEADER"))
    assert R.fetch_label(att) == b"BODY[1.HEADER]"
    assert R.fetch_label(FetchAtt(kind=FetchKind.BODY_SECTION, partial=(5, 10))) == b"BODY[]<5>"


def test_fetch_response() -> None:
    line = R.fetch_response(12, [(b"UID", b"345"), (b"FLAGS", R.format_flags({"\\Seen", "$A"}))])
    assert line == b"* 12 FETCH (UID 345 FLAGS ($A \\Seen))\r\n"
    assert R.format_flags([]) == b"()"


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime.datetime(2026, 11, 25, 23, 51, 43, tzinfo=datetime.UTC),
         b"25-Nov-2026 23:51:43 +0000"),
        (datetime.datetime(2024, 1, 5, 7, 8, 9, tzinfo=datetime.timezone(
            -datetime.timedelta(hours=3, minutes=30))), b" 5-Jan-2024 07:08:09 -0330"),
        (datetime.datetime(1999, 12, 31, 0, 0, 0, tzinfo=datetime.timezone(
            datetime.timedelta(hours=5, minutes=45))), b"31-Dec-1999 00:00:00 +0545"),
        (datetime.datetime(2000, 2, 29, 12, 0, 0), b"29-Feb-2000 12:00:00 +0000"),  # naive: UTC
    ],
)  # fmt: skip
def test_internaldate(moment: datetime.datetime, text: bytes) -> None:
    assert R.format_internaldate(moment) == text


@settings(max_examples=200, deadline=None)
@given(
    moment=st.datetimes(
        min_value=datetime.datetime(1900, 1, 1), max_value=datetime.datetime(9999, 12, 30),
        timezones=st.sampled_from([datetime.UTC, datetime.timezone(datetime.timedelta(hours=-8)),
                                   datetime.timezone(datetime.timedelta(hours=9, minutes=30))]),
    )
)  # fmt: skip
def test_internaldate_reads_back_through_append(moment: datetime.datetime) -> None:
    moment = moment.replace(microsecond=0)
    wire = b'a APPEND INBOX "' + R.format_internaldate(moment) + b'" {1+}\r\nx\r\n'
    events = CommandReader().feed(wire)
    assert isinstance(events[0], Parsed)
    parsed = events[0].command.messages[0].internal_date  # type: ignore[attr-defined]
    assert parsed == moment and parsed.utcoffset() == moment.utcoffset()


@pytest.mark.parametrize(
    ("numbers", "text"),
    [
        ([], ""),
        ([5], "5"),
        ([1, 2, 3], "1:3"),
        ([1, 2, 3, 5, 7, 8, 9, 20], "1:3,5,7:9,20"),
        ([9, 3, 2, 3, 1], "1:3,9"),
    ],
)
def test_format_seqset(numbers: list[int], text: str) -> None:
    assert R.format_seqset(numbers) == text


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(min_value=1, max_value=500), min_size=1, max_size=60))
def test_format_seqset_reads_back(numbers: set[int]) -> None:
    command = parse_line(b"a UID FETCH " + R.format_seqset(numbers).encode() + b" UID")
    seqset = command.seqset  # type: ignore[attr-defined]
    assert {n for n in range(1, 501) if seqset.contains(n, 500)} == numbers


def test_search_responses() -> None:
    assert R.search_response([]) == b"* SEARCH\r\n"
    assert R.search_response([2, 3, 5]) == b"* SEARCH 2 3 5\r\n"
    assert R.search_response([2], modseq=917) == b"* SEARCH 2 (MODSEQ 917)\r\n"
    assert R.search_response([], modseq=917) == b"* SEARCH\r\n"
    assert (
        R.esearch("a1", uid=True, minimum=1, maximum=9, all_numbers=[1, 2, 3, 9], count=4)
        == b'* ESEARCH (TAG "a1") UID MIN 1 MAX 9 ALL 1:3,9 COUNT 4\r\n'
    )
    assert R.esearch("a3", uid=True, maximum=7, modseq=12) == (
        b'* ESEARCH (TAG "a3") UID MAX 7 MODSEQ 12\r\n'
    )
    assert R.esearch("a2", uid=False, all_numbers=[], count=0) == (
        b'* ESEARCH (TAG "a2") COUNT 0\r\n'
    )


def test_list_and_status_responses() -> None:
    assert (
        R.list_response(["\\HasNoChildren", "\\Sent"], "/", "Sent Items")
        == b'* LIST (\\HasNoChildren \\Sent) "/" "Sent Items"\r\n'
    )
    assert R.list_response([], "/", "INBOX", lsub=True) == b'* LSUB () "/" INBOX\r\n'
    assert R.list_response(["\\Noselect"], None, "") == b'* LIST (\\Noselect) NIL ""\r\n'
    assert (
        R.list_response([], "/", "Work", extended=[b'("CHILDINFO" ("SUBSCRIBED"))'])
        == b'* LIST () "/" Work ("CHILDINFO" ("SUBSCRIBED"))\r\n'
    )
    assert R.list_response([], "/", "Grüße", utf8=True) == '* LIST () "/" "Grüße"\r\n'.encode()
    assert (
        R.status_response("Sent Items", [("MESSAGES", 3), ("UNSEEN", 1)])
        == b'* STATUS "Sent Items" (MESSAGES 3 UNSEEN 1)\r\n'
    )


@pytest.mark.parametrize(
    ("name", "utf8", "wire"),
    [
        ("INBOX", False, b"INBOX"),  # an atom
        ("a/b]c", False, b"a/b]c"),  # "]" is an ASTRING-CHAR
        ("Sent Items", False, b'"Sent Items"'),  # SP: quoted
        ("NIL", False, b'"NIL"'),  # an atom NIL would read as no name at all
        ("", False, b'""'),
        ("50%", False, b'"50%"'),  # list-wildcards are not ASTRING-CHARs
        ('say "hi"', False, b'"say \\"hi\\""'),
        ("☃", True, '"☃"'.encode()),  # utf8-quoted once UTF-8 is enabled
        ("☃", False, b"{3}\r\n\xe2\x98\x83"),  # else a literal (the server sends mUTF-7 anyway)
        ("a\r\nb", False, b"{4}\r\na\r\nb"),
    ],
)
def test_mailbox_names_in_status_list_and_quotaroot(name: str, utf8: bool, wire: bytes) -> None:
    assert R.status_response(name, [("MESSAGES", 1)], utf8=utf8) == (
        b"* STATUS " + wire + b" (MESSAGES 1)\r\n"
    )
    assert R.list_response(["\\HasNoChildren"], "/", name, utf8=utf8) == (
        b'* LIST (\\HasNoChildren) "/" ' + wire + b"\r\n"
    )
    assert R.quotaroot_response(name, [""], utf8=utf8) == b"* QUOTAROOT " + wire + b' ""\r\n'


def test_mailbox_data_responses() -> None:
    # FLAGS keeps the order given: system flags first, then keywords (as SELECT lists them).
    assert R.flags_response(["\\Seen", "$Forwarded"]) == b"* FLAGS (\\Seen $Forwarded)\r\n"
    assert R.exists(3) == b"* 3 EXISTS\r\n"
    assert R.recent(0) == b"* 0 RECENT\r\n"
    assert R.expunge(7) == b"* 7 EXPUNGE\r\n"
    assert R.status_response("x", []) == b"* STATUS x ()\r\n"
    assert R.quotaroot_response("INBOX", []) == b"* QUOTAROOT INBOX\r\n"
    assert R.quota_response("", [("STORAGE", 1, 4883)]) == b'* QUOTA "" (STORAGE 1 4883)\r\n'


def test_session_data_responses() -> None:
    assert R.capability_response("IMAP4rev1 IDLE") == b"* CAPABILITY IMAP4rev1 IDLE\r\n"
    assert R.enabled_response(["CONDSTORE", "IMAP4rev2"]) == b"* ENABLED CONDSTORE IMAP4rev2\r\n"
    assert R.namespace_response("/") == b'* NAMESPACE (("" "/")) NIL NIL\r\n'
    assert R.id_response([("name", "mailfort"), ("version", "1.0")]) == (
        b'* ID ("name" "mailfort" "version" "1.0")\r\n'
    )
    assert R.id_response([]) == b"* ID NIL\r\n"


def test_fetch_response_of_nothing_and_of_a_large_value() -> None:
    assert R.fetch_response(1, []) == b"* 1 FETCH ()\r\n"
    body = b"x" * 300_000
    assert R.fetch_response(2, [(b"UID", b"9"), (b"BODY[]", b"{300000}\r\n" + body)]) == (
        b"* 2 FETCH (UID 9 BODY[] {300000}\r\n" + body + b")\r\n"
    )
