"""DKIM for tests: keys published on the test name server, and dkimpy verifying against it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import dkim
import dns.exception
import dns.nameserver
import dns.resolver

from mailfort.store.records import DkimKey
from tests.dnsserver import NameServer, Zone
from tests.smtpsink import Sink

DnsFunc = Callable[..., bytes | None]


@contextmanager
def internet(tls_dir: Path, *domains: str) -> Iterator[tuple[NameServer, Sink]]:
    """A name server in which each of `domains` has its MX at 127.0.0.1, and the SMTP sink
    that answers there (the node under test delivers to it at `[delivery] smtp_port`)."""
    zone = Zone()
    for domain in domains:
        zone.add(domain, "MX", f"10 mx.{domain}.").add(f"mx.{domain}", "A", "127.0.0.1")
    server = NameServer(zone).start()
    sink = Sink(hosts=("127.0.0.1",), tls_dir=tls_dir)
    sink.start()
    try:
        yield server, sink
    finally:
        sink.stop()
        server.stop()


def delivery(server: NameServer, sink: Sink) -> str:
    """The `[delivery]` lines that point a node at `internet()`."""
    return (
        f'dns_nameservers = ["{server.address}"]\ndns_timeout = 2.0\nsmtp_port = {sink.port}\n'
        "retry_base = 0.3\nretry_max = 1.0\nconnect_timeout = 2.0\n"
    )


def publish(zone: Zone, keys: Sequence[DkimKey]) -> None:
    for key in keys:
        zone.txt(f"{key.selector}._domainkey.{key.domain}", key.txt_record)


def txt_from(server: NameServer) -> DnsFunc:
    """dkimpy's `dnsfunc`: the TXT record of a name, asked of `server` (None: there is none)."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [dns.nameserver.Do53Nameserver(server.host, server.port)]
    resolver.lifetime = resolver.timeout = 3.0

    def get_txt(name: bytes, timeout: float = 5) -> bytes | None:
        try:
            answer = resolver.resolve(name.decode("ascii"), "TXT")
        except dns.exception.DNSException:
            return None
        return b"".join(answer[0].strings)

    return get_txt


def verified_domains(message: bytes, dnsfunc: DnsFunc) -> list[tuple[str, str, bool]]:
    """(d=, a=, whether it verifies) for every DKIM-Signature on `message`, top first."""
    checker = dkim.DKIM(message)
    found = []
    count = sum(1 for name, _ in checker.headers if name.lower() == b"dkim-signature")
    for idx in range(count):
        try:
            ok = bool(checker.verify(idx=idx, dnsfunc=dnsfunc))
        except dkim.DKIMException:
            ok = False
        sig = checker.signature_fields
        found.append((sig[b"d"].decode(), sig[b"a"].decode(), ok))
    return found
