"""`mailfort dns check`: each record `records.domain_records` says a domain needs, looked up and
judged ok, missing, wrong (with what was found and what to change) or "could not check".

Beyond "is it there": one SPF record only (RFC 7208 4.5) within 10 DNS-querying terms (4.6.4,
includes followed), DMARC syntax (RFC 7489 6.3-6.4), the DKIM key in DNS is the store's, MX
hosts resolve to this node, and each node address has forward-confirmed reverse DNS.

Every check runs at once under one deadline; a lookup that times out makes its check
"could not check", never "wrong" (`lookup.Unchecked`).
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from mailfort.ops.lookup import Lookup, Unchecked
from mailfort.ops.records import Record, fqdn

SPF_LOOKUP_LIMIT = 10  # RFC 7208 4.6.4
_SPF_LOOKUP_TERMS = re.compile(r"^[+\-~?]?(include:|a\b|mx\b|ptr\b|exists:|redirect=)", re.I)
SHOWN = 200  # characters of a found value shown in a finding


class Verdict(enum.Enum):
    OK = "ok"
    MISSING = "missing"
    WRONG = "wrong"
    UNCHECKED = "could not check"


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    record: Record
    verdict: Verdict
    found: str = ""  # what DNS holds, when it matters
    fix: str = ""  # exactly what to change

    @property
    def failed(self) -> bool:
        return self.verdict in (Verdict.MISSING, Verdict.WRONG)


def _shown(values: Sequence[str]) -> str:
    text = " | ".join(values)
    return text if len(text) <= SHOWN else text[:SHOWN] + f"... ({len(text)} characters)"


def _publish(record: Record) -> str:
    return f"publish: {record.line()}"


def _tags(text: str) -> dict[str, str]:
    """`tag=value; ...` (RFC 6376 3.2, RFC 7489 6.4), keys lower case. Raises ValueError."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{part.strip()!r} is not tag=value")
        tags[key.strip().lower()] = value.strip()
    return tags


def _tag(text: str, name: str) -> str:
    """One tag's value; "" when it is absent or the record is not tag=value syntax."""
    try:
        return _tags(text).get(name, "")
    except ValueError:
        return ""


