"""IMAP message commands against a real node with imaplib, and raw sockets where the exact bytes
matter: APPEND (MULTIAPPEND, APPENDUID), FETCH of every data item, STORE, COPY/MOVE (COPYUID),
EXPUNGE, SEARCH and ESEARCH, CONDSTORE, IDLE, QUOTA.
"""

from __future__ import annotations

import calendar
import imaplib
import re
import time
from collections.abc import Iterator

import pytest

from tests.conftest import PASSWORD, RawImap, deliver, imaps
from tests.nodeproc import NodeProcess

pytestmark = pytest.mark.usefixtures("no_tracebacks")

ALICE = "alice@example.test"
BOB = "bob@example.test"

MULTIPART = (
    b'From: "Ann Example" <ann@a.test>\r\n'
    b'To: bob@example.test, "Carl" <carl@c.test>\r\n'
    b"Cc: dora@d.test\r\n"
    b"Subject: =?utf-8?q?caf=C3=A9?=\r\n"
    b"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
    b"Message-ID: <m1@a.test>\r\n"
    b"In-Reply-To: <m0@a.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"\r\n"
    b"preamble\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"caf\xc3\xa9 cr\xc3\xa8me\r\n"
    b"--b1\r\n"
    b'Content-Type: application/octet-stream; name="data.bin"\r\n'
    b'Content-Disposition: attachment; filename="data.bin"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"AAECAwQFBgcICQ==\r\n"
    b"--b1--\r\n"
)


def simple(subject: str, body: str = "hello\r\n", sender: str = "x@remote.test") -> bytes:
    head = f"From: {sender}\r\nTo: {BOB}\r\nSubject: {subject}\r\n"
    return (head + "\r\n" + body).encode()


def fresh_box(client: imaplib.IMAP4, name: str, messages: list[bytes]) -> None:
    """Create mailbox `name` holding `messages` (UIDs 1..n) and select it."""
    assert client.create(name)[0] == "OK"
    for data in messages:
        assert client.append(name, "", None, data)[0] == "OK"
    assert client.select(name)[0] == "OK"


def fetch_one(raw: RawImap, command: str) -> bytes:
    """The single `* n FETCH` response of `command`, checking it completed OK."""
    untagged, done = raw.command(command)
    assert done.startswith(b"a OK"), (command, done)
    fetches = [r for r in untagged if re.match(rb"\* \d+ FETCH ", r)]
    assert len(fetches) == 1, untagged
    return fetches[0]


