"""DMARC (RFC 7489): records, organisational domains, alignment, pct, and the policy picked."""

from __future__ import annotations

import random

import pytest

from mailfort.trust.dmarc import (
    MAX_AUTHOR_DOMAINS,
    Policy,
    Signed,
    aligned,
    check_dmarc,
    org_domain,
    parse_record,
)
from mailfort.trust.dns import TrustResolver
from mailfort.trust.spf import Result, SpfResult
from tests.dnsserver import Zone
from tests.trustdns import txt


def spf(result: Result, domain: str) -> SpfResult:
    return SpfResult(result, "mailfrom", domain, f"x@{domain}")


NO_SPF = spf(Result.NONE, "elsewhere.test")


@pytest.mark.parametrize(
    ("domain", "org"),
    [
        ("example.com", "example.com"),
        ("mail.example.com", "example.com"),
        ("a.b.example.co.uk", "example.co.uk"),
        ("co.uk", "co.uk"),  # a public suffix is its own
        ("Mail.Example.COM.", "example.com"),
    ],
)
def test_org_domain(domain: str, org: str) -> None:
    assert org_domain(domain) == org


def test_alignment() -> None:
    assert aligned("mail.example.com", "example.com", strict=False)
    assert not aligned("mail.example.com", "example.com", strict=True)
    assert aligned("EXAMPLE.com", "example.com", strict=True)
    assert not aligned("example.net", "example.com", strict=False)
    # Two registrations under one public suffix are not aligned.
    assert not aligned("a.co.uk", "b.co.uk", strict=False)


def test_parse_record() -> None:
    record = parse_record("v=DMARC1; p=reject; sp=none; pct=30; adkim=s; aspf=r")
    assert record is not None
    assert (record.p, record.sp, record.pct, record.adkim_strict, record.aspf_strict) == (
        Policy.REJECT,
        Policy.NONE,
        30,
        True,
        False,
    )
    assert parse_record("p=reject; v=DMARC1") is None  # v must come first
    assert parse_record("v=DMARC1; p=bogus") is None
    fallback = parse_record("v=DMARC1; p=bogus; rua=mailto:d@example.com")
    assert fallback is not None and fallback.p is Policy.NONE  # 6.6.3: rua makes it p=none
    sp_default = parse_record("v=DMARC1; p=quarantine; pct=900")
    assert sp_default is not None and (sp_default.sp, sp_default.pct) == (Policy.QUARANTINE, 100)


async def test_pass_by_aligned_spf_or_dkim(zone: Zone, resolver: TrustResolver) -> None:
    txt(zone, "_dmarc.example.com", "v=DMARC1; p=reject")
    by_spf = await check_dmarc(
        resolver, ["example.com"], spf(Result.PASS, "bounce.example.com"), []
    )
    assert (by_spf.result, by_spf.published) == ("pass", Policy.REJECT)
    by_dkim = await check_dmarc(resolver, ["example.com"], NO_SPF, [Signed("example.com", True)])
    assert by_dkim.result == "pass"
    unaligned = await check_dmarc(
        resolver, ["example.com"], spf(Result.PASS, "example.net"), [Signed("example.net", True)]
    )
    assert (unaligned.result, unaligned.applied) == ("fail", Policy.REJECT)
    failed_sig = await check_dmarc(
        resolver, ["example.com"], NO_SPF, [Signed("example.com", False)]
    )
    assert failed_sig.result == "fail"


async def test_strict_alignment(zone: Zone, resolver: TrustResolver) -> None:
    txt(zone, "_dmarc.example.com", "v=DMARC1; p=quarantine; aspf=s; adkim=s")
    result = await check_dmarc(
        resolver,
        ["example.com"],
        spf(Result.PASS, "mail.example.com"),
        [Signed("mail.example.com", True)],
    )
    assert (result.result, result.applied) == ("fail", Policy.QUARANTINE)


async def test_subdomain_takes_sp_from_the_org_domain(zone: Zone, resolver: TrustResolver) -> None:
    txt(zone, "_dmarc.example.com", "v=DMARC1; p=reject; sp=quarantine")
    result = await check_dmarc(resolver, ["news.example.com"], NO_SPF, [])
    assert (result.result, result.published, result.from_domain) == (
        "fail",
        Policy.QUARANTINE,
        "news.example.com",
    )
    assert ("_dmarc.news.example.com.", "TXT") in zone.queries
    assert ("_dmarc.example.com.", "TXT") in zone.queries


async def test_own_record_wins_over_the_org_domain(zone: Zone, resolver: TrustResolver) -> None:
    txt(zone, "_dmarc.example.com", "v=DMARC1; p=reject")
    txt(zone, "_dmarc.news.example.com", "v=DMARC1; p=none")
    result = await check_dmarc(resolver, ["news.example.com"], NO_SPF, [])
    assert (result.result, result.applied) == ("fail", Policy.NONE)


async def test_pct_samples(zone: Zone, resolver: TrustResolver) -> None:
    txt(zone, "_dmarc.example.com", "v=DMARC1; p=reject; pct=0")
    zero = await check_dmarc(resolver, ["example.com"], NO_SPF, [])
    assert (zero.published, zero.applied) == (Policy.REJECT, Policy.QUARANTINE)
    txt(zone, "_dmarc.example.org", "v=DMARC1; p=quarantine; pct=50")
    rng = random.Random(7)
    applied = [
        (await check_dmarc(resolver, ["example.org"], NO_SPF, [], rng)).applied for _ in range(200)
    ]
    quarantined = applied.count(Policy.QUARANTINE)
    assert set(applied) == {Policy.QUARANTINE, Policy.NONE}
    assert 70 < quarantined < 130


async def test_several_from_domains_take_the_strictest(zone: Zone, resolver: TrustResolver) -> None:
    txt(zone, "_dmarc.a.test", "v=DMARC1; p=quarantine")
    txt(zone, "_dmarc.b.test", "v=DMARC1; p=reject")
    result = await check_dmarc(resolver, ["a.test", "b.test"], spf(Result.PASS, "a.test"), [])
    assert (result.result, result.from_domain, result.applied) == ("fail", "b.test", Policy.REJECT)


async def test_no_from_no_record_and_dns_failure(zone: Zone, resolver: TrustResolver) -> None:
    assert (await check_dmarc(resolver, [], NO_SPF, [])).result == "none"
    assert (await check_dmarc(resolver, ["nothing.test"], NO_SPF, [])).result == "none"
    txt(zone, "_dmarc.two.test", "v=DMARC1; p=reject")
    txt(zone, "_dmarc.two.test", "v=DMARC1; p=none")
    assert (await check_dmarc(resolver, ["two.test"], NO_SPF, [])).result == "none"
    zone.servfail.add("_dmarc.broken.test")
    broken = await check_dmarc(resolver, ["broken.test"], NO_SPF, [])
    assert (broken.result, broken.applied) == ("temperror", Policy.NONE)


async def test_author_domains_are_bounded(zone: Zone, resolver: TrustResolver) -> None:
    domains = [f"mail.a{i}.test" for i in range(50)]
    result = await check_dmarc(resolver, domains, NO_SPF, [])
    assert result.result == "none"
    assert len(zone.queries) == 2 * MAX_AUTHOR_DOMAINS  # own and organisational domain each
