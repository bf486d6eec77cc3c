"""Hostile destinations against MTA-STS and TLS reporting.

A policy host that sends an endless body, trickles its answer, redirects, or serves garbage gets
a bounded fetch (64 KB, one deadline) and no policy; a `_mta-sts` TXT record of garbage is no
policy; a flood of deliveries to one domain fetches its policy once. And a thousand domains that
each ask for TLS reports get no more reports than the daily cap: reporting to whoever asks got a
host listed by Spamhaus.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailfort.delivery import tlsrpt
from mailfort.delivery.mtasts import (
    FETCH_ERROR,
    MAX_POLICY_BYTES,
    POLICY_INVALID,
    MtaSts,
    PolicyError,
    PolicyFetcher,
    parse_policy,
    parse_txt,
    policy_tls_context,
)
from mailfort.delivery.mx import MxResolver
from mailfort.mail.directory import Directory
from mailfort.queue.tls_reports import ReportSettings, TlsReports
from mailfort.store.sqlite import SqliteStore
from tests.dnsserver import NameServer, Zone
from tests.tlsca import Answer, PolicyServer, TestCa

GOOD = b"version: STSv1\nmode: enforce\nmx: mx.a.test\nmax_age: 86400\n"
HOSTS = ("endless", "trickle", "redirect", "html", "garbage", "binary", "good", "slowgood")


@dataclass
class Hostile:
    zone: Zone
    dns: NameServer
    server: PolicyServer
    ca: TestCa


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    root = tmp_path_factory.mktemp("hostile")
    ca = TestCa(root / "ca")
    cert, key = ca.issue(root / "web", [f"mta-sts.{h}.test" for h in HOSTS])
    server = PolicyServer(cert, key).start()
    answers = {
        "endless": Answer(endless=True),
        "trickle": Answer(body=GOOD, trickle=0.2),
        "redirect": Answer(status=301, location="https://mta-sts.good.test/x"),
        "html": Answer(body=GOOD, content_type="text/html"),
        "garbage": Answer(body=b"version: STSv1\nmode: sometimes\nmx: *.*.a.test\nmax_age: -1\n"),
        "binary": Answer(body=bytes(range(256)) * 10),
        "good": Answer(body=GOOD),
        "slowgood": Answer(body=GOOD, trickle=0.002),
    }
    zone = Zone()
    for host in HOSTS:
        server.answers[f"mta-sts.{host}.test"] = answers[host]
        zone.add(f"mta-sts.{host}.test", "A", "127.0.0.1")
        zone.add(f"_mta-sts.{host}.test", "TXT", '"v=STSv1; id=1"')
    # TXT garbage: a record of 60 strings (about 15 KB), two STSv1 records, an id too long,
    # a version that is not STSv1, bytes that are not text.
    zone.add("_mta-sts.huge.test", "TXT", " ".join([f'"{"x" * 250}"'] * 60))
    zone.add("_mta-sts.two.test", "TXT", '"v=STSv1; id=1"').add(
        "_mta-sts.two.test", "TXT", '"v=STSv1; id=2"'
    )
    zone.add("_mta-sts.long.test", "TXT", f'"v=STSv1; id={"a" * 33}"')
    zone.add("_mta-sts.v2.test", "TXT", '"v=STSv2; id=1"')
    zone.add("_mta-sts.bytes.test", "TXT", '"v=STSv1; id=\\255\\000\\001"')
    dns = NameServer(zone).start()
    yield Hostile(zone, dns, server, ca)
    dns.stop()
    server.stop()


def sts(hostile: Hostile, timeout: float = 1.0) -> MtaSts:
    resolver = MxResolver(nameservers=[(hostile.dns.host, hostile.dns.port)], timeout=2.0)
    fetcher = PolicyFetcher(
        resolver,
        port=hostile.server.port,
        timeout=timeout,
        tls=policy_tls_context(str(hostile.ca.ca_file)),
    )
    return MtaSts(resolver, fetcher)


async def test_an_endless_policy_is_cut_at_64_kb(hostile: Hostile) -> None:
    started = time.monotonic()
    found = await sts(hostile, timeout=5.0).lookup("endless.test")
    assert found.policy is None and found.failure is not None
    assert found.failure.kind == FETCH_ERROR and "bytes" in found.failure.text
    assert time.monotonic() - started < 3.0
    # What the server pushed before we hung up: our 64 KB plus what the sockets buffered.
    assert hostile.server.sent_bytes < 100 * MAX_POLICY_BYTES


# Serial (tests/conftest.py): judges a 1-s deadline to within 1.5 s.
@pytest.mark.serial
async def test_a_trickled_policy_is_cut_at_the_deadline(hostile: Hostile) -> None:
    started = time.monotonic()
    found = await sts(hostile, timeout=1.0).lookup("trickle.test")
    elapsed = time.monotonic() - started
    assert found.policy is None and found.failure is not None
    assert found.failure.kind == FETCH_ERROR and "within" in found.failure.text
    assert elapsed < 2.5, elapsed


async def test_redirects_wrong_types_and_garbage_are_no_policy(hostile: Hostile) -> None:
    checker = sts(hostile)
    kinds = {}
    for host in ("redirect", "html", "garbage", "binary"):
        found = await checker.lookup(f"{host}.test")
        assert found.policy is None and found.failure is not None, host
        kinds[host] = found.failure.kind
    assert kinds == {
        "redirect": FETCH_ERROR,
        "html": FETCH_ERROR,
        "garbage": POLICY_INVALID,
        "binary": POLICY_INVALID,
    }
    assert hostile.server.requests.count("mta-sts.good.test") == 0  # the redirect not followed


async def test_txt_garbage_is_no_policy_and_fetches_nothing(hostile: Hostile) -> None:
    checker = sts(hostile)
    for domain in ("huge.test", "two.test", "long.test", "v2.test", "bytes.test", "none.test"):
        found = await checker.lookup(domain)
        assert found.policy is None and found.failure is None, domain
    assert checker.fetches == 0


def test_policy_bodies_that_are_not_policies() -> None:
    bad = [
        b"",
        b"version: STSv1\nmode: enforce\nmax_age: 86400\n",  # no mx
        b"version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 1e9\n",
        b"version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 99999999999999999999\n",
        b"mode: enforce\nmx: a.test\nmax_age: 1\n",
        b"version: STSv1\nmode: enforce\n" + b"mx: a.test\n" * 101 + b"max_age: 1\n",
        b"no colon here\n",
    ]
    for body in bad:
        with pytest.raises(PolicyError) as caught:
            parse_policy(body.decode())
        assert caught.value.kind == POLICY_INVALID
    long_age = parse_policy("version: STSv1\nmode: testing\nmx: a.test\nmax_age: 999999999\n")
    assert long_age.max_age == 31557600  # RFC 8461 3.2's maximum
    assert parse_txt(["v=STSv1; id=abc; extra=1", "unrelated"]) == "abc"


async def test_a_flood_of_deliveries_fetches_once(hostile: Hostile) -> None:
    checker = sts(hostile, timeout=5.0)
    before = hostile.server.requests.count("mta-sts.slowgood.test")
    found = await asyncio.gather(*(checker.lookup("slowgood.test") for _ in range(200)))
    assert all(f.policy is not None and f.policy.allows("mx.a.test") for f in found)
    assert hostile.server.requests.count("mta-sts.slowgood.test") - before == 1
    assert checker.fetches == 1


# -- TLS reports -------------------------------------------------------------------------------
async def test_a_thousand_domains_asking_for_reports_get_no_more_than_the_cap(
    tmp_path: Path,
) -> None:
    domains = [f"d{i}.flood.test" for i in range(1000)]
    zone = Zone()
    for domain in domains:
        zone.add(f"_smtp._tls.{domain}", "TXT", f'"v=TLSRPTv1; rua=mailto:r@{domain}"')
    dns = NameServer(zone).start()
    store = SqliteStore(tmp_path / "store.sqlite3")
    await store.open()
    try:
        now = 1_800_000_000.0
        counter = tlsrpt.TlsCounter()
        for domain in domains:
            counter.count(tlsrpt.Session(domain, "sts", (), "mx", "", "validation-failure"), now)
        resolver = MxResolver(nameservers=[(dns.host, dns.port)], timeout=2.0, rng=random.Random(1))
        reports = TlsReports(
            store,
            counter,
            resolver,
            Directory(store),
            ReportSettings(
                reporter=tlsrpt.Reporter(
                    organization="o", contact="c@o.test", submitter="o.test", sender="r@o.test"
                ),
                max_reports_per_day=10,
                max_lookups_per_run=200,
            ),
            node="n1",
            clock=lambda: now + 86400,
        )
        await reports.flush()
        assert await reports.report() == 10
        looked_up = sum(1 for name, kind in zone.queries if name.startswith("_smtp._tls."))
        assert looked_up <= 200
        for _ in range(3):  # later runs the same day: nothing more
            assert await reports.report() == 0
        assert len(await store.queue_items()) == 10
        looked_up = sum(1 for name, kind in zone.queries if name.startswith("_smtp._tls."))
        assert looked_up <= 4 * 200
    finally:
        await store.close()
        dns.stop()


# Serial (tests/conftest.py): the cancellation must land within the 0.2-s fetch; on a loaded
# machine it may come before the fetch begins, and the test would pass proving nothing.
@pytest.mark.serial
async def test_a_cancelled_delivery_does_not_cancel_the_fetch_others_wait_for(
    hostile: Hostile,
) -> None:
    checker = sts(hostile, timeout=5.0)
    hostile.zone.replace("_mta-sts.slowgood.test", "TXT", '"v=STSv1; id=2"', ttl=0)
    waiting = [asyncio.create_task(checker.lookup("slowgood.test")) for _ in range(10)]
    await asyncio.sleep(0.05)  # the fetch is under way (the body trickles for about 0.2 s)
    for task in waiting[:5]:
        task.cancel()
    found = await asyncio.gather(*waiting[5:])
    assert all(f.policy is not None for f in found)
    assert checker.fetches == 1
    await checker.close()
