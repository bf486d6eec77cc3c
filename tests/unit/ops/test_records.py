"""`records.domain_records`: what a domain needs, from settings a cluster of many nodes uses."""

from __future__ import annotations

import dataclasses

from mailfort.config import Config, DnsConfig, ListenConfig, PublicPortsConfig
from mailfort.ops.records import HOST, PROVIDER, REVERSE, domain_records, node_addresses

DOMAIN = "customer.test"


def records(config: Config) -> dict[tuple[str, str], list[str]]:
    found, _ = domain_records(config, DOMAIN, [], "id1")
    table: dict[tuple[str, str], list[str]] = {}
    for r in found:
        table.setdefault((r.name, r.rtype), []).append(r.value)
    return table


def test_a_provider_with_many_nodes() -> None:
    config = Config(
        hostname="mx1.provider.test",
        dns=DnsConfig(
            public_addresses=("192.0.2.1",),
            mx_hosts=("mx1.provider.test", "mx2.provider.test"),
            spf_include="_spf.provider.test",
        ),
    )
    found, _ = domain_records(config, DOMAIN, [], "id1")
    table = records(config)
    # Every node as an MX, in order; customers include the provider's SPF ...
    assert table[(f"{DOMAIN}.", "MX")] == ["10 mx1.provider.test.", "20 mx2.provider.test."]
    assert table[(f"{DOMAIN}.", "TXT")] == ['"v=spf1 include:_spf.provider.test -all"']
    # ... which lists the node's addresses, in the provider's zone.
    (spf,) = [r for r in found if r.zone == PROVIDER]
    assert (spf.name, spf.text) == ("_spf.provider.test.", "v=spf1 ip4:192.0.2.1 -all")
    # This node's own PTR, to its own name.
    (ptr,) = [r for r in found if r.zone == REVERSE]
    assert (ptr.name, ptr.value) == ("1.2.0.192.in-addr.arpa.", "mx1.provider.test.")
    # Reports to postmaster@ the domain itself need no authorisation record (RFC 7489 7.1).
    assert not any("_report._dmarc" in r.name for r in found)


def test_addresses_and_ports_from_the_listeners() -> None:
    listen = ListenConfig(smtp="198.51.100.4:25", submission="0.0.0.0:2587", imap="[::1]:143")
    config = Config(
        hostname="mx.test",
        listen=listen,
        dns=DnsConfig(public_ports=PublicPortsConfig(submission=587)),
    )
    # Loopback and unspecified addresses are nobody's public address.
    assert node_addresses(config) == ["198.51.100.4"]
    table = records(config)
    assert table[("_submission._tcp.customer.test.", "SRV")] == ["10 1 587 mx.test."]
    assert table[("mx.test.", "A")] == ["198.51.100.4"]


def test_what_the_config_cannot_say_is_a_note() -> None:
    config = dataclasses.replace(Config(hostname="mx.test"), listen=ListenConfig(imaps="0.0.0.0:0"))
    found, notes = domain_records(config, DOMAIN, [], "id1")
    said = " / ".join(n.text for n in notes)
    assert "set [dns.public_ports] imaps" in said
    assert "set [dns] public_addresses" in said and any(n.zone == HOST for n in notes)
    assert "mailfort dkim create customer.test" in said
    assert not any(r.name.startswith("_imaps.") for r in found)