def lit(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data


def search(client: imaplib.IMAP4, *criteria: str, charset: str | None = None) -> list[int]:
    typ, data = client.search(charset, *criteria)
    assert typ == "OK", (criteria, data)
    return [int(n) for n in data[0].split()]


# -- APPEND ------------------------------------------------------------------------------------
def test_append_with_flags_internal_date_and_appenduid(node: NodeProcess) -> None:
    client = imaps(node)
    assert client.create("Appended")[0] == "OK"
    when = imaplib.Time2Internaldate(time.mktime((2024, 2, 1, 12, 34, 56, 0, 0, -1)))
    typ, data = client.append("Appended", "(\\Seen $Work)", when, simple("appended"))
    assert typ == "OK"
    m = re.match(rb"\[APPENDUID (\d+) (\d+)\]", data[0])
    assert m, data
    uidvalidity, uid = int(m[1]), int(m[2])
    typ, data = client.status("Appended", "(UIDVALIDITY UIDNEXT MESSAGES)")
    assert f"UIDVALIDITY {uidvalidity} UIDNEXT {uid + 1} MESSAGES 1".encode() in data[0]
    client.select("Appended")
    typ, data = client.uid("FETCH", str(uid), "(FLAGS INTERNALDATE)")
    assert b"FLAGS ($Work \\Seen)" in data[0]
    stamp = imaplib.Internaldate2tuple(data[0])
    assert stamp is not None
    assert time.mktime(stamp) == time.mktime((2024, 2, 1, 12, 34, 56, 0, 0, -1))
    assert node.inbox(ALICE, "Appended") == [simple("appended")]
    # To a mailbox that does not exist: NO [TRYCREATE] (RFC 9051 6.3.12).
    typ, data = client.append("Missing", "", None, simple("lost"))
    assert typ == "NO" and b"TRYCREATE" in data[0]
    client.logout()


def test_multiappend_with_synchronizing_and_nonsynchronizing_literals(node: NodeProcess) -> None:
    first, second, third = simple("multi one"), simple("multi two"), simple("multi three")
    with RawImap(node.ports["imaps"]) as raw:
        raw.login()
        raw.command("CREATE Multi")
        raw.send(b"a APPEND Multi (\\Flagged) {%d}\r\n" % len(first))
        assert raw.response().startswith(b"+ ")
        raw.send(first + b' "05-Mar-2023 08:00:00 +0000" {%d}\r\n' % len(second))
        assert raw.response().startswith(b"+ ")
        # LITERAL+ (RFC 7888): the client does not wait for a continuation.
        raw.send(second + b" () {%d+}\r\n" % len(third) + third + b"\r\n")
        untagged, done = raw.until_tagged("a")
        assert untagged == []
        m = re.match(rb"a OK \[APPENDUID \d+ (\S+)\]", done)
        assert m and m[1] == b"1:3", done
        raw.command("SELECT Multi")
        line = fetch_one(raw, "FETCH 2 (FLAGS INTERNALDATE)")
        assert b'INTERNALDATE " 5-Mar-2023 08:00:00 +0000"' in line
        assert b"FLAGS ()" in line
    assert node.inbox(ALICE, "Multi") == [first, second, third]
    # A failing message makes the whole MULTIAPPEND fail: nothing is appended (RFC 3502 6.3.11).
    with RawImap(node.ports["imaps"]) as raw:
        raw.login()
        raw.send(b"a APPEND Multi {%d+}\r\n%s {0+}\r\n\r\n" % (len(first), first))
        _, done = raw.until_tagged("a")
        assert done.startswith(b"a NO"), done
    assert len(node.inbox(ALICE, "Multi")) == 3


# -- FETCH -------------------------------------------------------------------------------------
def test_fetch_every_data_item(node: NodeProcess) -> None:
    with RawImap(node.ports["imaps"]) as raw:
        raw.login()
        raw.command("CREATE Items")
        raw.send(b'a APPEND Items "01-Feb-2024 11:34:56 +0000" {%d}\r\n' % len(MULTIPART))
        assert raw.response().startswith(b"+ ")
        raw.send(MULTIPART + b"\r\n")
        assert raw.until_tagged("a")[1].startswith(b"a OK")
        raw.command("SELECT Items")
        line = fetch_one(raw, "FETCH 1 (UID FLAGS INTERNALDATE RFC822.SIZE)")
        assert line == (
            b'* 1 FETCH (UID 1 FLAGS () INTERNALDATE " 1-Feb-2024 11:34:56 +0000" '
            b"RFC822.SIZE %d)\r\n" % len(MULTIPART)
        )
        line = fetch_one(raw, "FETCH 1 ENVELOPE")
        assert line == (
            b'* 1 FETCH (ENVELOPE ("Mon, 01 Jan 2024 10:00:00 +0000" "=?utf-8?q?caf=C3=A9?=" '
            b'(("Ann Example" NIL "ann" "a.test")) (("Ann Example" NIL "ann" "a.test")) '
            b'(("Ann Example" NIL "ann" "a.test")) '
            b'((NIL NIL "bob" "example.test")("Carl" NIL "carl" "c.test")) '
            b'((NIL NIL "dora" "d.test")) NIL "<m0@a.test>" "<m1@a.test>"))\r\n'
        )
        # RFC 3501 7.4.2: part 1 is 8BIT, 12 octets on 1 line; part 2 BASE64 of 16 octets (the
        # CRLF before a boundary belongs to the boundary, RFC 2046 5.1.1); no SP between parts.
        line = fetch_one(raw, "FETCH 1 BODYSTRUCTURE")
        assert line.startswith(
            b'* 1 FETCH (BODYSTRUCTURE (("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "8BIT" 12 1 '
            b'NIL NIL NIL NIL)("APPLICATION" '
        ), line
        assert b'"OCTET-STREAM" ("NAME" "data.bin") NIL NIL "BASE64" 16 NIL ' in line
        assert b'("ATTACHMENT" ("FILENAME" "data.bin"))' in line
        assert b'"MIXED" ("BOUNDARY" "b1")' in line
        line = fetch_one(raw, "FETCH 1 BODY")
        assert b'(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "8BIT" 12 1)(' in line
        assert b"ATTACHMENT" not in line  # BODY has no extension data
        head, _, text = MULTIPART.partition(b"\r\n\r\n")
        part1 = "café crème".encode()
        cases = {
            "BODY.PEEK[]": b"BODY[] {%d}\r\n%s" % (len(MULTIPART), MULTIPART),
            "BODY.PEEK[HEADER]": b"BODY[HEADER] {%d}\r\n%s\r\n\r\n" % (len(head) + 4, head),
            "BODY.PEEK[TEXT]": b"BODY[TEXT] {%d}\r\n%s" % (len(text), text),
            "BODY.PEEK[HEADER.FIELDS (Subject CC)]": b"BODY[HEADER.FIELDS (SUBJECT CC)] "
            + lit(b"Cc: dora@d.test\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\r\n"),
            "BODY.PEEK[1]": b"BODY[1] {12}\r\n" + part1,
            "BODY.PEEK[1.MIME]": b"BODY[1.MIME] "
            + lit(
                b"Content-Type: text/plain; charset=utf-8\r\n"
                b"Content-Transfer-Encoding: 8bit\r\n\r\n"
            ),
            "BODY.PEEK[2]": b"BODY[2] {16}\r\nAAECAwQFBgcICQ==",
            "BODY.PEEK[]<0.20>": b"BODY[]<0> {20}\r\n" + MULTIPART[:20],
            "BODY.PEEK[1]<5.4>": b"BODY[1]<5> {4}\r\n" + part1[5:9],
            "BODY.PEEK[]<100000.10>": b"BODY[]<100000> {0}\r\n",
            "BINARY.PEEK[1]": b"BINARY[1] {12}\r\n" + part1,
            # RFC 3516 4.2: decoded content with NUL goes in a literal8.
            "BINARY.PEEK[2]": b"BINARY[2] ~{10}\r\n" + bytes(range(10)),
            "BINARY.SIZE[2]": b"BINARY.SIZE[2] 10",
            "RFC822.HEADER": b"RFC822.HEADER {%d}\r\n%s\r\n\r\n" % (len(head) + 4, head),
        }
        for item, expected in cases.items():
            line = fetch_one(raw, f"FETCH 1 ({item})")
            assert line == b"* 1 FETCH (" + expected + b")\r\n", item
        not_header = fetch_one(raw, "FETCH 1 BODY.PEEK[HEADER.FIELDS.NOT (Subject Cc To From)]")
        assert b"Date: Mon, 01 Jan 2024" in not_header and b"Subject:" not in not_header
        assert b"Cc:" not in not_header and b"Message-ID: <m1@a.test>" in not_header
        # Macros (RFC 9051 6.4.5): ALL, FAST, FULL.
        assert b"ENVELOPE (" in fetch_one(raw, "FETCH 1 ALL")
        assert b"BODY (" in fetch_one(raw, "FETCH 1 FULL")
        fast = fetch_one(raw, "FETCH 1 FAST")
        assert b"FLAGS ()" in fast and b"RFC822.SIZE" in fast
        # Nothing so far set \Seen: every content item was a PEEK.
        assert fetch_one(raw, "FETCH 1 FLAGS") == b"* 1 FETCH (FLAGS ())\r\n"
        line = fetch_one(raw, "FETCH 1 RFC822.TEXT")
        assert b"RFC822.TEXT {%d}\r\n" % len(text) in line
        # The implied \Seen is reported in the same response (RFC 9051 6.4.5).
        assert b"FLAGS (\\Seen)" in line
        line = fetch_one(raw, "UID FETCH 1 RFC822")
        assert b"UID 1" in line and MULTIPART in line
        _, done = raw.command("FETCH 1 BODY[9]")
        assert done.startswith(b"a OK"), done  # a missing part is empty, not an error
        _, done = raw.command("FETCH 1 (BOGUS)")
        assert done.startswith(b"a BAD"), done


def test_body_is_exactly_the_stored_bytes_and_sets_seen(node: NodeProcess) -> None:
    data = (
        b"From: Sender <s@remote.test>\r\nTo: bob@example.test\r\nSubject: bytes\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n"
        b"\r\ncaf\xe9\r\n  trailing spaces  \r\n\ttab\r\n.\x01 control\r\n\r\n\r\n"
    )
    before = len(node.inbox(BOB))
    deliver(node, BOB, data)
    stored = node.inbox(BOB)
    assert len(stored) == before + 1
    client = imaps(node, BOB)
    client.select("INBOX")
    seq = str(len(stored))
    _, got = client.fetch(seq, "(BODY.PEEK[] FLAGS)")
    assert got[0][1] == stored[-1]
    assert stored[-1].endswith(data)  # plus our trace headers in front
    assert b"\\Seen" not in client.fetch(seq, "FLAGS")[1][0]
    _, got = client.fetch(seq, "(BODY[])")
    assert got[0][1] == stored[-1]
    assert b"\\Seen" in got[0][0] or b"\\Seen" in got[1]
    assert b"\\Seen" in client.fetch(seq, "FLAGS")[1][0]
    # An EXAMINEd mailbox never gets \Seen set.
    client.store(seq, "-FLAGS", "(\\Seen)")
    client.select("INBOX", readonly=True)
    client.fetch(seq, "(BODY[])")
    assert b"\\Seen" not in client.fetch(seq, "FLAGS")[1][0]
    client.logout()


# -- STORE, COPY, MOVE, EXPUNGE ----------------------------------------------------------------
def test_store_flags_silent_and_keywords(node: NodeProcess) -> None:
    with RawImap(node.ports["imaps"]) as raw:
        raw.login()
        raw.command("CREATE Flags")
        for n in range(3):
            raw.send(b"a APPEND Flags {%d+}\r\n%s\r\n" % (len(simple(f"f{n}")), simple(f"f{n}")))
            raw.until_tagged("a")
        raw.command("SELECT Flags")
        untagged, done = raw.command("STORE 1:2 +FLAGS (\\Flagged $Label1)")
        assert done.startswith(b"a OK")
        assert untagged == [
            b"* 1 FETCH (FLAGS ($Label1 \\Flagged))\r\n",
            b"* 2 FETCH (FLAGS ($Label1 \\Flagged))\r\n",
        ]
        untagged, _ = raw.command("STORE 2 -FLAGS (\\Flagged)")
        assert untagged == [b"* 2 FETCH (FLAGS ($Label1))\r\n"]
        untagged, _ = raw.command("STORE 3 FLAGS (\\Answered \\Seen)")
        assert untagged == [b"* 3 FETCH (FLAGS (\\Answered \\Seen))\r\n"]
        untagged, done = raw.command("STORE 1:3 FLAGS.SILENT (\\Draft)")
        assert untagged == [] and done.startswith(b"a OK")
        untagged, _ = raw.command("UID STORE 1 +FLAGS.SILENT (\\seen)")  # any case (2.3.2)
        assert untagged == []
        untagged, _ = raw.command("FETCH 1:3 FLAGS")
        assert untagged == [
            b"* 1 FETCH (FLAGS (\\Draft \\Seen))\r\n",
            b"* 2 FETCH (FLAGS (\\Draft))\r\n",
            b"* 3 FETCH (FLAGS (\\Draft))\r\n",
        ]
        untagged, _ = raw.command("UID STORE 2 +FLAGS (\\Answered)")
        assert untagged == [b"* 2 FETCH (UID 2 FLAGS (\\Answered \\Draft))\r\n"]
        _, done = raw.command("STORE 1 +FLAGS (\\Bogus)")
        assert done.startswith((b"a BAD", b"a NO")), done
        # A new keyword shows up in FLAGS at the next SELECT.
        untagged, _ = raw.command("SELECT Flags")
        flags = next(r for r in untagged if r.startswith(b"* FLAGS"))
        assert b"\\Seen" in flags


def test_copy_with_copyuid_and_move(node: NodeProcess) -> None:
    client = imaps(node)
    fresh_box(client, "CopySrc", [simple(f"c{n}") for n in range(4)])
    assert client.create("CopyDst")[0] == "OK"
    typ, data = client.copy("2:3", "CopyDst")
    assert typ == "OK"
    m = re.match(rb"\[COPYUID (\d+) (\S+) (\S+)\]", data[0])
    assert m and (m[2], m[3]) == (b"2:3", b"1:2"), data
    assert client.uid("COPY", "4", "CopyDst")[0] == "OK"
    copyuid = client.response("COPYUID")[1][-1]
    assert re.match(rb"\d+ 4 3$", copyuid), copyuid
    typ, data = client.copy("1", "NoSuchBox")
    assert typ == "NO" and b"TRYCREATE" in data[0]
    assert node.inbox(ALICE, "CopyDst") == [simple("c1"), simple("c2"), simple("c3")]
    client.logout()
    with RawImap(node.ports["imaps"]) as raw:
        raw.login()
        raw.command("SELECT CopySrc")
        untagged, done = raw.command("MOVE 2:3 CopyDst")
        assert done.startswith(b"a OK"), done
        # RFC 6851 4.3: COPYUID in an untagged OK, then the EXPUNGEs.
        assert re.match(rb"\* OK \[COPYUID \d+ 2:3 4:5\]", untagged[0]), untagged
        # Highest first, so each number is valid when the client applies it (either order is
        # legal; this is the order the server promises in selected.py).
        assert untagged[1:] == [b"* 3 EXPUNGE\r\n", b"* 2 EXPUNGE\r\n"], untagged
        untagged, done = raw.command("UID MOVE 4 CopyDst")
        assert done.startswith(b"a OK") and untagged[-1] == b"* 2 EXPUNGE\r\n", untagged
        untagged, _ = raw.command("UID SEARCH ALL")
        assert untagged == [b"* SEARCH 1\r\n"]
    assert node.inbox(ALICE, "CopySrc") == [simple("c0")]
    assert len(node.inbox(ALICE, "CopyDst")) == 6


def test_expunge_and_uid_expunge(node: NodeProcess) -> None:
    client = imaps(node)
    fresh_box(client, "Exp", [simple(f"e{n}") for n in range(6)])
    client.store("1,3,4,6", "+FLAGS", "(\\Deleted)")
    # UID EXPUNGE removes only the named \Deleted messages (RFC 4315 2.1).
    typ, data = client.uid("EXPUNGE", "1:3")
    assert typ == "OK"
    assert client.response("EXPUNGE")[1] == [b"3", b"1"]  # highest first
    assert [m.split(b"Subject: ")[1][:2] for m in node.inbox(ALICE, "Exp")] == [
        b"e1", b"e3", b"e4", b"e5",
    ]  # fmt: skip
    typ, data = client.expunge()
    assert typ == "OK" and sorted(int(n) for n in data) == [2, 4]
    assert search(client, "ALL") == [1, 2]
    typ, data = client.fetch("1:*", "(UID)")
    assert data == [b"1 (UID 2)", b"2 (UID 5)"]
    client.logout()


# -- SEARCH ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def search_box(node: NodeProcess) -> Iterator[imaplib.IMAP4_SSL]:
    """A mailbox of five known messages, selected in a session of bob's."""
    utf8 = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
    messages = [
        ("(\\Seen)", "01-Jan-2020",
            simple("Quarterly report", "numbers attached\r\n", "Ann <ann@a.test>")),
        ("()", "15-Jun-2021", simple("Lunch?", "pizza at noon\r\n", "bob@b.test")),
        ("(\\Flagged)", "10-Mar-2022", (
            "From: Ann <ann@a.test>\r\nTo: bob@example.test\r\n"
            "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_aus_M=C3=BCnchen?=\r\n" + utf8
            + "\r\nViele Grüße vom Marienplatz\r\n"
        ).encode()),
        ("(\\Seen \\Answered)", "20-Dec-2023",
            simple("big one", "lorem ipsum\r\n" * 400, "carl@c.test")),
        ("($Important)", "05-May-2024", simple("Re: Lunch?", "see you\r\n", "dora@d.test")),
    ]  # fmt: skip
    client = imaps(node, BOB)
    assert client.create("Search")[0] == "OK"
    for flags, day, data in messages:
        stamp = calendar.timegm(time.strptime(day + " 12:00", "%d-%b-%Y %H:%M"))
        typ, _ = client.append("Search", flags, imaplib.Time2Internaldate(stamp), data)
        assert typ == "OK"
    client.select("Search")
    yield client
    client.logout()


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        (("ALL",), [1, 2, 3, 4, 5]),
        (("FROM", "ann"), [1, 3]),
        (("SUBJECT", "lunch"), [2, 5]),
        (("BODY", "pizza"), [2]),
        (("TEXT", "Lunch"), [2, 5]),
        (("TEXT", "Marienplatz"), [3]),
        (("SINCE", "01-Jan-2022"), [3, 4, 5]),
        (("BEFORE", "01-Jan-2021"), [1]),
        (("ON", "15-Jun-2021"), [2]),
        (("LARGER", "3000"), [4]),
        (("SMALLER", "3000"), [1, 2, 3, 5]),
        (("UNSEEN",), [2, 3, 5]),
        (("SEEN", "ANSWERED"), [4]),
        (("FLAGGED",), [3]),
        (("KEYWORD", "$Important"), [5]),
        (("OR", "FROM", "ann", "FROM", "carl"), [1, 3, 4]),
        (("NOT", "SEEN"), [2, 3, 5]),
        (("NOT", "OR", "SEEN", "FLAGGED"), [2, 5]),
        (("(FROM ann SINCE 01-Jan-2021)",), [3]),
        (("2:3",), [2, 3]),
        (("UID", "2:4"), [2, 3, 4]),
        (("UID", "4:*"), [4, 5]),
        (("HEADER", "Subject", "Re:"), [5]),
        (("TO", "bob@example.test", "SUBJECT", "nothing-matches"), []),
    ],
)
def test_search_keys(
    search_box: imaplib.IMAP4_SSL, criteria: tuple[str, ...], expected: list[int]
) -> None:
    assert search(search_box, *criteria) == expected


