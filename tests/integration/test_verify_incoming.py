"""Checks of incoming mail at the MX of a real node, against a real name server on loopback:
SPF, DKIM, DMARC and ARC, the Authentication-Results field, and the DMARC policy applied."""

from __future__ import annotations

import email
import smtplib
from collections.abc import Iterator

import pytest

from mailfort.trust.authres import results
from tests.conftest import PASSWORD, imaps
from tests.dkimkeys import Key, ed25519_key, rsa_key
from tests.dnsserver import NameServer, Zone
from tests.nodeproc import NodeProcess
from tests.trustdns import checking_node, txt

AUTHSERV = "mx.mailfort.test"  # tests/nodeproc.py's hostname
ALICE = "alice@example.test"
CAROL = "carol@other.test"  # other.test asks for everything to be delivered


class World:
    def __init__(self, zone: Zone, server: NameServer, rsa: Key, ed: Key) -> None:
        self.zone, self.server, self.rsa, self.ed = zone, server, rsa, ed


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    zone = Zone()
    rsa, ed = rsa_key("good.test"), ed25519_key("good.test")
    rsa.publish(zone)
    ed.publish(zone)
    txt(zone, "good.test", "v=spf1 ip4:127.0.0.0/8 -all")
    txt(zone, "_dmarc.good.test", "v=DMARC1; p=reject")
    txt(zone, "forged.test", "v=spf1 ip4:192.0.2.1 -all")
    txt(zone, "bank.test", "v=spf1 ip4:192.0.2.1 -all")
    txt(zone, "_dmarc.bank.test", "v=DMARC1; p=reject; rua=mailto:d@bank.test")
    txt(zone, "shop.test", "v=spf1 ip4:192.0.2.1 -all")
    txt(zone, "_dmarc.shop.test", "v=DMARC1; p=quarantine")
    txt(zone, "flaky.test", "v=spf1 ip4:192.0.2.1 -all")
    zone.servfail.add("_dmarc.flaky.test")
    txt(zone, "slow.test", "v=spf1 ip4:192.0.2.1 -all")
    zone.silent.add("_dmarc.slow.test")
    server = NameServer(zone).start()
    yield World(zone, server, rsa, ed)
    server.stop()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, world: World) -> Iterator[NodeProcess]:
    proc = checking_node(
        tmp_path_factory.mktemp("verify"),
        world.server,
        {ALICE: PASSWORD, CAROL: PASSWORD},
        'domains = { "other.test" = "none" }\n',
    )
    yield proc
    proc.stop()


def message(author: str, subject: str, extra: bytes = b"") -> bytes:
    return (
        f"From: {author}\r\nTo: {ALICE}\r\nSubject: {subject}\r\n".encode()
        + extra
        + b"\r\nHello.\r\n"
    )


def send(node: NodeProcess, sender: str, data: bytes, to: str = ALICE) -> None:
    with smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=30) as client:
        client.ehlo("client.good.test")
        assert client.sendmail(sender, [to], data) == {}


def stored(node: NodeProcess, subject: str, mailbox: str = "INBOX", to: str = ALICE) -> bytes:
    found = [m for m in node.inbox(to, mailbox) if f"Subject: {subject}".encode() in m]
    assert len(found) == 1, f"{subject!r} in {mailbox}: {len(found)} copies"
    return found[0]


def verdicts(data: bytes) -> list[dict[str, str]]:
    """The method results of every Authentication-Results field of ours."""
    parsed = email.message_from_bytes(data)
    return [
        results(" ".join(v.split()))
        for v in parsed.get_all("Authentication-Results", [])
        if v.strip().lower().startswith(AUTHSERV)
    ]


def test_signed_mail_passes_spf_dkim_and_dmarc(node: NodeProcess, world: World) -> None:
    data = world.ed.sign(world.rsa.sign(message("bob@good.test", "all good")))
    send(node, "bob@good.test", data)
    got = stored(node, "all good")
    (verdict,) = verdicts(got)
    assert verdict == {"spf": "pass", "dkim": "pass", "dmarc": "pass", "arc": "none"}
    header = " ".join(email.message_from_bytes(got)["Authentication-Results"].split())
    assert "smtp.mailfrom=bob@good.test" in header
    assert "header.d=good.test header.s=rsa header.a=rsa-sha256" in header
    assert "header.d=good.test header.s=ed header.a=ed25519-sha256" in header
    assert "policy.dmarc=reject header.from=good.test" in header
    # The field sits right after our Received field, ahead of the message as it came.
    assert got.index(b"Authentication-Results:") < got.index(b"DKIM-Signature:")


def test_spf_from_a_forged_domain_fails(node: NodeProcess) -> None:
    send(node, "someone@forged.test", message("someone@forged.test", "spf fail"))
    (verdict,) = verdicts(stored(node, "spf fail"))
    assert (verdict["spf"], verdict["dmarc"]) == ("fail", "none")


