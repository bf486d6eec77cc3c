"""`mailfort dns records|check DOMAIN` and `mailfort doctor`: what to publish, whether it is
published, and whether this node is ready to face the internet (`ops/`)."""

from __future__ import annotations

import argparse

from mailfort.config import Config
from mailfort.delivery.transport import parse_nexthop
from mailfort.errors import MailfortError
from mailfort.mail.address import normalize_domain
from mailfort.ops.dns_check import DomainCheck, Verdict, format_findings
from mailfort.ops.expected import expected_records
from mailfort.ops.lookup import Lookup, Unchecked, make_resolver
from mailfort.ops.records import node_addresses, zone_text
from mailfort.store.api import Store

# Exit statuses of `dns check` and `doctor` (besides 0, all ok, and 2, bad usage).
FAILED = 1  # something is missing or wrong
UNCHECKED = 3  # nothing found wrong, but some lookups gave no answer


class DnsCliError(MailfortError):
    pass


def _domain(text: str) -> str:
    domain = normalize_domain(text.strip())
    if domain is None or "." not in domain:
        raise DnsCliError(f"not a domain name: {text!r}")
    return domain


def lookup_for(config: Config, args: argparse.Namespace) -> Lookup:
    """`--nameserver`, else `[delivery] dns_nameservers`, else the system's resolver."""
    given = args.nameserver or list(config.delivery.dns_nameservers)
    try:
        servers = [parse_nexthop(n, default_port=53) for n in given]
    except ValueError as exc:
        raise DnsCliError(f"--nameserver: {exc}") from None
    timeout = args.timeout if args.timeout else min(config.delivery.dns_timeout, 5.0)
    try:
        return Lookup(make_resolver([(s.host, s.port) for s in servers], timeout))
    except Unchecked as exc:
        raise DnsCliError(str(exc)) from None


async def cmd_dns_records(config: Config, store: Store, args: argparse.Namespace) -> int:
    domain = _domain(args.domain)
    records, notes = await expected_records(config, store, domain)
    print(zone_text(config, domain, records, notes), end="")
    return 0


async def cmd_dns_check(config: Config, store: Store, args: argparse.Namespace) -> int:
    domain = _domain(args.domain)
    records, _ = await expected_records(config, store, domain)
    lookup = lookup_for(config, args)
    check = DomainCheck(lookup, records, node_addresses(config))
    findings = await check.run(deadline=check_deadline(lookup))
    print(format_findings(domain, findings))
    if any(f.failed for f in findings):
        return FAILED
    return UNCHECKED if any(f.verdict is Verdict.UNCHECKED for f in findings) else 0


def check_deadline(lookup: Lookup) -> float:
    """Time one record's check may take: a few sequential lookups (an SPF include chain, a PTR
    and its forward confirmation) that each time out on their own."""
    return 4 * lookup.timeout + 1.0


def _dns_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--nameserver",
        action="append",
        metavar="IP[:PORT]",
        help="ask this name server (repeatable; default: [delivery] dns_nameservers, else the"
        " system's resolver)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="per lookup (default: [delivery] dns_timeout, at most 5)",
    )


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `dns` and `doctor` to the `mailfort` parser."""
    dns = sub.add_parser(
        "dns", help="the DNS records a domain needs, and whether they are published"
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    p = dns.add_parser(
        "records",
        help="print every record DOMAIN needs, in zone-file syntax, with what each is for",
    )
    p.add_argument("domain")
    p.set_defaults(func=cmd_dns_records)
    p = dns.add_parser(
        "check",
        help="look each record up: ok, missing or wrong (and what to change); exit 1 if any"
        " is missing or wrong, 3 if some could not be checked",
    )
    p.add_argument("domain")
    _dns_options(p)
    p.set_defaults(func=cmd_dns_check)
