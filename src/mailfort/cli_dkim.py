"""`mailfort dkim …`: each domain's DKIM keys, in the store every node signs from.

`create` makes a domain's first keys, signing at once; `list` shows every key with the record to
publish; `rotate` replaces the keys in steps, one per run (`trust/rotation.py`), saying what to
publish or remove and when to run it again. Exit status: 0 done, 1 nothing could be done yet or
the operation failed (too early, a record not in DNS, keys exist), 2 a value was not understood
(not a local domain).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable

from mailfort.cli_status import UsageError
from mailfort.config import Config
from mailfort.errors import MailfortError
from mailfort.mail.address import normalize_domain
from mailfort.store.api import Store
from mailfort.store.records import DkimKey, DkimState
from mailfort.trust.dkim_keys import generate_set, zone_line
from mailfort.trust.rotation import Rotation, TxtLookup, when

DNS_TIMEOUT = 5.0


class DkimCliError(MailfortError):
    """The operation could not be done (exit status 1)."""


async def _local_domain(config: Config, store: Store, text: str) -> str:
    domain = normalize_domain(text)
    if domain is None:
        raise UsageError(f"not a domain: {text!r}")
    if domain not in set(config.local_domains) | set(await store.list_domains()):
        raise UsageError(f"{domain} is not a local domain (add it with: mailfort domain add)")
    return domain


async def create_keys(config: Config, store: Store, domain: str) -> list[DkimKey]:
    """Active keys for a domain that signs with none yet (its first, signing at once); [] when
    it has some: replacing those is a rotation's job."""
    keys = await store.dkim_keys(domain)
    if any(k.state is DkimState.ACTIVE for k in keys):
        return []
    made = generate_set(
        domain,
        config.dkim.algorithms,
        DkimState.ACTIVE,
        prefix=config.dkim.selector_prefix,
        taken={k.selector for k in keys},
    )
    await store.add_dkim_keys(made)
    return made


def print_records(keys: Iterable[DkimKey]) -> None:
    for key in keys:
        print(zone_line(key))


async def keys_for_new_domains(config: Config, store: Store, domains: Iterable[str]) -> None:
    """`init` and `domain add`: a new domain signs from its first message ([dkim] keys_at_init)."""
    if not config.dkim.keys_at_init:
        return
    for domain in sorted(domains):
        made = await create_keys(config, store, domain)
        if made:
            print(f"DKIM keys for {domain} (signing now; publish in DNS):")
            print_records(made)


async def cmd_create(config: Config, store: Store, args: argparse.Namespace) -> int:
    domain = await _local_domain(config, store, args.domain)
    made = await create_keys(config, store, domain)
    if not made:
        raise DkimCliError(
            f"{domain} already signs with DKIM keys;"
            f" replace them with: mailfort dkim rotate {domain}"
        )
    print(f"{domain} signs with {', '.join(k.selector for k in made)} from now on.")
    print("Publish in DNS (until then receivers find no key and treat mail as unsigned):")
    print_records(made)
    return 0


async def cmd_list(config: Config, store: Store, args: argparse.Namespace) -> int:
    domain = None if args.domain is None else await _local_domain(config, store, args.domain)
    keys = await store.dkim_keys(domain)
    if not keys:
        print(f"no DKIM keys{'' if domain is None else f' for {domain}'}")
        return 0
    for key in keys:
        dates = [f"created {when(key.created)}"]
        if key.activated_at is not None:
            dates.append(f"signing since {when(key.activated_at)}")
        if key.state is DkimState.RETIRING and key.retire_after is not None:
            dates.append(f"in DNS until {when(key.retire_after)}")
        if key.retired_at is not None:
            dates.append(f"retired {when(key.retired_at)}")
        print(
            f"{key.domain}\t{key.selector}\t{key.algorithm}\t{key.state.value}\t{'; '.join(dates)}"
        )
        if key.state is not DkimState.RETIRED:
            print(f"  {zone_line(key)}")
        else:
            print(f"  remove from DNS: {key.selector}._domainkey.{key.domain}. IN TXT")
    return 0


def txt_lookup(config: Config) -> TxtLookup | None:
    """TXT lookups through `[delivery] dns_nameservers`, else the system's resolver; None when
    neither is usable."""
    import dns.asyncresolver
    import dns.exception
    import dns.nameserver
    import dns.resolver

    from mailfort.delivery.transport import parse_nexthop

    servers = [parse_nexthop(n, default_port=53) for n in config.delivery.dns_nameservers]
    try:
        resolver = dns.asyncresolver.Resolver(configure=not servers)
    except dns.exception.DNSException:
        return None
    if servers:
        resolver.nameservers = [dns.nameserver.Do53Nameserver(s.host, s.port) for s in servers]
    resolver.lifetime = resolver.timeout = DNS_TIMEOUT

    async def lookup(name: str) -> list[str] | None:
        try:
            answer = await resolver.resolve(name, "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException:
            return None
        return [b"".join(r.strings).decode("ascii", "replace") for r in answer]

    return lookup


def _hours(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < 1e6:
        raise argparse.ArgumentTypeError(f"expected a number from 0, not {text!r}")
    return value * 3600.0


def _days(text: str) -> float:
    return _hours(text) * 24


async def cmd_rotate(config: Config, store: Store, args: argparse.Namespace) -> int:
    domain = await _local_domain(config, store, args.domain)
    rotation = Rotation(
        store=store,
        algorithms=config.dkim.algorithms,
        prefix=config.dkim.selector_prefix,
        publish_wait=config.dkim.publish_wait if args.wait is None else args.wait,
        retire_wait=config.dkim.retire_wait if args.keep is None else args.keep,
        lookup=None if args.skip_dns_check else txt_lookup(config),
    )
    step = await rotation.step(domain, skip_wait=args.now)
    out = sys.stdout if step.status == 0 else sys.stderr
    for line in step.lines:
        print(line, file=out)
    return step.status


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dkim = sub.add_parser("dkim", help="DKIM signing keys and their rotation").add_subparsers(
        dest="action", required=True
    )
    p = dkim.add_parser("create", help="a domain's first keys (RSA and Ed25519), signing at once")
    p.add_argument("domain")
    p.set_defaults(func=cmd_create)
    p = dkim.add_parser("list", help="keys, their state and the DNS record of each")
    p.add_argument("domain", nargs="?")
    p.set_defaults(func=cmd_list)
    p = dkim.add_parser(
        "rotate",
        help="replace a domain's keys, one step per run: publish, switch, retire",
    )
    p.add_argument("domain")
    p.add_argument(
        "--now", action="store_true", help="do not wait for DNS caches (tests, a leaked key)"
    )
    p.add_argument(
        "--wait",
        type=_hours,
        metavar="HOURS",
        help="between publishing and signing ([dkim] publish_wait)",
    )
    p.add_argument(
        "--keep",
        type=_days,
        metavar="DAYS",
        help="old keys stay in DNS this long ([dkim] retire_wait)",
    )
    p.add_argument(
        "--skip-dns-check",
        action="store_true",
        help="switch without looking the new records up (a resolver that cannot see the zone)",
    )
    p.set_defaults(func=cmd_rotate)
