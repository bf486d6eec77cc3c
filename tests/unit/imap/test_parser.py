"""The command grammar: every command form mailfort serves, as real clients send them."""

from __future__ import annotations

import datetime

import pytest

from mailfort.protocol.imap import commands as C
from mailfort.protocol.imap.commands import FetchAtt, FetchKind, SearchKey, Section
from mailfort.protocol.imap.parser import ProtocolError, check_prefix, parse_command, parse_line
from tests.unit.imap.helpers import command_of

STAR = None


def seq(*ranges: tuple[int | None, int | None] | int | None) -> C.SequenceSet:
    out = []
    for r in ranges:
        start, end = r if isinstance(r, tuple) else (r, r)
        out.append(C.SeqRange(start=start, end=end))
    return C.SequenceSet(ranges=tuple(out))


def att(kind: FetchKind, **kw: object) -> FetchAtt:
    return FetchAtt(kind=kind, **kw)  # type: ignore[arg-type]


def body(
    part: tuple[int, ...] = (),
    text: str | None = None,
    fields: tuple[str, ...] = (),
    *,
    peek: bool = False,
    partial: tuple[int, int] | None = None,
) -> FetchAtt:
    section = Section(part=part, text=text, fields=fields)
    return FetchAtt(kind=FetchKind.BODY_SECTION, section=section, peek=peek, partial=partial)


def key(name: str, **kw: object) -> SearchKey:
    return SearchKey(name=name, **kw)  # type: ignore[arg-type]


def AND(*children: SearchKey) -> SearchKey:
    return SearchKey(name="AND", children=children)


FLAGS, UID, SIZE = att(FetchKind.FLAGS), att(FetchKind.UID), att(FetchKind.RFC822_SIZE)
THUNDERBIRD_FIELDS = (
    "FROM",
    "TO",
    "CC",
    "BCC",
    "SUBJECT",
    "DATE",
    "MESSAGE-ID",
    "PRIORITY",
    "X-PRIORITY",
    "REFERENCES",
    "NEWSGROUPS",
    "IN-REPLY-TO",
    "CONTENT-TYPE",
    "REPLY-TO",
)

