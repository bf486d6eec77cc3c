"""Inbound SMTP (MX) against a real node with Python's smtplib."""

from __future__ import annotations

import smtplib

import pytest

from tests.conftest import PASSWORD, imaps
from tests.nodeproc import NodeProcess


def smtp(node: NodeProcess) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=30)


def test_ehlo_advertises_extensions(node: NodeProcess) -> None:
    with smtp(node) as client:
        code, text = client.ehlo("client.test")
    assert code == 250
    extensions = ("PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "STARTTLS")
    for ext in (*extensions, "CHUNKING"):
        assert ext in text.decode(), ext
    assert "AUTH" not in text.decode()
    assert "BINARYMIME" not in text.decode()  # RFC 3030 3: not offered; chunks hold text


def test_message_stored_byte_for_byte_with_trace_headers(node: NodeProcess) -> None:
    body = (
        b"From: Sender <sender@remote.test>\r\nTo: alice@example.test\r\n"
        b"Subject: exact bytes\r\n\r\nline one\r\n..leading dot\r\n  trailing space  \r\n"
    )
    before = len(node.inbox("alice@example.test"))
    with smtp(node) as client:
        refused = client.sendmail("sender@remote.test", ["alice@example.test"], body)
    assert refused == {}
    stored = node.inbox("alice@example.test")[before:]
    assert len(stored) == 1
    data = stored[0]
    assert data.startswith(
        b"Return-Path: <sender@remote.test>\r\nDelivered-To: alice@example.test\r\nReceived: from "
    )
    # smtplib dot-stuffs ".." -> "..."; the server must undo exactly that, nothing more.
    assert data.endswith(b"\r\n\r\n" + body.split(b"\r\n\r\n", 1)[1])
    assert data[data.index(b"From: Sender") :] == body


def test_unknown_user_refused_at_rcpt(node: NodeProcess) -> None:
    with smtp(node) as client:
        client.ehlo()
        client.mail("sender@remote.test")
        code, text = client.rcpt("nobody@example.test")
    assert (code, text[:5]) == (550, b"5.1.1")


def test_no_open_relay(node: NodeProcess) -> None:
    with smtp(node) as client:
        client.ehlo()
        client.mail("sender@remote.test")
        code, text = client.rcpt("victim@elsewhere.test")
    assert (code, text[:5]) == (550, b"5.7.1")
    assert node.queue() == []


def test_alias_and_catch_all(node: NodeProcess) -> None:
    alice, bob, carol = (
        len(node.inbox(a)) for a in ("alice@example.test", "bob@example.test", "carol@other.test")
    )
    with smtp(node) as client:
        client.sendmail("s@remote.test", ["team@example.test"], b"Subject: team\r\n\r\nhi\r\n")
        client.sendmail("s@remote.test", ["anything@other.test"], b"Subject: catch\r\n\r\nhi\r\n")
    assert len(node.inbox("alice@example.test")) == alice + 1
    assert len(node.inbox("bob@example.test")) == bob + 1
    caught = node.inbox("carol@other.test")
    assert len(caught) == carol + 1
    assert b"Delivered-To: carol@other.test\r\n" in caught[-1]


def test_plus_detail_reaches_user(node: NodeProcess) -> None:
    before = len(node.inbox("bob@example.test"))
    with smtp(node) as client:
        client.sendmail("s@remote.test", ["Bob+Lists@Example.TEST"], b"Subject: x\r\n\r\nx\r\n")
    assert len(node.inbox("bob@example.test")) == before + 1


@pytest.mark.parametrize("recipients", [["alice@example.test", "team@example.test"]])
def test_one_copy_per_account_per_transaction(node: NodeProcess, recipients: list[str]) -> None:
    before = len(node.inbox("alice@example.test"))
    with smtp(node) as client:
        client.sendmail("s@remote.test", recipients, b"Subject: dup\r\n\r\nx\r\n")
    assert len(node.inbox("alice@example.test")) == before + 1


def test_full_mailbox_is_a_temporary_refusal(node: NodeProcess) -> None:
    added = node.cli(
        "user", "add", "full@example.test", "--quota", "2000", "--password-stdin", stdin=PASSWORD
    )
    assert added.returncode == 0, added.stderr
    # Filled to the byte over IMAP: APPEND counts exactly the literal against the quota.
    with imaps(node, "full@example.test") as client:
        typ, _ = client.append(
            "INBOX", None, None, b"Subject: a\r\n\r\n".ljust(1998, b"x") + b"\r\n"
        )
        assert typ == "OK"
    assert "used=2000\tquota=2000" in node.cli("user", "list").stdout
    with smtp(node) as client:
        client.ehlo("client.test")
        assert client.mail("s@remote.test")[0] == 250
        code, text = client.rcpt("full@example.test")
        assert (code, text[:5]) == (452, b"4.2.2")
        client.rset()
    # A full member of an alias does not block the others.
    alias = node.cli("alias", "add", "pair@example.test", "full@example.test", "bob@example.test")
    assert alias.returncode == 0, alias.stderr
    before = len(node.inbox("bob@example.test"))
    with smtp(node) as client:
        client.sendmail("s@remote.test", ["pair@example.test"], b"Subject: b\r\n\r\nhi\r\n")
    assert len(node.inbox("bob@example.test")) == before + 1
    assert len(node.inbox("full@example.test")) == 1
