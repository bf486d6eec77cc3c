"""Memory is bounded by design: message data in flight goes to the spool on disk, not to RAM.

Fifty sessions each stop halfway through a 20 MB message (an IMAP APPEND literal, an SMTP DATA
section) and hang there. The node's resident memory must grow by less than 100 MB while they
hang (it grew by about 500 MB for either attack when they were held in memory), the octets
must be on disk in the node's spool (so the test knows the node has read them), and a customer
on another address is served all the while.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.adversarial.conftest import PASSWORD, assert_unharmed, attacker, served
from tests.adversarial.customer import CUSTOMER
from tests.nodeproc import NodeProcess
from tests.polling import wait_for
from tests.rawclient import RawClient, client_tls

SESSIONS = 50
ADDRESSES = 5  # attackers, SESSIONS / ADDRESSES sessions each: under every per-address bound
MESSAGE = 20 * 1000 * 1000
HALF = MESSAGE // 2
MAX_GROWTH_MB = 100
LINE = b"x" * 76 + b"\r\n"


def rss_mb(node: NodeProcess) -> float:
    assert node.proc is not None
    status = Path(f"/proc/{node.proc.pid}/status").read_text()
    found = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert found is not None
    return int(found[1]) / 1024


def body(size: int) -> bytes:
    head = b"From: a@remote.test\r\nSubject: big\r\n\r\n"
    return head + LINE * ((size - len(head)) // len(LINE) + 1)


@contextlib.contextmanager
def hanging(node: NodeProcess, start: Callable[[int], Session]) -> Iterator[float]:
    """Open SESSIONS sessions, each up to the start of a message (logged in, APPEND sent, or
    DATA answered 354); then each sends half of it and stops. Yields the RSS growth in MB
    (before the sessions to the most while they hang); the sessions end with the block."""
    before = rss_mb(node)
    sessions: list[Session] = []
    try:
        for n in range(SESSIONS):
            sessions.append(start(n))
        half = body(MESSAGE)[:HALF]
        for sock, _ in sessions:
            sock.sendall(half)
        peak, deadline = before, time.monotonic() + 60
        # Until the node has read what was sent: it is on disk, or (without a spool) in memory.
        while time.monotonic() < deadline:
            peak = max(peak, rss_mb(node))
            if sum(node.spooled()) >= SESSIONS * (HALF - 1_000_000):
                break
            time.sleep(0.25)
        for _ in range(8):  # and a while longer: nothing may grow as they hang
            peak = max(peak, rss_mb(node))
            time.sleep(0.25)
        yield peak - before
    finally:
        for _, close in sessions:
            close()


# A session's socket, to send the message on, and how to end the session.
Session = tuple[socket.socket, Callable[[], None]]


def imap_session(node: NodeProcess, n: int) -> Session:
    user = ("bob@example.test", "victim@example.test")[n % 2]
    raw = RawClient(node.ports["imaps"], source=attacker(1 + n % ADDRESSES), timeout=30)
    # The APPEND waits for the login: before it, a literal may have only 8 KiB.
    raw.send(f'l LOGIN {user} "{PASSWORD}"\r\n')
    while b"\r\nl " not in b"\r\n" + raw.buffer:
        raw._fill()
    assert b"\r\nl OK" in b"\r\n" + raw.buffer, raw.buffer
    raw.send(f"a APPEND INBOX {{{MESSAGE}}}\r\n")
    while not raw.buffer.endswith(b"\r\n+ Ready for literal data\r\n"):
        raw._fill()
    return raw.sock, raw.sock.close


def smtp_session(node: NodeProcess, n: int) -> Session:
    client = smtplib.SMTP(
        "127.0.0.1", node.ports["smtp"], timeout=30, source_address=(attacker(1 + n % ADDRESSES), 0)
    )
    client.ehlo("attacker.test")
    assert client.mail("a@remote.test")[0] == 250
    assert client.rcpt("bob@example.test")[0] == 250
    assert client.docmd("DATA")[0] == 354
    assert client.sock is not None
    return client.sock, client.close


def warm(node: NodeProcess) -> None:
    """The customer's first login costs a whole password hash (about a second on a loaded test
    machine, attack or not); later ones hit the verifier's cache. Pay it before measuring."""
    with RawClient(node.ports["imaps"], source=CUSTOMER) as raw:
        raw.send(f'l LOGIN alice@example.test "{PASSWORD}"\r\n')
        while b"\r\nl " not in b"\r\n" + raw.buffer:
            raw._fill()


