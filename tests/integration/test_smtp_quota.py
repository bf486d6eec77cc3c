"""A message must fit each local recipient's remaining quota before a byte of it is stored:
at RCPT by the size declared with MAIL (RFC 1870), at the end of DATA by its real size."""

from __future__ import annotations

import itertools
import smtplib

import pytest

from tests.conftest import PASSWORD, client_tls
from tests.nodeproc import NodeProcess
from tests.rawclient import RawClient

KB = 1024
_names = itertools.count(1)


def smtp(node: NodeProcess) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=30)
    client.ehlo("client.test")
    return client


def mailbox(node: NodeProcess, quota: int) -> str:
    return node.add_user(f"tight{next(_names)}@example.test", quota)


def send_undeclared(client: smtplib.SMTP, recipients: list[str], data: bytes) -> tuple[int, bytes]:
    """MAIL without SIZE (smtplib's sendmail always declares it), RCPT, DATA: DATA's reply."""
    assert client.mail("s@remote.test")[0] == 250
    for recipient in recipients:
        code, text = client.rcpt(recipient)
        assert code == 250, (recipient, code, text)
    code, text = client.data(data)
    if code != 250:
        client.rset()
    return code, text


def message(size: int, subject: str = "filler", author: str = "s@remote.test") -> bytes:
    head = f"From: {author}\r\nSubject: {subject}\r\n\r\n".encode()
    line = b"x" * 76 + b"\r\n"
    return head + line * ((size - len(head)) // len(line) + 1)


def test_a_message_larger_than_the_room_left_is_refused_before_it_is_stored(
    node: NodeProcess,
) -> None:
    """About 20 KB left of 300 KB: a 200 KB message gets 452 4.2.2 and nothing is stored.
    (Before, any message was taken while the mailbox was below its quota.)"""
    tight = mailbox(node, 300 * KB)
    with smtp(node) as client:
        assert client.sendmail("s@remote.test", [tight], message(279 * KB)) == {}
        assert 15 * KB < 300 * KB - node.used_bytes(tight) < 25 * KB
        before = node.used_bytes(tight)
        code, text = send_undeclared(client, [tight], message(200 * KB, "too big"))
        assert (code, text[:5]) == (452, b"4.2.2"), text
        assert node.used_bytes(tight) == before
        assert len(node.inbox(tight)) == 1
        # What still fits is taken.
        assert send_undeclared(client, [tight], message(10 * KB))[0] == 250
    assert len(node.inbox(tight)) == 2
    assert node.used_bytes(tight) <= 300 * KB


def test_declared_size_is_checked_per_recipient_at_rcpt(node: NodeProcess) -> None:
    tight = mailbox(node, 40 * KB)
    with smtp(node) as client:
        assert client.sendmail("s@remote.test", [tight], message(20 * KB)) == {}
        # More than is left: 452 4.2.2 at RCPT, before any of the message is sent.
        assert client.mail("s@remote.test", ["SIZE=30000"])[0] == 250
        code, text = client.rcpt(tight)
        assert (code, text[:5]) == (452, b"4.2.2"), text
        assert client.rset()[0] == 250
        # More than the whole quota: it can never fit (RFC 3463 X.2.3).
        assert client.mail("s@remote.test", ["SIZE=50000"])[0] == 250
        code, text = client.rcpt(tight)
        assert (code, text[:5]) == (552, b"5.2.3"), text
        assert client.rset()[0] == 250
        # More than the server's fixed maximum: 552 at MAIL (RFC 1870 6.1).
        code, text = client.mail("s@remote.test", [f"SIZE={26 * 1024 * 1024}"])
        assert (code, text[:5]) == (552, b"5.3.4"), text
        # What fits goes through.
        assert client.sendmail("s@remote.test", [tight], message(5 * KB), ["SIZE=5500"]) == {}
    assert len(node.inbox(tight)) == 2


def test_one_recipient_without_room_refuses_the_whole_transaction(node: NodeProcess) -> None:
    """One reply to DATA answers for all: without SIZE nothing is half-accepted; with SIZE the
    full recipient is refused at RCPT and the others get the message."""
    tight = mailbox(node, 30 * KB)
    before = len(node.inbox("bob@example.test"))
    with smtp(node) as client:
        code, text = send_undeclared(client, ["bob@example.test", tight], message(100 * KB))
        assert (code, text[:5]) == (452, b"4.2.2"), text
        assert len(node.inbox("bob@example.test")) == before
        assert node.inbox(tight) == [] and node.used_bytes(tight) == 0
        tight_too = mailbox(node, 150 * KB)  # room for it, but not for twice as much
        assert send_undeclared(client, [tight_too], message(100 * KB))[0] == 250
        # smtplib declares SIZE: the recipients without room are refused at RCPT.
        refusals = client.sendmail(
            "s@remote.test", ["bob@example.test", tight, tight_too], message(100 * KB)
        )
        assert {r: (c, t[:5]) for r, (c, t) in refusals.items()} == {
            tight: (552, b"5.2.3"),
            tight_too: (452, b"4.2.2"),
        }
    assert len(node.inbox("bob@example.test")) == before + 1
    assert node.inbox(tight) == []


def test_a_message_larger_than_the_whole_quota_is_refused_for_good(node: NodeProcess) -> None:
    tight = mailbox(node, 10 * KB)
    with smtp(node) as client:
        code, text = send_undeclared(client, [tight], message(20 * KB))
    assert (code, text[:5]) == (552, b"5.2.3"), text
    assert node.inbox(tight) == []


def test_submission_is_held_to_the_recipient_quota_too(node: NodeProcess) -> None:
    tight = mailbox(node, 10 * KB)
    body = message(15 * KB, author="alice@example.test")
    with smtplib.SMTP_SSL(
        "127.0.0.1", node.ports["submissions"], context=client_tls(), timeout=30
    ) as client:
        client.login("alice@example.test", PASSWORD)
        assert client.mail("alice@example.test")[0] == 250
        assert client.rcpt(tight)[0] == 250
        code, text = client.data(body)
    assert (code, text[:5]) == (552, b"5.2.3"), text
    assert node.inbox(tight) == []


@pytest.mark.parametrize(
    ("size", "reply"),
    [
        ("\u00b2".encode(), b"501 5.5.4"),  # isdigit() but not a digit int() takes: was a 451
        ("\u0663".encode(), b"501 5.5.4"),  # an Arabic-Indic 3, which int() reads as 3
        (b"1" * 21, b"501 5.5.4"),  # RFC 1870 4: 1*20DIGIT
        (b"9" * 20, b"552 5.3.4"),
        (b"1000", b"250 2.1.0"),
    ],
)
def test_size_parameter_syntax(node: NodeProcess, size: bytes, reply: bytes) -> None:
    with RawClient(node.ports["smtp"], tls=False) as client:
        client.send(b"EHLO client.test\r\n")
        while b"\r\n250 " not in client.buffer or not client.buffer.endswith(b"\r\n"):
            client._fill()
        client.buffer = b""
        client.send(b"MAIL FROM:<s@remote.test> SIZE=" + size + b"\r\n")
        while not client.buffer.endswith(b"\r\n"):
            client._fill()
        assert client.buffer.startswith(reply), client.buffer
    assert "Traceback" not in node.log()
