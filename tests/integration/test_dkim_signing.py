"""Mail leaving a real node is signed and forwarded so that the next hop trusts it.

A node (a `mailfort serve` subprocess) with the local domain example.test, its DKIM keys made by
`mailfort dkim create` and published on the test's name server, delivers to the test's SMTP sink
(the remote MX of remote.test and sender.test). What the sink receives is checked with dkimpy
against that name server: submitted mail carries verifying RSA and Ed25519 signatures of
example.test; mail an alias forwards leaves with an SRS envelope sender, an ARC seal and the
alias domain's signature; a bounce to that SRS address reaches the original sender.
"""

from __future__ import annotations

import asyncio
import smtplib
import uuid
from collections.abc import Iterator
from typing import Any

import dkim
import pytest

from mailfort.store.records import DkimKey
from mailfort.store.sqlite import SqliteStore
from tests.conftest import PASSWORD, client_tls
from tests.dkim_support import delivery, internet, publish, txt_from, verified_domains
from tests.dnsserver import NameServer
from tests.nodeproc import NodeProcess
from tests.smtpsink import Sink

ALICE = "alice@example.test"
HOST = "mx.mailfort.test"  # the node's hostname: the authserv-id of its Authentication-Results


def stored_keys(node: NodeProcess) -> list[DkimKey]:
    async def read() -> list[DkimKey]:
        store = SqliteStore(node.db_path)
        await store.open()
        try:
            return await store.dkim_keys("example.test")
        finally:
            await store.close()

    return asyncio.run(read())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NameServer, Sink]]:
    with internet(tmp_path_factory.mktemp("tls"), "remote.test", "sender.test") as made:
        yield made


@pytest.fixture(scope="module")
def dns(world: tuple[NameServer, Sink]) -> NameServer:
    return world[0]


@pytest.fixture(scope="module")
def sink(world: tuple[NameServer, Sink]) -> Sink:
    return world[1]


@pytest.fixture(scope="module")
def node(
    tmp_path_factory: pytest.TempPathFactory, dns: NameServer, sink: Sink
) -> Iterator[NodeProcess]:
    root = tmp_path_factory.mktemp("dkim")
    proc = NodeProcess(root, name="dkim1", delivery=delivery(dns, sink))
    proc.provision(
        domains=("example.test",),
        users={ALICE: PASSWORD},
        aliases=(("friends@example.test", "carol@remote.test"),),
    )
    created = proc.cli("dkim", "create", "example.test")
    assert created.returncode == 0, created.stderr
    assert "mf" in created.stdout and "._domainkey.example.test. IN TXT" in created.stdout
    publish(dns.zone, stored_keys(proc))
    proc.start()
    yield proc
    proc.stop()


def message(subject: str, author: str, *, results: str | None = None) -> bytes:
    head = f"Authentication-Results: {results}\r\n" if results else ""
    return (
        f"{head}From: <{author}>\r\nTo: <someone@remote.test>\r\nSubject: {subject}\r\n"
        f"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@x>\r\n\r\nbody of {subject}\r\n"
    ).encode()


def received(sink: Sink, recipient: str, subject: str) -> Any:
    (got,) = sink.wait_for(
        lambda: [t for t in sink.received(recipient) if subject.encode() in t.data],
        what=subject,
    )
    return got


def test_submitted_mail_arrives_with_signatures_that_verify(
    node: NodeProcess, sink: Sink, dns: NameServer
) -> None:
    subject = f"signed {uuid.uuid4().hex}"
    with smtplib.SMTP("127.0.0.1", node.ports["submission"], timeout=30) as client:
        client.starttls(context=client_tls())
        client.login(ALICE, PASSWORD)
        client.sendmail(ALICE, ["dave@remote.test"], message(subject, ALICE))
    got = received(sink, "dave@remote.test", subject)
    assert got.sender == ALICE
    assert sorted(verified_domains(got.data, txt_from(dns))) == [
        ("example.test", "ed25519-sha256", True),
        ("example.test", "rsa-sha256", True),
    ]


def test_forwarded_mail_leaves_with_srs_arc_and_a_signature_and_its_bounce_comes_back(
    node: NodeProcess, sink: Sink, dns: NameServer
) -> None:
    subject = f"forwarded {uuid.uuid4().hex}"
    results = (
        f"{HOST}; spf=pass smtp.mailfrom=bob@sender.test; dkim=none;"
        " dmarc=none header.from=sender.test; arc=none"
    )
    with smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=30) as client:
        client.sendmail(
            "bob@sender.test",
            ["friends@example.test"],
            message(subject, "bob@sender.test", results=results),
        )
    got = received(sink, "carol@remote.test", subject)
    assert got.sender.lower().startswith("srs0=") and got.sender.endswith("@example.test")
    assert "=sender.test=bob@" in got.sender.lower()
    assert sorted(verified_domains(got.data, txt_from(dns))) == [
        ("example.test", "ed25519-sha256", True),
        ("example.test", "rsa-sha256", True),
    ]
    cv, sets, reason = dkim.arc_verify(got.data, dnsfunc=txt_from(dns))
    assert cv == b"pass", reason
    assert sets[0]["as-domain"] == b"example.test"

    # carol's server bounces it: to the SRS address, from the null sender, at our MX.
    bounce = (
        f"From: MAILER-DAEMON@remote.test\r\nTo: <{got.sender}>\r\n"
        f"Subject: Undeliverable: {subject}\r\n\r\ncarol is gone\r\n"
    ).encode()
    with smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=30) as client:
        client.sendmail("", [got.sender], bounce)
    back = received(sink, "bob@sender.test", f"Undeliverable: {subject}")
    assert back.sender == "<>"
    assert b"carol is gone" in back.data
