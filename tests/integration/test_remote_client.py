"""MX resolution and the SMTP client against a real name server and a real SMTP sink on loopback.

No node here: `MxResolver` and `RemoteClient` run in the test's event loop; the name server
(dnslib) and the sink (aiosmtpd) run in their own threads, reached over UDP/TCP on 127.0.0.x.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailfort.delivery.mx import DnsError, MxHost, MxResolver
from mailfort.delivery.remote import ClientSettings, Outcome, Reach, RemoteClient
from mailfort.delivery.transport import TransportMap
from tests.dnsserver import NameServer, Zone
from tests.smtpsink import DEFER, REJECT, Sink

BODY = b"From: a@source.test\r\nSubject: hello\r\nMessage-ID: <m1@source.test>\r\n\r\nhi\r\n"


def zone() -> Zone:
    z = Zone()
    z.add("a.test", "MX", "10 mx.a.test.").add("mx.a.test", "A", "127.0.0.1")
    z.add("pref.test", "MX", "20 low.pref.test.").add("pref.test", "MX", "10 high.pref.test.")
    z.add("low.pref.test", "A", "127.0.0.1").add("high.pref.test", "A", "127.0.0.3")
    z.add("fallback.test", "MX", "10 dead.fallback.test.")
    z.add("fallback.test", "MX", "20 alive.fallback.test.")
    z.add("dead.fallback.test", "A", "127.0.0.2").add("alive.fallback.test", "A", "127.0.0.1")
    z.add("dead.test", "MX", "10 dead.fallback.test.")
    z.add("implicit.test", "A", "127.0.0.1").add("implicit.test", "AAAA", "::1")
    z.add("nullmx.test", "MX", "0 .")
    z.add("noaddr.test", "MX", "10 ghost.noaddr.test.").exists("ghost.noaddr.test")
    z.add("equal.test", "MX", "10 one.equal.test.").add("equal.test", "MX", "10 two.equal.test.")
    z.add("equal.test", "MX", "5 first.equal.test.")
    z.exists("nothing.test")
    z.servfail.add("broken.test")
    return z


@pytest.fixture(scope="module")
def dns() -> Iterator[NameServer]:
    server = NameServer(zone()).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sink]:
    tls = tmp_path_factory.mktemp("sink-tls")
    server = Sink(hosts=("127.0.0.1", "127.0.0.3"), tls_dir=tls).start()
    yield server
    server.stop()


def resolver(dns: NameServer, seed: int = 1) -> MxResolver:
    return MxResolver(nameservers=[(dns.host, dns.port)], timeout=2.0, rng=random.Random(seed))


def client(dns: NameServer, sink: Sink, **settings: object) -> RemoteClient:
    values: dict[str, object] = {
        "helo": "out.mailfort.test",
        "port": sink.port,
        "connect_timeout": 2.0,
        "command_timeout": 5.0,
    }
    values.update(settings)
    transports = values.pop("transports", None)
    return RemoteClient(
        ClientSettings(**values),  # type: ignore[arg-type]
        resolver=resolver(dns),
        transports=TransportMap(transports or {}),  # type: ignore[arg-type]
    )


# -- MX resolution ---------------------------------------------------------------------------
async def test_mx_by_preference(dns: NameServer) -> None:
    hosts = await resolver(dns).mx_hosts("pref.test")
    assert hosts == [MxHost("high.pref.test", 10), MxHost("low.pref.test", 20)]


async def test_equal_preference_in_random_order(dns: NameServer) -> None:
    orders = set()
    for seed in range(20):
        hosts = await resolver(dns, seed).mx_hosts("equal.test")
        assert hosts[0] == MxHost("first.equal.test", 5)
        orders.add(tuple(h.name for h in hosts[1:]))
    assert orders == {("one.equal.test", "two.equal.test"), ("two.equal.test", "one.equal.test")}


async def test_no_mx_means_the_domain_itself(dns: NameServer) -> None:
    r = resolver(dns)
    assert await r.mx_hosts("implicit.test") == [MxHost("implicit.test", 0)]
    assert await r.addresses("implicit.test") == ["127.0.0.1", "::1"]  # A first, then AAAA
    assert await r.addresses("192.0.2.9") == ["192.0.2.9"]


async def test_dns_failures_are_permanent_or_temporary(dns: NameServer) -> None:
    r = resolver(dns)
    cases = {
        "nullmx.test": ("5.1.10", True),
        "no-such-domain.test": ("5.1.2", True),
        "broken.test": ("4.4.3", False),
    }
    for domain, (status, permanent) in cases.items():
        with pytest.raises(DnsError) as caught:
            await r.mx_hosts(domain)
        assert (caught.value.status, caught.value.permanent) == (status, permanent), domain
    with pytest.raises(DnsError) as caught:
        await r.addresses("nothing.test")
    assert caught.value.status == "5.4.4"


async def test_an_unreachable_name_server_is_temporary() -> None:
    silent = MxResolver(nameservers=[("127.0.0.1", 9)], timeout=0.5)
    with pytest.raises(DnsError) as caught:
        await silent.mx_hosts("a.test")
    assert not caught.value.permanent and caught.value.status == "4.4.3"


# -- SMTP -------------------------------------------------------------------------------------
async def test_several_recipients_in_one_transaction_with_results_each(
    dns: NameServer, sink: Sink
) -> None:
    sink.script("gone@a.test", REJECT)
    sink.script("busy@a.test", DEFER)
    c = client(dns, sink)
    try:
        rcpts = ["one@a.test", "gone@a.test", "two@a.test", "busy@a.test"]
        results = await c.deliver(c.destination("a.test"), "s@source.test", rcpts, BODY)
    finally:
        await c.close()
    assert [r.outcome for r in results] == [
        Outcome.DELIVERED,
        Outcome.FAILED,
        Outcome.DELIVERED,
        Outcome.DEFERRED,
    ]
    assert [r.status for r in results] == ["2.0.0", "5.1.1", "2.0.0", "4.2.1"]
    gone = results[1]
    assert gone.remote_mta == "mx.a.test"
    assert gone.diagnostic is not None and gone.diagnostic.startswith(
        "smtp; 550 5.1.1 <gone@a.test>"
    )
    assert "in reply to RCPT TO" in gone.text and "mx.a.test[127.0.0.1]" in gone.text
    (got,) = sink.received("one@a.test")
    assert got.recipients == ("one@a.test", "two@a.test")
    assert got.sender == "s@source.test"
    assert got.data == BODY
    assert got.tls  # STARTTLS was offered, so it was used
    assert f"SIZE={len(BODY)}" in got.options


async def test_one_connection_for_consecutive_messages(dns: NameServer, sink: Sink) -> None:
    c = client(dns, sink, idle_timeout=0.5)
    try:
        dest = c.destination("a.test")
        for i in range(3):
            (r,) = await c.deliver(dest, "s@source.test", [f"reuse{i}@a.test"], BODY)
            assert r.outcome is Outcome.DELIVERED
        first, second, third = (sink.received(f"reuse{i}@a.test")[0] for i in range(3))
        assert first.connection == second.connection == third.connection
        assert c.sessions_opened == 1 and c.reused == 2
        await asyncio.sleep(0.8)  # past the idle timeout: closed, a new one next time
        await c.deliver(dest, "s@source.test", ["reuse3@a.test"], BODY)
        assert sink.received("reuse3@a.test")[0].connection != first.connection
        assert c.sessions_opened == 2
    finally:
        await c.close()


async def test_a_connection_the_server_closed_is_replaced(dns: NameServer) -> None:
    impatient = Sink(timeout=0.3).start()
    try:
        c = client(dns, impatient, idle_timeout=10.0)
        try:
            dest = c.destination("a.test")
            (first,) = await c.deliver(dest, "s@source.test", ["early@a.test"], BODY)
            await asyncio.sleep(0.8)  # the server said 421 and closed meanwhile
            (second,) = await c.deliver(dest, "s@source.test", ["late@a.test"], BODY)
        finally:
            await c.close()
    finally:
        impatient.stop()
    assert first.outcome is second.outcome is Outcome.DELIVERED
    assert c.sessions_opened == 2
    assert [t.connection for t in impatient.received()] == [1, 2]


async def test_per_destination_concurrency_limit(dns: NameServer, sink: Sink) -> None:
    c = client(dns, sink, concurrency=2)
    before = sink.connections
    try:
        dest = c.destination("a.test")
        results = await asyncio.gather(
            *(c.deliver(dest, "s@source.test", [f"par{i}@a.test"], BODY) for i in range(8))
        )
    finally:
        await c.close()
    assert all(r.outcome is Outcome.DELIVERED for (r,) in results)
    assert sink.connections - before <= 2
    assert c.sessions_opened <= 2


async def test_the_preferred_mx_gets_the_mail(dns: NameServer, sink: Sink) -> None:
    c = client(dns, sink)
    try:
        (r,) = await c.deliver(c.destination("pref.test"), "s@source.test", ["x@pref.test"], BODY)
    finally:
        await c.close()
    assert r.outcome is Outcome.DELIVERED and r.remote_mta == "high.pref.test"
    assert sink.received("x@pref.test")[0].local == "127.0.0.3"


async def test_fallback_to_the_next_mx_when_the_first_refuses(dns: NameServer, sink: Sink) -> None:
    c = client(dns, sink)
    try:
        dest = c.destination("fallback.test")
        (r,) = await c.deliver(dest, "s@source.test", ["x@fallback.test"], BODY)
        (dead,) = await c.deliver(
            c.destination("dead.test"), "s@source.test", ["y@dead.test"], BODY
        )
    finally:
        await c.close()
    assert r.outcome is Outcome.DELIVERED and r.remote_mta == "alive.fallback.test"
    assert sink.received("x@fallback.test")[0].local == "127.0.0.1"
    assert dead.outcome is Outcome.DEFERRED and dead.status == "4.4.1"
    assert "dead.fallback.test[127.0.0.2]" in dead.text and "refused" in dead.text.lower()


async def test_dns_outcomes_reach_every_recipient(dns: NameServer, sink: Sink) -> None:
    c = client(dns, sink)
    try:
        nullmx = await c.deliver(c.destination("nullmx.test"), "s@x.test", ["a@nullmx.test"], BODY)
        broken = await c.deliver(c.destination("broken.test"), "s@x.test", ["a@broken.test"], BODY)
        noaddr = await c.deliver(c.destination("noaddr.test"), "s@x.test", ["a@noaddr.test"], BODY)
    finally:
        await c.close()
    assert (nullmx[0].outcome, nullmx[0].status) == (Outcome.FAILED, "5.1.10")
    assert (broken[0].outcome, broken[0].status) == (Outcome.DEFERRED, "4.4.3")
    assert (noaddr[0].outcome, noaddr[0].status) == (Outcome.FAILED, "5.4.4")


async def test_every_outcome_says_who_answered(dns: NameServer, sink: Sink) -> None:
    """What the status judges (queue/reach.py): a server's refusal and a domain that does not
    exist are answers; a domain whose DNS fails, or whose server does not take the connection,
    is silence; our name server working is the difference between theirs and ours."""
    sink.script("refused@a.test", REJECT)
    c = client(dns, sink)
    try:
        sent = await c.deliver(
            c.destination("a.test"), "s@x.test", ["ok@a.test", "refused@a.test"], BODY
        )
        outcomes = {
            domain: (await c.deliver(c.destination(domain), "s@x.test", [f"a@{domain}"], BODY))[0]
            for domain in (
                "nullmx.test",
                "no-such-domain.test",
                "noaddr.test",
                "broken.test",
                "dead.test",
                "fallback.test",
            )
        }
    finally:
        await c.close()
    assert [(r.reach, r.remote_address) for r in sent] == [(Reach.SERVER, "127.0.0.1")] * 2
    assert {d: r.reach for d, r in outcomes.items()} == {
        "nullmx.test": Reach.NO_DOMAIN,
        "no-such-domain.test": Reach.NO_DOMAIN,
        "noaddr.test": Reach.NO_DOMAIN,
        "broken.test": Reach.NOBODY,  # SERVFAIL for the domain, while our name server works
        "dead.test": Reach.NOBODY,  # connection refused
        "fallback.test": Reach.SERVER,  # the first MX refused the connection, the second took it
    }
    assert outcomes["dead.test"].remote_address == "127.0.0.2"
    assert outcomes["fallback.test"].remote_address == "127.0.0.1"


async def test_a_silent_name_server_of_our_own_is_ours(sink: Sink) -> None:
    silent = MxResolver(nameservers=[("127.0.0.1", 9)], timeout=0.5)
    assert not await silent.working()
    c = RemoteClient(ClientSettings(helo="out.mailfort.test", port=sink.port), resolver=silent)
    try:
        (r,) = await c.deliver(c.destination("a.test"), "s@x.test", ["a@a.test"], BODY)
    finally:
        await c.close()
    assert (r.outcome, r.status, r.reach) == (Outcome.DEFERRED, "4.4.3", Reach.LOCAL)


async def test_our_name_server_works_when_it_answers_the_root(dns: NameServer) -> None:
    r = resolver(dns)
    assert await r.working()  # the test's name server says NXDOMAIN for ".": an answer
    before = len(dns.zone.queries)
    assert await r.working()
    assert len(dns.zone.queries) == before  # one probe per period, not one per failure


async def test_only_the_catch_all_smarthost_is_the_platforms_relay(
    dns: NameServer, sink: Sink
) -> None:
    c = client(
        dns,
        sink,
        transports={"customer.test": f"127.0.0.3:{sink.port}", "*": f"127.0.0.1:{sink.port}"},
    )
    assert c.destination("anywhere.test").relay
    assert not c.destination("customer.test").relay  # a customer's own server
    assert not client(dns, sink).destination("a.test").relay


async def test_transport_override_skips_dns(dns: NameServer, sink: Sink) -> None:
    c = client(dns, sink, transports={"relayed.test": f"127.0.0.3:{sink.port}"})
    try:
        dest = c.destination("relayed.test")  # not in DNS at all
        assert dest.nexthop is not None and dest.key == f"[127.0.0.3:{sink.port}]"
        (r,) = await c.deliver(dest, "s@source.test", ["x@relayed.test"], BODY)
    finally:
        await c.close()
    assert r.outcome is Outcome.DELIVERED
    assert sink.received("x@relayed.test")[0].local == "127.0.0.3"


async def test_tls_none_stays_plaintext(dns: NameServer, sink: Sink) -> None:
    c = client(dns, sink, tls="none")
    try:
        await c.deliver(c.destination("a.test"), "s@source.test", ["plain@a.test"], BODY)
    finally:
        await c.close()
    assert sink.received("plain@a.test")[0].tls is False


async def test_a_failed_starttls_falls_back_to_plaintext_unless_tls_is_required(
    dns: NameServer, tmp_path: Path
) -> None:
    picky = Sink(tls_dir=tmp_path, require_client_cert=True).start()
    try:
        c = client(dns, picky)
        try:
            (may,) = await c.deliver(c.destination("a.test"), "s@x.test", ["may@a.test"], BODY)
        finally:
            await c.close()
        c = client(dns, picky, tls="encrypt")
        try:
            (must,) = await c.deliver(c.destination("a.test"), "s@x.test", ["must@a.test"], BODY)
        finally:
            await c.close()
    finally:
        picky.stop()
    assert may.outcome is Outcome.DELIVERED
    assert picky.received("may@a.test")[0].tls is False
    assert (must.outcome, must.status) == (Outcome.DEFERRED, "4.7.5")
    assert picky.received("must@a.test") == []


async def test_a_mail_loop_fails(dns: NameServer, sink: Sink) -> None:
    c = client(dns, sink, helo="sink.test")  # the sink greets with our own name
    try:
        (r,) = await c.deliver(c.destination("a.test"), "s@source.test", ["loop@a.test"], BODY)
    finally:
        await c.close()
    assert (r.outcome, r.status) == (Outcome.FAILED, "5.4.6")
    assert sink.received("loop@a.test") == []


async def test_too_big_for_the_server_fails_without_sending(
    dns: NameServer, tmp_path: Path
) -> None:
    small = Sink(size_limit=1000).start()
    try:
        c = client(dns, small)
        big = BODY + b"x" * 2000 + b"\r\n"
        try:
            (r,) = await c.deliver(c.destination("a.test"), "s@source.test", ["big@a.test"], big)
        finally:
            await c.close()
    finally:
        small.stop()
    assert (r.outcome, r.status) == (Outcome.FAILED, "5.3.4")
    assert small.received() == []


async def test_non_ascii_addresses_use_smtputf8(dns: NameServer, sink: Sink) -> None:
    c = client(dns, sink)
    try:
        (r,) = await c.deliver(c.destination("a.test"), "jörg@source.test", ["zoë@a.test"], BODY)
    finally:
        await c.close()
    assert r.outcome is Outcome.DELIVERED
    (got,) = sink.received("zoë@a.test")
    assert "SMTPUTF8" in got.options and got.sender == "jörg@source.test"
