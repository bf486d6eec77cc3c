"""Overload on a real node: a slowed store makes it say "not now" on every protocol, it keeps
serving the sessions it has, and nothing it answered 250 for is lost or stored twice.

The store is slowed for real: the test holds SQLite's write lock (`BEGIN IMMEDIATE` on the node's
own database file, from another connection), so the node's commits wait. The [overload] limits
are tiny so that two stuck SMTP transactions fill them.
"""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import socket
import sqlite3
import ssl
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.cluster_support import send as smtp_send
from tests.conftest import PASSWORD
from tests.nodeproc import NodeProcess
from tests.polling import wait_for

ALICE = "alice@example.test"
BOB = "bob@example.test"
# One client network (127.0.0.0/24: every client here) may hold the whole gate: these tests are
# about the node's limit, not about sharing it between networks.
OVERLOAD = """
[limits]
max_network_share = 1.0

[overload]
initial_limit = 2
min_limit = 2
max_limit = 2
max_pending_commits = 2
# About the store, not the CPU: a busy test machine's loop lag must not shed connections here.
max_loop_lag = 30.0
"""


def _tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def message(tag: str) -> bytes:
    return (
        f"From: <sender@outside.test>\r\nTo: <{ALICE}>\r\nSubject: {tag}\r\n"
        f"Message-ID: <{tag}@outside.test>\r\n\r\nbody of {tag}\r\n"
    ).encode()


def send(node: NodeProcess, tag: str) -> tuple[int, bytes]:
    """One message over a fresh connection: the reply to the final dot (or to what failed)."""
    return smtp_send(
        node.ports["smtp"], [ALICE], message(tag), sender="sender@outside.test", timeout=30
    )


def greeting(node: NodeProcess) -> bytes:
    """The first line a new SMTP connection hears (the connection is closed at once)."""
    address = ("127.0.0.1", node.ports["smtp"])
    with socket.create_connection(address, timeout=10) as sock, sock.makefile("rb") as stream:
        return stream.readline()


def _pop3(node: NodeProcess) -> poplib.POP3_SSL | None:
    try:
        return poplib.POP3_SSL("127.0.0.1", node.ports["pop3s"], context=_tls(), timeout=30)
    except poplib.error_proto as exc:
        assert b"[SYS/TEMP]" in exc.args[0], exc
        return None


def inbox_tags(node: NodeProcess) -> list[str]:
    tags = []
    for data in node.inbox(ALICE):
        for line in data.split(b"\r\n"):
            if line.startswith(b"Subject: "):
                tags.append(line[9:].decode())
    return tags


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    proc = NodeProcess(tmp_path, extra_config=OVERLOAD)
    proc.provision(domains=("example.test",), users={ALICE: PASSWORD, BOB: PASSWORD})
    proc.start()
    yield proc
    proc.stop()


