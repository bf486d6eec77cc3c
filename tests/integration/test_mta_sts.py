"""MTA-STS and DANE in the SMTP client, against real servers on loopback.

A name server (dnslib) holds the `_mta-sts` TXT records, MX records, TLSA records (with the AD
flag for names in `zone.secure`, as a validating resolver sets it); an HTTPS server with a
certificate from a test CA serves the policies; four SMTP sinks at one port on 127.0.0.1, .3, .4
and .5 present a CA-signed certificate for the MX names, a self-signed one, one for another name,
and an expired one.
"""

from __future__ import annotations

import hashlib
import random
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mailfort.delivery import tlsrpt
from mailfort.delivery.mtasts import MtaSts, PolicyFetcher, policy_tls_context
from mailfort.delivery.mx import MxResolver
from mailfort.delivery.remote import ClientSettings, Outcome, RecipientResult, RemoteClient
from mailfort.server.tls import ensure_self_signed
from tests.dnsserver import NameServer, Zone
from tests.smtpsink import Sink
from tests.tlsca import Answer, PolicyServer, TestCa

BODY = b"From: a@source.test\r\nSubject: sts\r\nMessage-ID: <m@source.test>\r\n\r\nhi\r\n"
GOOD, SELF_SIGNED, WRONG_NAME, EXPIRED = "127.0.0.1", "127.0.0.3", "127.0.0.4", "127.0.0.5"
CHAIN = "127.0.0.6"  # the test CA's certificate for mx.danetaok.test, sent with the CA's own
# domain -> (address of its MX, policy mode, the policy's mx line)
DOMAINS = {
    "good.test": (GOOD, "enforce", "mx.good.test"),
    "wild.test": (GOOD, "enforce", "*.wild.test"),
    "selfsigned.test": (SELF_SIGNED, "enforce", "mx.selfsigned.test"),
    "wrongname.test": (WRONG_NAME, "enforce", "mx.wrongname.test"),
    "expired.test": (EXPIRED, "enforce", "mx.expired.test"),
    "testing.test": (SELF_SIGNED, "testing", "mx.testing.test"),
    "nomatch.test": (GOOD, "enforce", "mx.elsewhere.test"),
    "cached.test": (SELF_SIGNED, "enforce", "mx.cached.test"),
    "nocache.test": (SELF_SIGNED, "enforce", "mx.nocache.test"),
    "dane.test": (SELF_SIGNED, "enforce", "mx.dane.test"),
    "danebad.test": (GOOD, "none", "mx.danebad.test"),
    "daneinsecure.test": (SELF_SIGNED, "none", "mx.daneinsecure.test"),
    "danetaok.test": (CHAIN, "none", ""),
    "danetaname.test": (CHAIN, "none", ""),
    "danetaother.test": (CHAIN, "none", ""),
}


def policy(mode: str, mx: str) -> bytes:
    return f"version: STSv1\r\nmode: {mode}\r\nmx: {mx}\r\nmax_age: 86400\r\n".encode()