CASES: list[tuple[bytes, C.Command]] = [
    # -- any state
    (b"a1 CAPABILITY", C.Capability(tag="a1", name="CAPABILITY")),
    (b"a1 capability", C.Capability(tag="a1", name="CAPABILITY")),
    (b"a] NOOP", C.Noop(tag="a]", name="NOOP")),  # "]" is an ASTRING-CHAR, fine in a tag
    (b"A001 LOGOUT", C.Logout(tag="A001", name="LOGOUT")),
    (b"a STARTTLS", C.StartTLS(tag="a", name="STARTTLS")),
    (b"a ID NIL", C.Id(tag="a", name="ID", params=None)),
    (
        b'a ID ("name" "Thunderbird" "version" "115.3.1" "os" NIL)',
        C.Id(tag="a", name="ID", params={"name": "Thunderbird", "version": "115.3.1", "os": None}),
    ),
    (b"a ID ()", C.Id(tag="a", name="ID", params={})),
    # -- authentication
    (
        b"a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==",
        C.Authenticate(tag="a", name="AUTHENTICATE", mechanism="PLAIN", initial=b"\0alice\0secret"),
    ),
    (b"a authenticate plain", C.Authenticate(tag="a", name="AUTHENTICATE", mechanism="PLAIN")),
    (
        b"a AUTHENTICATE PLAIN =",
        C.Authenticate(tag="a", name="AUTHENTICATE", mechanism="PLAIN", initial=b""),
    ),
    (b"a LOGIN alice secret", C.Login(tag="a", name="LOGIN", user="alice", password="secret")),
    (
        b'a LOGIN "alice@example.test" "p\\"ss\\\\word"',
        C.Login(tag="a", name="LOGIN", user="alice@example.test", password='p"ss\\word'),
    ),
    (
        'a LOGIN "jürgen" "pässwörd"'.encode(),
        C.Login(tag="a", name="LOGIN", user="jürgen", password="pässwörd"),
    ),
    (
        b"a ENABLE CONDSTORE utf8=accept",
        C.Enable(tag="a", name="ENABLE", capabilities=("CONDSTORE", "UTF8=ACCEPT")),
    ),
    # -- mailboxes
    (b"a SELECT inbox", C.Select(tag="a", name="SELECT", mailbox="INBOX")),
    (b'a SELECT "INBOX"', C.Select(tag="a", name="SELECT", mailbox="INBOX")),
    (b"a SELECT Inbox/Sub", C.Select(tag="a", name="SELECT", mailbox="Inbox/Sub")),
    (
        b"a EXAMINE Archive (CONDSTORE)",
        C.Select(tag="a", name="EXAMINE", mailbox="Archive", readonly=True, condstore=True),
    ),
    (
        b'a SELECT "Sent Items" (condstore)',
        C.Select(tag="a", name="SELECT", mailbox="Sent Items", condstore=True),
    ),
    (b"a CREATE Work", C.Create(tag="a", name="CREATE", mailbox="Work")),
    (
        b"a CREATE MyDrafts (USE (\\drafts \\Sent))",
        C.Create(tag="a", name="CREATE", mailbox="MyDrafts", special_use=("\\Drafts", "\\Sent")),
    ),
    (b'a DELETE "Old stuff"', C.Delete(tag="a", name="DELETE", mailbox="Old stuff")),
    (b"a RENAME INBOX Archived", C.Rename(tag="a", name="RENAME", old="INBOX", new="Archived")),
    (b"a SUBSCRIBE Work", C.Subscribe(tag="a", name="SUBSCRIBE", mailbox="Work")),
    (
        b"a UNSUBSCRIBE Work",
        C.Subscribe(tag="a", name="UNSUBSCRIBE", mailbox="Work", subscribe=False),
    ),
    (b'a LIST "" *', C.ListCmd(tag="a", name="LIST", reference="", patterns=("*",))),
    (b'a LIST "" ""', C.ListCmd(tag="a", name="LIST", reference="", patterns=("",))),
    (b"a LIST ~/Mail/ %", C.ListCmd(tag="a", name="LIST", reference="~/Mail/", patterns=("%",))),
    (
        b'a LIST "" "INBOX.Sent Items.*"',
        C.ListCmd(tag="a", name="LIST", reference="", patterns=("INBOX.Sent Items.*",)),
    ),
    (
        b'a LIST "" Foo]%',  # list-char includes resp-specials
        C.ListCmd(tag="a", name="LIST", reference="", patterns=("Foo]%",)),
    ),
    (
        b'a LIST (SUBSCRIBED RECURSIVEMATCH) "" (INBOX "Work/*") '
        b"RETURN (CHILDREN SPECIAL-USE STATUS (MESSAGES UNSEEN SIZE))",
        C.ListCmd(
            tag="a",
            name="LIST",
            reference="",
            patterns=("INBOX", "Work/*"),
            select_options=("SUBSCRIBED", "RECURSIVEMATCH"),
            return_options=("CHILDREN", "SPECIAL-USE"),
            status_items=("MESSAGES", "UNSEEN", "SIZE"),
            extended=True,
        ),
    ),
    (
        b'a LIST () "" %',
        C.ListCmd(tag="a", name="LIST", reference="", patterns=("%",), extended=True),
    ),
    (
        b'a LIST (SPECIAL-USE) "" * RETURN ()',
        C.ListCmd(
            tag="a",
            name="LIST",
            reference="",
            patterns=("*",),
            select_options=("SPECIAL-USE",),
            extended=True,
        ),
    ),
    (
        b'a LIST "" % RETURN (STATUS (MESSAGES) SUBSCRIBED)',
        C.ListCmd(
            tag="a",
            name="LIST",
            reference="",
            patterns=("%",),
            return_options=("SUBSCRIBED",),
            status_items=("MESSAGES",),
            extended=True,
        ),
    ),
    (
        b'a LSUB "" *',
        C.ListCmd(tag="a", name="LSUB", reference="", patterns=("*",), lsub=True),
    ),
    (b"a NAMESPACE", C.Namespace(tag="a", name="NAMESPACE")),
    (
        b"a STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT SIZE HIGHESTMODSEQ)",
        C.Status(
            tag="a",
            name="STATUS",
            mailbox="INBOX",
            items=(
                "MESSAGES",
                "UIDNEXT",
                "UIDVALIDITY",
                "UNSEEN",
                "RECENT",
                "SIZE",
                "HIGHESTMODSEQ",
            ),
        ),
    ),
    (
        b"a status work (unseen)",
        C.Status(tag="a", name="STATUS", mailbox="work", items=("UNSEEN",)),
    ),
    # -- selected state
    (b"a CHECK", C.Check(tag="a", name="CHECK")),
    (b"a CLOSE", C.Close(tag="a", name="CLOSE")),
    (b"a UNSELECT", C.Unselect(tag="a", name="UNSELECT")),
    (b"a EXPUNGE", C.Expunge(tag="a", name="EXPUNGE")),
    (b"a UID EXPUNGE 3:5,9", C.Expunge(tag="a", name="EXPUNGE", uid=True, seqset=seq((3, 5), 9))),
    (b"a IDLE", C.Idle(tag="a", name="IDLE")),
    (b"a COPY 1:3 Trash", C.Copy(tag="a", name="COPY", seqset=seq((1, 3)), mailbox="Trash")),
    (
        b'a UID MOVE 42,44:* "Deleted Items"',
        C.Copy(
            tag="a",
            name="MOVE",
            uid=True,
            seqset=seq(42, (44, STAR)),
            mailbox="Deleted Items",
            move=True,
        ),
    ),
    (
        b"a UID COPY $ INBOX",
        C.Copy(tag="a", name="COPY", uid=True, seqset=C.SequenceSet(saved=True), mailbox="INBOX"),
    ),
    # -- FETCH, as real clients send it
    (
        b"a1 UID fetch 1:* (FLAGS)",
        C.Fetch(tag="a1", name="FETCH", uid=True, seqset=seq((1, STAR)), atts=(FLAGS,)),
    ),
    (
        b"5 uid FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject"
        b" Date Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type"
        b" Reply-To)])",
        C.Fetch(
            tag="5",
            name="FETCH",
            uid=True,
            seqset=seq((1, STAR)),
            atts=(
                UID,
                SIZE,
                FLAGS,
                body(text="HEADER.FIELDS", fields=THUNDERBIRD_FIELDS, peek=True),
            ),
        ),
    ),
    (
        b"a UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12)",  # Apple Mail
        C.Fetch(
            tag="a", name="FETCH", uid=True, seqset=seq((1, STAR)), atts=(FLAGS,), changed_since=12
        ),
    ),
    (
        b"4 UID FETCH 1:* (UID FLAGS)",  # mbsync
        C.Fetch(tag="4", name="FETCH", uid=True, seqset=seq((1, STAR)), atts=(UID, FLAGS)),
    ),
    (
        b"a FETCH 1:5,7 ALL",
        C.Fetch(
            tag="a",
            name="FETCH",
            seqset=seq((1, 5), 7),
            atts=(FLAGS, att(FetchKind.INTERNALDATE), SIZE, att(FetchKind.ENVELOPE)),
        ),
    ),
    (
        b"a FETCH 1 fast",
        C.Fetch(
            tag="a", name="FETCH", seqset=seq(1), atts=(FLAGS, att(FetchKind.INTERNALDATE), SIZE)
        ),
    ),
    (
        b"a FETCH * FULL",
        C.Fetch(
            tag="a",
            name="FETCH",
            seqset=seq(STAR),
            atts=(
                FLAGS,
                att(FetchKind.INTERNALDATE),
                SIZE,
                att(FetchKind.ENVELOPE),
                att(FetchKind.BODY),
            ),
        ),
    ),
    (b"a FETCH 2 BODY[]", C.Fetch(tag="a", name="FETCH", seqset=seq(2), atts=(body(),))),
    (b"a FETCH 2 body", C.Fetch(tag="a", name="FETCH", seqset=seq(2), atts=(att(FetchKind.BODY),))),
    (
        b"a FETCH 2 (BODY.PEEK[]<0.2048> BODYSTRUCTURE ENVELOPE INTERNALDATE MODSEQ)",
        C.Fetch(
            tag="a",
            name="FETCH",
            seqset=seq(2),
            atts=(
                body(peek=True, partial=(0, 2048)),
                att(FetchKind.BODYSTRUCTURE),
                att(FetchKind.ENVELOPE),
                att(FetchKind.INTERNALDATE),
                att(FetchKind.MODSEQ),
            ),
        ),
    ),
    (
        b"a FETCH 3 (BODY[1.2.HEADER.FIELDS.NOT (Received)] BODY[1.2.MIME] BODY[2.TEXT] BODY[3])",
        C.Fetch(
            tag="a",
            name="FETCH",
            seqset=seq(3),
            atts=(
                body((1, 2), "HEADER.FIELDS.NOT", ("RECEIVED",)),
                body((1, 2), "MIME"),
                body((2,), "TEXT"),
                body((3,)),
            ),
        ),
    ),
    (
        b"a FETCH 3 (BODY[HEADER] BODY[TEXT] BODY[4.1.HEADER] RFC822 RFC822.HEADER RFC822.TEXT)",
        C.Fetch(
            tag="a",
            name="FETCH",
            seqset=seq(3),
            atts=(
                body(text="HEADER"),
                body(text="TEXT"),
                body((4, 1), "HEADER"),
                att(FetchKind.RFC822),
                att(FetchKind.RFC822_HEADER),
                att(FetchKind.RFC822_TEXT),
            ),
        ),
    ),
    (
        b"a UID FETCH 7 (BINARY.PEEK[1]<100.200> BINARY[] BINARY.SIZE[2])",
        C.Fetch(
            tag="a",
            name="FETCH",
            uid=True,
            seqset=seq(7),
            atts=(
                att(FetchKind.BINARY, section=Section(part=(1,)), partial=(100, 200), peek=True),
                att(FetchKind.BINARY, section=Section()),
                att(FetchKind.BINARY_SIZE, section=Section(part=(2,))),
            ),
        ),
    ),
    (
        b"a FETCH $ UID",
        C.Fetch(tag="a", name="FETCH", seqset=C.SequenceSet(saved=True), atts=(UID,)),
    ),
    (
        b"a FETCH 4294967295:1 FLAGS",
        C.Fetch(tag="a", name="FETCH", seqset=seq((4294967295, 1)), atts=(FLAGS,)),
    ),
    # -- STORE
    (
        b"a STORE 1:3 +FLAGS (\\Deleted)",
        C.StoreCmd(
            tag="a",
            name="STORE",
            seqset=seq((1, 3)),
            mode=C.StoreMode.ADD,
            silent=False,
            flags=("\\Deleted",),
        ),
    ),
    (
        b"a UID STORE 9 -FLAGS.SILENT (\\seen $Junk)",
        C.StoreCmd(
            tag="a",
            name="STORE",
            uid=True,
            seqset=seq(9),
            mode=C.StoreMode.REMOVE,
            silent=True,
            flags=("\\Seen", "$Junk"),
        ),
    ),
    (
        b"a STORE 2 FLAGS ()",
        C.StoreCmd(
            tag="a", name="STORE", seqset=seq(2), mode=C.StoreMode.REPLACE, silent=False, flags=()
        ),
    ),
    (
        b"a STORE 2 +flags \\Answered \\Flagged",
        C.StoreCmd(
            tag="a",
            name="STORE",
            seqset=seq(2),
            mode=C.StoreMode.ADD,
            silent=False,
            flags=("\\Answered", "\\Flagged"),
        ),
    ),
    (
        b"a UID STORE 1:* (UNCHANGEDSINCE 0) FLAGS.SILENT (\\Draft)",
        C.StoreCmd(
            tag="a",
            name="STORE",
            uid=True,
            seqset=seq((1, STAR)),
            mode=C.StoreMode.REPLACE,
            silent=True,
            flags=("\\Draft",),
            unchanged_since=0,
        ),
    ),
    # -- SEARCH
    (
        b"a SEARCH ALL",
        C.Search(tag="a", name="SEARCH", keys=AND(key("ALL"))),
    ),
    (
        b"a UID SEARCH UID 1:* NOT DELETED",
        C.Search(
            tag="a",
            name="SEARCH",
            uid=True,
            keys=AND(key("UID", seqset=seq((1, STAR))), key("NOT", children=(key("DELETED"),))),
        ),
    ),
    (
        b'a SEARCH CHARSET UTF-8 OR (FROM alice SUBJECT "hi there") TO bob',
        C.Search(
            tag="a",
            name="SEARCH",
            charset="UTF-8",
            keys=AND(
                key(
                    "OR",
                    children=(
                        AND(key("FROM", text="alice"), key("SUBJECT", text="hi there")),
                        key("TO", text="bob"),
                    ),
                )
            ),
        ),
    ),
    (
        b"a SEARCH RETURN (MIN MAX COUNT ALL SAVE) UNSEEN",
        C.Search(
            tag="a",
            name="SEARCH",
            keys=AND(key("UNSEEN")),
            return_options=("MIN", "MAX", "COUNT", "ALL", "SAVE"),
        ),
    ),
    (
        b"a SEARCH RETURN () 1:10",
        C.Search(
            tag="a",
            name="SEARCH",
            keys=AND(key("SEQSET", seqset=seq((1, 10)))),
            return_options=(),
        ),
    ),
    (
        b'a SEARCH SINCE 1-Feb-2024 BEFORE "15-mar-2024" SENTON 9-Jan-2020 ON 29-Feb-2024 '
        b"SENTBEFORE 1-Jan-2000 SENTSINCE 31-Dec-1999",
        C.Search(
            tag="a",
            name="SEARCH",
            keys=AND(
                key("SINCE", date=datetime.date(2024, 2, 1)),
                key("BEFORE", date=datetime.date(2024, 3, 15)),
                key("SENTON", date=datetime.date(2020, 1, 9)),
                key("ON", date=datetime.date(2024, 2, 29)),
                key("SENTBEFORE", date=datetime.date(2000, 1, 1)),
                key("SENTSINCE", date=datetime.date(1999, 12, 31)),
            ),
        ),
    ),
    (
        b'a SEARCH LARGER 1000 SMALLER 50000 HEADER X-Mailer "Mutt" KEYWORD $Forwarded '
        b"UNKEYWORD $Junk BODY x TEXT y CC c BCC d",
        C.Search(
            tag="a",
            name="SEARCH",
            keys=AND(
                key("LARGER", number=1000),
                key("SMALLER", number=50000),
                key("HEADER", header="X-Mailer", text="Mutt"),
                key("KEYWORD", text="$Forwarded"),
                key("UNKEYWORD", text="$Junk"),
                key("BODY", text="x"),
                key("TEXT", text="y"),
                key("CC", text="c"),
                key("BCC", text="d"),
            ),
        ),
    ),
    (
        b"a SEARCH ANSWERED DELETED DRAFT FLAGGED NEW OLD RECENT SEEN UNANSWERED UNDELETED "
        b"UNDRAFT UNFLAGGED UNSEEN",
        C.Search(
            tag="a",
            name="SEARCH",
            keys=AND(
                *(
                    key(n)
                    for n in (
                        "ANSWERED",
                        "DELETED",
                        "DRAFT",
                        "FLAGGED",
                        "NEW",
                        "OLD",
                        "RECENT",
                        "SEEN",
                        "UNANSWERED",
                        "UNDELETED",
                        "UNDRAFT",
                        "UNFLAGGED",
                        "UNSEEN",
                    )
                )
            ),
        ),
    ),
    (
        b'a SEARCH MODSEQ 620162338 MODSEQ "/flags/\\\\draft" all 5',
        C.Search(
            tag="a",
            name="SEARCH",
            keys=AND(key("MODSEQ", number=620162338), key("MODSEQ", number=5)),
        ),
    ),
    (
        b"a UID SEARCH $ SEEN",
        C.Search(
            tag="a",
            name="SEARCH",
            uid=True,
            keys=AND(key("SEQSET", seqset=C.SequenceSet(saved=True)), key("SEEN")),
        ),
    ),
    (
        b'a SEARCH CHARSET ISO-8859-1 SUBJECT "caf\xe9"',
        C.Search(
            tag="a",
            name="SEARCH",
            charset="ISO-8859-1",
            keys=AND(key("SUBJECT", text="café")),  # Latin-1 keeps the octet for the server
        ),
    ),
    # -- APPEND (literals in test_append_*), quota
    (b"a GETQUOTAROOT INBOX", C.GetQuotaRoot(tag="a", name="GETQUOTAROOT", mailbox="INBOX")),
    (b'a GETQUOTA ""', C.GetQuota(tag="a", name="GETQUOTA", root="")),
    (
        b'a SETQUOTA "" (STORAGE 512 message 1000)',
        C.SetQuota(tag="a", name="SETQUOTA", root="", limits=(("STORAGE", 512), ("MESSAGE", 1000))),
    ),
]