def test_search_charset_utf8_non_ascii_word(search_box: imaplib.IMAP4_SSL) -> None:
    # Case-insensitive per RFC 5051 (i;unicode-casemap): "grüsse" finds "Grüße" too.
    cases = [("SUBJECT", "München", [3]), ("BODY", "Grüße", [3]), ("TEXT", "grüsse", [3])]
    for key, word, expected in [*cases, ("BODY", "Grüßen", [])]:
        search_box.literal = word.encode()
        typ, data = search_box.search("UTF-8", key)
        assert typ == "OK"
        found = [int(n) for n in data[0].split()]
        assert found == expected, (key, word)
    typ, data = search_box.search("KOI8-R", "SUBJECT", "x")
    assert typ == "NO" and b"BADCHARSET" in data[0]


def test_esearch_return_options(node: NodeProcess, search_box: imaplib.IMAP4_SSL) -> None:
    with RawImap(node.ports["imaps"]) as raw:
        raw.login(BOB)
        raw.command("EXAMINE Search")
        untagged, done = raw.command("SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN")
        assert done.startswith(b"a OK")
        # RFC 4731 3.1: return data in any order.
        assert len(untagged) == 1 and untagged[0].startswith(b'* ESEARCH (TAG "a") '), untagged
        words = untagged[0][len(b'* ESEARCH (TAG "a") ') :].split()
        assert dict(zip(words[::2], words[1::2], strict=True)) == {
            b"MIN": b"2", b"MAX": b"5", b"COUNT": b"3", b"ALL": b"2:3,5",
        }  # fmt: skip
        untagged, _ = raw.command("UID SEARCH RETURN (COUNT) FROM ann")
        assert untagged == [b'* ESEARCH (TAG "a") UID COUNT 2\r\n']
        untagged, _ = raw.command("SEARCH RETURN () FROM ann")
        assert untagged == [b'* ESEARCH (TAG "a") ALL 1,3\r\n']
        # No match: only COUNT is reported (RFC 4731 3.1).
        untagged, _ = raw.command("SEARCH RETURN (MIN MAX COUNT) FROM nobody")
        assert untagged == [b'* ESEARCH (TAG "a") COUNT 0\r\n']


