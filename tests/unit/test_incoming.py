"""The checks of incoming mail as one verdict: ARC, the policy settings, and what DNS failures
may and may not lead to."""

from __future__ import annotations

import ipaddress

import dkim

from mailfort.trust.arc_seal import seal
from mailfort.trust.dkim_sign import SigningKey
from mailfort.trust.dmarc import Policy
from mailfort.trust.dns import TrustResolver
from mailfort.trust.incoming import Action, Verifier, VerifySettings
from tests.dkimkeys import Key, rsa_key
from tests.dnsserver import Zone
from tests.trustdns import txt

FORWARDER_IP = "127.0.0.9"
MESSAGE = b"From: ceo@bank.test\r\nTo: a@example.test\r\nSubject: hi\r\n\r\nHello.\r\n"


def sealed(message: bytes, key: Key) -> bytes:
    """`message` as a forwarder at `key.domain` passes it on: its A-R, then its ARC set."""
    with_ar = f"Authentication-Results: {key.domain}; dmarc=pass\r\n".encode() + message
    seal = dkim.arc_sign(
        with_ar, key.selector.encode(), key.domain.encode(), key.private, key.domain.encode()
    )
    return b"".join(seal) + with_ar


def bank(zone: Zone) -> None:
    txt(zone, "bank.test", "v=spf1 ip4:192.0.2.1 -all")
    txt(zone, "_dmarc.bank.test", "v=DMARC1; p=reject")


async def test_arc_chain_pass_and_fail(zone: Zone, resolver: TrustResolver) -> None:
    bank(zone)
    forwarder = rsa_key("fwd.test", "arc")
    forwarder.publish(zone)
    verifier = Verifier(resolver, authserv_id="mx.example.org")
    verdict = await verifier.check(
        ip=FORWARDER_IP, helo="fwd.test", sender="ceo@bank.test", message=sealed(MESSAGE, forwarder)
    )
    assert verdict.checked.arc == "pass"
    assert b"arc=pass" in verdict.header
    broken = sealed(MESSAGE, forwarder).replace(b"Hello.", b"Changed.")
    verdict = await verifier.check(
        ip=FORWARDER_IP, helo="fwd.test", sender="ceo@bank.test", message=broken
    )
    assert verdict.checked.arc == "fail"
    plain = await verifier.check(ip=FORWARDER_IP, helo="x", sender="", message=MESSAGE)
    assert plain.checked.arc == "none"


async def test_trusted_forwarder_with_arc_pass_overrides_dmarc(
    zone: Zone, resolver: TrustResolver
) -> None:
    bank(zone)
    forwarder = rsa_key("fwd.test", "arc")
    forwarder.publish(zone)
    message = sealed(MESSAGE, forwarder)
    trusting = Verifier(
        resolver,
        authserv_id="mx.example.org",
        settings=VerifySettings(forwarders=(ipaddress.ip_network("127.0.0.0/24"),)),
    )
    verdict = await trusting.check(
        ip=FORWARDER_IP, helo="fwd.test", sender="ceo@bank.test", message=message
    )
    assert verdict.dmarc.result == "fail" and verdict.vouched
    assert verdict.action("example.test", trusting.settings) is Action.DELIVER
    # Another client with the same chain, or the same client without one, is not vouched for.
    other = await trusting.check(
        ip="192.0.2.77", helo="fwd.test", sender="ceo@bank.test", message=message
    )
    assert other.action("example.test", trusting.settings) is Action.REFUSE
    unsealed = await trusting.check(
        ip=FORWARDER_IP, helo="fwd.test", sender="ceo@bank.test", message=MESSAGE
    )
    assert unsealed.action("example.test", trusting.settings) is Action.REFUSE


async def test_policy_settings(zone: Zone, resolver: TrustResolver) -> None:
    bank(zone)
    verifier = Verifier(resolver, authserv_id="mx.example.org")
    verdict = await verifier.check(
        ip="127.0.0.1", helo="h", sender="ceo@bank.test", message=MESSAGE
    )
    assert verdict.action("example.test", VerifySettings()) is Action.REFUSE
    assert verdict.action("example.test", VerifySettings(reject=Policy.QUARANTINE)) is Action.JUNK
    assert verdict.action("example.test", VerifySettings(reject=Policy.NONE)) is Action.DELIVER
    per_domain = VerifySettings(caps={"lenient.test": Policy.NONE, "strict.test": Policy.REJECT})
    assert verdict.action("Lenient.Test", per_domain) is Action.DELIVER
    assert verdict.action("strict.test", per_domain) is Action.REFUSE


