"""RFC 5321 4.5.1: `RCPT TO:<Postmaster>` without a domain, and postmaster@ every local domain,
must be accepted; the mail goes to the configured postmaster, resolved like any address."""

from __future__ import annotations

import smtplib
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import ALIASES, PASSWORD, USERS, client_tls
from tests.nodeproc import NodeProcess


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = NodeProcess(tmp_path_factory.mktemp("postmaster"))
    # third.test has no postmaster of its own; example.test's is an alias of alice.
    proc.provision(
        domains=("example.test", "other.test", "third.test"), users=USERS, aliases=ALIASES
    )
    # A top-level key: it must come before the tables of the generated file.
    proc.config_path.write_text('postmaster = "bob@example.test"\n' + proc.config_path.read_text())
    proc.start()
    yield proc
    proc.stop()


def deliver(node: NodeProcess, recipient: str) -> str:
    subject = f"to {recipient} {uuid.uuid4()}"
    with smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=30) as client:
        client.ehlo("client.test")
        assert client.mail("s@remote.test")[0] == 250
        code, text = client.rcpt(recipient)
        assert code == 250, text
        code, text = client.data(f"Subject: {subject}\r\n\r\nhello\r\n".encode())
        assert code == 250, text
    return subject


def holds(node: NodeProcess, user: str, subject: str) -> bool:
    return any(subject.encode() in m for m in node.inbox(user))


@pytest.mark.parametrize("name", ["postmaster", "Postmaster", "POSTMASTER"])
def test_bare_postmaster_reaches_the_configured_one(node: NodeProcess, name: str) -> None:
    subject = deliver(node, name)
    assert holds(node, "bob@example.test", subject)
    assert not holds(node, "alice@example.test", subject)


def test_postmaster_of_a_domain_without_one_reaches_the_configured_one(node: NodeProcess) -> None:
    assert holds(node, "bob@example.test", deliver(node, "postmaster@third.test"))
    assert holds(node, "bob@example.test", deliver(node, "PostMaster@Third.TEST"))
    # A domain's own postmaster stays its own.
    assert holds(node, "alice@example.test", deliver(node, "postmaster@example.test"))
    # Only postmaster falls back; other unknown names are refused as before.
    with smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=30) as client:
        client.ehlo("client.test")
        client.mail("s@remote.test")
        code, text = client.rcpt("hostmaster@third.test")
        assert (code, text[:5]) == (550, b"5.1.1")


def test_bare_postmaster_on_submission(node: NodeProcess) -> None:
    subject = f"submitted {uuid.uuid4()}"
    with smtplib.SMTP_SSL(
        "127.0.0.1", node.ports["submissions"], context=client_tls(), timeout=30
    ) as client:
        client.login("alice@example.test", PASSWORD)
        message = f"From: alice@example.test\r\nSubject: {subject}\r\n\r\nhi\r\n"
        assert client.sendmail("alice@example.test", ["postmaster"], message) == {}
    assert holds(node, "bob@example.test", subject)