class _Judged(Exception):
    """A check's verdict reached before its end."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.verdict.value)
        self.finding = finding


class DomainCheck:
    """Judges `records` against what `lookup` finds; `node_addresses` are this node's."""

    def __init__(self, lookup: Lookup, records: Sequence[Record], node_addresses: Sequence[str]):
        self.lookup = lookup
        self.records = records
        self.node_addresses = set(node_addresses)
        self._checks: dict[str, Callable[[Record], Awaitable[Finding]]] = {
            "mx": self.mx,
            "spf": self.spf,
            "dkim": self.dkim,
            "dmarc": self.dmarc,
            "mta-sts": self.mta_sts,
            "tlsrpt": self.tlsrpt,
            "alias": self.alias,
            "srv": self.srv,
            "address": self.address,
            "ptr": self.ptr,
            "provider-spf": self.exact_txt,
            "dmarc-report": self.exact_txt,
        }

    async def run(self, deadline: float) -> list[Finding]:
        return list(await asyncio.gather(*(self._one(r, deadline) for r in self.records)))

    async def _one(self, record: Record, deadline: float) -> Finding:
        try:
            async with asyncio.timeout(deadline):
                return await self._checks[record.kind](record)
        except _Judged as judged:
            return judged.finding
        except Unchecked as exc:
            return Finding(record=record, verdict=Verdict.UNCHECKED, found=str(exc))
        except TimeoutError:
            reason = f"no verdict within {deadline:g} s"
            return Finding(record=record, verdict=Verdict.UNCHECKED, found=reason)

    # -- the checks, one per kind of record --------------------------------------------------
    async def mx(self, record: Record) -> Finding:
        found = await self.lookup.get(record.name, "MX")
        want = record.value.split()[1]
        if not found:
            return Finding(record=record, verdict=Verdict.MISSING, fix=_publish(record))
        hosts = [r.exchange.to_text().lower() for r in found]  # type: ignore[attr-defined]
        shown = _shown([r.to_text() for r in found])
        if want not in hosts:
            return Finding(
                record=record,
                verdict=Verdict.WRONG,
                found=shown,
                fix=f"point the MX at this node: replace {shown} with {record.value}",
            )
        if self.node_addresses:
            addresses = set(await self.lookup.addresses(want))
            if not addresses & self.node_addresses:
                nodes = ", ".join(sorted(self.node_addresses))
                return Finding(
                    record=record,
                    verdict=Verdict.WRONG,
                    found=f"{want} has the addresses {_shown(sorted(addresses)) or '(none)'}",
                    fix=f"give {want} the node's address ({nodes}) in its A/AAAA records",
                )
        return Finding(record=record, verdict=Verdict.OK, found=shown)

    async def _single(self, record: Record, prefix: str, rfc: str) -> str:
        """The one TXT record at `record.name` starting with `prefix`; none, or several (each of
        these RFCs treats several as none), is the check's verdict (`_Judged`)."""
        texts = await self.lookup.texts(record.name) or []
        matching = [t for t in texts if t.lower().startswith(prefix.lower())]
        if not matching:
            found = _shown(texts) if texts else ""
            raise _Judged(
                Finding(record=record, verdict=Verdict.MISSING, found=found, fix=_publish(record))
            )
        if len(matching) > 1:
            raise _Judged(
                Finding(
                    record=record,
                    verdict=Verdict.WRONG,
                    found=f"{len(matching)} records: {_shown(matching)}",
                    fix=f"keep one ({rfc} makes several count as none): {record.line()}",
                )
            )
        return matching[0]

    async def spf(self, record: Record) -> Finding:
        text = await self._single(record, "v=spf1", "RFC 7208 4.5")
        if not (text.lower() == "v=spf1" or text.lower().startswith("v=spf1 ")):
            return _wrong(record, text, "the record must start with 'v=spf1 '")
        terms = text.split()[1:]
        wanted = [t for t in record.text.split()[1:] if not t.endswith("all")]
        missing = [t for t in wanted if t.lower() not in (x.lower() for x in terms)]
        if missing:
            return _wrong(
                record, text, f"add {' '.join(missing)} before the 'all' term: {record.line()}"
            )
        if any(t.lower() in ("all", "+all") for t in terms):
            return _wrong(record, text, "'+all' lets anyone send as the domain: end with -all")
        count = await self.spf_lookups(text, 0, {record.name})
        if count > SPF_LOOKUP_LIMIT:
            return _wrong(
                record,
                text,
                f"it needs more than {SPF_LOOKUP_LIMIT} DNS lookups (RFC 7208 4.6.4: receivers"
                " fail it): replace includes by ip4:/ip6: terms",
            )
        return Finding(record=record, verdict=Verdict.OK, found=f"{text} ({count} lookups)")

    async def spf_lookups(self, text: str, counted: int, seen: set[str]) -> int:
        """Terms of `text` and the records it includes that cost a DNS query (RFC 7208 4.6.4),
        counted up to one past the limit; a loop counts until then."""
        for term in text.split()[1:]:
            if not _SPF_LOOKUP_TERMS.match(term):
                continue
            counted += 1
            if counted > SPF_LOOKUP_LIMIT:
                return counted
            target = term.split(":", 1)[1] if ":" in term else term.partition("=")[2]
            if term.lower().lstrip("+-~?").startswith(("include:", "redirect=")) and target:
                name = fqdn(target)
                texts = await self.lookup.texts(name) or []
                included = [t for t in texts if t.lower().startswith("v=spf1")]
                if len(included) == 1:
                    seen.add(name)
                    counted = await self.spf_lookups(included[0], counted, seen)
                    if counted > SPF_LOOKUP_LIMIT:
                        return counted
        return counted

    async def dkim(self, record: Record) -> Finding:
        texts = await self.lookup.texts(record.name) or []
        keys = [t for t in texts if "p=" in t]
        if not keys:
            return Finding(record=record, verdict=Verdict.MISSING, fix=_publish(record))
        want = _tags(record.text)["p"]
        for text in keys:
            try:
                if "".join(_tags(text).get("p", "").split()) == want:
                    return Finding(record=record, verdict=Verdict.OK)
            except ValueError:
                continue
        return _wrong(
            record, _shown(keys), f"the key differs from the store's; replace it: {record.line()}"
        )

    async def dmarc(self, record: Record) -> Finding:
        text = await self._single(record, "v=DMARC1", "RFC 7489 6.6.3")
        error = dmarc_error(text)
        if error:
            return _wrong(record, text, f"{error}; for example: {record.line()}")
        policy = _tags(text)["p"].lower()
        wanted = _tags(record.text)["p"]
        note = "" if policy == wanted else f" (p={policy}; the suggested start is p={wanted})"
        return Finding(record=record, verdict=Verdict.OK, found=text + note)

    async def mta_sts(self, record: Record) -> Finding:
        text = await self._single(record, "v=STSv1", "RFC 8461 3.1")
        if _tag(text, "id") != _tag(record.text, "id"):
            return _wrong(
                record,
                text,
                f"the id must change with the policy (senders re-read it then): {record.line()}",
            )
        return Finding(record=record, verdict=Verdict.OK)

    async def tlsrpt(self, record: Record) -> Finding:
        text = await self._single(record, "v=TLSRPTv1", "RFC 8460 3")
        rua = _tag(text, "rua")
        if not all(u.strip().startswith(("mailto:", "https:")) for u in rua.split(",") if rua):
            return _wrong(record, text, f"rua= needs mailto: or https: URIs: {record.line()}")
        if not rua:
            return _wrong(record, text, f"rua= is required (RFC 8460 3): {record.line()}")
        return Finding(record=record, verdict=Verdict.OK)

    async def exact_txt(self, record: Record) -> Finding:
        texts = await self.lookup.texts(record.name) or []
        if record.text in texts:
            return Finding(record=record, verdict=Verdict.OK)
        if not texts:
            return Finding(record=record, verdict=Verdict.MISSING, fix=_publish(record))
        return _wrong(record, _shown(texts), _publish(record))

    async def alias(self, record: Record) -> Finding:
        """A CNAME to the node, or A/AAAA records holding a node's address: both work."""
        targets = await self.lookup.names(record.name, "CNAME")
        if targets:
            if record.value in targets:
                return Finding(record=record, verdict=Verdict.OK)
            return _wrong(record, _shown(targets), _publish(record))
        addresses = await self.lookup.addresses(record.name)
        if not addresses:
            return Finding(record=record, verdict=Verdict.MISSING, fix=_publish(record))
        if set(addresses) & (self.node_addresses or set(await self.lookup.addresses(record.value))):
            return Finding(record=record, verdict=Verdict.OK, found=_shown(addresses))
        return _wrong(record, _shown(addresses), _publish(record))

    async def srv(self, record: Record) -> Finding:
        found = await self.lookup.get(record.name, "SRV")
        if not found:
            return Finding(record=record, verdict=Verdict.MISSING, fix=_publish(record))
        _, _, port, target = record.value.split()
        for r in found:
            if r.port == int(port) and r.target.to_text().lower() == target:  # type: ignore[attr-defined]
                return Finding(record=record, verdict=Verdict.OK)
        return _wrong(record, _shown([r.to_text() for r in found]), _publish(record))

    async def address(self, record: Record) -> Finding:
        found = await self.lookup.get(record.name, record.rtype)
        values = [r.to_text() for r in found or ()]
        if record.value in values:
            return Finding(record=record, verdict=Verdict.OK)
        if not values:
            return Finding(record=record, verdict=Verdict.MISSING, fix=_publish(record))
        return _wrong(record, _shown(values), f"add {record.value} to it: {record.line()}")

    async def ptr(self, record: Record) -> Finding:
        """Forward-confirmed reverse DNS: the address's PTR names `hostname`, and that name's
        A/AAAA records hold the address (what receivers check, RFC 8601 2.7.3 "iprev")."""
        address = _address_of(record.name)
        targets = await self.lookup.names(record.name, "PTR")
        owner = "ask whoever hosts the address (the provider's panel) to set"
        if not targets:
            return Finding(record=record, verdict=Verdict.MISSING, fix=f"{owner}: {record.line()}")
        if record.value not in targets:
            return _wrong(record, _shown(targets), f"{owner}: {record.line()}")
        forward = await self.lookup.addresses(record.value)
        if address not in forward:
            return _wrong(
                record,
                f"{record.value} resolves to {_shown(forward) or 'nothing'}",
                f"add {address} to the A/AAAA records of {record.value} (forward confirmation)",
            )
        return Finding(record=record, verdict=Verdict.OK)


