"""Ordinary client sessions with the PyPI libraries mail programs and scripts use: imapclient
and imap-tools. List folders, select, fetch envelopes and flags, search, set flags, move, IDLE.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import imapclient
import pytest
from imap_tools import AND, MailBox, MailBoxStartTls, MailMessageFlags
from imapclient import imapclient as names

from tests.conftest import PASSWORD, client_tls, deliver
from tests.nodeproc import NodeProcess

pytestmark = pytest.mark.usefixtures("no_tracebacks")

BOB = "bob@example.test"
CAROL = "carol@other.test"


def message(subject: str, sender: str = "ann@remote.test", body: str = "hello\r\n") -> bytes:
    return (
        f"From: Ann <{sender}>\r\nTo: {BOB}\r\nSubject: {subject}\r\n"
        f"Date: Tue, 02 Jan 2024 09:00:00 +0000\r\nMessage-ID: <{subject.replace(' ', '.')}@r>\r\n"
        f"\r\n{body}"
    ).encode()


@pytest.fixture(scope="module")
def mail(node: NodeProcess) -> Iterator[NodeProcess]:
    for n, sender in enumerate(["ann@remote.test", "ann@remote.test", "zed@remote.test"]):
        deliver(node, BOB, message(f"client test {n}", sender, f"body number {n}\r\n"))
        deliver(node, CAROL, message(f"tools test {n}", sender, f"body number {n}\r\n"))
    yield node


def test_imapclient_session(mail: NodeProcess) -> None:
    with imapclient.IMAPClient(
        "127.0.0.1", port=mail.ports["imaps"], ssl_context=client_tls(), timeout=30
    ) as client:
        client.login(BOB, PASSWORD)
        assert b"MOVE" in client.capabilities() and client.has_capability("IDLE")
        folders = {name: flags for flags, _, name in client.list_folders()}
        assert {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"} <= set(folders)
        assert client.find_special_folder(names.SENT) == "Sent"
        assert client.find_special_folder(names.TRASH) == "Trash"
        info = client.select_folder("INBOX")
        assert info[b"EXISTS"] == 3 and info[b"UIDVALIDITY"] > 0
        uids = client.search(["FROM", "ann@remote.test"])
        assert len(uids) == 2
        assert client.search("UNSEEN") == sorted(client.search("ALL"))
        data = client.fetch(uids, ["ENVELOPE", "FLAGS", "RFC822.SIZE", "INTERNALDATE"])
        envelope = data[uids[0]][b"ENVELOPE"]
        assert envelope.subject == b"client test 0"
        assert envelope.from_[0].mailbox == b"ann" and envelope.from_[0].host == b"remote.test"
        assert envelope.date == datetime.datetime(2024, 1, 2, 9, 0)
        assert data[uids[0]][b"FLAGS"] == ()
        client.add_flags(uids, [names.FLAGGED, b"$Todo"])
        flags = client.get_flags(uids)
        assert all(set(f) == {b"\\Flagged", b"$Todo"} for f in flags.values()), flags
        client.remove_flags(uids[:1], [b"$Todo"])
        assert client.get_flags(uids[:1])[uids[0]] == (b"\\Flagged",)
        body = client.fetch(uids[:1], ["BODY[]"])[uids[0]][b"BODY[]"]
        assert body == mail.inbox(BOB)[0]
        assert b"\\Seen" in client.get_flags(uids[:1])[uids[0]]
        assert client.search(["SUBJECT", "client test", "SEEN"]) == uids[:1]
        client.move(uids[1:2], "Archive")
        assert client.folder_status("Archive", [b"MESSAGES"])[b"MESSAGES"] == 1
        assert len(client.search("ALL")) == 2
        # IDLE: new mail shows up through idle_check.
        client.idle()
        deliver(mail, BOB, message("during idle"))
        responses = client.idle_check(timeout=5)
        client.idle_done()
        assert (3, b"EXISTS") in responses, responses
        # Folder management and APPEND.
        client.create_folder("Receipts/2024")
        client.append("Receipts/2024", message("receipt"), flags=[names.SEEN])
        client.rename_folder("Receipts", "Bills")
        assert client.folder_exists("Bills/2024") and not client.folder_exists("Receipts")
        assert client.select_folder("Bills/2024", readonly=True)[b"EXISTS"] == 1
        client.unselect_folder()
        client.delete_folder("Bills/2024")
        roots = client.get_quota_root("INBOX")
        assert roots[0].mailbox == "INBOX"
        assert client.namespace().personal[0][1] == "/"


def test_imapclient_starttls(mail: NodeProcess) -> None:
    client = imapclient.IMAPClient("127.0.0.1", port=mail.ports["imap"], ssl=False, timeout=30)
    client.starttls(client_tls())
    client.login(BOB, PASSWORD)
    assert client.select_folder("INBOX", readonly=True)[b"EXISTS"] >= 1
    client.logout()


def test_imap_tools_session(mail: NodeProcess) -> None:
    with MailBox("127.0.0.1", port=mail.ports["imaps"], ssl_context=client_tls()).login(
        CAROL, PASSWORD, initial_folder="INBOX"
    ) as box:
        folders = {f.name: f.flags for f in box.folder.list()}
        assert "\\Junk" in folders["Junk"] and "\\Archive" in folders["Archive"]
        messages = list(box.fetch(AND(from_="ann@remote.test"), mark_seen=False))
        assert [m.subject for m in messages] == ["tools test 0", "tools test 1"]
        first = messages[0]
        assert first.from_ == "ann@remote.test" and first.to == (BOB,)
        assert first.text == "body number 0\r\n" and first.flags == ()
        assert first.date == datetime.datetime(2024, 1, 2, 9, 0, tzinfo=datetime.UTC)
        headers = list(box.fetch(headers_only=True, mark_seen=False, bulk=True))
        assert len(headers) == 3 and all(m.text == "" for m in headers)
        uids = [m.uid for m in messages]
        assert box.uids(AND(seen=False)) == [m.uid for m in headers]
        box.flag(uids, (MailMessageFlags.FLAGGED, MailMessageFlags.SEEN), True)
        assert box.uids(AND(flagged=True)) == uids
        assert box.uids(AND(seen=False)) == [headers[2].uid]
        box.move(uids[0], "Archive")
        assert box.folder.status("Archive")["MESSAGES"] == 1
        assert len(box.uids()) == 2
        box.append(message("appended by tools"), "INBOX", flag_set=[MailMessageFlags.DRAFT])
        found = list(box.fetch(AND(subject="appended by tools"), mark_seen=False))
        assert len(found) == 1 and MailMessageFlags.DRAFT in found[0].flags
        box.delete(found[0].uid)
        assert len(box.uids()) == 2
        # IDLE with imap-tools: poll() returns the server's untagged responses.
        box.idle.start()
        deliver(mail, CAROL, message("tools idle"))
        responses = box.idle.poll(timeout=5)
        box.idle.stop()
        assert any(b"EXISTS" in r for r in responses), responses
        assert len(box.uids()) == 3


def test_imap_tools_starttls(mail: NodeProcess) -> None:
    with MailBoxStartTls("127.0.0.1", port=mail.ports["imap"], ssl_context=client_tls()).login(
        CAROL, PASSWORD
    ) as box:
        assert len(box.uids()) >= 1
