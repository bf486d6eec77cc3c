"""Submission (STARTTLS on `submission`, implicit TLS on `submissions`) against a real node.

Wrong-password tests each come from their own loopback address: the failed-login throttle counts
per client address, and the other tests here log in from 127.0.0.1.
"""

from __future__ import annotations

import base64
import smtplib
import uuid
from collections.abc import Iterator
from itertools import count

import pytest

from tests.conftest import PASSWORD, client_tls, start_node
from tests.nodeproc import NodeProcess

LISTENERS = ("submission", "submissions")
MECHANISMS = ("PLAIN", "LOGIN")
_addresses = count(20)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = start_node(tmp_path_factory, extra_config="[limits]\nauth_failure_delay = 0.05\n")
    yield proc
    proc.stop()


def fresh_source() -> tuple[str, int]:
    return (f"127.0.0.{next(_addresses)}", 0)


def connect(
    node: NodeProcess, listener: str, source: tuple[str, int] | None = None
) -> smtplib.SMTP:
    """A client past TLS and EHLO, not yet authenticated."""
    port = node.ports[listener]
    client: smtplib.SMTP
    if listener == "submissions":
        client = smtplib.SMTP_SSL(
            "127.0.0.1", port, context=client_tls(), timeout=30, source_address=source
        )
    else:
        client = smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=source)
        client.ehlo("client.test")
        code, _ = client.starttls(context=client_tls())
        assert code == 220
    client.ehlo("client.test")
    return client


def login(
    client: smtplib.SMTP,
    mechanism: str,
    user: str = "alice@example.test",
    password: str = PASSWORD,
    initial_response: bool = True,
) -> tuple[int, bytes]:
    """One AUTH exchange (smtplib's `login` would retry with the next mechanism on failure)."""
    client.user, client.password = user, password
    method = {"PLAIN": client.auth_plain, "LOGIN": client.auth_login}[mechanism]
    try:
        return client.auth(mechanism, method, initial_response_ok=initial_response)
    except smtplib.SMTPAuthenticationError as exc:
        return exc.smtp_code, exc.smtp_error


@pytest.mark.parametrize("listener", LISTENERS)
@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("initial_response", [True, False], ids=["initial", "challenge"])
def test_auth_with_right_password(
    node: NodeProcess, listener: str, mechanism: str, initial_response: bool
) -> None:
    with connect(node, listener) as client:
        assert "PLAIN" in client.esmtp_features["auth"]
        assert "LOGIN" in client.esmtp_features["auth"]
        code, text = login(client, mechanism, initial_response=initial_response)
        assert (code, text[:5]) == (235, b"2.7.0")
        assert client.mail("alice@example.test")[0] == 250


@pytest.mark.parametrize("listener", LISTENERS)
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_auth_with_wrong_password(node: NodeProcess, listener: str, mechanism: str) -> None:
    with connect(node, listener, source=fresh_source()) as client:
        code, text = login(client, mechanism, password="wrong " + PASSWORD)
        assert (code, text[:5]) == (535, b"5.7.8")
        code, text = login(client, mechanism, user="nobody@example.test")
        assert (code, text[:5]) == (535, b"5.7.8")
        code, text = client.mail("alice@example.test")
        assert (code, text[:5]) == (530, b"5.7.0")


def test_auth_only_after_starttls(node: NodeProcess) -> None:
    with smtplib.SMTP("127.0.0.1", node.ports["submission"], timeout=30) as client:
        code, text = client.ehlo("client.test")
        assert code == 250
        assert "STARTTLS" in text.decode()
        assert "AUTH" not in text.decode()
        token = base64.b64encode(f"\0alice@example.test\0{PASSWORD}".encode()).decode()
        code, text = client.docmd("AUTH", f"PLAIN {token}")
        assert (code, text[:6]) == (538, b"5.7.11")
        code, text = client.mail("alice@example.test")
        assert (code, text[:5]) == (530, b"5.7.0")
        client.starttls(context=client_tls())
        code, text = client.ehlo("client.test")
        assert "AUTH LOGIN PLAIN" in text.decode()


@pytest.mark.parametrize("listener", LISTENERS)
def test_mail_before_auth_refused(node: NodeProcess, listener: str) -> None:
    with connect(node, listener) as client:
        for code, text in (
            client.mail("alice@example.test"),
            client.rcpt("bob@example.test"),
            client.docmd("DATA"),
        ):
            assert (code, text[:5]) == (530, b"5.7.0")
    assert node.queue() == []


@pytest.mark.parametrize(
    ("sender", "code"),
    [
        ("alice@example.test", 250),
        ("Alice@Example.TEST", 250),
        ("alice+lists@example.test", 250),
        ("postmaster@example.test", 250),  # alias of alice
        ("team@example.test", 250),  # alias that includes alice
        ("bob@example.test", 553),
        ("bob+alice@example.test", 553),
        ("forward@example.test", 553),  # alias, but not alice's
        ("alice@remote.test", 553),
        ("nobody@example.test", 553),
        ("<>", 553),
    ],
)
def test_sender_must_belong_to_user(node: NodeProcess, sender: str, code: int) -> None:
    with connect(node, "submission") as client:
        login(client, "PLAIN")
        got, text = client.docmd("MAIL", f"FROM:<{sender.strip('<>')}>")
        assert got == code, text
        if code == 553:
            assert text.startswith(b"5.7.1")


@pytest.mark.parametrize("listener", LISTENERS)
def test_remote_recipient_is_queued(node: NodeProcess, listener: str) -> None:
    subject = f"remote {uuid.uuid4()}"
    body = f"From: alice@example.test\r\nSubject: {subject}\r\n\r\nhello\r\n".encode()
    with connect(node, listener) as client:
        login(client, "LOGIN")
        assert client.sendmail("alice@example.test", ["friend@remote.test"], body) == {}
    items = [i for i in node.queue() if i.recipient == "friend@remote.test"]
    mine = [i for i in items if subject.encode() in node.queue_body(i.queue_id)]
    assert len(mine) == 1
    assert mine[0].sender == "alice@example.test"
    assert mine[0].account_id is None


@pytest.mark.parametrize("listener", LISTENERS)
def test_local_recipient_gets_it_with_esmtpsa(node: NodeProcess, listener: str) -> None:
    subject = f"local {uuid.uuid4()}"
    body = f"From: alice@example.test\r\nSubject: {subject}\r\n\r\nhello bob\r\n".encode()
    before = len(node.inbox("bob@example.test"))
    with connect(node, listener) as client:
        login(client, "PLAIN")
        assert client.sendmail("alice@example.test", ["bob@example.test"], body) == {}
    stored = node.inbox("bob@example.test")[before:]
    assert len(stored) == 1
    assert stored[0].endswith(body)
    assert stored[0].startswith(b"Return-Path: <alice@example.test>\r\n")
    received = stored[0].split(b"\r\nFrom: alice")[0]
    assert b" with ESMTPSA id " in received


def test_authenticated_user_cannot_send_as_other_after_good_mail(node: NodeProcess) -> None:
    """The sender check holds for every transaction of a session, not only the first."""
    with connect(node, "submission") as client:
        login(client, "PLAIN")
        refused = client.sendmail("alice@example.test", ["bob@example.test"], b"Subject: 1\r\n\r\n")
        assert refused == {}
        code, text = client.docmd("MAIL", "FROM:<bob@example.test>")
        assert (code, text[:5]) == (553, b"5.7.1")
