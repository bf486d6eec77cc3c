"""IMAP mailbox commands against a real node with imaplib (raw where imaplib has no syntax):
SELECT/EXAMINE, LIST (SPECIAL-USE, LIST-EXTENDED, LIST-STATUS), LSUB, NAMESPACE, CREATE (USE),
DELETE, RENAME (INBOX too), SUBSCRIBE, STATUS (SIZE), ENABLE, ID, UNSELECT, CLOSE.
"""

from __future__ import annotations

import imaplib
import re

import pytest

from tests.conftest import RawImap, deliver, imaps
from tests.nodeproc import NodeProcess

pytestmark = pytest.mark.usefixtures("no_tracebacks")

DEFAULTS = {
    "INBOX": None,
    "Sent": "\\Sent",
    "Drafts": "\\Drafts",
    "Trash": "\\Trash",
    "Junk": "\\Junk",
    "Archive": "\\Archive",
}
_LIST = re.compile(rb'^\* (LIST|LSUB) \(([^)]*)\) "/" ("?)(.*?)\3(?: (\(.*\)))?\r\n$')


def listed(responses: list[bytes]) -> dict[str, set[str]]:
    """{name: attributes} from `* LIST` / `* LSUB` responses."""
    found = {}
    for r in responses:
        m = _LIST.match(r)
        if m:
            found[m[4].decode()] = set(m[2].decode().split())
    return found


def statuses(responses: list[bytes]) -> dict[str, dict[str, int]]:
    found = {}
    for r in responses:
        m = re.match(rb'^\* STATUS ("?)(.*?)\1 \((.*)\)\r\n$', r)
        if m:
            words = m[3].decode().split()
            found[m[2].decode()] = {k: int(v) for k, v in zip(words[::2], words[1::2], strict=True)}
    return found


def message(subject: str, body: str = "hello\r\n") -> bytes:
    head = f"From: x@remote.test\r\nTo: alice@example.test\r\nSubject: {subject}\r\n\r\n"
    return (head + body).encode()


def test_list_shows_the_special_use_mailboxes(node: NodeProcess) -> None:
    with RawImap(node.ports["imaps"]) as raw:
        raw.login("carol@other.test")
        untagged, done = raw.command('LIST "" "*"')
        assert done.startswith(b"a OK")
        boxes = listed(untagged)
        assert set(boxes) == set(DEFAULTS)
        for name, use in DEFAULTS.items():
            if use is not None:
                assert use in boxes[name], (name, boxes[name])
            assert "\\HasNoChildren" in boxes[name]
        # RFC 6154 3: the SPECIAL-USE selection option lists only those mailboxes.
        untagged, _ = raw.command('LIST (SPECIAL-USE) "" "*"')
        assert set(listed(untagged)) == set(DEFAULTS) - {"INBOX"}
        untagged, _ = raw.command('LIST "" "*" RETURN (SPECIAL-USE)')
        assert listed(untagged)["Junk"] >= {"\\Junk"}
        # RFC 9051 6.3.9: an empty pattern returns the delimiter.
        untagged, _ = raw.command('LIST "" ""')
        assert untagged == [b'* LIST (\\Noselect) "/" ""\r\n']
    client = imaps(node, "carol@other.test")
    typ, data = client.list()
    assert typ == "OK"
    assert any(b"\\Sent" in line and line.endswith(b"Sent") for line in data)
    client.logout()


def test_list_extended_patterns_and_children(node: NodeProcess) -> None:
    client = imaps(node)
    for name in ("Projects/alpha", "Projects/beta/deep"):
        assert client.create(name)[0] == "OK"  # the parents come along (RFC 9051 6.3.4)
    client.logout()
    with RawImap(node.ports["imaps"]) as raw:
        raw.login()
        untagged, _ = raw.command('LIST "" "Projects/%"')
        boxes = listed(untagged)
        assert set(boxes) == {"Projects/alpha", "Projects/beta"}
        assert "\\HasChildren" in boxes["Projects/beta"]
        assert "\\HasNoChildren" in boxes["Projects/alpha"]
        untagged, _ = raw.command('LIST "Projects/" "*"')
        assert set(listed(untagged)) == {"Projects/alpha", "Projects/beta", "Projects/beta/deep"}
        # LIST-EXTENDED (RFC 5258): several patterns, RETURN (CHILDREN).
        untagged, done = raw.command('LIST "" ("INBOX" "Projects") RETURN (CHILDREN)')
        assert done.startswith(b"a OK"), done
        boxes = listed(untagged)
        assert set(boxes) == {"INBOX", "Projects"}
        assert "\\HasChildren" in boxes["Projects"]
        # inbox is matched case-insensitively
        untagged, _ = raw.command('LIST "" "inbox"')
        assert set(listed(untagged)) == {"INBOX"}