def spki_sha256(cert_pem: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


@dataclass
class World:
    zone: Zone
    dns: NameServer
    policies: PolicyServer
    sinks: list[Sink]
    ca: TestCa
    port: int


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("sts")
    ca = TestCa(root / "ca")
    mx_names = [f"mx.{d}" for d in DOMAINS] + ["mail.wild.test"]
    ca.issue(root / "good", mx_names)
    ca.issue(root / "wrong", ["other.example"])
    ca.issue(root / "expired", mx_names, expired=True)
    self_signed, _ = ensure_self_signed(root / "self", "sink.test")
    chain_cert, _ = ca.issue(root / "chain", ["mx.danetaok.test", "mx.danetaother.test"])
    chain_cert.write_bytes(chain_cert.read_bytes() + ca.ca_file.read_bytes())
    other_ca = TestCa(root / "other-ca")
    web_cert, web_key = ca.issue(root / "web", [f"mta-sts.{d}" for d in DOMAINS])
    policies = PolicyServer(web_cert, web_key).start()
    first = Sink(hosts=(GOOD,), tls_dir=root / "good").start()
    sinks = [first]
    others = ((SELF_SIGNED, "self"), (WRONG_NAME, "wrong"), (EXPIRED, "expired"), (CHAIN, "chain"))
    for address, folder in others:
        sinks.append(Sink(hosts=(address,), port=first.port, tls_dir=root / folder).start())
    zone = Zone()
    for domain, (address, mode, mx) in DOMAINS.items():
        host = "mail.wild.test" if domain == "wild.test" else f"mx.{domain}"
        zone.add(domain, "MX", f"10 {host}.").add(host, "A", address)
        zone.add(f"mta-sts.{domain}", "A", "127.0.0.1")
        if mode != "none":
            # TTL 0: a changed record is seen at once (dnspython caches answers for their TTL).
            zone.add(f"_mta-sts.{domain}", "TXT", '"v=STSv1; id=1"', ttl=0)
            policies.answers[f"mta-sts.{domain}"] = Answer(body=policy(mode, mx))
    # TLSA records name the port delivery uses (RFC 6698 3): the sinks' port here, 25 outside.
    tcp = f"_{first.port}._tcp"
    zone.add(f"{tcp}.mx.dane.test", "TLSA", f"3 1 1 {spki_sha256(self_signed)}")
    zone.add(f"{tcp}.mx.danebad.test", "TLSA", f"3 1 1 {'00' * 32}")
    zone.add(f"{tcp}.mx.daneinsecure.test", "TLSA", f"3 1 1 {'00' * 32}")
    ca_digest = hashlib.sha256(ca.cert.public_bytes(Encoding.DER)).hexdigest()
    zone.add(f"{tcp}.mx.danetaok.test", "TLSA", f"2 0 1 {ca_digest}")
    zone.add(f"{tcp}.mx.danetaname.test", "TLSA", f"2 0 1 {ca_digest}")  # not in the cert
    zone.add(f"{tcp}.mx.danetaother.test", "TLSA", f"2 1 1 {spki_sha256(other_ca.ca_file)}")
    zone.secure |= {f"{tcp}.mx.{d}" for d in DOMAINS if d != "daneinsecure.test"}
    dns = NameServer(zone).start()
    yield World(zone, dns, policies, sinks, ca, first.port)
    for sink in sinks:
        sink.stop()
    dns.stop()
    policies.stop()


def make_client(world: World, **settings: object) -> RemoteClient:
    resolver = MxResolver(
        nameservers=[(world.dns.host, world.dns.port)], timeout=2.0, rng=random.Random(1)
    )
    fetcher = PolicyFetcher(
        resolver,
        port=world.policies.port,
        timeout=2.0,
        tls=policy_tls_context(str(world.ca.ca_file)),
    )
    values: dict[str, object] = {
        "helo": "out.mailfort.test",
        "port": world.port,
        "connect_timeout": 2.0,
        "command_timeout": 5.0,
        "ca_file": str(world.ca.ca_file),
    }
    values.update(settings)
    return RemoteClient(
        ClientSettings(**values),  # type: ignore[arg-type]
        resolver=resolver,
        mta_sts=MtaSts(resolver, fetcher),
        dane=True,
        counter=tlsrpt.TlsCounter(),
        unreported_senders=("reports@out.mailfort.test",),
    )


async def send(client: RemoteClient, domain: str, sender: str = "a@source.test") -> RecipientResult:
    (result,) = await client.deliver(client.destination(domain), sender, [f"u@{domain}"], BODY)
    await client.close()
    return result


def received(world: World, domain: str) -> bool:
    return any(sink.received(f"u@{domain}") for sink in world.sinks)


def results(client: RemoteClient, domain: str) -> dict[str, int]:
    """Counted sessions of `domain` by result ("" for successes)."""
    assert client.policies.counter is not None
    found: dict[str, int] = {}
    for row in client.policies.counter.take():
        if row.domain == domain:
            found[row.result] = found.get(row.result, 0) + row.sessions
    return found


async def test_enforce_with_a_verified_certificate_delivers(world: World) -> None:
    for domain in ("good.test", "wild.test"):
        client = make_client(world)
        result = await send(client, domain)
        assert result.outcome is Outcome.DELIVERED, result.text
        (transaction,) = world.sinks[0].received(f"u@{domain}")
        assert transaction.tls
        assert results(client, domain) == {"": 1}


@pytest.mark.parametrize(
    ("domain", "kind"),
    [
        ("selfsigned.test", tlsrpt.CERTIFICATE_NOT_TRUSTED),
        ("wrongname.test", tlsrpt.CERTIFICATE_HOST_MISMATCH),
        ("expired.test", tlsrpt.CERTIFICATE_EXPIRED),
    ],
)
async def test_enforce_with_a_bad_certificate_defers(world: World, domain: str, kind: str) -> None:
    client = make_client(world)
    result = await send(client, domain)
    assert result.outcome is Outcome.DEFERRED and result.status == "4.7.5", result.text
    assert not received(world, domain)
    assert results(client, domain) == {kind: 1}


async def test_enforce_never_falls_back_to_plaintext(world: World) -> None:
    """Even with `tls = "may"`, whose failed handshakes otherwise retry in plaintext."""
    client = make_client(world, tls="may")
    assert (await send(client, "selfsigned.test")).outcome is Outcome.DEFERRED
    assert not received(world, "selfsigned.test")


async def test_testing_mode_delivers_and_counts_the_failure(world: World) -> None:
    client = make_client(world)
    result = await send(client, "testing.test")
    assert result.outcome is Outcome.DELIVERED, result.text
    assert received(world, "testing.test")
    assert results(client, "testing.test") == {tlsrpt.CERTIFICATE_NOT_TRUSTED: 1}


async def test_an_mx_outside_the_policy_is_not_used(world: World) -> None:
    client = make_client(world)
    result = await send(client, "nomatch.test")
    assert result.outcome is Outcome.DEFERRED and result.status == "4.7.5"
    assert "not allowed by the MTA-STS policy" in result.text
    assert not received(world, "nomatch.test")
    assert results(client, "nomatch.test") == {tlsrpt.VALIDATION_FAILURE: 1}


async def test_a_cached_policy_survives_a_failed_refresh(world: World) -> None:
    client = make_client(world)
    assert client.policies.mta_sts is not None
    assert (await send(client, "cached.test")).outcome is Outcome.DEFERRED
    assert client.policies.mta_sts.fetches == 1
    # A new id says the policy changed; the policy host is down: the old one stays in force.
    world.zone.replace("_mta-sts.cached.test", "TXT", '"v=STSv1; id=2"', ttl=0)
    world.policies.answers["mta-sts.cached.test"] = Answer(down=True)
    client.policies.counter.take()  # type: ignore[union-attr]
    result = await send(client, "cached.test")
    assert result.outcome is Outcome.DEFERRED and result.status == "4.7.5", result.text
    assert not received(world, "cached.test")
    assert client.policies.mta_sts.fetches == 2
    counted = results(client, "cached.test")
    assert counted == {tlsrpt.CERTIFICATE_NOT_TRUSTED: 1}
    # Stripping the TXT record (an attacker's first move) does not switch it off either.
    world.zone.replace("_mta-sts.cached.test", "TXT")
    assert (await send(client, "cached.test")).outcome is Outcome.DEFERRED


async def test_a_failed_fetch_without_a_cached_policy_is_no_policy(world: World) -> None:
    world.policies.answers["mta-sts.nocache.test"] = Answer(down=True)
    client = make_client(world)
    result = await send(client, "nocache.test")
    assert result.outcome is Outcome.DELIVERED, result.text
    assert results(client, "nocache.test") == {"sts-policy-fetch-error": 1}
    assert client.policies.mta_sts is not None
    await send(client, "nocache.test")
    assert client.policies.mta_sts.fetches == 1  # the failure is remembered for a while


async def test_dane_match_delivers_and_takes_precedence(world: World) -> None:
    """mx.dane.test has a self-signed certificate (PKIX fails, so MTA-STS enforce alone would
    defer) and a DNSSEC-validated TLSA 3 1 1 record for its key: DANE wins (RFC 8461 2)."""
    client = make_client(world)
    result = await send(client, "dane.test")
    assert result.outcome is Outcome.DELIVERED, result.text
    assert [t.tls for t in world.sinks[1].received("u@dane.test")] == [True]
    assert results(client, "dane.test") == {"": 1}


async def test_dane_mismatch_defers(world: World) -> None:
    client = make_client(world)
    result = await send(client, "danebad.test")
    assert result.outcome is Outcome.DEFERRED and result.status == "4.7.5", result.text
    assert "TLSA" in result.text
    assert not received(world, "danebad.test")
    assert results(client, "danebad.test") == {"tlsa-invalid": 1}


async def test_tlsa_without_the_ad_flag_is_ignored(world: World) -> None:
    client = make_client(world)
    result = await send(client, "daneinsecure.test")
    assert result.outcome is Outcome.DELIVERED, result.text
    assert results(client, "daneinsecure.test") == {}


async def test_reports_are_delivered_despite_policies_and_never_counted(world: World) -> None:
    """RFC 8460 3: a report goes out whatever TLS does, and is not in the next report."""
    client = make_client(world)
    result = await send(client, "selfsigned.test", sender="reports@out.mailfort.test")
    assert result.outcome is Outcome.DELIVERED, result.text
    assert results(client, "selfsigned.test") == {}


def own_address() -> str | None:
    """An address of this machine that is not loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: only a route is chosen
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


async def test_the_ad_flag_of_a_name_server_elsewhere_is_not_believed() -> None:
    address = own_address()
    if address is None:
        pytest.skip("this machine has no address but loopback")
    zone = Zone().add("_25._tcp.mx.t.test", "TLSA", f"3 1 1 {'00' * 32}")
    zone.secure.add("_25._tcp.mx.t.test")
    try:
        remote = NameServer(zone, host=address).start()
    except OSError:
        pytest.skip(f"cannot listen on {address}")
    local = NameServer(zone).start()
    try:
        far = MxResolver(nameservers=[(remote.host, remote.port)], timeout=2.0)
        near = MxResolver(nameservers=[(local.host, local.port)], timeout=2.0)
        records, secure = await far.tlsa("_25._tcp.mx.t.test")
        assert len(records) == 1 and not secure
        assert (await near.tlsa("_25._tcp.mx.t.test"))[1]
    finally:
        remote.stop()
        local.stop()


async def test_dane_ta_matches_the_anchor_the_server_sends(world: World) -> None:
    """DANE-TA (2 0 1): the test CA, which the client does not trust, anchors the chain the
    server sends; the name must match, and another anchor does not do."""
    client = make_client(world, ca_file="")
    result = await send(client, "danetaok.test")
    assert result.outcome is Outcome.DELIVERED, result.text
    for domain in ("danetaname.test", "danetaother.test"):
        result = await send(client, domain)
        assert result.outcome is Outcome.DEFERRED and "TLSA" in result.text, domain
        assert not received(world, domain)
    assert results(client, "danetaname.test") == {"tlsa-invalid": 1}
