"""The DNS lookups of the checks of incoming mail: bounded in time and size, cached by TTL.

SPF, DKIM, DMARC and ARC ask for TXT, A, AAAA, MX and PTR records of names a stranger chooses.
Every lookup here:
- has one timeout (`timeout`, the whole query with its retries): a name server that never
  answers costs that much and no more, and becomes a temporary failure (`DnsFailure`), never a
  permanent verdict;
- is cached for its TTL (at most `MAX_TTL`) in a cache of bounded size (least recently used
  names leave first); NXDOMAIN and empty answers are cached too (RFC 2308), for the SOA's
  negative TTL when the answer carries one, so a flood of mail from one domain asks once;
- is shared while in flight: concurrent callers asking the same question wait for one query;
- keeps at most `max_txt` octets of TXT strings per name (RFC 7208 3.4 lets a receiver refuse
  larger SPF answers; DKIM keys and DMARC records are far smaller): a larger answer is
  `TxtTooLarge`, which the checks turn into their permanent error.

Temporary failures are not cached: the next message asks again (the timeout bounds each ask).
The resolver is configured like delivery's `MxResolver`: `[delivery] dns_nameservers`, or the
machine's /etc/resolv.conf.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
import dns.reversename

# Longest a cached answer is kept, whatever its TTL says.
MAX_TTL: Final = 3600.0
# A negative answer without an SOA to say how long it holds.
NEGATIVE_TTL: Final = 60.0
# Octets of TXT strings per name past which the answer is refused (RFC 7208 3.4 allows it).
MAX_TXT: Final = 4096


class DnsFailure(Exception):
    """A temporary failure: timeout, SERVFAIL, no name server answered (a temperror)."""


class TxtTooLarge(Exception):
    """A TXT answer larger than the bound: a permanent error for the check that asked."""


class BadName(Exception):
    """The name to look up is not a domain name (too long, an empty or overlong label)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """The records found (as text), or none: `nxdomain` when the name does not exist."""

    records: tuple[str, ...]
    nxdomain: bool = False

    @property
    def void(self) -> bool:
        """RFC 7208 4.6.4: NXDOMAIN or no records of the type asked."""
        return not self.records


