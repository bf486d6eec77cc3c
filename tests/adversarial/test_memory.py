"""Memory is bounded by design: message data in flight goes to the spool on disk, not to RAM.

Fifty sessions each stop halfway through a 20 MB message (an IMAP APPEND literal, an SMTP DATA
section) and hang there. The node's resident memory must grow by less than 100 MB while they
hang (it grew by about 500 MB for either attack when they were held in memory), the octets
must be on disk in the node's spool (so the test knows the node has read them), and a customer
on another address is served all the while.
"""

from __future__ import annotations

import contextlib
import os
import re
import smtplib
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.adversarial.conftest import PASSWORD, assert_unharmed, attacker, served
from tests.nodeproc import NodeProcess
from tests.rawclient import RawClient

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


def spooled(node: NodeProcess) -> list[int]:
    """Sizes of the spool files the node holds open (they have no name: see server/spool.py)."""
    assert node.proc is not None
    spool = str(node.data_dir.resolve() / "spool") + "/"
    sizes = []
    fds = Path(f"/proc/{node.proc.pid}/fd")
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(fd).startswith(spool):
                sizes.append(os.stat(fd).st_size)
    return sizes


def body(size: int) -> bytes:
    head = b"From: a@remote.test\r\nSubject: big\r\n\r\n"
    return head + LINE * ((size - len(head)) // len(LINE) + 1)


@contextlib.contextmanager
def hanging(node: NodeProcess, start: Callable[[int], socket.socket]) -> Iterator[float]:
    """Open SESSIONS sessions that each stop halfway through a message; yield the RSS growth
    in MB (before them to the most while they hang) and keep them open until resumed."""
    before = rss_mb(node)
    socks: list[socket.socket] = []
    try:
        for n in range(SESSIONS):
            socks.append(start(n))
        peak, deadline = before, time.monotonic() + 30
        # Until the node has read what was sent: it is on disk, or (without a spool) in memory.
        while time.monotonic() < deadline:
            peak = max(peak, rss_mb(node))
            if sum(spooled(node)) >= SESSIONS * (HALF - 1_000_000):
                break
            time.sleep(0.25)
        for _ in range(8):  # and a while longer: nothing may grow as they hang
            peak = max(peak, rss_mb(node))
            time.sleep(0.25)
        yield peak - before
    finally:
        for sock in socks:
            sock.close()


def imap_session(node: NodeProcess, n: int) -> socket.socket:
    user = ("bob@example.test", "victim@example.test")[n % 2]
    raw = RawClient(node.ports["imaps"], source=attacker(1 + n % ADDRESSES), timeout=30)
    greeting = raw.sock.recv(4096)
    assert greeting.startswith(b"* OK"), greeting
    # The APPEND waits for the login: before it, a literal may have only 8 KiB.
    raw.send(f'l LOGIN {user} "{PASSWORD}"\r\n')
    while b"\r\n" not in raw.buffer:
        raw._fill()
    assert raw.buffer.startswith(b"l OK"), raw.buffer
    raw.send(f"a APPEND INBOX {{{MESSAGE}}}\r\n")
    while not raw.buffer.endswith(b"\r\n+ Ready for literal data\r\n"):
        raw._fill()
    raw.send(body(MESSAGE)[:HALF])
    return raw.sock


def smtp_session(node: NodeProcess, n: int) -> socket.socket:
    client = smtplib.SMTP(
        "127.0.0.1", node.ports["smtp"], timeout=30, source_address=(attacker(1 + n % ADDRESSES), 0)
    )
    client.ehlo("attacker.test")
    assert client.mail("a@remote.test")[0] == 250
    assert client.rcpt("bob@example.test")[0] == 250
    assert client.docmd("DATA")[0] == 354
    assert client.sock is not None
    client.sock.sendall(body(MESSAGE)[:HALF])
    return client.sock


def test_fifty_half_sent_appends_stay_on_disk(fresh_node) -> None:  # type: ignore[no-untyped-def]
    node = fresh_node()
    with served(node) as report, hanging(node, lambda n: imap_session(node, n)) as growth:
        held = spooled(node)
        print(f"IMAP: {SESSIONS} half-sent 20 MB APPENDs: RSS +{growth:.1f} MB")
        assert growth < MAX_GROWTH_MB, f"RSS grew {growth:.0f} MB"
        assert len(held) == SESSIONS and min(held) >= HALF - 1_000_000, held
    assert_unharmed(node, report)
    time.sleep(0.5)
    assert spooled(node) == []  # the clients went away: their spool files are gone at once


def test_fifty_half_sent_data_sections_stay_on_disk(fresh_node) -> None:  # type: ignore[no-untyped-def]
    node = fresh_node()
    with served(node) as report, hanging(node, lambda n: smtp_session(node, n)) as growth:
        held = spooled(node)
        print(f"SMTP: {SESSIONS} half-sent 20 MB DATA sections: RSS +{growth:.1f} MB")
        assert growth < MAX_GROWTH_MB, f"RSS grew {growth:.0f} MB"
        assert len(held) == SESSIONS and min(held) >= HALF - 1_000_000, held
    assert_unharmed(node, report)
    time.sleep(0.5)
    assert spooled(node) == []