@pytest.mark.parametrize(("line", "expected"), CASES)
def test_parses(line: bytes, expected: C.Command) -> None:
    assert parse_line(line) == expected


@pytest.mark.parametrize(("line", "expected"), CASES)
def test_the_reader_gives_the_same(line: bytes, expected: C.Command) -> None:
    assert command_of(line + b"\r\n") == expected


def test_id_params_compare_as_a_dict() -> None:
    command = parse_line(b'a ID ("name" "K-9 Mail" "version" "6.4")')
    assert isinstance(command, C.Id)
    assert command.params == {"name": "K-9 Mail", "version": "6.4"}


# -- literals ------------------------------------------------------------------------------------
def test_append_with_flags_date_and_literal_plus() -> None:
    message = b"From: a@example.test\r\nSubject: hi\r\n\r\nbody\r\n"
    wire = b'A3 APPEND "INBOX" (\\Seen) "25-Nov-2026 23:51:43 +0100" {%d+}\r\n%s\r\n' % (
        len(message),
        message,
    )
    assert command_of(wire) == C.Append(
        tag="A3",
        name="APPEND",
        mailbox="INBOX",
        messages=(
            C.AppendMessage(
                flags=("\\Seen",),
                internal_date=datetime.datetime(
                    2026, 11, 25, 23, 51, 43, tzinfo=datetime.timezone(datetime.timedelta(hours=1))
                ),
                data=message,
            ),
        ),
    )