def test_list_status_and_status_size(node: NodeProcess) -> None:
    user = "bob@example.test"
    data = message("status size", ("x" * 70 + "\r\n") * 15)
    deliver(node, user, data)
    stored = node.inbox(user)
    size = sum(len(m) for m in stored)
    with RawImap(node.ports["imaps"]) as raw:
        raw.login(user)
        untagged, done = raw.command('LIST "" "*" RETURN (STATUS (MESSAGES UNSEEN SIZE))')
        assert done.startswith(b"a OK"), done
        assert set(listed(untagged)) >= set(DEFAULTS)
        found = statuses(untagged)
        assert found["INBOX"] == {"MESSAGES": len(stored), "UNSEEN": len(stored), "SIZE": size}
        assert found["Trash"] == {"MESSAGES": 0, "UNSEEN": 0, "SIZE": 0}
        # RFC 5819 2: the STATUS follows the LIST of its mailbox.
        names = [r.split(b" ")[1] for r in untagged]
        assert names[: names.index(b"STATUS") + 1][-2:] == [b"LIST", b"STATUS"]
    client = imaps(node, user)
    typ, data_ = client.status(
        "INBOX", "(MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN SIZE HIGHESTMODSEQ DELETED)"
    )
    assert typ == "OK"
    values = statuses([b"* STATUS " + data_[0] + b"\r\n"])["INBOX"]
    assert values["MESSAGES"] == len(stored) and values["SIZE"] == size
    assert values["UIDNEXT"] == len(stored) + 1 and values["UIDVALIDITY"] > 0
    assert values["HIGHESTMODSEQ"] > 0 and values["DELETED"] == 0
    typ, data_ = client.status("Nope", "(MESSAGES)")
    assert typ == "NO" and b"NONEXISTENT" in data_[0]
    client.logout()


def test_select_and_examine_responses(node: NodeProcess) -> None:
    user = "bob@example.test"
    deliver(node, user, message("select me"))
    count = len(node.inbox(user))
    with RawImap(node.ports["imaps"]) as raw:
        raw.login(user)
        untagged, done = raw.command("SELECT INBOX")
        assert done.startswith(b"a OK [READ-WRITE]"), done
        text = b"".join(untagged).decode()
        assert f"* {count} EXISTS\r\n" in text
        uidvalidity = int(re.search(r"\[UIDVALIDITY (\d+)\]", text)[1])
        assert uidvalidity > 0
        assert re.search(rf"\[UIDNEXT {count + 1}\]", text), text
        assert re.search(r"\[HIGHESTMODSEQ \d+\]", text), text
        assert re.search(r"\* FLAGS \([^)]*\\Seen[^)]*\)", text)
        assert re.search(r"\[PERMANENTFLAGS \([^)]*\\\*\)\]", text), text
        assert re.search(r"\[UNSEEN \d+\]", text), text
        untagged, done = raw.command("EXAMINE INBOX")
        assert done.startswith(b"a OK [READ-ONLY]"), done
        text = b"".join(untagged).decode()
        # RFC 7162 3.2.11: selecting again closes the old mailbox first.
        assert "[CLOSED]" in text
        assert f"[UIDVALIDITY {uidvalidity}]" in text
        assert "[PERMANENTFLAGS ()]" in text
        _, done = raw.command("STORE 1 +FLAGS (\\Seen)")
        assert done.startswith(b"a NO"), done
        _, done = raw.command("SELECT nosuchbox")
        assert done.startswith(b"a NO [NONEXISTENT]"), done
        # A failed SELECT leaves no mailbox selected (RFC 9051 6.3.2).
        _, done = raw.command("FETCH 1 FLAGS")
        assert done.startswith(b"a BAD"), done
    client = imaps(node, user)
    typ, data = client.select("INBOX", readonly=True)
    assert (typ, data) == ("OK", [str(count).encode()])
    assert client.response("UIDVALIDITY")[1] == [str(uidvalidity).encode()]
    client.logout()