# -- CONDSTORE ---------------------------------------------------------------------------------
def test_condstore_changedsince_and_unchangedsince(node: NodeProcess) -> None:
    with RawImap(node.ports["imaps"]) as raw:
        raw.login()
        raw.command("CREATE Cond")
        for n in range(3):
            raw.send(b"a APPEND Cond {%d+}\r\n%s\r\n" % (len(simple(f"m{n}")), simple(f"m{n}")))
            raw.until_tagged("a")
        untagged, done = raw.command("SELECT Cond (CONDSTORE)")
        assert done.startswith(b"a OK")
        text = b"".join(untagged)
        highest = int(re.search(rb"\[HIGHESTMODSEQ (\d+)\]", text)[1])
        untagged, _ = raw.command("FETCH 1:* (MODSEQ)")
        modseqs = [int(re.search(rb"MODSEQ \((\d+)\)", r)[1]) for r in untagged]
        assert max(modseqs) == highest and modseqs == sorted(modseqs)
        untagged, _ = raw.command("STORE 2 +FLAGS (\\Seen)")
        m = re.match(rb"\* 2 FETCH \(FLAGS \(\\Seen\) MODSEQ \((\d+)\)\)\r\n", untagged[0])
        assert m, untagged
        after = int(m[1])
        assert after > highest
        untagged, _ = raw.command(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {highest})")
        assert untagged == [b"* 2 FETCH (FLAGS (\\Seen) MODSEQ (%d))\r\n" % after]
        untagged, _ = raw.command(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {after})")
        assert untagged == []
        # UNCHANGEDSINCE older than message 2's MODSEQ: 2 fails, 1 and 3 are changed.
        untagged, done = raw.command(f"STORE 1:3 (UNCHANGEDSINCE {highest}) +FLAGS (\\Flagged)")
        assert done.startswith(b"a OK [MODIFIED 2]"), done
        assert [r.split(b" ")[1] for r in untagged] == [b"1", b"3"]
        untagged, done = raw.command(f"UID STORE 2 (UNCHANGEDSINCE {after}) +FLAGS (\\Flagged)")
        assert done.startswith(b"a OK") and b"MODIFIED" not in done, done
        assert b"FLAGS (\\Flagged \\Seen)" in untagged[0]
        untagged, _ = raw.command(f"SEARCH MODSEQ {after + 1}")
        assert re.match(rb"\* SEARCH 1 2 3 \(MODSEQ \d+\)\r\n", untagged[0]), untagged
        untagged, _ = raw.command("STATUS Cond (HIGHESTMODSEQ)")
        assert re.match(rb"\* STATUS Cond \(HIGHESTMODSEQ \d+\)", untagged[0])


