"""`mailfort doctor` against a real node on loopback, with a real name server holding its records,
and the HELO-name warning a node logs at start."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dnsops_support import serve
from tests.dnsserver import NameServer, Zone
from tests.nodeproc import NodeProcess, free_ports

HOST = "mx.mailfort.test"  # tests/nodeproc.py's hostname
DOMAIN = "example.test"
DOMAINS = (DOMAIN, "config-domain.test")  # the store's domain, and the config's


def publish_all(proc: NodeProcess, zone: Zone) -> None:
    """Every record `dns records` prints for the node's domains, served by `zone`."""
    printed = [proc.cli("dns", "records", domain) for domain in DOMAINS]
    assert all(p.returncode == 0 for p in printed), [p.stderr for p in printed]
    serve(zone, "".join(p.stdout for p in printed))  # holds the A of HOST, the PTR of 127.0.0.1


def doctor_lines(output: str, what: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln[6:].startswith(what)]


@pytest.fixture(scope="module")
def nameserver() -> Iterator[NameServer]:
    server = NameServer(Zone()).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, nameserver: NameServer) -> Iterator[NodeProcess]:
    proc = NodeProcess(
        tmp_path_factory.mktemp("doctor"),
        delivery=f'dns_nameservers = ["{nameserver.address}"]\ndns_timeout = 1.0\n',
        extra_config='\n[dns]\npublic_addresses = ["127.0.0.1"]\n',
    )
    proc.provision(domains=(DOMAIN,))
    publish_all(proc, nameserver.zone)
    proc.start()
    yield proc
    proc.stop()


def test_doctor_judges_a_running_node(node: NodeProcess) -> None:
    done = node.cli("doctor", "--timeout", "2")
    out = done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    assert doctor_lines(out, f"hostname {HOST}")[0].startswith("ok    hostname")
    # Every listener the node announced answered with its greeting, on its real port.
    listeners = doctor_lines(out, "listener ")
    assert {ln.split()[2] for ln in listeners} == {
        "smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s"
    }  # fmt: skip
    assert all(ln.startswith("ok ") for ln in listeners), out
    assert f"127.0.0.1:{node.ports['imaps']}: answers: * OK" in out
    # The node's first-start certificate is its own: a failure, with what to do.
    (cert,) = doctor_lines(out, "TLS certificate")
    assert cert.startswith("fail") and "self-signed" in cert, out
    assert "fix: set [tls] acme = true" in out
    ptr = doctor_lines(out, "reverse DNS PTR 1.0.0.127.in-addr.arpa.")
    assert ptr and ptr[0].startswith("ok"), out
    (relay,) = doctor_lines(out, "open relay")
    assert relay.startswith("ok") and "550 5.7.1" in relay, out
    for domain in DOMAINS:
        (dns,) = doctor_lines(out, f"dns {domain}")
        assert dns.startswith("ok") and "records ok" in dns, out
    assert out.splitlines()[-1].endswith("1 fail"), out
    assert done.returncode == 1


def test_doctor_shows_each_dns_fault(node: NodeProcess, nameserver: NameServer) -> None:
    nameserver.zone.remove(f"_dmarc.{DOMAIN}")
    nameserver.zone.remove("1.0.0.127.in-addr.arpa.")
    nameserver.zone.add("1.0.0.127.in-addr.arpa.", "PTR", "localhost.")
    try:
        out = node.cli("doctor", "--timeout", "2").stdout
    finally:
        publish_all(node, nameserver.zone)
    (dmarc,) = doctor_lines(out, f"dns {DOMAIN}: TXT _dmarc.{DOMAIN}.")
    assert dmarc.startswith("fail  ") and "missing" in dmarc
    (ptr,) = doctor_lines(out, "reverse DNS PTR 1.0.0.127.in-addr.arpa.")
    assert ptr.startswith("fail") and "localhost." in ptr


def test_a_node_warns_at_start_when_its_helo_name_is_not_public(
    node: NodeProcess, tmp_path: Path
) -> None:
    local = NodeProcess(tmp_path, name="localnode")
    local.write_config()
    text = local.config_path.read_text().replace(f'hostname = "{HOST}"', 'hostname = "localhost"')
    local.config_path.write_text(text)
    local.start()
    try:
        deadline = time.monotonic() + 10
        while "helo_name_unfit" not in local.log() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        local.stop()
    (line,) = [ln for ln in local.log().splitlines() if "helo_name_unfit" in ln]
    assert "helo=localhost" in line and "hostname is 'localhost'" in line
    # The node under doctor has a name that resolves (through its [delivery] name server).
    assert "helo_name_unfit" not in node.log()


def test_doctor_fails_listeners_nobody_answers(tmp_path: Path) -> None:
    names = ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")
    stopped = NodeProcess(tmp_path, fixed_ports=dict(zip(names, free_ports(7), strict=True)))
    stopped.write_config()  # never started: nothing listens, and the store knows no node
    started = time.monotonic()
    done = stopped.cli("doctor", "--timeout", "1")
    assert time.monotonic() - started < 30
    out = done.stdout
    assert "warn  node node1: not in the store" in out, out
    listeners = doctor_lines(out, "listener ")
    assert len(listeners) == 7, out
    assert all(ln.startswith("fail") and "cannot connect" in ln for ln in listeners), out
    assert "fix: is the node running (mailfort serve)?" in out
    # Its name server (port 9) never answers: DNS is "could not check", never a failure.
    assert doctor_lines(out, "hostname")[0].startswith("warn"), out
    assert done.returncode == 1
