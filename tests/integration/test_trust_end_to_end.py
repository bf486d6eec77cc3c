"""Two providers on loopback, each a real mailfort node, and a real name server holding both
zones: mail signed by one, forwarded by an alias at the other, comes back and is believed.

alpha.test (node A, 127.0.0.1) and beta.test (node B, 127.0.0.2) each publish SPF for their own
address only, DKIM keys made by `mailfort dkim create` and DMARC `p=reject`. Alice at alpha
writes to an alias at beta that forwards to Carol at alpha:

    alice --submission--> A --(DKIM alpha)--> B's MX --(SRS, ARC, DKIM beta)--> A's MX --> Carol

Without SRS, B's hop would fail SPF for alpha (B's address is not alpha's); the DKIM signature
of alpha survives the forward and aligns with From:, so DMARC passes at A; B's ARC seal carries
B's verdict of the first hop. A stranger who writes as alice from a third address is refused.
"""

from __future__ import annotations

import email
import email.policy
import re
import smtplib
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailfort.store.records import DkimKey
from tests.dkim_support import publish
from tests.dnsserver import NameServer, Zone
from tests.nodeproc import NodeProcess, free_ports
from tests.polling import wait_for
from tests.rawclient import client_tls

pytestmark = pytest.mark.slow

PASSWORD = "correct horse"
ALICE = "alice@alpha.test"
CAROL = "carol@alpha.test"
BOB = "bob@beta.test"
ALIAS = "team@beta.test"
A_NAME = "mx.alpha.test"
B_NAME = "mx.beta.test"


def zone() -> Zone:
    z = Zone()
    for domain, address in (("alpha.test", "127.0.0.1"), ("beta.test", "127.0.0.2")):
        z.add(domain, "MX", f"10 mx.{domain}.").add(f"mx.{domain}", "A", address)
        z.add(domain, "TXT", f'"v=spf1 ip4:{address} -all"')
        z.add(f"_dmarc.{domain}", "TXT", '"v=DMARC1; p=reject"')
    return z


def provider(
    root: Path, name: str, host: str, hostname: str, peer_port: int, port: int, dns: NameServer
) -> NodeProcess:
    """A node of one provider: its MX on `port` at `host`, sending from `host` to the other
    provider's MX on `peer_port` (both MX records point at loopback addresses)."""
    return NodeProcess(
        root / name,
        name=name,
        host=host,
        hostname=hostname,
        fixed_ports={"smtp": port},
        verify="enabled = true\ndns_timeout = 2.0\n",
        delivery=(
            f'dns_nameservers = ["{dns.address}"]\ndns_timeout = 2.0\nsmtp_port = {peer_port}\n'
            f'source_address = "{host}"\nretry_base = 0.3\nretry_max = 1.0\n'
            "connect_timeout = 2.0\n"
        ),
    )


def keys(node: NodeProcess, domain: str) -> list[DkimKey]:
    made = node.cli("dkim", "create", domain)
    assert made.returncode == 0, made.stderr
    return node._query(lambda store: store.dkim_keys(domain))  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProcess, NodeProcess]]:
    root = tmp_path_factory.mktemp("trust")
    dns = NameServer(zone()).start()
    port_a, port_b = free_ports(2)
    a = provider(root, "alpha", "127.0.0.1", A_NAME, port_b, port_a, dns)
    b = provider(root, "beta", "127.0.0.2", B_NAME, port_a, port_b, dns)
    a.provision(domains=("alpha.test",), users={ALICE: PASSWORD, CAROL: PASSWORD})
    b.provision(domains=("beta.test",), users={BOB: PASSWORD}, aliases=((ALIAS, CAROL),))
    publish(dns.zone, keys(a, "alpha.test") + keys(b, "beta.test"))
    a.start()
    try:
        b.start()
        try:
            yield a, b
        finally:
            b.stop()
    finally:
        a.stop()
        dns.stop()


def message(subject: str, author: str, to: str) -> bytes:
    return (
        f"From: Alice <{author}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
        "Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@alpha.test>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        "Forwarded mail that still proves where it came from.\r\n"
    ).encode()


def arrived(node: NodeProcess, address: str, subject: str) -> EmailMessage:
    def find() -> list[bytes]:
        return [m for m in node.inbox(address) if subject.encode() in m]

    (raw,) = wait_for(find, timeout=60, what=f"{subject!r} in {address}'s INBOX")
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def results(message: EmailMessage, authserv_id: str) -> str:
    """The Authentication-Results field `authserv_id` added (exactly one), unfolded."""
    (found,) = [
        " ".join(str(v).split())
        for v in message.get_all("Authentication-Results", [])
        if str(v).strip().startswith(authserv_id + ";")
    ]
    return found


def test_signed_forwarded_mail_passes_spf_dkim_dmarc_and_arc_at_the_far_end(
    world: tuple[NodeProcess, NodeProcess],
) -> None:
    a, _b = world
    subject = f"round trip {uuid.uuid4().hex}"
    with smtplib.SMTP("127.0.0.1", a.ports["submission"], timeout=30) as client:
        client.starttls(context=client_tls())
        client.login(ALICE, PASSWORD)
        assert client.sendmail(ALICE, [ALIAS], message(subject, ALICE, ALIAS)) == {}
    got = arrived(a, CAROL, subject)

    # A's verdict of B's forward: SPF of B's SRS sender, alpha's signature (aligned with From:)
    # and beta's, DMARC by alpha's signature, ARC by B's seal.
    final = results(got, A_NAME)
    assert re.search(r"spf=pass smtp\.mailfrom=srs0=[^ ;]+@beta\.test;", final, re.I), final
    assert "dkim=pass header.d=alpha.test" in final and "dkim=pass header.d=beta.test" in final
    assert "dmarc=pass" in final and "header.from=alpha.test" in final
    assert "arc=pass" in final, final

    # B's verdict of A's delivery, attested in its ARC set, and only B's seal on the message.
    (attested,) = got.get_all("ARC-Authentication-Results", [])
    attested_text = " ".join(str(attested).split())
    assert attested_text.startswith(f"i=1; {B_NAME};"), attested_text
    assert "spf=pass" in attested_text and "smtp.mailfrom=alice@alpha.test" in attested_text
    assert "dmarc=pass" in attested_text
    assert "d=beta.test" in " ".join(str(got["ARC-Seal"]).split())
    # No field of B's survives that claims to be A's verdict.
    assert len([r for r in got.get_all("Authentication-Results", []) if A_NAME in str(r)]) == 1


def test_a_stranger_writing_as_a_reject_domain_is_refused(
    world: tuple[NodeProcess, NodeProcess],
) -> None:
    _a, b = world
    forged = message(f"forged {uuid.uuid4().hex}", ALICE, BOB)
    with (
        smtplib.SMTP(
            "127.0.0.2", b.ports["smtp"], timeout=30, source_address=("127.0.0.3", 0)
        ) as client,
        pytest.raises(smtplib.SMTPDataError) as refused,
    ):
        client.sendmail(ALICE, [BOB], forged)
    assert refused.value.smtp_code == 550
    assert b"5.7.1" in refused.value.smtp_error and b"DMARC" in refused.value.smtp_error
    assert not [m for m in b.inbox(BOB) if b"forged" in m]
