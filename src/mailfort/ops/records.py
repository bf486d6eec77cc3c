"""Every DNS record a mail domain served by this node needs, from the node's own configuration.

`domain_records` is the single source of what should be published: `mailfort dns records` prints
it as a zone file and `mailfort dns check` looks each record up. Values come from the config —
`hostname`, the listeners and `[dns]` — never from guesses; a value the config cannot give (a
listener bound to port 0, no public address) is said in a comment instead of a record.

Records fall into the zones of four owners, printed in four sections:

- `domain`: the customer's domain (MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT, autoconfig, SRV);
- `host`: the zone holding the node's `hostname` (its A/AAAA, which MX and PTR point at);
- `reverse`: the PTR of each node address, set by whoever owns the address (the hosting
  provider's panel, not the customer's zone);
- `provider`: records of the provider's own domain that customer domains refer to (an SPF
  include, the RFC 7489 7.1 authorisation to receive another domain's DMARC reports).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from mailfort.config import Config, parse_hostport

DOMAIN, HOST, REVERSE, PROVIDER = "domain", "host", "reverse", "provider"
ZONES = (DOMAIN, HOST, REVERSE, PROVIDER)

# RFC 6186 3 and RFC 8314 5.1: lower priority is preferred; implicit TLS before STARTTLS, and
# IMAP before POP3 (one priority space covers both).
SRV_SERVICES: tuple[tuple[str, str, int], ...] = (
    ("_submissions._tcp", "submissions", 0),
    ("_submission._tcp", "submission", 10),
    ("_imaps._tcp", "imaps", 0),
    ("_imap._tcp", "imap", 10),
    ("_pop3s._tcp", "pop3s", 20),
    ("_pop3._tcp", "pop3", 30),
)
# RFC 8461 3.2: the policy's max_age; a week is what the RFC's examples and big senders use.
KINDS = (
    "mx", "spf", "dkim", "dmarc", "mta-sts", "tlsrpt", "alias", "srv", "address", "ptr",
    "provider-spf", "dmarc-report",
)  # fmt: skip
TXT_STRING = 255  # RFC 1035 3.3.14: one character-string holds at most 255 octets
LISTENERS = ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s", "http")


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """One resource record: `name` absolute (final dot), `value` in presentation format."""

    name: str
    rtype: str
    value: str
    purpose: str
    zone: str
    ttl: int
    kind: str  # what `dns check` judges it as: one of KINDS
    text: str = ""  # a TXT record's value as one string, unquoted

    def line(self) -> str:
        return f"{self.name}\t{self.ttl}\tIN\t{self.rtype}\t{self.value}"


@dataclass(frozen=True, slots=True, kw_only=True)
class DkimPublished:
    """A DKIM key of a domain as DNS must show it: `txt` is the record's text (RFC 6376 3.6.1)."""

    selector: str
    state: str  # published (waiting to be used), active (signing), retiring (verification only)
    txt: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Note:
    """A record that cannot be given from the config, and what to set so that it can."""

    zone: str
    text: str


def fqdn(name: str) -> str:
    return name.lower().rstrip(".") + "."


def txt_value(text: str) -> str:
    """`text` as TXT presentation: quoted strings of at most 255 octets (a DKIM key is longer)."""
    parts = [text[i : i + TXT_STRING] for i in range(0, len(text), TXT_STRING)] or [""]
    return " ".join('"' + p.replace("\\", "\\\\").replace('"', '\\"') + '"' for p in parts)


def node_addresses(config: Config) -> list[str]:
    """The addresses the world reaches this node at: `[dns] public_addresses`, else the
    listeners' addresses that are neither loopback nor unspecified (0.0.0.0, ::)."""
    if config.dns.public_addresses:
        return [str(ipaddress.ip_address(a)) for a in config.dns.public_addresses]
    found: list[str] = []
    for listener in LISTENERS:
        bound = parse_hostport(f"listen.{listener}", getattr(config.listen, listener))
        if bound is None:
            continue
        try:
            address = ipaddress.ip_address(bound[0])
        except ValueError:
            continue
        if not (address.is_loopback or address.is_unspecified) and str(address) not in found:
            found.append(str(address))
    return found