def test_create_with_special_use_delete_and_errors(node: NodeProcess) -> None:
    client = imaps(node)
    typ, data = client._simple_command("CREATE", "Old-Stuff", "(USE (\\Archive))")
    assert typ == "OK", data
    typ, data = client.create("Old-Stuff")
    assert typ == "NO" and b"ALREADYEXISTS" in data[0]
    typ, data = client._simple_command("CREATE", "Weird", "(USE (\\Bogus))")
    assert typ == "NO" and b"USEATTR" in data[0]
    typ, data = client.list('""', "Old-Stuff")
    assert typ == "OK" and b"\\Archive" in data[0]
    # A non-ASCII name travels in modified UTF-7 (RFC 3501 5.1.3).
    assert client.create("&AMk-t&AOk-")[0] == "OK"  # "Été"
    typ, data = client.list('""', "&AMk-t&AOk-")
    assert data[0].endswith(b"&AMk-t&AOk-")
    assert client.delete("&AMk-t&AOk-")[0] == "OK"
    assert client.delete("Old-Stuff")[0] == "OK"
    assert client.list('""', "Old-Stuff")[1] == [None]
    typ, data = client.delete("Old-Stuff")
    assert typ == "NO" and b"NONEXISTENT" in data[0]
    assert client.delete("INBOX")[0] == "NO"
    assert client.create("INBOX")[0] == "NO"
    typ, data = client.create('"bad*name"')
    assert typ == "NO" and b"CANNOT" in data[0]
    with pytest.raises(imaplib.IMAP4.error, match="BAD"):
        client.create("bad*name")  # `*` is not an atom character: a syntax error
    client.logout()


def test_rename_with_children_and_inbox(node: NodeProcess) -> None:
    user = "carol@other.test"
    for subject in ("one", "two"):
        deliver(node, user, message(subject))
    before = node.inbox(user)
    assert len(before) >= 2
    client = imaps(node, user)
    assert client.create("Folder/child")[0] == "OK"
    assert client.rename("Folder", "Renamed")[0] == "OK"
    names = {line.split(b'"/" ')[1] for line in client.list()[1]}
    assert {b"Renamed", b"Renamed/child"} <= names
    assert not {b"Folder", b"Folder/child"} & names
    typ, data = client.rename("Nope", "Other")
    assert typ == "NO"
    typ, data = client.rename("Renamed", "Sent")
    assert typ == "NO" and b"ALREADYEXISTS" in data[0]
    # RFC 9051 6.3.6: renaming INBOX moves its messages and leaves INBOX empty.
    _, before_status = client.status("INBOX", "(UIDVALIDITY UIDNEXT)")
    assert client.rename("INBOX", "Old-Inbox")[0] == "OK"
    assert client.select("INBOX")[1] == [b"0"]
    # ... and the moved messages' UIDs are not handed out again under the same UIDVALIDITY.
    _, after_status = client.status("INBOX", "(UIDVALIDITY UIDNEXT)")
    old, new = (
        statuses([b"* STATUS " + x[0] + b"\r\n"])["INBOX"] for x in (before_status, after_status)
    )
    assert new["UIDVALIDITY"] != old["UIDVALIDITY"] or new["UIDNEXT"] >= old["UIDNEXT"]
    assert client.select("Old-Inbox")[1] == [str(len(before)).encode()]
    client.logout()
    assert node.inbox(user) == []
    assert node.inbox(user, "Old-Inbox") == before
    # New mail still arrives in INBOX.
    deliver(node, user, message("after rename"))
    assert len(node.inbox(user)) == 1