def test_fifty_half_sent_appends_stay_on_disk(fresh_node) -> None:  # type: ignore[no-untyped-def]
    node = fresh_node()
    warm(node)
    with served(node) as report, hanging(node, lambda n: imap_session(node, n)) as growth:
        held = node.spooled()
        print(f"IMAP: {SESSIONS} half-sent 20 MB APPENDs: RSS +{growth:.1f} MB")
        assert growth < MAX_GROWTH_MB, f"RSS grew {growth:.0f} MB"
        assert len(held) == SESSIONS and min(held) >= HALF - 1_000_000, held
    # The clients went away: their spool files are gone at once.
    wait_for(lambda: node.spooled() == [], timeout=2, what="the spool files to be closed")
    assert_unharmed(node, report)


def test_fifty_half_sent_data_sections_stay_on_disk(fresh_node) -> None:  # type: ignore[no-untyped-def]
    node = fresh_node()
    warm(node)
    with served(node) as report, hanging(node, lambda n: smtp_session(node, n)) as growth:
        held = node.spooled()
        print(f"SMTP: {SESSIONS} half-sent 20 MB DATA sections: RSS +{growth:.1f} MB")
        assert growth < MAX_GROWTH_MB, f"RSS grew {growth:.0f} MB"
        assert len(held) == SESSIONS and min(held) >= HALF - 1_000_000, held
    wait_for(lambda: node.spooled() == [], timeout=2, what="the spool files to be closed")
    assert_unharmed(node, report)


def _append(node: NodeProcess, user: str, message: bytes, source: str) -> None:
    raw = RawClient(node.ports["imaps"], source=source, timeout=60)
    with raw:
        raw.send(f'l LOGIN {user} "{PASSWORD}"\r\n')
        while b"l OK" not in raw.buffer:
            raw._fill()
        raw.send(b"a APPEND INBOX {%d+}\r\n" % len(message) + message + b"\r\n")
        while b"a OK" not in raw.buffer:
            raw._fill()


def test_readers_that_stall_on_large_fetches_hold_one_message_of_memory(
    fresh_node,  # type: ignore[no-untyped-def]
) -> None:
    # Ten sessions FETCH a 20 MB message and read nothing. Their answers are held in memory
    # until the client takes them: within the node's memory budget, at most one piece at a time
    # per account, so the node does not hold ten of them (before: 520 MB) and another customer's
    # large FETCH is still served.
    node = fresh_node()
    warm(node)
    _append(node, "bob@example.test", body(MESSAGE), attacker(1))
    _append(node, "alice@example.test", body(2 * 1000 * 1000), CUSTOMER)
    stalled: list[socket.socket] = []
    with served(node) as report:
        before = rss_mb(node)
        for n in range(10):
            raw = socket.create_connection(
                ("127.0.0.1", node.ports["imaps"]), source_address=(attacker(1 + n % 5), 0)
            )
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock = client_tls().wrap_socket(raw)
            sock.sendall(
                f'l LOGIN bob@example.test "{PASSWORD}"\r\n'
                "s SELECT INBOX\r\nf FETCH 1 BODY.PEEK[]\r\n".encode()
            )
            stalled.append(sock)
        time.sleep(2.0)
        growth = rss_mb(node) - before
        # The customer's own large FETCH is served meanwhile.
        with RawClient(node.ports["imaps"], source=CUSTOMER, timeout=30) as raw:
            raw.send(f'l LOGIN alice@example.test "{PASSWORD}"\r\ns SELECT INBOX\r\n')
            raw.send(b"f FETCH 1:* BODY.PEEK[]\r\n")
            while b"f OK" not in raw.buffer and b"f NO" not in raw.buffer:
                raw._fill()
            assert b"f OK" in raw.buffer, raw.buffer[-300:]
        for sock in stalled:
            sock.close()
    print(f"10 stalled 20 MB FETCHes: RSS +{growth:.1f} MB")
    assert growth < 2 * MAX_GROWTH_MB, f"RSS grew {growth:.0f} MB"
    assert_unharmed(node, report)
