"""Several IMAP sessions on one mailbox against a real node: each sees the others' changes, when
the protocol allows it to be told (RFC 9051 7.5.1: no EXPUNGE during FETCH, STORE or SEARCH by
sequence number), IDLE reports new mail within a second, SMTP's 250 means visible over IMAP, and
UIDs and UIDVALIDITY hold across sessions and restarts.
"""

from __future__ import annotations

import re
import threading
import time

import pytest

from tests.conftest import RawImap, deliver, imaps
from tests.nodeproc import NodeProcess

pytestmark = pytest.mark.usefixtures("no_tracebacks")

ALICE = "alice@example.test"
BOB = "bob@example.test"


def message(subject: str) -> bytes:
    return f"From: x@remote.test\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\r\nbody\r\n".encode()


def session(node: NodeProcess, mailbox: str, user: str = ALICE) -> tuple[RawImap, int]:
    """A raw session with `mailbox` selected, and its EXISTS count."""
    raw = RawImap(node.ports["imaps"])
    raw.login(user)
    untagged, done = raw.command(f"SELECT {mailbox}")
    assert done.startswith(b"a OK"), done
    exists = int(next(r for r in untagged if r.endswith(b" EXISTS\r\n")).split()[1])
    return raw, exists


def append(raw: RawImap, mailbox: str, data: bytes) -> int:
    raw.send(b"p APPEND %s {%d+}\r\n%s\r\n" % (mailbox.encode(), len(data), data))
    _, done = raw.until_tagged("p")
    m = re.match(rb"p OK \[APPENDUID \d+ (\d+)\]", done)
    assert m, done
    return int(m[1])


def fill(node: NodeProcess, mailbox: str, count: int, user: str = ALICE) -> None:
    with RawImap(node.ports["imaps"]) as raw:
        raw.login(user)
        raw.command(f"CREATE {mailbox}")
        for n in range(count):
            append(raw, mailbox, message(f"{mailbox} {n}"))


def test_new_mail_and_flags_are_reported_at_noop(node: NodeProcess) -> None:
    fill(node, "Shared", 2)
    a, exists = session(node, "Shared")
    b, _ = session(node, "Shared")
    with a, b:
        uid = append(a, "Shared", message("third"))
        untagged, _ = b.command("NOOP")
        assert untagged == [b"* %d EXISTS\r\n" % (exists + 1), b"* 0 RECENT\r\n"], untagged
        untagged, _ = a.command("STORE 1 +FLAGS.SILENT (\\Flagged $Seen-By-A)")
        untagged, _ = b.command("NOOP")
        assert untagged == [b"* 1 FETCH (UID 1 FLAGS ($Seen-By-A \\Flagged))\r\n"], untagged
        # A flag change reaches a plain FETCH too, without waiting for NOOP.
        a.command(f"UID STORE {uid} +FLAGS.SILENT (\\Answered)")
        untagged, _ = b.command("FETCH 3 FLAGS")
        assert any(r.startswith(b"* 3 FETCH (") and b"\\Answered" in r for r in untagged), untagged
        # With CONDSTORE on, the unsolicited FETCH carries MODSEQ (RFC 7162 3.2.4).
        b.command("ENABLE CONDSTORE")
        a.command("STORE 2 +FLAGS.SILENT (\\Seen)")
        untagged, _ = b.command("NOOP")
        assert re.match(rb"\* 2 FETCH \(UID 2 FLAGS \(\\Seen\) MODSEQ \(\d+\)\)\r\n", untagged[0])


def test_expunge_waits_for_a_command_that_may_report_it(node: NodeProcess) -> None:
    fill(node, "Exp", 4)
    a, _ = session(node, "Exp")
    b, _ = session(node, "Exp")
    with a, b:
        a.command("STORE 2 +FLAGS.SILENT (\\Deleted)")
        untagged, _ = a.command("EXPUNGE")
        assert untagged == [b"* 2 EXPUNGE\r\n"]
        # B's sequence numbers stay as B knows them: 4 messages, UID n at number n.
        untagged, done = b.command("FETCH 1:* (UID)")
        assert done.startswith(b"a OK"), done
        assert not any(b"EXPUNGE" in r for r in untagged), untagged
        fetched = [r for r in untagged if b" FETCH " in r]
        assert b"* 3 FETCH (UID 3)\r\n" in fetched and b"* 4 FETCH (UID 4)\r\n" in fetched
        untagged, done = b.command("STORE 1:* +FLAGS (\\Flagged)")
        assert not any(b"EXPUNGE" in r for r in untagged), untagged
        assert b"* 4 FETCH (FLAGS (\\Flagged))\r\n" in untagged
        untagged, _ = b.command("SEARCH FLAGGED")
        assert untagged == [b"* SEARCH 1 3 4\r\n"], untagged
        untagged, _ = b.command("NOOP")
        assert untagged == [b"* 2 EXPUNGE\r\n"], untagged
        untagged, _ = b.command("FETCH 1:* (UID)")
        assert untagged == [
            b"* 1 FETCH (UID 1)\r\n",
            b"* 2 FETCH (UID 3)\r\n",
            b"* 3 FETCH (UID 4)\r\n",
        ]
        # A UID command may report expunges (RFC 9051 7.5.1), and a MOVE elsewhere is one.
        a.command("MOVE 1 Trash")
        untagged, _ = b.command("UID FETCH 1:* (UID)")
        assert untagged[0] == b"* 1 EXPUNGE\r\n", untagged
        assert untagged[1:] == [b"* 1 FETCH (UID 3)\r\n", b"* 2 FETCH (UID 4)\r\n"]