def test_subscribe_unsubscribe_lsub(node: NodeProcess) -> None:
    client = imaps(node, "bob@example.test")
    assert client.create("Lists")[0] == "OK"
    assert client.create("Lists/python")[0] == "OK"
    # CREATE subscribes; unsubscribe the parent to see how LSUB shows it.
    assert client.unsubscribe("Lists")[0] == "OK"
    assert client.subscribe("Lists/python")[0] == "OK"
    typ, data = client.lsub('""', "Lists/*")
    assert typ == "OK" and len(data) == 1
    assert data[0].endswith(b'"/" Lists/python')
    # RFC 3501 6.3.9: LSUB "%" shows the unsubscribed parent of a subscribed name as \Noselect.
    typ, data = client.lsub('""', "%")
    assert b'(\\Noselect) "/" Lists' in data
    typ, data = client.lsub('""', "*")
    assert b'(\\Noselect) "/" Lists' not in data
    client.logout()
    with RawImap(node.ports["imaps"]) as raw:
        raw.login("bob@example.test")
        untagged, _ = raw.command('LIST (SUBSCRIBED) "" "Lists*"')
        assert listed(untagged) == {"Lists/python": {"\\HasNoChildren", "\\Subscribed"}}
        untagged, _ = raw.command('LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"')
        assert any(b'Lists ("CHILDINFO" ("SUBSCRIBED"))' in r for r in untagged), untagged
        untagged, _ = raw.command('LIST "" "Lists*" RETURN (SUBSCRIBED)')
        boxes = listed(untagged)
        assert "\\Subscribed" in boxes["Lists/python"]
        assert "\\Subscribed" not in boxes["Lists"]
        _, done = raw.command("UNSUBSCRIBE Lists/python")
        assert done.startswith(b"a OK")
        untagged, _ = raw.command('LSUB "" "*"')
        assert "Lists/python" not in listed(untagged)


def test_namespace_enable_id(node: NodeProcess) -> None:
    client = imaps(node)
    assert client.namespace() == ("OK", [b'(("" "/")) NIL NIL'])
    client.logout()
    with RawImap(node.ports["imaps"]) as raw:
        untagged, done = raw.command('ID ("name" "pytest" "version" "1")')
        assert done.startswith(b"a OK")
        assert untagged[0].startswith(b'* ID ("name" "mailfort"')
        _, done = raw.command("ID NIL")
        assert done.startswith(b"a OK")
        _, done = raw.command("ENABLE CONDSTORE")
        assert done.startswith(b"a BAD"), done  # not before login (RFC 5161 3.1)
        raw.login()
        untagged, done = raw.command("ENABLE CONDSTORE X-UNKNOWN")
        assert done.startswith(b"a OK")
        assert untagged == [b"* ENABLED CONDSTORE\r\n"]
        untagged, _ = raw.command("ENABLE CONDSTORE")
        assert untagged == []  # already enabled: not listed again
        untagged, _ = raw.command("ENABLE IMAP4rev2")
        assert untagged == [b"* ENABLED IMAP4rev2\r\n"]


def test_unselect_keeps_and_close_expunges_deleted(node: NodeProcess) -> None:
    user = "alice@example.test"
    client = imaps(node, user)
    assert client.create("CloseTest")[0] == "OK"
    for subject in ("a", "b", "c"):
        assert client.append("CloseTest", "", None, message(subject))[0] == "OK"
    client.select("CloseTest")
    client.store("1", "+FLAGS", "(\\Deleted)")
    typ, _ = client.unselect()
    assert typ == "OK"
    assert len(node.inbox(user, "CloseTest")) == 3
    client.select("CloseTest")
    assert client.close()[0] == "OK"
    assert len(node.inbox(user, "CloseTest")) == 2
    with pytest.raises(imaplib.IMAP4.error):
        client.fetch("1", "FLAGS")  # no mailbox selected after CLOSE
    # CLOSE of a read-only mailbox expunges nothing.
    client.select("CloseTest")
    client.store("1", "+FLAGS", "(\\Deleted)")
    client.select("CloseTest", readonly=True)
    client.close()
    assert len(node.inbox(user, "CloseTest")) == 2
    client.logout()