def test_append_310_plus_like_a_mobile_client() -> None:
    message = b"x" * 310
    command = command_of(b'APP1 APPEND "INBOX" (\\Seen) {310+}\r\n' + message + b"\r\n")
    assert isinstance(command, C.Append)
    assert command.messages == (C.AppendMessage(flags=("\\Seen",), data=message),)


def test_append_space_padded_day_and_negative_zone() -> None:
    command = command_of(b'a APPEND Drafts " 5-Jan-2024 07:08:09 -0330" {1+}\r\nx\r\n')
    assert isinstance(command, C.Append)
    when = command.messages[0].internal_date
    assert when == datetime.datetime(
        2024, 1, 5, 7, 8, 9, tzinfo=datetime.timezone(-datetime.timedelta(hours=3, minutes=30))
    )


def test_multiappend_and_literal8() -> None:
    wire = b"a APPEND Work {3+}\r\none (\\Flagged) ~{4+}\r\nt\x00wo {0+}\r\n\r\n"
    command = command_of(wire)
    assert command == C.Append(
        tag="a",
        name="APPEND",
        mailbox="Work",
        messages=(
            C.AppendMessage(data=b"one"),
            C.AppendMessage(flags=("\\Flagged",), data=b"t\x00wo", binary=True),
            C.AppendMessage(data=b""),
        ),
    )


