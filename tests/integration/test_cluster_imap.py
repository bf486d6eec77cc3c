"""Any node serves any mailbox: two nodes on one PostgreSQL schema.

An IMAP session on node A sees flags, expunges and new mail caused on node B at NOOP; IDLE on A
reports a message delivered over SMTP to B within a second (LISTEN/NOTIFY across nodes); UIDs
handed out by concurrent deliveries on both nodes are unique and ascending.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cluster_support import PgSchema, base_dsn, cluster_node, send
from tests.conftest import PASSWORD, RawImap
from tests.nodeproc import NodeProcess

ALICE = "alice@example.test"
BOB = "bob@example.test"
CAROL = "carol@example.test"


@dataclass
class Pair:
    schema: PgSchema
    a: NodeProcess
    b: NodeProcess


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    schema = PgSchema.create(base_dsn())
    root: Path = tmp_path_factory.mktemp("cluster-imap")
    a = cluster_node(root, "node-a", schema.url)
    b = cluster_node(root, "node-b", schema.url)
    try:
        schema.provision(users={ALICE: PASSWORD, BOB: PASSWORD, CAROL: PASSWORD})
        a.start()
        b.start()
        yield Pair(schema, a, b)
        for node in (a, b):
            assert "Traceback" not in node.log(), node.log()[-3000:]
    finally:
        a.stop()
        b.stop()
        schema.drop()


def message(subject: str, to: str = ALICE) -> bytes:
    return f"From: x@remote.test\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nbody\r\n".encode()


def session(node: NodeProcess, mailbox: str, user: str = ALICE) -> tuple[RawImap, int]:
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


def test_session_on_a_sees_flags_expunges_and_new_mail_from_b(pair: Pair) -> None:
    with RawImap(pair.b.ports["imaps"]) as setup:
        setup.login()
        _, done = setup.command("CREATE Shared")
        assert done.startswith(b"a OK"), done
        for n in range(3):
            append(setup, "Shared", message(f"shared {n}"))
    a, exists = session(pair.a, "Shared")
    b, _ = session(pair.b, "Shared")
    with a, b:
        assert exists == 3
        # New mail appended on B.
        uid = append(b, "Shared", message("from b"))
        untagged, _ = a.command("NOOP")
        assert b"* 4 EXISTS\r\n" in untagged, untagged
        untagged, _ = a.command("FETCH 4 (UID)")
        assert untagged == [b"* 4 FETCH (UID %d)\r\n" % uid], untagged
        # Flags set on B.
        b.command("STORE 1 +FLAGS.SILENT (\\Flagged $ByB)")
        untagged, _ = a.command("NOOP")
        assert len(untagged) == 1, untagged
        assert untagged[0].startswith(b"* 1 FETCH (UID 1 FLAGS ("), untagged
        assert b"\\Flagged" in untagged[0] and b"$ByB" in untagged[0], untagged
        b.command("STORE 1 -FLAGS.SILENT (\\Flagged)")
        untagged, _ = a.command("NOOP")
        assert untagged == [b"* 1 FETCH (UID 1 FLAGS ($ByB))\r\n"], untagged
        # Expunge on B.
        b.command("STORE 2 +FLAGS.SILENT (\\Deleted)")
        untagged, _ = b.command("EXPUNGE")
        assert untagged == [b"* 2 EXPUNGE\r\n"], untagged
        untagged, _ = a.command("NOOP")
        assert b"* 2 EXPUNGE\r\n" in untagged, untagged
        untagged, _ = a.command("UID FETCH 1:* (UID)")
        assert [int(m) for m in re.findall(rb"UID (\d+)\)", b"".join(untagged))] == [1, 3, uid]
        # Mail delivered over SMTP to B, seen in A's INBOX session.
        inbox, before = session(pair.a, "INBOX")
        with inbox:
            code, _ = send(pair.b.ports["smtp"], [ALICE], message("smtp via b"))
            assert code == 250
            untagged, _ = inbox.command("NOOP")
            assert b"* %d EXISTS\r\n" % (before + 1) in untagged, untagged


def test_idle_on_a_reports_smtp_delivery_to_b_within_a_second(pair: Pair) -> None:
    a, exists = session(pair.a, "INBOX", BOB)
    worst = 0.0
    with a:
        for n in range(5):
            a.send("i IDLE\r\n")
            assert a.response().startswith(b"+ ")
            code, _ = send(pair.b.ports["smtp"], [BOB], message(f"idle {n}", BOB))
            accepted = time.monotonic()  # B's 250
            assert code == 250
            a.sock.settimeout(5)
            line = a.response()
            latency = time.monotonic() - accepted
            exists += 1
            assert line == b"* %d EXISTS\r\n" % exists, line
            worst = max(worst, latency)
            a.send("DONE\r\n")
            _, done = a.until_tagged("i")
            assert done.startswith(b"i OK"), done
    print(f"IDLE on node A, delivery on node B: worst latency {worst * 1000:.0f} ms")
    assert worst < 1.0, f"IDLE on A took {worst:.3f} s to report B's delivery"


def test_concurrent_deliveries_on_both_nodes_get_unique_ascending_uids(pair: Pair) -> None:
    per_sender = 15
    senders = [(pair.a, "a0"), (pair.a, "a1"), (pair.b, "b0"), (pair.b, "b1")]
    failures: list[str] = []

    def run(node: NodeProcess, tag: str) -> None:
        for n in range(per_sender):
            code, text = send(node.ports["smtp"], [CAROL], message(f"uid {tag} {n:03d}", CAROL))
            if code != 250:
                failures.append(f"{tag} {n}: {code} {text!r}")

    threads = [threading.Thread(target=run, args=s) for s in senders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures, failures

    uids = pair.schema.uids(CAROL)
    assert len(uids) == per_sender * len(senders)
    assert len(set(uids)) == len(uids), "a UID was handed out twice"
    assert uids == sorted(uids)
    # Each sender's messages got ascending UIDs in the order their 250s came.
    with RawImap(pair.a.ports["imaps"]) as raw:
        raw.login(CAROL)
        raw.command("SELECT INBOX")
        untagged, done = raw.command("UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert done.startswith(b"a OK"), done
    seen: dict[str, list[tuple[int, int]]] = {}
    for r in untagged:
        m = re.search(rb"UID (\d+).*Subject: uid (\w+) (\d+)", r, re.S)
        assert m, r
        seen.setdefault(m[2].decode(), []).append((int(m[3]), int(m[1])))
    assert sorted(seen) == sorted(tag for _, tag in senders)
    for tag, pairs in seen.items():
        pairs.sort()
        assert [n for n, _ in pairs] == list(range(per_sender)), (tag, pairs)
        tag_uids = [uid for _, uid in pairs]
        assert tag_uids == sorted(tag_uids), f"{tag}: UIDs not ascending in send order {pairs}"
    # Both nodes see the same numbering.
    with RawImap(pair.b.ports["imaps"]) as raw:
        raw.login(CAROL)
        raw.command("SELECT INBOX")
        other, _ = raw.command("UID FETCH 1:* (UID)")
    assert [int(x) for x in re.findall(rb"UID (\d+)", b"".join(other))] == uids