def public_port(config: Config, listener: str) -> int | None:
    """The port clients use for `listener`: `[dns.public_ports]`, else the bound port; None
    when the listener is off, 0 when it binds a port chosen at start (unknown here)."""
    bound = parse_hostport(f"listen.{listener}", getattr(config.listen, listener))
    if bound is None:
        return None
    return getattr(config.dns.public_ports, listener) or bound[1]


def mx_hosts(config: Config) -> list[str]:
    return [fqdn(h) for h in (config.dns.mx_hosts or (config.hostname,))]


def report_address(configured: str, domain: str) -> str:
    # RFC 5321 4.5.1: postmaster exists at every mail domain, so reports always land somewhere.
    return configured or f"postmaster@{domain}"


def spf_text(config: Config) -> str:
    if config.dns.spf_include:
        return f"v=spf1 include:{config.dns.spf_include.rstrip('.')} -all"
    # "mx": the MX hosts are the nodes that send too; one lookup, and a new node that is an MX
    # is covered without touching the record.
    return "v=spf1 mx -all"


def dmarc_text(config: Config, domain: str) -> str:
    rua = report_address(config.dns.dmarc_rua, domain)
    return f"v=DMARC1; p={config.dns.dmarc_policy}; rua=mailto:{rua}"


def tlsrpt_text(config: Config, domain: str) -> str:
    return f"v=TLSRPTv1; rua=mailto:{report_address(config.dns.tlsrpt_rua, domain)}"


class _Builder:
    def __init__(self, ttl: int) -> None:
        self.ttl = ttl
        self.records: list[Record] = []
        self.notes: list[Note] = []

    def add(
        self, kind: str, name: str, rtype: str, value: str, purpose: str, zone: str = DOMAIN
    ) -> None:
        self.records.append(
            Record(
                name=name,
                rtype=rtype,
                value=value,
                purpose=purpose,
                zone=zone,
                ttl=self.ttl,
                kind=kind,
            )
        )

    def add_txt(self, kind: str, name: str, text: str, purpose: str, zone: str = DOMAIN) -> None:
        self.records.append(
            Record(
                name=name,
                rtype="TXT",
                value=txt_value(text),
                purpose=purpose,
                zone=zone,
                ttl=self.ttl,
                kind=kind,
                text=text,
            )
        )

    def note(self, zone: str, text: str) -> None:
        self.notes.append(Note(zone=zone, text=text))


def domain_records(
    config: Config, domain: str, dkim: Sequence[DkimPublished], policy_id: str
) -> tuple[list[Record], list[Note]]:
    """Every record `domain` needs on this node, and notes for those the config cannot give."""
    out = _Builder(config.dns.ttl)
    d = fqdn(domain)
    host = fqdn(config.hostname)
    for preference, mx in enumerate(mx_hosts(config), start=1):
        out.add(
            "mx",
            d,
            "MX",
            f"{preference * 10} {mx}",
            "incoming mail goes to this host (RFC 5321 5.1)",
        )
    out.add_txt("spf", d, spf_text(config), "SPF: who may send as the domain (RFC 7208)")
    for key in dkim:
        out.add_txt(
            "dkim",
            f"{key.selector}._domainkey.{d}",
            key.txt,
            f"DKIM public key, selector {key.selector}, {key.state} (RFC 6376 3.6.2)",
        )
    if not dkim:
        out.note(DOMAIN, f"no DKIM key yet: create one with mailfort dkim create {domain}")
    out.add_txt(
        "dmarc",
        f"_dmarc.{d}",
        dmarc_text(config, domain),
        "DMARC policy and where aggregate reports go (RFC 7489 6.1)",
    )
    out.add(
        "alias",
        f"mta-sts.{d}",
        "CNAME",
        host,
        "MTA-STS: the host serving /.well-known/mta-sts.txt over HTTPS on port 443; its"
        " certificate must cover this name (RFC 8461 3.3)",
    )
    out.add_txt(
        "mta-sts",
        f"_mta-sts.{d}",
        f"v=STSv1; id={policy_id}",
        "MTA-STS: a policy exists; the id changes when the policy does (RFC 8461 3.1)",
    )
    out.add_txt(
        "tlsrpt",
        f"_smtp._tls.{d}",
        tlsrpt_text(config, domain),
        "TLS-RPT: where senders report TLS failures (RFC 8460 3)",
    )
    out.add(
        "alias", f"autoconfig.{d}", "CNAME", host, "Thunderbird autoconfig (/mail/config-v1.1.xml)"
    )
    out.add("alias", f"autodiscover.{d}", "CNAME", host, "Outlook Autodiscover (autodiscover.xml)")
    for label, listener, priority in SRV_SERVICES:
        port = public_port(config, listener)
        if port is None:
            # RFC 6186 4: target "." says the service is not offered, so clients do not try it.
            out.add(
                "srv", f"{label}.{d}", "SRV", "0 0 0 .", f"{listener}: not offered (RFC 6186 4)"
            )
        elif port == 0:
            out.note(
                DOMAIN,
                f"{label}.{d} SRV: [listen] {listener} binds a port chosen at start;"
                f" set [dns.public_ports] {listener}",
            )
        else:
            out.add(
                "srv",
                f"{label}.{d}",
                "SRV",
                f"{priority} 1 {port} {host}",
                f"mail clients find {listener} here (RFC 6186 3)",
            )
    rua_domain = report_address(config.dns.dmarc_rua, domain).rpartition("@")[2]
    if rua_domain != domain:
        out.add_txt(
            "dmarc-report",
            f"{d}_report._dmarc.{fqdn(rua_domain)}",
            "v=DMARC1",
            f"lets {rua_domain} receive the DMARC reports of {domain} (RFC 7489 7.1)",
            PROVIDER,
        )
    _node_records(config, out)
    return out.records, out.notes