def test_login_with_literals() -> None:
    command = command_of(b'a LOGIN {5+}\r\nalice {8+}\r\nse cr"t!\r\n')
    assert command == C.Login(tag="a", name="LOGIN", user="alice", password='se cr"t!')


def test_literal_inside_header_list() -> None:
    command = command_of(b'a FETCH 1 BODY.PEEK[HEADER.FIELDS ("x-spam" {4+}\r\nDate)]\r\n')
    assert command == C.Fetch(
        tag="a",
        name="FETCH",
        seqset=seq(1),
        atts=(body(text="HEADER.FIELDS", fields=("X-SPAM", "DATE"), peek=True),),
    )


def test_search_with_literal_utf8_argument() -> None:
    text = "Grüße".encode()
    wire = b"a SEARCH CHARSET UTF-8 SUBJECT {%d+}\r\n%s\r\n" % (len(text), text)
    command = command_of(wire)
    assert isinstance(command, C.Search)
    assert command.keys == AND(key("SUBJECT", text="Grüße"))


def test_parse_command_segments_directly() -> None:
    command = parse_command([b"a LOGIN {5}", b" {3}", b""], [b"alice", b"pw!"])
    assert command == C.Login(tag="a", name="LOGIN", user="alice", password="pw!")


# -- errors --------------------------------------------------------------------------------------
BAD: list[tuple[bytes, str | None]] = [
    (b"", None),
    (b" NOOP", None),
    (b"a+b NOOP", None),  # "+" is not allowed in a tag
    (b"* NOOP", None),
    (b"a", "a"),
    (b"a FROB", "a"),
    (b"a UID NOOP", "a"),
    (b"a NOOP extra", "a"),
    (b"a  NOOP", "a"),
    (b"a NOOP ", "a"),
    (b"a LOGIN alice", "a"),
    (b'a LOGIN alice "unterminated', "a"),
    (b'a LOGIN alice "bad\\escape"', "a"),
    (b"a LOGIN alice \xff\xfe", "a"),
    (b'a LOGIN alice "\xff"', "a"),  # not UTF-8
    (b"a SELECT", "a"),
    (b"a SELECT INBOX (QRESYNC (1 2))", "a"),
    (b"a CREATE x (FOO)", "a"),
    (b"a CREATE x (USE (Drafts))", "a"),
    (b"a ENABLE", "a"),
    (b"a FETCH 0 FLAGS", "a"),
    (b"a FETCH 1: FLAGS", "a"),
    (b"a FETCH 1,,2 FLAGS", "a"),
    (b"a FETCH 4294967296 FLAGS", "a"),
    (b"a FETCH 1 ()", "a"),
    (b"a FETCH 1 (ALL)", "a"),  # macros stand alone
    (b"a FETCH 1 BODY.PEEK", "a"),
    (b"a FETCH 1 BODY[MIME]", "a"),  # MIME needs a part
    (b"a FETCH 1 BODY[1.]", "a"),
    (b"a FETCH 1 BODY[0]", "a"),
    (b"a FETCH 1 BODY[HEADER.FIELDS]", "a"),
    (b"a FETCH 1 BODY[HEADER.FIELDS ()]", "a"),
    (b"a FETCH 1 BODY[]<5>", "a"),
    (b"a FETCH 1 BODY[]<5.0>", "a"),
    (b"a FETCH 1 BINARY[HEADER]", "a"),
    (b"a FETCH 1 BINARY.SIZE", "a"),
    (b"a FETCH 1 RFC822.FOO", "a"),
    (b"a FETCH 1 FLAGS (CHANGEDSINCE)", "a"),
    (b"a FETCH 1 FLAGS (VANISHED)", "a"),
    (b"a FETCH 1 FLAGS (CHANGEDSINCE 1 CHANGEDSINCE 2)", "a"),
    (b"a FETCH 1 FLAGS (CHANGEDSINCE 9223372036854775808)", "a"),
    (b"a STORE 1 FLAGS", "a"),
    (b"a STORE 1 +FLAGZ (\\Seen)", "a"),
    (b"a STORE 1 *FLAGS (\\Seen)", "a"),
    (b"a STORE 1 (UNCHANGEDSINCE) FLAGS (\\Seen)", "a"),
    (b"a STORE 1 FLAGS (\\Seen", "a"),
    (b"a SEARCH", "a"),
    (b"a SEARCH FOO", "a"),
    (b"a SEARCH OR SEEN", "a"),
    (b"a SEARCH (SEEN", "a"),
    (b"a SEARCH ()", "a"),
    (b"a SEARCH SINCE 31-Feb-2024", "a"),
    (b"a SEARCH SINCE 1-Foo-2024", "a"),
    (b"a SEARCH SINCE 2024-01-01", "a"),
    (b"a SEARCH RETURN (FOO) ALL", "a"),
    (b"a SEARCH CHARSET", "a"),
    (b"a SEARCH " + b"NOT " * 100 + b"SEEN", "a"),  # nesting bound, not a RecursionError
    (b"a SEARCH " + b"(" * 100 + b"SEEN" + b")" * 100, "a"),
    (b'a SEARCH MODSEQ "/flags/\\\\seen" sometimes 5', "a"),
    (b"a LIST", "a"),
    (b'a LIST (RECURSIVEMATCH) "" *', "a"),
    (b'a LIST (FOO) "" *', "a"),
    (b'a LIST "" * RETURN (FOO)', "a"),
    (b'a LIST "" * RETURN (STATUS (FOO))', "a"),
    (b'a LIST "" * RETURN (STATUS ())', "a"),
    (b'a LIST "" ()', "a"),
    (b'a LIST "" * FOO', "a"),
    (b"a STATUS INBOX ()", "a"),
    (b"a STATUS INBOX (MESSAGES BOGUS)", "a"),
    (b"a APPEND INBOX", "a"),
    (b'a APPEND INBOX "32-Jan-2024 00:00:00 +0000" {1}', "a"),
    (b'a APPEND INBOX "1-Jan-2024 00:00:00 +0099" {1}', "a"),
    (b"a AUTHENTICATE", "a"),
    (b"a AUTHENTICATE PLAIN AGFsaWNl!", "a"),
    (b"a AUTHENTICATE PLAIN AGFsaWN", "a"),  # bad padding
    (b"a AUTHENTICATE PLAIN ==", "a"),
    (b"a ID", "a"),
    (b'a ID ("name")', "a"),
    (b"a ID (name value", "a"),
    (b"a SETQUOTA x (STORAGE)", "a"),
    (b"a GETQUOTA", "a"),
    (b"a COPY 1", "a"),
    (b"a UID EXPUNGE", "a"),
    (b"a LOGIN {5}", "a"),  # a literal marker without its literal
    (b"a LOGIN {3}x y", "a"),  # a literal marker must end its line
    (b"a SELECT INBOX (FOO)", "a"),
    (b"a STORE 1 (FOO 1) FLAGS (\\Seen)", "a"),
    (b'a APPEND INBOX "2024-01-01 00:00:00" {1}', "a"),
    (b"a ID FOO", "a"),
]