async def test_dns_failures_never_refuse(zone: Zone, resolver: TrustResolver) -> None:
    # The DMARC record says reject, but SPF could not be checked: it might have passed.
    txt(zone, "_dmarc.bank.test", "v=DMARC1; p=reject")
    zone.servfail.add("bank.test")
    verifier = Verifier(resolver, authserv_id="mx.example.org")
    verdict = await verifier.check(
        ip="127.0.0.1", helo="h", sender="ceo@bank.test", message=MESSAGE
    )
    assert (verdict.spf.result.value, verdict.dmarc.result, verdict.doubtful) == (
        "temperror",
        "fail",
        True,
    )
    assert verdict.action("example.test", VerifySettings()) is Action.DEFER
    accept = VerifySettings(defer_on_temperror=False)
    assert verdict.action("example.test", accept) is Action.JUNK
    # The DMARC record itself cannot be fetched: defer, or deliver.
    zone.servfail.add("_dmarc.lost.test")
    lost = await verifier.check(
        ip="127.0.0.1", helo="h", sender="", message=MESSAGE.replace(b"bank.test", b"lost.test")
    )
    assert lost.dmarc.result == "temperror"
    assert lost.action("example.test", VerifySettings()) is Action.DEFER
    assert lost.action("example.test", accept) is Action.DELIVER
    assert lost.action("x.test", VerifySettings(caps={"x.test": Policy.NONE})) is Action.DELIVER


async def test_from_fields(zone: Zone, resolver: TrustResolver) -> None:
    txt(zone, "_dmarc.bank.test", "v=DMARC1; p=reject")
    txt(zone, "_dmarc.shop.test", "v=DMARC1; p=quarantine")
    verifier = Verifier(resolver, authserv_id="mx.example.org")

    async def dmarc(header: bytes) -> tuple[str, str]:
        verdict = await verifier.check(
            ip="127.0.0.1", helo="h", sender="", message=header + b"\r\nbody\r\n"
        )
        return verdict.dmarc.result, verdict.dmarc.from_domain

    # No From:, or one that cannot be read: outside DMARC (RFC 7489 6.6.1), nothing applied.
    assert await dmarc(b"Subject: none\r\n") == ("none", "")
    assert await dmarc(b"From: <<<\r\n") == ("none", "")
    # Several authors, in one field or in two: each domain checked, the strictest failure wins.
    assert await dmarc(b"From: a@shop.test, b@bank.test\r\n") == ("fail", "bank.test")
    assert await dmarc(b"From: a@bank.test\r\nFrom: b@shop.test\r\n") == ("fail", "bank.test")


async def test_our_verdict_sealed_by_our_forwarder_passes_the_next_hop(
    zone: Zone, resolver: TrustResolver
) -> None:
    # Hop 1 (our MX): bank.test mail arrives from its own server: DMARC passes, arc=none.
    txt(zone, "bank.test", "v=spf1 ip4:192.0.2.1 -all")
    txt(zone, "_dmarc.bank.test", "v=DMARC1; p=reject")
    signer = rsa_key("bank.test", "s")
    signer.publish(zone)
    first = Verifier(resolver, authserv_id="mx.fwd.test")
    arrived = signer.sign(MESSAGE)
    verdict = await first.check(ip="192.0.2.1", helo="h", sender="ceo@bank.test", message=arrived)
    assert verdict.dmarc.result == "pass" and b"arc=none" in verdict.header
    # Our alias forwards it: the signing part seals it from our Authentication-Results field.
    sealer = rsa_key("fwd.test", "arc")
    sealer.publish(zone)
    stored = verdict.header + arrived
    forwarded = seal(stored, SigningKey.load(sealer.stored), "mx.fwd.test") + stored
    # Hop 2 (another provider's MX, trusting our forwarder): SPF fails for our address, the
    # bank's signature still verifies, and the chain we sealed is valid.
    second = Verifier(
        resolver,
        authserv_id="mx.next.test",
        settings=VerifySettings(forwarders=(ipaddress.ip_network("127.0.0.0/8"),)),
    )
    after = await second.check(
        ip="127.0.0.9", helo="mx.fwd.test", sender="ceo@bank.test", message=forwarded
    )
    assert (after.spf.result.value, after.checked.arc, after.dmarc.result) == (
        "fail",
        "pass",
        "pass",
    )
    assert after.action("example.test", second.settings) is Action.DELIVER
