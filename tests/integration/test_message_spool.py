"""Large messages through the spool, on a real node with real clients.

A 20 MB APPEND (one literal, MULTIAPPEND, LITERAL+, BINARY `~{n}`) and a 20 MB SMTP message
arrive byte for byte; a client that goes away in the middle of either leaves no spool file
behind; and an account's logged-in sessions are capped across IMAP, POP3 and submission.
"""

from __future__ import annotations

import base64
import os
import poplib
import smtplib
from collections.abc import Iterator

import pytest

from tests.conftest import PASSWORD, RawImap, client_tls, start_node
from tests.nodeproc import NodeProcess
from tests.polling import wait_for

CAP = 3
BIG = 20 * 1000 * 1000


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = start_node(
        tmp_path_factory,
        extra_config=f"[limits]\nmax_sessions_per_account = {CAP}\n",
        users={"dave@example.test": PASSWORD, "erin@example.test": PASSWORD},
    )
    yield proc
    proc.stop()
    assert "Traceback" not in proc.log()


def message(size: int, *, seed: int = 0) -> bytes:
    """Lines of text that include what must survive: leading dots, long lines, 8-bit octets."""
    head = b"From: a@remote.test\r\nSubject: big %d\r\n\r\n" % seed
    lines = [b".leading dot", b"..two dots", b"x" * 980, b"caf\xc3\xa9 \xff", b"", b"."]
    body = bytearray(head)
    n = 0
    while len(body) < size:
        body += lines[n % len(lines)] + b" %d\r\n" % n
        n += 1
    return bytes(body)


def no_spool_files(node: NodeProcess) -> None:
    wait_for(lambda: node.spooled() == [], timeout=5, what="the spool files to be closed")


def test_a_20_mb_append_arrives_byte_for_byte(node: NodeProcess) -> None:
    data = message(BIG, seed=1)
    with RawImap(node.ports["imaps"], timeout=60) as raw:
        raw.login("dave@example.test")
        raw.send(b"a APPEND INBOX (\\Seen) {%d}\r\n" % len(data))
        assert raw.line().startswith(b"+ ")
        raw.send(data + b"\r\n")
        _, done = raw.until_tagged("a")
        assert done.startswith(b"a OK [APPENDUID"), done
    assert node.inbox("dave@example.test") == [data]
    no_spool_files(node)


def test_multiappend_with_binary_and_non_synchronizing_literals(node: NodeProcess) -> None:
    big = message(3_000_000, seed=2)
    binary = b"Content-Type: application/octet-stream\r\n\r\n" + os.urandom(200_000)
    small = b"Subject: small\r\n\r\nhi\r\n"
    with RawImap(node.ports["imaps"], timeout=60) as raw:
        raw.login("erin@example.test")
        raw.command("CREATE Multi")
        raw.send(
            b"m APPEND Multi {%d+}\r\n" % len(big)
            + big
            + b" (\\Flagged) ~{%d+}\r\n" % len(binary)
            + binary
            + b" {%d+}\r\n" % len(small)
            + small
            + b"\r\n"
        )
        _, done = raw.until_tagged("m")
        assert done.startswith(b"m OK [APPENDUID"), done
        raw.command("SELECT Multi")
        untagged, done = raw.command("FETCH 2 BINARY.PEEK[]", tag="f")
        assert done.startswith(b"f OK"), done
        assert binary in untagged[0]
    assert node.inbox("erin@example.test", "Multi") == [big, binary, small]
    no_spool_files(node)


def test_a_20_mb_smtp_message_arrives_byte_for_byte(node: NodeProcess) -> None:
    data = message(BIG, seed=3)
    with smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=60) as client:
        # smtplib dot-stuffs the lines that begin with "."; the node must undo exactly that.
        assert client.sendmail("a@remote.test", ["bob@example.test"], data) == {}
    (stored,) = [m for m in node.inbox("bob@example.test") if b"Subject: big 3" in m[:2000]]
    assert stored.endswith(data)
    head = stored[: len(stored) - len(data)]
    assert head.startswith(b"Return-Path: <a@remote.test>\r\n")
    assert head.count(b"\r\nReceived: from ") == 1
    no_spool_files(node)


def test_a_client_gone_mid_literal_frees_its_spool_file_at_once(node: NodeProcess) -> None:
    with RawImap(node.ports["imaps"], timeout=30) as raw:
        raw.login("dave@example.test")
        raw.send(b"a APPEND INBOX {%d}\r\n" % BIG)
        assert raw.line().startswith(b"+ ")
        raw.send(message(2_000_000))
        wait_for(lambda: sum(node.spooled()) >= 1_900_000, timeout=10, what="the spool")
        assert len(node.spooled()) == 1
    no_spool_files(node)


def test_a_client_gone_mid_data_frees_its_spool_file_at_once(node: NodeProcess) -> None:
    client = smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=30)
    client.ehlo("test")
    client.mail("a@remote.test")
    client.rcpt("bob@example.test")
    assert client.docmd("DATA")[0] == 354
    assert client.sock is not None
    client.sock.sendall(message(2_000_000))
    wait_for(lambda: sum(node.spooled()) >= 1_900_000, timeout=10, what="the spool")
    client.close()
    no_spool_files(node)


def test_sessions_per_account_are_capped_across_protocols(node: NodeProcess) -> None:
    user = "carol@other.test"
    sessions = [RawImap(node.ports["imaps"]) for _ in range(CAP)]
    try:
        for raw in sessions:
            raw.login(user)
        with RawImap(node.ports["imaps"]) as extra:
            _, done = extra.command(f'LOGIN "{user}" "{PASSWORD}"')
            assert done.startswith(b"a NO [LIMIT]"), done
            # A wrong password still says only that: the cap tells a guesser nothing.
            _, done = extra.command(f'LOGIN "{user}" "wrong"')
            assert done.startswith(b"a NO [AUTHENTICATIONFAILED]"), done
        pop = poplib.POP3_SSL("127.0.0.1", node.ports["pop3s"], context=client_tls(), timeout=10)
        try:
            pop.user(user)
            with pytest.raises(poplib.error_proto, match=r"\[IN-USE\] too many sessions"):
                pop.pass_(PASSWORD)
        finally:
            pop.close()
        with smtplib.SMTP_SSL(
            "127.0.0.1", node.ports["submissions"], context=client_tls(), timeout=10
        ) as sub:
            sub.ehlo("test")
            token = base64.b64encode(f"\0{user}\0{PASSWORD}".encode()).decode()
            code, text = sub.docmd("AUTH", f"PLAIN {token}")
            assert (code, text[:5]) == (454, b"4.7.0"), text
        with RawImap(node.ports["imaps"]) as other:
            other.login("alice@example.test")  # other accounts are not touched
        sessions.pop().command("LOGOUT")
        with RawImap(node.ports["imaps"]) as again:
            wait_for(lambda: _logs_in(again, user), timeout=5, what="a free session place")
    finally:
        for raw in sessions:
            raw.sock.close()


def _logs_in(raw: RawImap, user: str) -> bool:
    _, done = raw.command(f'LOGIN "{user}" "{PASSWORD}"')
    return done.startswith(b"a OK")