@pytest.mark.parametrize(("line", "tag"), BAD)
def test_malformed_is_a_protocol_error_with_the_tag(line: bytes, tag: str | None) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_line(line)
    assert caught.value.tag == tag
    assert caught.value.text


def test_nul_in_a_string_literal_is_refused() -> None:
    with pytest.raises(ProtocolError):
        parse_command([b"a LOGIN {3}", b" x"], [b"a\x00b"])


def test_literal8_only_for_append() -> None:
    with pytest.raises(ProtocolError):
        parse_command([b"a LOGIN ~{3}", b" x"], [b"abc"])


def test_unknown_search_key_is_named() -> None:
    with pytest.raises(ProtocolError, match="Unknown search key FOO"):
        parse_line(b"a SEARCH FOO")


def test_no_segments() -> None:
    with pytest.raises(ProtocolError):
        parse_command([], [])


def test_literal_length_must_match() -> None:
    with pytest.raises(ProtocolError):
        parse_command([b"a LOGIN {3}", b" x"], [b"ab"])


def test_check_prefix() -> None:
    assert check_prefix(b"a17 APPEND INBOX {5}") == "a17"
    assert check_prefix(b"a17 uid fetch 1 {5}") == "a17"
    with pytest.raises(ProtocolError) as caught:
        check_prefix(b"a17 XAPPEND INBOX {5}")
    assert caught.value.tag == "a17"
    with pytest.raises(ProtocolError) as caught:
        check_prefix(b"a+ APPEND INBOX {5}")
    assert caught.value.tag is None


def test_error_text_quotes_a_client_word_only_briefly() -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_line(b"a " + b"X" * 5000)
    assert len(caught.value.text) < 80
