"""CHUNKING (RFC 3030 BDAT) against a real node, with a raw socket client (smtplib has no BDAT):
the message lands byte for byte and reads back over IMAP; submission takes it after AUTH; a
pipelined transaction is answered in order; a message past the spool threshold is stored whole."""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import PASSWORD, imaps, start_node
from tests.integration.test_smtp_limits import Raw
from tests.nodeproc import NodeProcess
from tests.rawclient import client_tls

ENVELOPE = b"MAIL FROM:<sender@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"
MAX_SIZE = 1_000_000


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = start_node(tmp_path_factory, extra_config=f"[limits]\nmax_message_size = {MAX_SIZE}\n")
    yield proc
    proc.stop()
    assert "Traceback" not in proc.log()


def bdat(data: bytes, *, last: bool = False) -> bytes:
    return b"BDAT %d%s\r\n" % (len(data), b" LAST" if last else b"") + data


def replies(c: Raw, n: int) -> list[tuple[int, bytes]]:
    return [c.reply() for _ in range(n)]


def imap_body(node: NodeProcess, user: str, subject: str) -> bytes:
    client = imaps(node, user)
    try:
        client.select("INBOX", readonly=True)
        typ, found = client.search(None, "SUBJECT", f'"{subject}"')
        assert typ == "OK" and found[0], found
        typ, data = client.fetch(found[0].split()[-1], "(BODY.PEEK[])")
        assert typ == "OK"
        part = data[0]
        assert isinstance(part, tuple)
        return part[1]
    finally:
        client.logout()


def test_chunks_land_byte_for_byte_and_read_back_over_imap(node: NodeProcess) -> None:
    subject = f"chunked {uuid.uuid4()}"
    # What DATA would have to stuff or could not carry as is: leading dots, the DATA end marker,
    # a bare LF and a bare CR; and a CRLF split across two chunks.
    body = (
        f"From: sender@remote.test\r\nSubject: {subject}\r\n\r\n".encode()
        + b".leading dot\r\n.\r\nnot the end\r\nbare\nlf and bare\rcr\r\nlast line\r\n"
    )
    split = body.index(b"not the end") - 1  # between the CR and the LF of a line end
    before = len(node.inbox("alice@example.test"))
    with Raw(node.ports["smtp"]) as c:
        c.start()
        assert c.cmd(b"MAIL FROM:<sender@remote.test>")[0] == 250
        assert c.cmd(b"RCPT TO:<alice@example.test>")[0] == 250
        c.send(bdat(body[:split]))
        assert c.reply() == (250, b"2.0.0 %d octets received" % split)
        c.send(bdat(body[split:]))
        assert c.reply()[0] == 250
        c.send(b"BDAT 0 LAST\r\n")
        code, text = c.reply()
        assert code == 250 and text.startswith(b"2.0.0 OK queued as "), text
        assert c.cmd(b"QUIT")[0] == 221
    stored = node.inbox("alice@example.test")[before:]
    assert len(stored) == 1
    assert stored[0].startswith(b"Return-Path: <sender@remote.test>\r\n")
    assert stored[0].endswith(b"\r\n" + body)
    assert imap_body(node, "alice@example.test", subject) == stored[0]


def test_submission_takes_bdat_after_auth(node: NodeProcess) -> None:
    subject = f"submitted in chunks {uuid.uuid4()}"
    body = f"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: {subject}\r\n\r\nhi\r\n"
    token = base64.b64encode(f"\0alice@example.test\0{PASSWORD}".encode())
    before = len(node.inbox("bob@example.test"))
    with Raw(node.ports["submissions"]) as c:
        c.sock = client_tls().wrap_socket(c.sock)  # implicit TLS (RFC 8314)
        c.start()
        c.send(b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\n")
        c.send(bdat(b"x\r\n", last=True))
        # Before the login: refused, and the chunk's octets are read, not taken for commands.
        assert [code for code, _ in replies(c, 3)] == [530, 530, 530]
        assert c.cmd(b"AUTH PLAIN " + token)[0] == 235
        data = body.encode()
        c.send(b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\n")
        c.send(bdat(data[:20]) + bdat(data[20:], last=True))
        assert [code for code, _ in replies(c, 4)] == [250, 250, 250, 250]
    stored = node.inbox("bob@example.test")[before:]
    assert len(stored) == 1 and stored[0].endswith(b"\r\n" + data)


def test_pipelined_transaction_in_one_write(node: NodeProcess) -> None:
    """RFC 2920 and RFC 3030: MAIL, RCPT, BDAT LAST and its octets in one write; the answers
    come in order, the last one the transaction's."""
    subject = f"pipelined {uuid.uuid4()}"
    body = f"Subject: {subject}\r\n\r\nMAIL FROM:<evil@example.test>\r\n".encode()
    before = len(node.inbox("alice@example.test"))
    with Raw(node.ports["smtp"]) as c:
        c.start()
        c.send(ENVELOPE + bdat(body, last=True) + b"RSET\r\nQUIT\r\n")
        got = replies(c, 5)
        assert [code for code, _ in got] == [250, 250, 250, 250, 221], got
        assert re.match(rb"2\.0\.0 OK queued as ", got[2][1]), got
    stored = node.inbox("alice@example.test")[before:]
    assert len(stored) == 1 and stored[0].endswith(b"\r\n" + body)


def test_a_message_past_the_spool_threshold_is_stored_whole(node: NodeProcess) -> None:
    subject = f"large {uuid.uuid4()}"
    line = b"0123456789" * 9 + b"\r\n"
    body = f"Subject: {subject}\r\n\r\n".encode() + line * 4000  # ~370 KB: spooled
    before = len(node.inbox("alice@example.test"))
    with Raw(node.ports["smtp"]) as c:
        c.start()
        c.send(ENVELOPE)
        assert [code for code, _ in replies(c, 2)] == [250, 250]
        for start in range(0, len(body), 100_000):
            piece = body[start : start + 100_000]
            c.send(bdat(piece, last=start + 100_000 >= len(body)))
            assert c.reply()[0] == 250
    stored = node.inbox("alice@example.test")[before:]
    assert len(stored) == 1 and stored[0].endswith(b"\r\n" + body)
    assert node.spooled() == []  # the spool file is gone once stored


def test_too_big_across_chunks_and_out_of_step_sizes(node: NodeProcess) -> None:
    """Chunks past max_message_size get 552 after their octets are read, and the session goes
    on; a BDAT without a count closes it (its octets could not be told from commands)."""
    with Raw(node.ports["smtp"]) as c:
        c.start()
        c.send(ENVELOPE)
        replies(c, 2)
        size = MAX_SIZE + 1
        c.send(b"BDAT %d LAST\r\n" % size)
        sent, piece = 0, b"z" * 998 + b"\r\n"
        while sent + len(piece) <= size:
            c.send(piece)
            sent += len(piece)
        c.send(b"z" * (size - sent))
        code, text = c.reply()
        assert code == 552 and text.startswith(b"5.3.4"), text
        assert c.cmd(b"NOOP")[0] == 250
        c.send(b"BDAT twelve\r\nRSET\r\n")
        assert c.reply()[0] == 501
        assert c.reply()[0] == 421
        assert c.closed()
