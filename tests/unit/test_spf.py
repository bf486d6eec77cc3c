"""SPF (RFC 7208) against a real name server on loopback: every mechanism, macros, limits."""

from __future__ import annotations

import pytest

from mailfort.trust.dns import TrustResolver
from mailfort.trust.spf import Result, check_spf
from tests.dnsserver import Zone
from tests.trustdns import txt

IP = "192.0.2.10"


async def spf(
    resolver: TrustResolver, ip: str = IP, sender: str = "a@s.test", helo: str = "h.test"
) -> Result:
    return (await check_spf(resolver, ip, sender, helo, timeout=5)).result


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ("v=spf1 -all", Result.FAIL),
        ("v=spf1 ~all", Result.SOFTFAIL),
        ("v=spf1 ?all", Result.NEUTRAL),
        ("v=spf1 +all", Result.PASS),
        ("v=spf1", Result.NEUTRAL),
        ("v=spf1 ip4:192.0.2.0/24 -all", Result.PASS),
        ("v=spf1 ip4:192.0.2.11 -all", Result.FAIL),
        ("v=spf1 ip4:198.51.100.0/24 ~all", Result.SOFTFAIL),
        ("v=spf1 ip6:2001:db8::/32 -all", Result.FAIL),
        ("v=spf1 ip4:192.0.2.0/33 -all", Result.PERMERROR),
        ("v=spf1 ip4:192.0.2.0/024 -all", Result.PERMERROR),
        ("v=spf1 ip4:2001:db8::1 -all", Result.PERMERROR),
        ("v=spf1 frobnicate -all", Result.PERMERROR),
        ("v=spf1 -all foo=bar", Result.FAIL),  # unknown modifiers are ignored
        ("v=spf1 redirect=a.test redirect=b.test", Result.PERMERROR),
        ("v=spf1 a -all", Result.PASS),
        ("v=spf1 a:other.test -all", Result.FAIL),
        ("v=spf1 a:other.test/24 -all", Result.PASS),
        ("v=spf1 mx -all", Result.PASS),
        ("v=spf1 mx:other.test/24 -all", Result.PASS),
        ("v=spf1 exists:%{i}.allow.test -all", Result.PASS),
        ("v=spf1 exists:%{ir}.%{v}.allow.test -all", Result.PASS),
        ("v=spf1 include:inc.test -all", Result.PASS),
        ("v=spf1 include:incfail.test ?all", Result.NEUTRAL),
        ("v=spf1 include:norecord.test -all", Result.PERMERROR),
        ("v=spf1 redirect=inc.test", Result.PASS),
        ("v=spf1 redirect=norecord.test", Result.PERMERROR),
        ("v=spf1 ptr -all", Result.PASS),
        ("v=spf1 ptr:elsewhere.test -all", Result.FAIL),
        ("v=spf1 exists:%{l}.%{o}.users.test -all", Result.PASS),
        ("v=spf1 exists:%{d2}.%{h}.ok.test -all", Result.PASS),
        ("v=spf1 exists:%{x} -all", Result.PERMERROR),
        ("v=spf1 exists:%{d0}.x.test -all", Result.PERMERROR),
        ("v=spf1 exists:50%.test -all", Result.PERMERROR),
    ],
)
async def test_mechanisms(
    zone: Zone, resolver: TrustResolver, record: str, expected: Result
) -> None:
    txt(zone, "s.test", record)
    zone.add("s.test", "A", IP).add("s.test", "MX", "10 mail.s.test.")
    zone.add("mail.s.test", "A", IP)
    zone.add("other.test", "A", "192.0.2.99").add("other.test", "MX", "10 mx.other.test.")
    zone.add("mx.other.test", "A", "192.0.2.200")
    zone.add("10.2.0.192.in-addr.arpa", "PTR", "host.s.test.").add("host.s.test", "A", IP)
    zone.add(f"{IP}.allow.test", "A", "127.0.0.2")
    zone.add("10.2.0.192.in-addr.allow.test", "A", "127.0.0.2")
    zone.add("a.s.test.users.test", "A", "127.0.0.2")
    zone.add("s.test.h.test.ok.test", "A", "127.0.0.2")
    txt(zone, "inc.test", f"v=spf1 ip4:{IP} -all")
    txt(zone, "incfail.test", "v=spf1 -all")
    zone.exists("norecord.test")
    assert await spf(resolver) is expected