def _node_records(config: Config, out: _Builder) -> None:
    """The node's own name and the PTR of each of its addresses: forward-confirmed reverse DNS
    (the PTR names `hostname`, whose A/AAAA holds the address) is what receivers check."""
    host = fqdn(config.hostname)
    addresses = node_addresses(config)
    if not addresses:
        out.note(
            HOST,
            f"no public address known for {host}: set [dns] public_addresses"
            " (for the A/AAAA of the host name and the PTR of each address)",
        )
    for address in addresses:
        rtype = "A" if ipaddress.ip_address(address).version == 4 else "AAAA"
        out.add(
            "address",
            host,
            rtype,
            address,
            "the node's host name: MX, MTA-STS and HELO name it",
            HOST,
        )
    for address in addresses:
        out.add(
            "ptr",
            ipaddress.ip_address(address).reverse_pointer + ".",
            "PTR",
            host,
            f"reverse DNS of {address}, set where the address is hosted; in a cluster each node"
            " gets one PTR per address, to its own hostname",
            REVERSE,
        )
    if config.dns.spf_include and addresses:
        mechanisms = " ".join(f"ip{ipaddress.ip_address(a).version}:{a}" for a in addresses)
        out.add_txt(
            "provider-spf",
            fqdn(config.dns.spf_include),
            f"v=spf1 {mechanisms} -all",
            "the provider's SPF that customer domains include: every node's addresses go here",
            PROVIDER,
        )


_HEADINGS = {
    DOMAIN: "In the zone of {domain}",
    HOST: "In the zone holding the node's name {host}",
    REVERSE: "Reverse DNS (PTR), set by whoever hosts the address (your hosting provider)",
    PROVIDER: "In the provider's own zone",
}


def zone_text(config: Config, domain: str, records: Sequence[Record], notes: Sequence[Note]) -> str:
    """The records as a zone file: absolute names, one comment line above each record."""
    lines = [
        f"; DNS records for {domain}, served by {config.hostname}"
        + (f" (config {config.source})" if config.source else ""),
        "; Publish them, then verify with: mailfort dns check " + domain,
    ]
    host = config.hostname.rstrip(".")
    for zone in ZONES:
        here = [r for r in records if r.zone == zone]
        said = [n for n in notes if n.zone == zone]
        if not here and not said:
            continue
        lines += ["", f"; === {_HEADINGS[zone].format(domain=domain, host=host)} ==="]
        lines += [f"; NOTE: {n.text}" for n in said]
        for record in here:
            lines += [f"; {record.purpose}", record.line()]
    return "\n".join(lines) + "\n"