class TrustResolver:
    def __init__(
        self,
        *,
        nameservers: Sequence[tuple[str, int]] = (),
        timeout: float = 5.0,
        cache_size: int = 10_000,
        max_txt: int = MAX_TXT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._nameservers = list(nameservers)
        self._timeout = timeout
        self._cache_size = cache_size
        self.max_txt = max_txt
        self._clock = clock
        self._cache: OrderedDict[tuple[str, str], tuple[float, Answer | TxtTooLarge]] = (
            OrderedDict()
        )
        self._flying: dict[tuple[str, str], asyncio.Future[Answer | TxtTooLarge]] = {}
        self._resolver: dns.asyncresolver.Resolver | None = None
        self.queries = 0  # questions sent (cache misses), for tests and metrics

    def _get(self) -> dns.asyncresolver.Resolver:
        if self._resolver is None:
            if self._nameservers:
                resolver = dns.asyncresolver.Resolver(configure=False)
                resolver.nameservers = [
                    dns.nameserver.Do53Nameserver(address, port)
                    for address, port in self._nameservers
                ]
            else:
                try:
                    resolver = dns.asyncresolver.Resolver()
                except dns.exception.DNSException as exc:  # no /etc/resolv.conf
                    raise DnsFailure(f"no DNS resolver: {exc}") from None
            resolver.timeout = self._timeout
            resolver.lifetime = self._timeout
            resolver.cache = None  # ours, below, also keeps negative answers and size errors
            self._resolver = resolver
        return self._resolver

    # -- the record types the checks ask for -------------------------------------------------
    async def txt(self, name: str) -> Answer:
        """TXT records, each record's strings joined (RFC 7208 3.3, RFC 6376 3.6.2.2)."""
        return await self._lookup(name, "TXT")

    async def addresses(self, name: str, rdtype: str) -> Answer:
        """A or AAAA records of `name`."""
        return await self._lookup(name, rdtype)

    async def mx(self, name: str) -> Answer:
        """The exchange names of `name`'s MX records (preference does not matter to SPF)."""
        return await self._lookup(name, "MX")

    async def ptr(self, ip: str) -> Answer:
        try:
            name = dns.reversename.from_address(ip).to_text()
        except (dns.exception.SyntaxError, ValueError):
            raise BadName(ip) from None
        return await self._lookup(name, "PTR")

    # -- the cache ---------------------------------------------------------------------------
    async def _lookup(self, name: str, rdtype: str) -> Answer:
        key = (name.lower().rstrip("."), rdtype)
        cached = self._cache.get(key)
        if cached is not None:
            if cached[0] > self._clock():
                self._cache.move_to_end(key)
                return _unwrap(cached[1])
            del self._cache[key]
        flying = self._flying.get(key)
        if flying is None:
            flying = asyncio.get_running_loop().create_future()
            self._flying[key] = flying
            try:
                found, ttl = await self._query(key[0], rdtype)
            except BaseException as exc:
                flying.set_exception(exc if isinstance(exc, Exception) else DnsFailure("stopped"))
                flying.exception()  # retrieved: a lone caller must not leave it unobserved
                raise
            finally:
                del self._flying[key]
            flying.set_result(found)
            self._remember(key, found, ttl)
            return _unwrap(found)
        return _unwrap(await asyncio.shield(flying))

    def _remember(self, key: tuple[str, str], found: Answer | TxtTooLarge, ttl: float) -> None:
        if ttl <= 0:
            return
        self._cache[key] = (self._clock() + min(ttl, MAX_TTL), found)
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def _query(self, name: str, rdtype: str) -> tuple[Answer | TxtTooLarge, float]:
        try:
            qname = dns.name.from_text(name)
        except dns.exception.DNSException:
            raise BadName(name) from None
        self.queries += 1
        try:
            answer = await self._get().resolve(
                qname, rdtype, search=False, raise_on_no_answer=False
            )
        except dns.resolver.NXDOMAIN as exc:
            return Answer((), nxdomain=True), _negative_ttl(exc.responses().values())  # type: ignore[no-untyped-call]
        except dns.exception.Timeout:
            raise DnsFailure(f"{name} {rdtype}: timeout") from None
        except dns.exception.DNSException as exc:
            # NoNameservers (SERVFAIL, REFUSED), YXDOMAIN, a malformed answer ...
            raise DnsFailure(f"{name} {rdtype}: {exc}") from None
        if answer.rrset is None:
            return Answer(()), _negative_ttl([answer.response])
        ttl = float(answer.rrset.ttl)
        if rdtype == "TXT":
            records = []
            total = 0
            for rdata in answer.rrset:
                strings: list[bytes] = list(rdata.strings)
                total += sum(len(s) for s in strings)
                if total > self.max_txt:
                    return TxtTooLarge(f"{name}: TXT answer over {self.max_txt} octets"), ttl
                records.append(b"".join(strings).decode("utf-8", "replace"))
            return Answer(tuple(records)), ttl
        if rdtype == "MX":
            names = (r.exchange.to_text(omit_final_dot=True) for r in answer.rrset)
            return Answer(tuple(names)), ttl
        if rdtype == "PTR":
            targets = (r.target.to_text(omit_final_dot=True) for r in answer.rrset)
            return Answer(tuple(targets)), ttl
        return Answer(tuple(r.to_text() for r in answer.rrset)), ttl


def _unwrap(found: Answer | TxtTooLarge) -> Answer:
    if isinstance(found, TxtTooLarge):
        raise TxtTooLarge(str(found))  # a fresh one: a cached exception must not grow a traceback
    return found


def _negative_ttl(responses: object) -> float:
    """RFC 2308 5: the SOA's TTL, at most its MINIMUM field; `NEGATIVE_TTL` without one."""
    for response in responses:  # type: ignore[attr-defined]
        if not isinstance(response, dns.message.Message):
            continue
        for rrset in response.authority:
            if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
                return float(min(rrset.ttl, rrset[0].minimum))
    return NEGATIVE_TTL
