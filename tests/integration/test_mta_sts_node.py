"""MTA-STS in a real node: outgoing mail under an `enforce` policy to an MX whose certificate does
not verify is deferred (4.7.5) and never reaches the MX; and the node serves its own policy at
`mta-sts.<local domain>/.well-known/mta-sts.txt` on its http listener, to no other host.
"""

from __future__ import annotations

import http.client
import smtplib
from collections.abc import Iterator

import pytest

from mailfort.config import Config, DnsConfig, MtaStsConfig
from mailfort.ops.expected import policy_id as expected_policy_id
from mailfort.wellknown.mta_sts import policy_id, policy_text
from tests.conftest import PASSWORD, client_tls
from tests.dnsserver import NameServer, Zone
from tests.nodeproc import NodeProcess
from tests.polling import wait_for
from tests.smtpsink import Sink
from tests.tlsca import Answer, PolicyServer, TestCa

ALICE = "alice@example.test"
POLICY = b"version: STSv1\nmode: enforce\nmx: mx.strict.test\nmax_age: 86400\n"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProcess, Sink]]:
    root = tmp_path_factory.mktemp("sts-node")
    ca = TestCa(root / "ca")
    web_cert, web_key = ca.issue(root / "web", ["mta-sts.strict.test"])
    policies = PolicyServer(web_cert, web_key).start()
    policies.answer = Answer(body=POLICY)
    sink = Sink(tls_dir=root / "sink").start()  # self-signed: not valid for mx.strict.test
    zone = Zone()
    zone.add("strict.test", "MX", "10 mx.strict.test.").add("mx.strict.test", "A", "127.0.0.1")
    zone.add("_mta-sts.strict.test", "TXT", '"v=STSv1; id=20261207"')
    zone.add("mta-sts.strict.test", "A", "127.0.0.1")
    dns = NameServer(zone).start()
    delivery = "\n".join(
        [
            f'dns_nameservers = ["{dns.address}"]',
            "dns_timeout = 2.0",
            f"smtp_port = {sink.port}",
            f"mta_sts_port = {policies.port}",
            f'tls_ca_file = "{ca.ca_file}"',
            "retry_base = 0.3",
            "retry_max = 1.0",
            "connect_timeout = 2.0",
        ]
    )
    extra = '\n[mta_sts]\nmode = "enforce"\nmx = ["mx.mailfort.test", "*.mailfort.test"]\n'
    proc = NodeProcess(root / "node", delivery=delivery, http=True, extra_config=extra)
    proc.provision(domains=("example.test",), users={ALICE: PASSWORD})
    proc.start()
    yield proc, sink
    proc.stop()
    sink.stop()
    dns.stop()
    policies.stop()


def test_enforce_with_a_bad_certificate_defers(node: tuple[NodeProcess, Sink]) -> None:
    proc, sink = node
    with smtplib.SMTP("127.0.0.1", proc.ports["submission"], timeout=30) as client:
        client.starttls(context=client_tls())
        client.login(ALICE, PASSWORD)
        body = b"From: <alice@example.test>\r\nSubject: strict\r\n\r\nhello\r\n"
        assert client.sendmail(ALICE, ["bob@strict.test"], body) == {}

    def deferred() -> bool:
        return any(i.last_status == "4.7.5" and i.attempts >= 2 for i in proc.queue())

    wait_for(deferred, timeout=30, what="two deferrals with 4.7.5")
    (item,) = proc.queue()
    assert "certificate" in (item.last_error or ""), item.last_error
    assert sink.received("bob@strict.test") == []
    assert "Traceback" not in proc.log()


def get(proc: NodeProcess, host: str) -> tuple[int, str, str]:
    conn = http.client.HTTPConnection("127.0.0.1", proc.ports["http"], timeout=10)
    try:
        conn.request("GET", "/.well-known/mta-sts.txt", headers={"Host": host})
        answer = conn.getresponse()
        return answer.status, answer.getheader("content-type") or "", answer.read().decode()
    finally:
        conn.close()


def test_the_policy_of_our_domains_is_served(node: tuple[NodeProcess, Sink]) -> None:
    proc, _ = node
    status, kind, text = get(proc, "mta-sts.example.test")
    assert status == 200 and kind.startswith("text/plain")
    assert text == (
        "version: STSv1\r\nmode: enforce\r\nmx: mx.mailfort.test\r\nmx: *.mailfort.test\r\n"
        "max_age: 604800\r\n"
    )
    # config's local domains too, any case, with a port
    assert get(proc, "MTA-STS.config-domain.test:443")[0] == 200
    for host in ("mta-sts.strict.test", "example.test", "mta-sts.", "[::1]", ""):
        assert get(proc, host)[0] == 404, host


def test_the_policy_id_changes_with_the_policy() -> None:
    def config(mode: str = "testing", host: str = "mx.a.test", **dns: object) -> Config:
        return Config(
            hostname=host,
            mta_sts=MtaStsConfig(mode=mode),
            dns=DnsConfig(**dns),  # type: ignore[arg-type]
        )

    testing, enforce = config(), config("enforce")
    assert policy_id(testing) != policy_id(enforce)
    assert policy_id(testing) != policy_id(config(host="mx.b.test"))
    assert policy_id(testing) == policy_id(Config(hostname="mx.a.test"))
    ident = policy_id(enforce)
    assert ident.isalnum() and 1 <= len(ident) <= 32
    assert "mx: mx.a.test\r\n" in policy_text(testing)
    # The MX hosts the domains publish are the policy's, and `dns records` prints its id.
    published = config(mx_hosts=("mx1.p.test", "mx2.p.test."))
    assert "mx: mx1.p.test\r\nmx: mx2.p.test\r\n" in policy_text(published)
    assert expected_policy_id(published, "example.test") == policy_id(published)
