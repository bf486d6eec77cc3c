"""Attacks on what forwarding lends a stranger: our SRS addresses and our DKIM signature.

The attacker (at the MX, from attacker addresses) tries to use our SRS addresses as an open relay
(guessed and altered hashes, a valid address re-aimed at a victim, a flood of them), to get our
signature on mail that claims to come from our customer by sending it through one of our aliases,
and to break signing with headers dkimpy cannot parse. The customer is served meanwhile.
"""

from __future__ import annotations

import smtplib
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.adversarial.conftest import assert_no_traceback, assert_unharmed, attacker, served
from tests.dkim_support import delivery, internet
from tests.dnsserver import NameServer
from tests.nodeproc import NodeProcess
from tests.smtpsink import Sink

ATTACK_SECONDS = 3.0


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NameServer, Sink]]:
    tls = tmp_path_factory.mktemp("tls")
    with internet(tls, "remote.test", "victim.test", "sender.test") as made:
        yield made


@pytest.fixture
def sink(world: tuple[NameServer, Sink]) -> Sink:
    return world[1]


@pytest.fixture
def node(fresh_node: Callable[..., NodeProcess], world: tuple[NameServer, Sink]) -> NodeProcess:
    made = fresh_node(delivery=delivery(*world))
    for args in (
        ("alias", "add", "friends@example.test", "carol@remote.test"),
        ("dkim", "create", "example.test"),
    ):
        done = made.cli(*args)
        assert done.returncode == 0, done.stderr
    return made


def mx(node: NodeProcess, n: int) -> smtplib.SMTP:
    client = smtplib.SMTP(
        "127.0.0.1", node.ports["smtp"], timeout=10, source_address=(attacker(n), 0)
    )
    client.ehlo("attacker.test")
    return client


def forged_srs(n: int) -> list[str]:
    return [
        f"SRS0=aaaa{n:04d}=j2=victim.test=target{n}@example.test",
        f"SRS0={uuid.uuid4().hex[:8]}=zz=victim.test=target@example.test",
        f"srs1=abcd=victim.test==abcdefgh=j2=victim.test=x{n}@example.test",
        "SRS0=@example.test",
    ]


def test_our_srs_addresses_are_no_open_relay(node: NodeProcess, sink: Sink) -> None:
    # A genuine SRS address, made when the node forwarded a message to the sink.
    subject = f"genuine {uuid.uuid4().hex}"
    with mx(node, 1) as client:
        client.sendmail(
            "bob@sender.test",
            ["friends@example.test"],
            f"From: <bob@sender.test>\r\nSubject: {subject}\r\n\r\nhi\r\n".encode(),
        )
    (got,) = sink.wait_for(
        lambda: [t for t in sink.received("carol@remote.test") if subject.encode() in t.data],
        what="the forwarded message",
    )
    genuine = got.sender
    local, _, domain = genuine.partition("@")
    hash_, stamp, _, _ = local[5:].split("=", 3)
    # The same hash and time stamp aimed at the victim: the hash covers the original address.
    reaimed = f"SRS0={hash_}={stamp}=victim.test=ceo@{domain}"

    codes: list[int] = []
    with served(node) as report:
        deadline = time.monotonic() + ATTACK_SECONDS
        n = 0
        while time.monotonic() < deadline:
            # One connection at a time (a flood of connections meets the connection limits,
            # not SRS): as many transactions on it as the node allows.
            try:
                with mx(node, 2) as client:
                    while time.monotonic() < deadline:
                        n += 1
                        client.mail("spammer@attacker.test")
                        for address in [reaimed, *forged_srs(n)]:
                            codes.append(client.rcpt(address)[0])
                        client.rset()
            except (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError):
                time.sleep(0.2)  # the node hung up on a client that keeps failing: fine
    refused = [c for c in codes if c != 421]
    assert refused and set(refused) == {550}
    time.sleep(1.0)  # anything accepted would be on its way by now
    assert not [t for t in sink.received() if any("victim.test" in r for r in t.recipients)]
    assert_unharmed(node, report)


def test_a_forged_from_of_ours_through_an_alias_gets_no_signature_of_ours(
    node: NodeProcess, sink: Sink
) -> None:
    subject = f"phish {uuid.uuid4().hex}"
    forged = (
        f"From: Alice <alice@example.test>\r\nTo: friends@example.test\r\nSubject: {subject}\r\n"
        "\r\nplease wire the money\r\n"
    ).encode()
    # A message whose header dkimpy cannot parse (a line that is no field) is forwarded too.
    broken_subject = f"broken {uuid.uuid4().hex}"
    broken = f"From: <x@sender.test>\r\nSubject: {broken_subject}\r\n\x01\x02 no field\r\n\r\nx\r\n"
    with mx(node, 3) as client:
        client.sendmail("spoof@sender.test", ["friends@example.test"], forged)
        client.sendmail("x@sender.test", ["friends@example.test"], broken.encode())
        for wanted in (subject, broken_subject):
            sink.wait_for(
                lambda w=wanted: [t for t in sink.received() if w.encode() in t.data],  # type: ignore[misc]
                what=wanted,
            )
    (got,) = [t for t in sink.received() if subject.encode() in t.data]
    assert b"DKIM-Signature" not in got.data
    assert got.sender.lower().startswith("srs0=")  # still forwarded, SPF-safe
    assert_no_traceback(node)
