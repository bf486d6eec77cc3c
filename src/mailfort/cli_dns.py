"""`mailfort dns records|check DOMAIN` and `mailfort doctor`: what to publish, whether it is
published, and whether this node is ready to face the internet (`ops/`)."""

from __future__ import annotations

import argparse

from mailfort.config import Config, ListenConfig, parse_hostport
from mailfort.delivery.transport import parse_nexthop
from mailfort.errors import MailfortError
from mailfort.mail.address import normalize_domain
from mailfort.ops import doctor
from mailfort.ops.dns_check import DomainCheck, Verdict, format_findings
from mailfort.ops.expected import expected_records
from mailfort.ops.lookup import Lookup, Unchecked, make_resolver
from mailfort.ops.probe import Endpoint
from mailfort.ops.records import DOMAIN, node_addresses, zone_text
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


async def serving_endpoints(config: Config, store: Store) -> list[Endpoint] | None:
    """The listeners this node announced in the store when it started (`Membership.join`):
    their real ports, also those bound as port 0. None when the node has not joined."""
    prefix = f"{config.node_name}-w"
    mine = [
        node
        for node in await store.list_nodes()
        if node.state != "gone" and (node.name == config.node_name or node.name.startswith(prefix))
    ]
    if not mine:
        return None
    latest = max(mine, key=lambda node: node.heartbeat)
    return [
        Endpoint(name=str(x["name"]), host=str(x["host"]), port=int(str(x["port"])))
        for x in latest.listeners
    ]


def configured_endpoints(config: Config) -> list[Endpoint]:
    found = []
    for name in ListenConfig.__dataclass_fields__:
        bound = parse_hostport(f"listen.{name}", getattr(config.listen, name))
        if bound is not None and bound[1] != 0:
            found.append(Endpoint(name=name, host=bound[0], port=bound[1]))
    return found


async def cmd_doctor(config: Config, store: Store, args: argparse.Namespace) -> int:
    lookup = lookup_for(config, args)
    timeout = lookup.timeout
    checks = [await doctor.check_hostname(config, lookup)]
    endpoints = await serving_endpoints(config, store)
    if endpoints is None:
        endpoints = configured_endpoints(config)
        checks.append(
            doctor.Check(
                what=f"node {config.node_name}",
                level=doctor.Level.WARN,
                text="not in the store: it never started here; using the configured listeners",
                fix="start it (mailfort serve, or the systemd unit) and run doctor again",
            )
        )
    checks += await doctor.check_listeners(endpoints, timeout)
    checks += await doctor.check_certificate(endpoints, config.hostname, timeout)
    domains = sorted(set(config.local_domains) | set(await store.list_domains()))
    records, _ = await expected_records(config, store, domains[0] if domains else "example.com")
    checks += await doctor.check_ptr(config, [r for r in records if r.kind == "ptr"], lookup)
    checks.append(await doctor.check_relay(endpoints, domains[0] if domains else "", timeout))
    for domain in domains:
        records, _ = await expected_records(config, store, domain)
        # The node's own records (A/AAAA, PTR) were judged above, once.
        ours = [r for r in records if r.zone == DOMAIN]
        check = DomainCheck(lookup, ours, node_addresses(config))
        findings = await check.run(deadline=check_deadline(lookup))
        bad = [f for f in findings if f.verdict is not Verdict.OK]
        if bad:
            checks += doctor.from_findings(bad, f"dns {domain}:")
        else:
            text = f"all {len(findings)} records ok"
            checks.append(doctor.Check(what=f"dns {domain}", level=doctor.Level.OK, text=text))
    if not domains:
        text = "no local domain yet: mailfort domain add DOMAIN"
        checks.append(doctor.Check(what="domains", level=doctor.Level.WARN, text=text))
    print(doctor.format_checks(checks))
    return FAILED if any(c.level is doctor.Level.FAIL for c in checks) else 0


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
    p = sub.add_parser(
        "doctor",
        help="is this node ready to go live? listeners, certificate, PTR, open relay, DNS;"
        " exit 1 on any failure",
    )
    _dns_options(p)
    p.set_defaults(func=cmd_doctor)