def test_idle_reports_smtp_delivery_within_a_second(node: NodeProcess) -> None:
    b, exists = session(node, "INBOX", BOB)
    worst = 0.0
    with b:
        for n in range(3):
            b.send("i IDLE\r\n")
            assert b.response().startswith(b"+ ")
            accepted = deliver(node, BOB, message(f"idle {n}"))
            line = b.response()
            latency = time.monotonic() - accepted
            exists += 1
            assert line == b"* %d EXISTS\r\n" % exists, line
            worst = max(worst, latency)
            b.send("DONE\r\n")
            _, done = b.until_tagged("i")
            assert done.startswith(b"i OK"), done
    assert worst < 1.0, f"IDLE took {worst:.3f} s to report new mail"


def test_smtp_250_means_visible_over_imap(node: NodeProcess) -> None:
    b, exists = session(node, "INBOX", BOB)
    client = imaps(node, BOB)
    with b:
        for n in range(5):
            data = message(f"visible {n}")
            deliver(node, BOB, data)
            # No waiting: the 250 came after the commit.
            exists += 1
            untagged, _ = b.command("NOOP")
            assert b"* %d EXISTS\r\n" % exists in untagged, untagged
            _, got = client.status("INBOX", "(MESSAGES)")
            assert got[0].endswith(b"(MESSAGES %d)" % exists), got
            body = b.command(f"FETCH {exists} BODY.PEEK[]")[0][0]
            assert body.endswith(data + b")\r\n")
    client.logout()


def test_uids_strictly_ascending_under_concurrent_appends(node: NodeProcess) -> None:
    fill(node, "Busy", 0)
    uids: list[list[int]] = [[], [], []]

    def work(k: int) -> None:
        with RawImap(node.ports["imaps"]) as raw:
            raw.login()
            for n in range(10):
                uids[k].append(append(raw, "Busy", message(f"busy {k} {n}")))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    watcher, _ = session(node, "Busy")
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for one in uids:
        assert one == sorted(one) and len(set(one)) == 10
    every = sorted(u for one in uids for u in one)
    assert every == list(range(1, 31))  # none reused, none skipped
    with watcher:
        untagged, _ = watcher.command("UID FETCH 1:* (UID)")
        seen = [int(re.search(rb"UID (\d+)", r)[1]) for r in untagged if b"FETCH" in r]
        assert seen == every


def test_uidvalidity_stable_across_sessions_and_restart(node: NodeProcess) -> None:
    fill(node, "Stable", 3)

    def state() -> tuple[bytes, bytes]:
        client = imaps(node)
        _, data = client.status("Stable", "(UIDVALIDITY UIDNEXT)")
        client.logout()
        m = re.search(rb"UIDVALIDITY (\d+) UIDNEXT (\d+)", data[0])
        assert m, data
        return m[1], m[2]

    first = state()
    assert state() == first
    # Expunging the newest message does not give its UID back.
    a, _ = session(node, "Stable")
    with a:
        a.command("STORE 3 +FLAGS.SILENT (\\Deleted)")
        a.command("EXPUNGE")
    assert state() == first
    node.stop()
    node.start()
    assert state() == first
    a, _ = session(node, "Stable")
    with a:
        assert append(a, "Stable", message("after restart")) == int(first[1])
    # A mailbox deleted and created again under the same name gets a new UIDVALIDITY.
    client = imaps(node)
    assert client.delete("Stable")[0] == "OK"
    assert client.create("Stable")[0] == "OK"
    client.logout()
    assert state()[0] != first[0]
