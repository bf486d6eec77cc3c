"""The daily TLS report (RFC 8460): counted sessions go to the store, a finished day's report is
built, queued to the `rua` of the domains that publish one (and no other), sent once, and
delivered to their MX (an SMTP sink) without being counted itself."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import gzip
import json
import random
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailfort.cluster.clock import StoreClock
from mailfort.config import Config, TlsRptConfig
from mailfort.delivery import tlsrpt
from mailfort.delivery.mx import MxResolver
from mailfort.delivery.remote import ClientSettings, Outcome, RemoteClient
from mailfort.mail.directory import Directory
from mailfort.node import remote_worker, tls_reports
from mailfort.queue.tls_reports import ReportSettings, TlsReports
from mailfort.store.sqlite import SqliteStore
from tests.dnsserver import NameServer, Zone
from tests.smtpsink import Sink

DAY = 86400.0
T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
SENDER = "noreply-tlsrpt@out.mailfort.test"
REPORTER = tlsrpt.Reporter(
    organization="Mailfort Test",
    contact="postmaster@example.test",
    submitter="out.mailfort.test",
    sender=SENDER,
)
POLICY = ("version: STSv1", "mode: enforce", "mx: mx.a.test", "max_age: 86400")


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[Sink]:
    server = Sink(tls_dir=tmp_path / "tls").start()
    yield server
    server.stop()


@pytest.fixture
def dns() -> Iterator[NameServer]:
    zone = Zone()
    zone.add("_smtp._tls.a.test", "TXT", '"v=TLSRPTv1; rua=mailto:tls@reports.test"')
    zone.add("_smtp._tls.c.test", "TXT", '"v=TLSRPTv1; rua=https://reports.test/tlsrpt"')
    zone.add("reports.test", "MX", "10 mx.reports.test.").add("mx.reports.test", "A", "127.0.0.1")
    server = NameServer(zone).start()
    yield server
    server.stop()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "store.sqlite3")
    await opened.open()
    yield opened
    await opened.close()


def reporter(
    store: SqliteStore, dns: NameServer, counter: tlsrpt.TlsCounter, **kw: int
) -> TlsReports:
    resolver = MxResolver(nameservers=[(dns.host, dns.port)], timeout=2.0)
    return TlsReports(
        store,
        counter,
        resolver,
        Directory(store, config_domains=("example.test",)),
        ReportSettings(reporter=REPORTER, **kw),  # type: ignore[arg-type]
        node="n1",
        clock=lambda: T0 + DAY,
    )


def count(counter: tlsrpt.TlsCounter, domain: str, result: str = "", n: int = 1) -> None:
    session = tlsrpt.Session(domain, tlsrpt.POLICY_STS, POLICY, "mx.a.test", "", result)
    for _ in range(n):
        counter.count(session if result else tlsrpt.Session(domain, "sts", POLICY), T0)


async def test_the_daily_report_goes_to_the_rua_once(
    store: SqliteStore, dns: NameServer, sink: Sink
) -> None:
    counter = tlsrpt.TlsCounter()
    count(counter, "a.test", n=7)
    count(counter, "a.test", tlsrpt.CERTIFICATE_EXPIRED, n=2)
    count(counter, "b.test", n=3)  # publishes no _smtp._tls record
    count(counter, "c.test", n=3)  # publishes an https rua only
    reports = reporter(store, dns, counter)
    await reports.flush()
    assert await reports.report() == 1
    assert await reports.report() == 0  # once per day and domain
    (item,) = await store.queue_items()
    assert (item.sender, item.recipient) == (SENDER, "tls@reports.test")
    body = await store.queue_body(item.queue_id)
    assert body is not None
    message = email.message_from_bytes(body, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "tlsrpt"
    assert message["TLS-Report-Domain"] == "a.test"
    assert message["Subject"].startswith("Report Domain: a.test Submitter: out.mailfort.test")
    (attachment,) = [p for p in message.iter_attachments()]
    assert attachment.get_content_type() == "application/tlsrpt+gzip"
    assert attachment.get_filename().startswith("out.mailfort.test!a.test!")
    report = json.loads(gzip.decompress(attachment.get_content()))
    assert report["date-range"] == {
        "start-datetime": "2027-01-15T00:00:00Z",
        "end-datetime": "2027-01-15T23:59:59Z",
    }
    assert report["organization-name"] == "Mailfort Test"
    (entry,) = report["policies"]
    assert entry["policy"] == {
        "policy-type": "sts",
        "policy-domain": "a.test",
        "policy-string": list(POLICY),
        "mx-host": ["mx.a.test"],
    }
    assert entry["summary"] == {
        "total-successful-session-count": 7,
        "total-failure-session-count": 2,
    }
    assert entry["failure-details"] == [
        {
            "result-type": "certificate-expired",
            "receiving-mx-hostname": "mx.a.test",
            "failed-session-count": 2,
        }
    ]
    # The report reaches the rua's MX; its own session is not counted for the next report.
    resolver = MxResolver(nameservers=[(dns.host, dns.port)], timeout=2.0, rng=random.Random(1))
    client = RemoteClient(
        ClientSettings(helo="out.mailfort.test", port=sink.port, connect_timeout=2.0),
        resolver=resolver,
        counter=counter,
        unreported_senders=(SENDER,),
    )
    (result,) = await client.deliver(
        client.destination("reports.test"), SENDER, ["tls@reports.test"], body
    )
    await client.close()
    assert result.outcome is Outcome.DELIVERED
    assert sink.received("tls@reports.test")[0].data == body
    assert counter.take() == []


async def test_nothing_is_sent_for_a_day_not_over(store: SqliteStore, dns: NameServer) -> None:
    counter = tlsrpt.TlsCounter()
    counter.count(tlsrpt.Session("a.test", "sts", POLICY), T0 + DAY)  # today: not finished
    reports = reporter(store, dns, counter)
    await reports.flush()
    assert await reports.report() == 0
    assert await store.queue_items() == []


async def test_the_off_switch_counts_nothing_and_reports_nothing(store: SqliteStore) -> None:
    on = Config(hostname="out.mailfort.test")
    off = dataclasses.replace(on, tlsrpt=TlsRptConfig(enabled=False))
    directory = Directory(store)
    worker = remote_worker(on, store, directory)
    assert worker is not None and worker.client.policies.counter is not None
    assert worker.client.unreported_senders == {"noreply-tlsrpt@out.mailfort.test"}
    assert tls_reports(on, store, worker, StoreClock(store.clock)) is not None
    worker = remote_worker(off, store, directory)
    assert worker is not None and worker.client.policies.counter is None
    assert tls_reports(off, store, worker, StoreClock(store.clock)) is None