def _wrong(record: Record, found: str, fix: str) -> Finding:
    return Finding(record=record, verdict=Verdict.WRONG, found=_shown([found]), fix=fix)


def _address_of(reverse_name: str) -> str:
    labels = reverse_name.rstrip(".").split(".")
    if reverse_name.endswith(".in-addr.arpa."):
        return ".".join(reversed(labels[:4]))
    nibbles = "".join(reversed(labels[:32]))
    return str(ipaddress.IPv6Address(int(nibbles, 16))) if len(nibbles) == 32 else ""


def dmarc_error(text: str) -> str:
    """What is wrong with a DMARC record's syntax (RFC 7489 6.3, 6.4), or "" if nothing."""
    try:
        tags = _tags(text)
    except ValueError as exc:
        return str(exc)
    if not text.lstrip().startswith("v=DMARC1") or tags.get("v") != "DMARC1":
        return "the record must start with v=DMARC1"
    if tags.get("p", "").lower() not in ("none", "quarantine", "reject"):
        return "p= must be none, quarantine or reject"
    if tags.get("sp", "none").lower() not in ("none", "quarantine", "reject"):
        return "sp= must be none, quarantine or reject"
    for key in ("adkim", "aspf"):
        if tags.get(key, "r").lower() not in ("r", "s"):
            return f"{key}= must be r or s"
    pct = tags.get("pct", "100")
    if not pct.isdigit() or int(pct) > 100:
        return "pct= must be 0 to 100"
    for key in ("rua", "ruf"):
        for uri in filter(None, (u.strip() for u in tags.get(key, "").split(","))):
            if not uri.lower().startswith(("mailto:", "https:")):
                return f"{key}= holds {uri!r}, not a mailto: URI"
    return ""


def format_findings(domain: str, findings: Sequence[Finding]) -> str:
    lines = [f"DNS check of {domain}:"]
    width = max(len(v.value) for v in Verdict)
    for f in findings:
        what = f"{f.record.rtype} {f.record.name}"
        lines.append(f"{f.verdict.value:<{width}}  {what}  ({f.record.purpose})")
        if f.found and f.verdict is not Verdict.OK:
            label = "why" if f.verdict is Verdict.UNCHECKED else "found"
            lines.append(f"{'':<{width}}    {label}: {f.found}")
        if f.fix:
            lines.append(f"{'':<{width}}    fix: {f.fix}")
    counts = {v: sum(1 for f in findings if f.verdict is v) for v in Verdict}
    lines.append(", ".join(f"{n} {v.value}" for v, n in counts.items()))
    return "\n".join(lines)
