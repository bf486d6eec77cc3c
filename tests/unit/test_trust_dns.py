"""The resolver of the checks of incoming mail: cached by TTL, negative answers too, bounded in
size and time, one query for concurrent askers."""

from __future__ import annotations

import asyncio
import time

import pytest

from mailfort.trust.dns import BadName, DnsFailure, TrustResolver, TxtTooLarge
from tests.dnsserver import NameServer, Zone
from tests.trustdns import txt


async def test_answers_are_cached_by_ttl(zone: Zone, nameserver: NameServer) -> None:
    now = [1000.0]
    resolver = TrustResolver(
        nameservers=[(nameserver.host, nameserver.port)], timeout=1.0, clock=lambda: now[0]
    )
    zone.add("a.test", "TXT", '"one" "two"', ttl=30)
    assert (await resolver.txt("a.test")).records == ("onetwo",)
    assert (await resolver.txt("A.TEST.")).records == ("onetwo",)
    assert zone.queries.count(("a.test.", "TXT")) == 1
    now[0] += 31
    await resolver.txt("a.test")
    assert zone.queries.count(("a.test.", "TXT")) == 2


async def test_negative_answers_are_cached(zone: Zone, resolver: TrustResolver) -> None:
    zone.exists("empty.test")
    for _ in range(3):
        missing = await resolver.txt("missing.test")
        empty = await resolver.txt("empty.test")
    assert missing.nxdomain and missing.void
    assert not empty.nxdomain and empty.void
    assert zone.queries.count(("missing.test.", "TXT")) == 1
    assert zone.queries.count(("empty.test.", "TXT")) == 1


async def test_cache_is_bounded(zone: Zone, nameserver: NameServer) -> None:
    resolver = TrustResolver(
        nameservers=[(nameserver.host, nameserver.port)], timeout=1.0, cache_size=5
    )
    for i in range(20):
        await resolver.addresses(f"n{i}.test", "A")
    assert len(resolver._cache) == 5
    await resolver.addresses("n0.test", "A")  # evicted: asked again
    assert zone.queries.count(("n0.test.", "A")) == 2


async def test_huge_txt_is_refused_and_cached(zone: Zone, resolver: TrustResolver) -> None:
    txt(zone, "huge.test", "v=spf1 " + "a" * 5000)
    for _ in range(2):
        with pytest.raises(TxtTooLarge):
            await resolver.txt("huge.test")
    assert zone.queries.count(("huge.test.", "TXT")) == 1


async def test_failures_are_temporary_and_bounded(zone: Zone, resolver: TrustResolver) -> None:
    zone.servfail.add("fail.test")
    zone.silent.add("silent.test")
    with pytest.raises(DnsFailure):
        await resolver.txt("fail.test")
    started = time.monotonic()
    with pytest.raises(DnsFailure):
        await resolver.txt("silent.test")
    assert time.monotonic() - started < 3  # the 1-s timeout, and no more


async def test_concurrent_askers_share_one_query(zone: Zone, resolver: TrustResolver) -> None:
    zone.add("busy.test", "A", "192.0.2.1")
    answers = await asyncio.gather(*(resolver.addresses("busy.test", "A") for _ in range(50)))
    assert {a.records for a in answers} == {("192.0.2.1",)}
    assert zone.queries.count(("busy.test.", "A")) == 1


async def test_bad_names(resolver: TrustResolver) -> None:
    with pytest.raises(BadName):
        await resolver.txt("a" * 64 + ".test")
    with pytest.raises(BadName):
        await resolver.ptr("not an address")
