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
CONFIG = """
[limits]
auth_failure_delay = 0.05

[submission.senders]
"alice@example.test" = ["ceo@example.test", "@news.remote.test"]
"@other.test" = ["noreply@example.test"]
"""
MECHANISMS = ("PLAIN", "LOGIN")
_addresses = count(20)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = start_node(tmp_path_factory, extra_config=CONFIG)
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
        message = b"From: alice@example.test\r\nSubject: 1\r\n\r\n"
        refused = client.sendmail("alice@example.test", ["bob@example.test"], message)
        assert refused == {}
        code, text = client.docmd("MAIL", "FROM:<bob@example.test>")
        assert (code, text[:5]) == (553, b"5.7.1")


# -- the header From: and Sender: -----------------------------------------------------------------
def submit(
    node: NodeProcess,
    head: bytes,
    *,
    user: str = "alice@example.test",
    listener: str = "submission",
) -> tuple[int, bytes, str]:
    """Send a message with header lines `head` as `user`; DATA's reply and the subject used."""
    subject = f"header {uuid.uuid4()}"
    data = head + f"\r\nSubject: {subject}\r\n\r\nhello\r\n".encode()
    with connect(node, listener) as client:
        login(client, "PLAIN", user=user)
        assert client.mail(user)[0] == 250
        assert client.rcpt("bob@example.test")[0] == 250
        code, text = client.data(data)
    return code, text, subject


def delivered(node: NodeProcess, subject: str) -> bool:
    return any(subject.encode() in m for m in node.inbox("bob@example.test"))


@pytest.mark.parametrize(
    "head",
    [
        b"From: alice@example.test",
        b"From: Alice Liddell <Alice@Example.TEST>",
        b"From: =?utf-8?q?Alice_L=C3=BCdell?= <alice@example.test>",
        b"From: alice+lists@example.test (Alice)",
        b"From: postmaster@example.test",  # an alias of alice
        b"From: team@example.test\r\nSender: alice@example.test",  # an alias including her
        b"From: alice@example.test, team@example.test\r\nSender: alice@example.test",
        b"From: Us: alice@example.test, team@example.test;\r\nSender: alice@example.test",
        b"From: ceo@example.test",  # [submission.senders] for alice
        b"From: letters@news.remote.test",  # ... and a whole domain
    ],
)
def test_header_from_the_user_owns_is_delivered(node: NodeProcess, head: bytes) -> None:
    code, text, subject = submit(node, head)
    assert code == 250, text
    assert delivered(node, subject)


@pytest.mark.parametrize("listener", LISTENERS)
@pytest.mark.parametrize(
    ("head", "reply"),
    [
        (b"From: Bob <bob@example.test>", b"5.7.1 From: <bob@example.test>"),
        (b"From: bob+alice@example.test", b"5.7.1 From: <bob+alice@example.test>"),
        (b"From: forward@example.test", b"5.7.1 From: <forward@example.test>"),
        (b"From: alice@remote.test", b"5.7.1 From: <alice@remote.test>"),
        (b'From: "alice@example.test" <bob@example.test>', b"5.7.1 From: <bob@example.test>"),
        (
            b"From: alice@example.test\r\nSender: bob@example.test",
            b"5.7.1 Sender: <bob@example.test>",
        ),
        (
            b"From: alice@example.test, bob@example.test\r\nSender: alice@example.test",
            b"5.7.1 From: <bob@example.test>",
        ),
        (b"From: alice@example.test, team@example.test", b"5.6.0 A From: header with several"),
        (b"Subject: no author", b"5.6.0 Message has no From:"),
        (b"From: alice@example.test\r\nFrom: bob@example.test", b"5.6.0 Message has more than"),
        (b"From: alice@example.test\r\nFrom : bob@example.test", b"5.6.0 Malformed"),
        (b"From: alice@example.test <bob@example.test>", b"5.6.0 Cannot parse the From:"),
        (b"From: =?us-ascii?q?alice?=@example.test", b"5.6.0 Cannot parse the From:"),
        (b"From: Undisclosed:;", b"5.6.0 Cannot parse the From:"),
        (b"From: ceo@example.test\r\nSender: noreply@example.test", b"5.7.1 Sender:"),
    ],
)
def test_header_from_of_someone_else_is_refused(
    node: NodeProcess, listener: str, head: bytes, reply: bytes
) -> None:
    code, text, subject = submit(node, head, listener=listener)
    assert (code, text[: len(reply)]) == (550, reply), text
    assert not delivered(node, subject)


def test_domain_wide_allowance_is_for_that_domain_only(node: NodeProcess) -> None:
    code, text, _ = submit(node, b"From: noreply@example.test", user="carol@other.test")
    assert code == 250, text
    code, text, _ = submit(node, b"From: noreply@example.test", user="bob@example.test")
    assert (code, text[:5]) == (550, b"5.7.1")


def test_envelope_sender_allowance_matches_the_header_one(node: NodeProcess) -> None:
    with connect(node, "submission") as client:
        login(client, "PLAIN")
        assert client.mail("ceo@example.test")[0] == 250
        client.rset()
        assert client.mail("someone@news.remote.test")[0] == 250
        client.rset()
        assert client.mail("someone@else.remote.test")[0] == 553


# -- AUTH PLAIN authorization identity -------------------------------------------------------------
def auth_plain(
    client: smtplib.SMTP, authzid: str, authcid: str, password: str
) -> tuple[int, bytes]:
    token = base64.b64encode(f"{authzid}\0{authcid}\0{password}".encode()).decode()
    return client.docmd("AUTH", f"PLAIN {token}")


@pytest.mark.parametrize("authzid", ["alice@example.test", "Alice@Example.TEST"])
def test_authzid_naming_the_user_is_accepted(node: NodeProcess, authzid: str) -> None:
    with connect(node, "submissions") as client:
        code, text = auth_plain(client, authzid, "alice@example.test", PASSWORD)
        assert (code, text[:5]) == (235, b"2.7.0")


@pytest.mark.parametrize("password", [PASSWORD, "wrong"])
def test_authzid_of_someone_else_is_refused(node: NodeProcess, password: str) -> None:
    with connect(node, "submissions", source=fresh_source()) as client:
        code, text = auth_plain(client, "bob@example.test", "alice@example.test", password)
        assert (code, text[:5]) == (535, b"5.7.8"), text
        assert b"act as" in text
        # Not logged in, as anyone.
        code, text = client.mail("bob@example.test")
        assert (code, text[:5]) == (530, b"5.7.0")
        code, text = client.mail("alice@example.test")
        assert (code, text[:5]) == (530, b"5.7.0")


# -- no TLS inside TLS (RFC 3207 4) ---------------------------------------------------------------
@pytest.mark.parametrize("listener", [*LISTENERS, "smtp"])
def test_starttls_inside_tls_is_refused(node: NodeProcess, listener: str) -> None:
    if listener == "smtp":
        client = smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=30)
        client.ehlo("client.test")
        assert client.starttls(context=client_tls())[0] == 220
        client.ehlo("client.test")
    else:
        client = connect(node, listener)
    with client:
        assert "starttls" not in client.esmtp_features
        code, text = client.docmd("STARTTLS")
        assert (code, text[:5]) == (503, b"5.5.1"), text
        # Still the same TLS session, still usable: no second handshake was started.
        assert client.noop()[0] == 250
        if listener != "smtp":
            assert login(client, "PLAIN")[0] == 235
            assert client.mail("alice@example.test")[0] == 250