# -- IDLE --------------------------------------------------------------------------------------
def test_idle_reports_new_mail_and_ends_with_done(node: NodeProcess) -> None:
    with RawImap(node.ports["imaps"]) as raw:
        raw.login(BOB)
        untagged, _ = raw.command("SELECT INBOX")
        exists = int(next(r for r in untagged if r.endswith(b" EXISTS\r\n")).split()[1])
        raw.send("i IDLE\r\n")
        assert raw.response().startswith(b"+ ")
        deliver(node, BOB, simple("while idling"))
        assert raw.response() == b"* %d EXISTS\r\n" % (exists + 1)
        raw.send("DONE\r\n")
        untagged, done = raw.until_tagged("i")
        assert done.startswith(b"i OK"), done
        _, done = raw.command("NOOP")
        assert done.startswith(b"a OK")
        # IDLE works in the authenticated state too, and anything but DONE ends it with BAD.
        raw.command("UNSELECT")
        raw.send("i IDLE\r\n")
        assert raw.response().startswith(b"+ ")
        raw.send("NOOP\r\n")
        assert raw.until_tagged("i")[1].startswith(b"i BAD")


# -- QUOTA -------------------------------------------------------------------------------------
def test_quota_root_and_append_over_quota(node: NodeProcess) -> None:
    user = "quota@example.test"
    result = node.cli("user", "add", user, "--password-stdin", "--quota", "10240", stdin=PASSWORD)
    assert result.returncode == 0, result.stderr
    client = imaps(node, user)
    typ, data = client.getquotaroot("INBOX")
    assert typ == "OK"
    assert data == [[b'INBOX ""'], [b'"" (STORAGE 0 10)']]
    assert client.append("INBOX", "", None, simple("fits", "x" * 60 + "\r\n" * 90))[0] == "OK"
    big = simple("too big", ("y" * 76 + "\r\n") * 140)
    typ, data = client.append("INBOX", "", None, big)
    assert typ == "NO" and data[0].startswith(b"[OVERQUOTA]"), data
    typ, data = client.getquota('""')
    assert typ == "OK" and re.match(rb'"" \(STORAGE 1 10\)', data[0]), data
    typ, data = client._simple_command("SETQUOTA", '""', "(STORAGE 1)")
    assert typ == "NO"
    assert len(node.inbox(user)) == 1
    client.logout()
    # Without a quota: a root with no resources.
    client = imaps(node)
    assert client.getquotaroot("INBOX") == ("OK", [[b"INBOX"], [None]])
    client.logout()
