"""DNS lookups for the operator's checks, bounded in time, count and size.

Every answer is either records, "nothing there" (`None`: NXDOMAIN or no records of the type), or
`Unchecked` — a timeout, SERVFAIL, or an answer too large to be a real record. The checks turn
`Unchecked` into "could not check", never into "wrong": a slow name server says nothing about
what is published.
"""

from __future__ import annotations

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdata
import dns.resolver

# Larger than any record these checks read (an SPF record must fit 450 octets, RFC 7208 3.4; a
# 4096-bit RSA DKIM key is ~750): a bigger answer is a mistake or an attack, not parsed.
MAX_ANSWER_OCTETS = 8192
# Queries one `dns check` may make in all (its records, SPF includes, MX and PTR targets).
MAX_QUERIES = 200


class Unchecked(Exception):
    """The lookup gave no verdict; `str()` says why."""


def make_resolver(nameservers: list[tuple[str, int]], timeout: float) -> dns.asyncresolver.Resolver:
    """From `nameservers` ("[delivery] dns_nameservers", `--nameserver`), else the system's."""
    if nameservers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(a, p) for a, p in nameservers]
    else:
        try:
            resolver = dns.asyncresolver.Resolver()
        except dns.exception.DNSException as exc:  # no /etc/resolv.conf
            raise Unchecked(f"no DNS resolver: {exc}") from None
    resolver.timeout = timeout
    resolver.lifetime = timeout
    resolver.cache = dns.resolver.LRUCache(1000)
    return resolver


class Lookup:
    def __init__(self, resolver: dns.asyncresolver.Resolver) -> None:
        self._resolver = resolver
        self.queries = 0

    @property
    def timeout(self) -> float:
        return float(self._resolver.lifetime)

    async def get(self, name: str, rdtype: str) -> list[dns.rdata.Rdata] | None:
        """The records of `rdtype` at `name`; None when there are none. Raises Unchecked."""
        self.queries += 1
        if self.queries > MAX_QUERIES:
            raise Unchecked(f"more than {MAX_QUERIES} DNS queries")
        try:
            answer = await self._resolver.resolve(
                name, rdtype, search=False, raise_on_no_answer=False
            )
        except dns.resolver.NXDOMAIN:
            return None
        except dns.exception.Timeout:
            raise Unchecked(
                f"{name} {rdtype}: no answer within {self._resolver.lifetime:g} s"
            ) from None
        except (dns.name.NameTooLong, dns.name.LabelTooLong, dns.name.EmptyLabel) as exc:
            raise Unchecked(f"{name}: not a domain name ({exc})") from None
        except dns.resolver.NoNameservers:
            raise Unchecked(f"{name} {rdtype}: the name servers failed (SERVFAIL)") from None
        except dns.exception.DNSException as exc:
            raise Unchecked(f"{name} {rdtype}: {exc}") from None
        rrset = answer.rrset
        if rrset is None or len(rrset) == 0:
            return None
        size = sum(len(r.to_wire()) for r in rrset)
        if size > MAX_ANSWER_OCTETS:
            raise Unchecked(
                f"{name} {rdtype}: the answer holds {size} octets, more than any such record"
                f" ({MAX_ANSWER_OCTETS}); look at it with: dig {name} {rdtype}"
            )
        return list(rrset)

    async def texts(self, name: str) -> list[str] | None:
        """The TXT records at `name`, each one string (RFC 7208 3.3: its parts joined)."""
        found = await self.get(name, "TXT")
        if found is None:
            return None
        return [
            b"".join(r.strings).decode("utf-8", "replace")  # type: ignore[attr-defined]
            for r in found
        ]

    async def names(self, name: str, rdtype: str) -> list[str] | None:
        """Targets of CNAME/PTR records, lower case with the final dot."""
        found = await self.get(name, rdtype)
        if found is None:
            return None
        return [r.target.to_text().lower() for r in found]  # type: ignore[attr-defined]

    async def addresses(self, host: str) -> list[str]:
        """A then AAAA records of `host`; empty when it has none."""
        found: list[str] = []
        for rdtype in ("A", "AAAA"):
            records = await self.get(host, rdtype)
            found += [r.to_text() for r in records or ()]
        return found
