"""Attacks through CHUNKING (RFC 3030 BDAT) on the MX, while the customer (alice) is served.

BDAT hands the server a count instead of an end marker, so an attacker tries what a count allows:
announcing 4 GB and trickling it (to hold connections, or memory), sending thousands of one-octet
chunks (to make per-chunk work the cost), and hiding commands inside chunks, or behind refused
ones, to have them run (SMTP smuggling).
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailfort.protocol.smtp.session import CALL_LIMITS
from tests.adversarial.conftest import assert_unharmed, attacker, served, start_hostile_node
from tests.adversarial.test_memory import rss_mb
from tests.nodeproc import NodeProcess

ATTACK_SECONDS = 3.0  # long enough for the customer to do a few rounds of everything
IDLE = 2.0  # the node's SMTP idle timeout here: a trickle is cut within it plus its octets' due
HELLO = b"EHLO attacker.test\r\n"
MAIL_RCPT = b"MAIL FROM:<x@remote.test>\r\nRCPT TO:<bob@example.test>\r\n"
ENVELOPE = HELLO + MAIL_RCPT
SESSIONS = 10  # under the share of the gate's sessions one network may hold
_REPLY = re.compile(rb"^(\d{3}) ([^\r\n]*)\r\n", re.MULTILINE)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = start_hostile_node(
        tmp_path_factory.mktemp("chunking"), f"[limits]\nsmtp_idle_timeout = {IDLE}\n"
    )
    yield proc
    proc.stop()


def connect(node: NodeProcess, n: int) -> socket.socket:
    sock = socket.create_connection(
        ("127.0.0.1", node.ports["smtp"]), timeout=30, source_address=(attacker(n), 0)
    )
    return sock


def read_replies(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """`count` final reply lines (or fewer, when the server closes first)."""
    buffer, found = b"", []
    while len(found) < count:
        match = _REPLY.search(buffer)
        if match is None:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buffer += chunk
            continue
        found.append((int(match[1]), match[2]))
        buffer = buffer[match.end() :]
    return found


def cpu_seconds(node: NodeProcess) -> float:
    assert node.proc is not None
    fields = Path(f"/proc/{node.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


def test_a_4gb_chunk_trickled_is_cut_off(node: NodeProcess) -> None:
    """Ten sessions announce BDAT 4000000000 and send a few octets a second: each is past the
    size limit at once (nothing of it is kept) and is closed by the minimum data rate
    (421 4.4.2) within the idle time and a little, holding neither memory nor its connection."""
    before = rss_mb(node)
    answers: list[tuple[int, bytes, float]] = []

    def trickle(n: int) -> None:
        with connect(node, n % 5 + 1) as sock:
            sock.sendall(ENVELOPE + b"BDAT 4000000000 LAST\r\n")
            assert [code for code, _ in read_replies(sock, 4)] == [220, 250, 250, 250]
            started = time.monotonic()
            sock.settimeout(0.2)
            while time.monotonic() - started < IDLE * 5:
                try:
                    sock.sendall(b"x")
                    data = sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
                match = _REPLY.search(data)
                if match is not None:
                    answers.append((int(match[1]), match[2], time.monotonic() - started))
                break

    with served(node) as report:
        threads = [threading.Thread(target=trickle, args=(n,)) for n in range(SESSIONS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(answers) == SESSIONS, answers
    for code, text, seconds in answers:
        assert code == 421 and text.startswith(b"4.4.2") and b"slowly" in text, text
        assert seconds < IDLE + 3, seconds
    assert rss_mb(node) - before < 50
    assert node.spooled() == []
    assert_unharmed(node, report)


def test_many_tiny_chunks_cost_a_bounded_amount(node: NodeProcess) -> None:
    """Two-octet chunks as fast as the socket takes them, from five sessions at a time for a few
    seconds: each chunk is a command line and a reply, and the BDAT budget (1,000 a session, as
    any command's) closes the session."""
    budget = CALL_LIMITS["BDAT"]
    chunks = budget + 1
    # Each chunk an empty line: one-octet chunks would make one line, too long at 1,000 octets.
    wire = b"BDAT 2\r\n\r\n" * chunks
    codes: list[list[int]] = []
    cpu_before = cpu_seconds(node)

    throttled = 0

    def flood(n: int) -> None:
        nonlocal throttled
        deadline = time.monotonic() + ATTACK_SECONDS
        while time.monotonic() < deadline:
            with connect(node, n + 11) as sock:
                try:
                    sock.sendall(ENVELOPE)
                    opening = [code for code, _ in read_replies(sock, 4)]
                except OSError:
                    opening = []
                if opening != [220, 250, 250, 250]:
                    # The network's connection rate (421 at connect) holds the flood back too.
                    throttled += 1
                    time.sleep(0.05)
                    continue
                sender = threading.Thread(target=_send_all, args=(sock, wire))
                sender.start()
                codes.append([code for code, _ in read_replies(sock, chunks)])
                sender.join()

    with served(node) as report:
        threads = [threading.Thread(target=flood, args=(n,)) for n in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    spent = cpu_seconds(node) - cpu_before
    sent = len(codes) * chunks
    print(
        f"{len(codes)} sessions of {chunks} two-octet chunks ({throttled} refused at connect):"
        f" {spent:.2f} s of node CPU"
    )
    assert len(codes) >= 5
    for got in codes:
        assert got == [250] * budget + [421], got[-3:]
    # Commands and replies, the customer's work besides: well under a millisecond a chunk.
    assert spent < 0.001 * sent + 5, spent
    assert_unharmed(node, report)


def _send_all(sock: socket.socket, data: bytes) -> None:
    # The node closes the session past the budget, while this is still sending.
    with contextlib.suppress(OSError):
        sock.sendall(data)


SMUGGLED = b"MAIL FROM:<admin@example.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\nevil\r\n"


@pytest.mark.parametrize(
    "payload",
    [
        b"Subject: carrier\r\n\r\nhi\r\n.\r\n" + SMUGGLED + b".\r\n",
        b"Subject: carrier\r\n\r\nhi\n.\n" + SMUGGLED.replace(b"\r\n", b"\n") + b".\n",
        b"Subject: carrier\r\n\r\nhi\r\n.\r\nBDAT 6 LAST\r\nRCPT TO:<victim@example.test>\r\n",
    ],
    ids=["crlf", "bare-lf", "bdat-inside"],
)
def test_commands_inside_chunks_never_run(node: NodeProcess, payload: bytes) -> None:
    """The chunk is data whatever it holds: the message reaches bob with the would-be commands
    in it, byte for byte, and nothing reaches the victim. A refused chunk (before RCPT) holding
    commands is read and dropped the same way."""
    victim = len(node.inbox("victim@example.test"))
    bob = len(node.inbox("bob@example.test"))
    with connect(node, 40) as sock:
        refused = b"BDAT %d\r\n" % len(SMUGGLED) + SMUGGLED  # before MAIL: 503, and dropped
        chunk = b"BDAT %d LAST\r\n" % len(payload) + payload
        sock.sendall(HELLO + refused + MAIL_RCPT + chunk + b"QUIT\r\n")
        got = read_replies(sock, 7)
    assert [code for code, _ in got] == [220, 250, 503, 250, 250, 250, 221], got
    assert len(node.inbox("victim@example.test")) == victim
    stored = node.inbox("bob@example.test")[bob:]
    assert len(stored) == 1 and stored[0].endswith(b"\r\n" + payload)