def test_a_tampered_signature_fails_dkim(node: NodeProcess, world: World) -> None:
    data = world.rsa.sign(message("bob@good.test", "tampered")).replace(b"Hello.", b"Bye.")
    send(node, "bob@good.test", data)
    (verdict,) = verdicts(stored(node, "tampered"))
    # SPF still passes and aligns, so DMARC passes: one aligned pass is enough.
    assert (verdict["dkim"], verdict["spf"], verdict["dmarc"]) == ("fail", "pass", "pass")


def test_dmarc_reject_is_refused_with_550(node: NodeProcess) -> None:
    with (
        smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=30) as client,
        pytest.raises(smtplib.SMTPDataError) as refused,
    ):
        client.sendmail("ceo@bank.test", [ALICE], message("ceo@bank.test", "pay now"))
    assert refused.value.smtp_code == 550
    assert refused.value.smtp_error.startswith(b"5.7.1")
    assert b"DMARC" in refused.value.smtp_error
    assert not [m for m in node.inbox(ALICE) if b"pay now" in m]
    assert node.queue() == []


def test_a_domain_that_takes_everything_gets_dmarc_failures(node: NodeProcess) -> None:
    # other.test says "none": the reject becomes an ordinary delivery, marked dmarc=fail.
    send(node, "ceo@bank.test", message("ceo@bank.test", "for carol"), to=CAROL)
    (verdict,) = verdicts(stored(node, "for carol", to=CAROL))
    assert verdict["dmarc"] == "fail"


def test_dmarc_quarantine_files_to_junk(node: NodeProcess) -> None:
    send(node, "news@shop.test", message("news@shop.test", "cheap pills"))
    with imaps(node) as client:
        client.select("Junk", readonly=True)
        status, found = client.search(None, "SUBJECT", '"cheap pills"')
        assert status == "OK" and len(found[0].split()) == 1
        status, data = client.fetch(found[0].split()[0], "(BODY.PEEK[HEADER])")
        client.select("INBOX", readonly=True)
        _, in_inbox = client.search(None, "SUBJECT", '"cheap pills"')
    assert in_inbox == [b""]
    header = data[0][1]
    assert isinstance(header, bytes)
    assert verdicts(header)[0]["dmarc"] == "fail"


def test_forged_authentication_results_in_our_name_are_removed(node: NodeProcess) -> None:
    forged = (
        f"Authentication-Results: {AUTHSERV}; spf=pass smtp.mailfrom=ceo@bank.test;\r\n"
        f"\tdkim=pass header.d=bank.test; dmarc=pass header.from=bank.test\r\n"
        f"Authentication-Results: (sneaky) {AUTHSERV.upper()}.; dmarc=pass\r\n"
        f"Authentication-Results: other.example; dmarc=pass header.from=good.test\r\n"
    ).encode()
    send(node, "bob@good.test", message("bob@good.test", "forged ar", forged))
    got = stored(node, "forged ar")
    assert got.count(b"Authentication-Results:") == 2
    assert b"Authentication-Results: other.example; dmarc=pass" in got
    assert b"sneaky" not in got and b"ceo@bank.test" not in got
    (verdict,) = verdicts(got)
    assert verdict["spf"] == "pass"


def test_a_large_spooled_message_is_checked_and_cleaned(node: NodeProcess, world: World) -> None:
    # Past the 64 KiB spool threshold the message comes from disk: read once for the checks,
    # once for the store, the forged field cut out of the buffer in place.
    forged = f"Authentication-Results: {AUTHSERV}; dmarc=pass\r\n".encode()
    big = message("bob@good.test", "big one", forged) + b"0123456789abcdef\r\n" * 20_000
    send(node, "bob@good.test", world.rsa.sign(big))
    got = stored(node, "big one")
    (verdict,) = verdicts(got)
    assert verdict == {"spf": "pass", "dkim": "pass", "dmarc": "pass", "arc": "none"}
    assert got.count(b"Authentication-Results:") == 1
    assert got.endswith(b"0123456789abcdef\r\n" * 20_000)


@pytest.mark.parametrize("domain", ["flaky.test", "slow.test"])
def test_dns_failure_defers_never_refuses(node: NodeProcess, domain: str) -> None:
    with (
        smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=30) as client,
        pytest.raises(smtplib.SMTPDataError) as deferred,
    ):
        client.sendmail(f"x@{domain}", [ALICE], message(f"x@{domain}", f"dns {domain}"))
    assert deferred.value.smtp_code == 451
    assert deferred.value.smtp_error.startswith(b"4.7.")


def test_no_tracebacks(node: NodeProcess) -> None:
    assert "Traceback" not in node.log()