async def test_no_record_is_none(zone: Zone, resolver: TrustResolver) -> None:
    txt(zone, "s.test", "some other text")
    assert await spf(resolver) is Result.NONE
    assert await spf(resolver, sender="a@nowhere.test") is Result.NONE


async def test_two_records_are_permerror(zone: Zone, resolver: TrustResolver) -> None:
    txt(zone, "s.test", "v=spf1 -all")
    txt(zone, "s.test", "v=spf1 +all")
    assert await spf(resolver) is Result.PERMERROR


async def test_null_sender_checks_helo(zone: Zone, resolver: TrustResolver) -> None:
    txt(zone, "h.test", f"v=spf1 ip4:{IP} -all")
    result = await check_spf(resolver, IP, "", "h.test")
    assert (result.result, result.identity, result.sender) == (
        Result.PASS,
        "helo",
        "postmaster@h.test",
    )
    assert (await check_spf(resolver, IP, "", "[192.0.2.10]")).result is Result.NONE


async def test_ipv6_client_and_mapped_ipv4(zone: Zone, resolver: TrustResolver) -> None:
    txt(zone, "s.test", f"v=spf1 ip6:2001:db8::/32 ip4:{IP} -all")
    assert await spf(resolver, ip="2001:db8::5") is Result.PASS
    assert await spf(resolver, ip=f"::ffff:{IP}") is Result.PASS
    assert await spf(resolver, ip="2001:db9::5") is Result.FAIL


async def test_servfail_is_temperror(zone: Zone, resolver: TrustResolver) -> None:
    zone.servfail.add("s.test")
    assert await spf(resolver) is Result.TEMPERROR


async def test_lookup_limit(zone: Zone, resolver: TrustResolver) -> None:
    # Ten lookups are allowed; the eleventh is permerror (RFC 7208 4.6.4).
    for i in range(11):
        zone.add(f"h{i}.s.test", "A", "192.0.2.250")
    txt(zone, "s.test", "v=spf1 " + " ".join(f"a:h{i}.s.test" for i in range(10)) + " -all")
    result = await check_spf(resolver, IP, "a@s.test", "h.test")
    assert (result.result, result.lookups) == (Result.FAIL, 10)
    zone2 = "v=spf1 " + " ".join(f"a:h{i}.s.test" for i in range(11)) + " -all"
    txt(zone, "t.test", zone2)
    assert await spf(resolver, sender="a@t.test") is Result.PERMERROR


async def test_void_lookup_limit(zone: Zone, resolver: TrustResolver) -> None:
    txt(zone, "s.test", "v=spf1 a:v1.test a:v2.test -all")
    assert await spf(resolver) is Result.FAIL  # two void lookups are allowed
    txt(zone, "t.test", "v=spf1 a:v1.test a:v2.test a:v3.test -all")
    assert await spf(resolver, sender="a@t.test") is Result.PERMERROR


async def test_macro_letters(zone: Zone, resolver: TrustResolver) -> None:
    # %{s} %{l} %{o} %{d} %{i} %{v} %{h}, reversal, digits, delimiters and escapes.
    txt(zone, "s.test", "v=spf1 exists:%{l1r-}.%{d1}.%{ir}.%{v}._spf.%{o} -all")
    zone.add("first.test.10.2.0.192.in-addr._spf.s.test", "A", "127.0.0.2")
    # l1r-: the local-part cut at "-", reversed, the rightmost part kept: its first part.
    assert await spf(resolver, sender="first-second@s.test") is Result.PASS
    assert await spf(resolver, sender="second-first@s.test") is Result.FAIL