@pytest.mark.timeout(120)
def test_slow_store_refuses_new_work_on_every_protocol_and_loses_nothing(
    node: NodeProcess,
) -> None:
    answers: dict[str, tuple[int, bytes]] = {}
    answers["before"] = send(node, "before")
    assert answers["before"][0] == 250

    # Sessions that exist before the fault.
    smtp = smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=30)
    smtp.ehlo("outside.test")
    # A transaction begun and reset: the session is past its arrival (no reservation held).
    assert smtp.mail("sender@outside.test")[0] == 250
    assert smtp.rset()[0] == 250
    imap = imaplib.IMAP4_SSL("127.0.0.1", node.ports["imaps"], ssl_context=_tls(), timeout=30)
    imap.login(ALICE, PASSWORD)
    # The node's own writes (heartbeat, the IMAP login's known network) can fill the two
    # pending commits this node allows for a moment: before the fault a refused connection is
    # retried, as a client would after -ERR [SYS/TEMP].
    pop = wait_for(lambda: _pop3(node), 10, "a POP3 session before the fault")
    pop.user(BOB)

    # Two transactions take the limit's two slots (their store work, once DATA is in) ...
    stuck_sessions = []
    for _ in range(2):
        client = smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=30)
        client.ehlo("outside.test")
        assert client.mail("sender@outside.test")[0] == 250
        assert client.rcpt(ALICE)[0] == 250
        stuck_sessions.append(client)
    blocker = sqlite3.connect(node.db_path, isolation_level=None, timeout=10)
    blocker.execute("BEGIN IMMEDIATE")
    pool = ThreadPoolExecutor(2)
    stuck: list[Future[tuple[int, bytes]]] = []
    try:
        # ... and reach their commit, which waits for the lock.
        stuck = [
            pool.submit(client.data, message(f"stuck{i}"))
            for i, client in enumerate(stuck_sessions)
        ]
        # Their data is on its way; once both wait in the store, new connections hear 421.
        wait_for(lambda: greeting(node).startswith(b"421"), 10, "both slots taken")
        code, text = send(node, "refused-at-connect")
        assert code == 421, text
        assert b"4.3.2" in text
        # The session the node already had is still served, but gets no new transaction.
        assert smtp.noop()[0] == 250
        code, text = smtp.mail("sender@outside.test")
        assert (code, text[:5]) == (451, b"4.3.0"), text
        assert b"try again later" in text
        assert smtp.noop()[0] == 250
        # IMAP: store work is refused in the session, which stays usable; new ones hear BYE.
        status, data = imap.select("INBOX")
        assert status == "NO" and b"[UNAVAILABLE]" in data[0], data
        assert imap.noop()[0] == "OK"
        with pytest.raises(imaplib.IMAP4.error, match=r"BYE \[UNAVAILABLE\]"):
            imaplib.IMAP4_SSL("127.0.0.1", node.ports["imaps"], ssl_context=_tls(), timeout=30)
        # POP3: a login now is temporarily refused, as is a new connection.
        with pytest.raises(poplib.error_proto, match=r"SYS/TEMP"):
            pop.pass_(PASSWORD)
        with pytest.raises(poplib.error_proto, match=r"SYS/TEMP"):
            poplib.POP3_SSL("127.0.0.1", node.ports["pop3s"], context=_tls(), timeout=30)
        # Nothing can have been committed while the lock is held.
        assert not any(f.done() for f in stuck)
    finally:
        blocker.execute("COMMIT")
        blocker.close()

    for i, future in enumerate(stuck):
        answers[f"stuck{i}"] = future.result(timeout=30)
    pool.shutdown()
    for client in stuck_sessions:
        client.quit()
    # Once the store keeps up again, the node takes work again.
    answers["after"] = wait_for(
        lambda: (a := send(node, "after"))[0] == 250 and a, 10, "250 after the fault"
    )
    # (The store's own background commits, heartbeats and status, share the bound of two
    # pending commits with it, so one try may still meet a full store on a busy machine.)
    wait_for(lambda: imap.select("INBOX")[0] == "OK", 10, "IMAP served after the fault")
    imap.logout()
    smtp.quit()
    pop.close()

    accepted = sorted(tag for tag, (code, _) in answers.items() if code == 250)
    assert {"before", "after"} <= set(accepted)
    assert all(code in (250, 421, 451) for code, _ in answers.values()), answers
    # Every 250 is in the mailbox exactly once, and nothing else is (no half-accepted refusal).
    assert sorted(inbox_tags(node)) == accepted
    log = node.log()
    assert "Traceback" not in log


@pytest.mark.timeout(60)
def test_a_burst_past_the_limit_is_refused_at_connect_not_at_mail(tmp_path: Path) -> None:
    """A burst that queued while the node was busy: asyncio accepts all of it in one go, before
    it builds any session. Every connection past the limit must hear 421 at once, not a 220
    and then a 451 at MAIL (a greeting and EHLO spent for nothing, on both sides)."""
    import os
    import signal
    import socket

    limit = 3
    proc = NodeProcess(
        tmp_path,
        extra_config="[limits]\nmax_network_share = 1.0\n"
        f"[overload]\ninitial_sessions = {limit}\nmin_sessions = {limit}\n"
        f"max_sessions = {limit}\nmax_loop_lag = 30.0\n",
    )
    proc.provision(domains=("example.test",), users={ALICE: PASSWORD})
    proc.start()
    assert proc.proc is not None
    sockets: list[socket.socket] = []
    try:
        os.kill(proc.proc.pid, signal.SIGSTOP)  # busy: the kernel queues the burst
        try:
            for _ in range(20):
                sockets.append(socket.create_connection(("127.0.0.1", proc.ports["smtp"]), 5))
        finally:
            os.kill(proc.proc.pid, signal.SIGCONT)
        greeted: list[socket.socket] = []
        for sock in sockets:
            sock.settimeout(10)
            with sock.makefile("rb") as stream:
                reply = stream.readline()
            if reply.startswith(b"220"):
                greeted.append(sock)
            else:
                assert reply.startswith(b"421 4.3.2"), reply
        assert len(greeted) == limit
        # Every session admitted has its slot: each delivers a message, none hears 451.
        for i, sock in enumerate(greeted):
            with sock.makefile("rwb") as stream:

                def say(line: bytes, stream: Any = stream) -> bytes:
                    stream.write(line + b"\r\n")
                    stream.flush()
                    reply: bytes = stream.readline()
                    while reply[3:4] == b"-":
                        reply = stream.readline()
                    return reply

                assert say(b"EHLO outside.test").startswith(b"250")
                assert say(b"MAIL FROM:<sender@outside.test>").startswith(b"250")
                assert say(f"RCPT TO:<{ALICE}>".encode()).startswith(b"250")
                assert say(b"DATA").startswith(b"354")
                assert say(message(f"burst{i}") + b".").startswith(b"250")
        assert sorted(inbox_tags(proc)) == [f"burst{i}" for i in range(limit)]
    finally:
        for sock in sockets:
            sock.close()
        proc.stop()
