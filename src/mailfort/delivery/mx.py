"""Where mail for a domain goes: MX records by preference, with the fallbacks RFC 5321 5.1 names.

- MX records sorted by preference; hosts of equal preference in random order (RFC 5321 5.1), so
  equal MX share the load.
- No MX records but the domain exists: the domain itself is the one host (the "implicit MX").
- A null MX, a single `MX 0 .` (RFC 7505): the domain accepts no mail; permanent, 5.1.10.
- The domain does not exist (NXDOMAIN): permanent, 5.1.2.
- SERVFAIL, timeouts, no usable name server: temporary, 4.4.3; the queue tries again later.

Addresses of a host: its A records, then its AAAA records. The resolver is passed in, never a
global; tests point it at their own name server on loopback.

A temporary failure (SERVFAIL, timeout) is the domain's DNS or ours. `working()` tells them apart:
it asks our name server for the root zone's NS records, bypassing the cache; any answer, even
NXDOMAIN, shows the name server works, so the failure was the domain's.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

STATUS_NULL_MX = "5.1.10"  # RFC 7505 4.2
STATUS_NO_DOMAIN = "5.1.2"  # RFC 3463: bad destination system address
STATUS_NO_ADDRESS = "5.4.4"  # unable to route
STATUS_DNS_TEMPORARY = "4.4.3"  # directory server failure
# How long one verdict of `working()` holds: during a flood of failures it asks once per period.
PROBE_SECONDS = 5.0
MAX_TLSA = 20  # TLSA records of one host looked at; more is an attack on our CPU


class DnsError(Exception):
    """A lookup that gives no host to connect to; `status` says whether to try again."""

    def __init__(self, status: str, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text

    @property
    def permanent(self) -> bool:
        return self.status.startswith("5")


@dataclass(frozen=True, slots=True)
class Tlsa:
    """One TLSA record (RFC 6698 2.1): certificate usage, selector, matching type, data."""

    usage: int
    selector: int
    mtype: int
    data: bytes


@dataclass(frozen=True, slots=True)
class MxHost:
    name: str
    preference: int


def order_mx(records: Sequence[MxHost], rng: random.Random | None = None) -> list[MxHost]:
    """By preference; shuffled within one preference (RFC 5321 5.1)."""
    rng = rng or random.Random()
    keyed = [(r.preference, rng.random(), r) for r in records]
    return [r for _, _, r in sorted(keyed, key=lambda k: (k[0], k[1]))]


def _loopback(resolver: dns.resolver.BaseResolver) -> bool:
    """Whether every name server `resolver` asks is on this machine."""
    addresses = [
        n if isinstance(n, str) else getattr(n, "address", "") for n in resolver.nameservers
    ]
    try:
        return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)
    except ValueError:  # a DoH URL or the like: not a local resolver
        return False


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


class MxResolver:
    def __init__(
        self,
        *,
        nameservers: Sequence[tuple[str, int]] = (),
        timeout: float = 10.0,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._nameservers = list(nameservers)
        self._timeout = timeout
        self._rng = rng or random.Random()
        self._clock = clock
        self._resolver: dns.asyncresolver.Resolver | None = None
        self._prober: dns.asyncresolver.Resolver | None = None
        self._secure: dns.asyncresolver.Resolver | None = None
        self._probe_lock = asyncio.Lock()
        self._verdict: tuple[float, bool] | None = None  # (when, working)

    def _new(self) -> dns.asyncresolver.Resolver:
        if self._nameservers:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [
                dns.nameserver.Do53Nameserver(address, port) for address, port in self._nameservers
            ]
        else:
            try:
                resolver = dns.asyncresolver.Resolver()
            except dns.exception.DNSException as exc:  # no /etc/resolv.conf
                raise DnsError(STATUS_DNS_TEMPORARY, f"no DNS resolver: {exc}") from None
        resolver.timeout = self._timeout
        resolver.lifetime = self._timeout
        return resolver

    def _get(self) -> dns.asyncresolver.Resolver:
        if self._resolver is None:
            resolver = self._new()
            # Answers are kept for their TTL: a burst of mail to one domain asks once.
            resolver.cache = dns.resolver.LRUCache(10_000)
            self._resolver = resolver
        return self._resolver

    async def working(self) -> bool:
        """Whether our name server answers at all (see the module docstring); one probe per
        `PROBE_SECONDS`, shared by every caller."""
        async with self._probe_lock:
            now = self._clock()
            if self._verdict is not None and now - self._verdict[0] < PROBE_SECONDS:
                return self._verdict[1]
            working = await self._probe()
            self._verdict = (self._clock(), working)
            return working

    async def _probe(self) -> bool:
        try:
            if self._prober is None:
                self._prober = self._new()  # no cache: the root's NS records live for days
            await self._prober.resolve(".", "NS", search=False, raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return True  # an answer, if an odd one: the name server works
        except (DnsError, dns.exception.DNSException):
            return False
        return True

    async def _query(self, name: str, rdtype: str) -> dns.resolver.Answer:
        try:
            return await self._get().resolve(name, rdtype, search=False, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            raise DnsError(STATUS_NO_DOMAIN, f"{name}: domain not found (NXDOMAIN)") from None
        except (dns.name.NameTooLong, dns.name.LabelTooLong, dns.name.EmptyLabel) as exc:
            raise DnsError(STATUS_NO_DOMAIN, f"{name}: not a domain name ({exc})") from None
        except dns.exception.Timeout:
            raise DnsError(STATUS_DNS_TEMPORARY, f"{name} {rdtype}: DNS timeout") from None
        except dns.exception.DNSException as exc:
            # NoNameservers (SERVFAIL, REFUSED from all), YXDOMAIN, malformed answers ...
            raise DnsError(STATUS_DNS_TEMPORARY, f"{name} {rdtype}: DNS failure ({exc})") from None

    async def mx_hosts(self, domain: str) -> list[MxHost]:
        """The hosts to try for `domain`, in order. Raises DnsError."""
        answer = await self._query(domain, "MX")
        records = [
            MxHost(r.exchange.to_text(omit_final_dot=True).lower(), int(r.preference))
            for r in (answer.rrset or ())
        ]
        if not records:
            return [MxHost(domain.lower().rstrip("."), 0)]  # implicit MX, RFC 5321 5.1
        real = [r for r in records if r.name not in ("", ".")]
        if not real:
            raise DnsError(STATUS_NULL_MX, f"{domain} does not accept mail (null MX, RFC 7505)")
        return order_mx(real, self._rng)

    async def txt(self, name: str, *, limit: int = 4096) -> list[str]:
        """The TXT records of `name`, each one's strings joined (RFC 7208 3.3); records longer
        than `limit` bytes are dropped. No record: []. Raises DnsError (NXDOMAIN permanent)."""
        answer = await self._query(name, "TXT")
        found = []
        for record in answer.rrset or ():
            data = b"".join(record.strings)
            if len(data) <= limit:
                found.append(data.decode("utf-8", "replace"))
        return found

    async def tlsa(self, name: str) -> tuple[list[Tlsa], bool]:
        """The TLSA records of `name` and whether the name server vouched for them: the AD flag
        (RFC 4035 3.2.3) from a validating resolver on loopback.
        Raises DnsError for SERVFAIL (a validating resolver's answer to a bogus signature)."""
        resolver = self._get_secure()
        try:
            answer = await resolver.resolve(name, "TLSA", search=False, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return [], False  # no records: DANE does not apply, vouched for or not
        except dns.exception.Timeout:
            raise DnsError(STATUS_DNS_TEMPORARY, f"{name} TLSA: DNS timeout") from None
        except dns.exception.DNSException as exc:
            raise DnsError(STATUS_DNS_TEMPORARY, f"{name} TLSA: DNS failure ({exc})") from None
        # The AD flag is worth what the path to the resolver is worth (RFC 4035 4.9.3): only
        # a resolver on this machine is believed; one across the network could have it forged.
        secure = bool(answer.response.flags & dns.flags.AD) and _loopback(resolver)
        records = [
            Tlsa(int(r.usage), int(r.selector), int(r.mtype), bytes(r.cert))
            for r in (answer.rrset or ())
        ]
        return records[:MAX_TLSA], secure

    def _get_secure(self) -> dns.asyncresolver.Resolver:
        if self._secure is None:
            resolver = self._new()
            # DO asks for DNSSEC records, AD asks the resolver to say whether it validated
            # (RFC 6840 5.7); its own cache keeps the AD flag with the answer.
            resolver.use_edns(0, dns.flags.DO, 1232)
            resolver.flags = dns.flags.RD | dns.flags.AD
            resolver.cache = dns.resolver.LRUCache(10_000)
            self._secure = resolver
        return self._secure

    async def addresses(self, host: str) -> list[str]:
        """IPv4 then IPv6 addresses of `host`. Raises DnsError when there are none."""
        literal = _literal(host)
        if literal is not None:
            return [literal]
        found: list[str] = []
        failure: DnsError | None = None
        for rdtype in ("A", "AAAA"):
            try:
                answer = await self._query(host, rdtype)
            except DnsError as exc:
                if exc.status == STATUS_NO_DOMAIN:
                    raise DnsError(STATUS_NO_ADDRESS, f"host {host} not found (NXDOMAIN)") from None
                failure = failure or exc
                continue
            found.extend(r.to_text() for r in (answer.rrset or ()))
        if found:
            return found
        if failure is not None:
            raise failure
        raise DnsError(STATUS_NO_ADDRESS, f"host {host} has no address (A/AAAA) records")
