"""Whether the node's `hostname` can stand in front of the internet: it is the HELO/EHLO name of
every outgoing connection (`[delivery] helo_name` defaults to it), and receivers reject or junk
mail from a HELO name that is `localhost`, not fully qualified, or does not resolve (Gmail,
Yahoo and Microsoft check it beside forward-confirmed reverse DNS)."""

from __future__ import annotations

import asyncio
import logging

from mailfort.config import Config
from mailfort.delivery.transport import parse_nexthop
from mailfort.ops.lookup import Lookup, Unchecked, make_resolver

log = logging.getLogger("mailfort.node")

# The start of a node waits for nothing: the check runs beside it and gives up after this.
CHECK_SECONDS = 3.0


def hostname_problem(hostname: str) -> str:
    """Why `hostname` cannot be a public mail host's name, or "" (no lookups)."""
    name = hostname.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return f"hostname is {hostname!r}"
    if "." not in name:
        return f"hostname {hostname!r} is not a fully qualified domain name"
    return ""


async def helo_problem(config: Config, timeout: float = CHECK_SECONDS) -> str:
    """Why receivers would distrust our HELO name, or "": `hostname_problem`, else whether it
    resolves through the resolver delivery uses ([delivery] dns_nameservers), within `timeout`."""
    helo = config.delivery.helo_name or config.hostname
    problem = hostname_problem(helo)
    if problem:
        return problem
    servers = [parse_nexthop(n, default_port=53) for n in config.delivery.dns_nameservers]
    try:
        async with asyncio.timeout(timeout):
            lookup = Lookup(make_resolver([(s.host, s.port) for s in servers], timeout))
            found = await lookup.addresses(helo.rstrip(".") + ".")
    except (Unchecked, TimeoutError):
        return f"could not resolve {helo} within {timeout:g} s"
    return "" if found else f"{helo} does not resolve (no A/AAAA record)"


async def warn_about_helo(config: Config) -> None:
    """One warning line in the log when `helo_problem` finds one."""
    problem = await helo_problem(config)
    if problem:
        log.warning(
            "event=helo_name_unfit helo=%s hint=%s: outgoing mail gives this name in HELO/EHLO,"
            " and receivers junk or refuse mail from a name that is not public and resolving;"
            " set `hostname` and publish its A/AAAA record (mailfort dns records)",
            config.delivery.helo_name or config.hostname,
            problem,
        )
