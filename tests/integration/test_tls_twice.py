"""No TLS inside TLS: IMAP STARTTLS and POP3 STLS on a connection that is already encrypted
(the implicit-TLS port, or after a first STARTTLS/STLS) are refused and the session goes on in
the TLS it has (RFC 9051 6.2.1, RFC 2595 4). SMTP's answer is in test_submission.py."""

from __future__ import annotations

import imaplib
import poplib

import pytest

from tests.conftest import PASSWORD, client_tls
from tests.nodeproc import NodeProcess


def imap_client(node: NodeProcess, port: str) -> imaplib.IMAP4:
    if port == "imaps":
        return imaplib.IMAP4_SSL(
            "127.0.0.1", node.ports["imaps"], ssl_context=client_tls(), timeout=30
        )
    client = imaplib.IMAP4("127.0.0.1", node.ports["imap"], timeout=30)
    assert client.starttls(ssl_context=client_tls())[0] == "OK"
    return client


@pytest.mark.parametrize("port", ["imaps", "imap"])
def test_imap_starttls_inside_tls_is_bad(node: NodeProcess, port: str) -> None:
    client = imap_client(node, port)
    try:
        # imaplib refuses to send it twice itself; the command goes out as it is.
        with pytest.raises(imaplib.IMAP4.error, match="TLS is already active"):
            client._simple_command("STARTTLS")
        assert client.noop()[0] == "OK"
        assert client.login("alice@example.test", PASSWORD)[0] == "OK"
        assert client.select("INBOX")[0] == "OK"
    finally:
        client.logout()


def pop3_client(node: NodeProcess, port: str) -> poplib.POP3:
    if port == "pop3s":
        return poplib.POP3_SSL("127.0.0.1", node.ports["pop3s"], context=client_tls(), timeout=30)
    client = poplib.POP3("127.0.0.1", node.ports["pop3"], timeout=30)
    assert client.stls(context=client_tls()).startswith(b"+OK")
    return client


@pytest.mark.parametrize("port", ["pop3s", "pop3"])
def test_pop3_stls_inside_tls_is_err(node: NodeProcess, port: str) -> None:
    client = pop3_client(node, port)
    try:
        # poplib refuses to send it twice itself; the command goes out as it is.
        with pytest.raises(poplib.error_proto, match="TLS is already active"):
            client._shortcmd("STLS")
        assert client.user("alice@example.test").startswith(b"+OK")
        assert client.pass_(PASSWORD).startswith(b"+OK")
        assert client.stat()[0] >= 0
    finally:
        client.quit()
