"""DMARC (RFC 7489): does an authenticated identity align with the author's domain, and what
does that domain ask receivers to do when none does.

- The policy record: TXT at `_dmarc.<From domain>`, else at `_dmarc.<organisational domain>`
  (RFC 7489 6.6.3), the organisational domain being the registrable one by the Public Suffix
  List (3.2; the `publicsuffixlist` package, which ships the list).
- Alignment (3.1): relaxed when both organisational domains are equal, strict when the domains
  are; DMARC passes when an SPF pass or a DKIM pass is aligned.
- The policy applied: `sp` for a subdomain found through its organisational domain's record,
  else `p`; `pct` samples, and a message outside the sample gets the next milder policy (6.6.4).
- Several From: addresses: each domain is checked and the strictest policy among those that
  fail applies (6.6.1). No From: at all (or one that cannot be parsed) is outside DMARC: the
  result says so and no policy applies.
- DNS failure looking up the record is `temperror`, never a fail.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from publicsuffixlist import PublicSuffixList

from mailfort.trust.dns import BadName, DnsFailure, TrustResolver, TxtTooLarge
from mailfort.trust.spf import Result as SpfVerdict
from mailfort.trust.spf import SpfResult

# Distinct author domains checked in one message: a From: of fifty domains must not cost a
# hundred lookups (a legitimate message has one author, rarely a few).
MAX_AUTHOR_DOMAINS: Final = 5


class Policy(IntEnum):
    """Ordered by severity: `max` picks the strictest."""

    NONE = 0
    QUARANTINE = 1
    REJECT = 2

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Policy | None:
        return {"none": cls.NONE, "quarantine": cls.QUARANTINE, "reject": cls.REJECT}.get(
            text.strip().lower()
        )


@dataclass(frozen=True, slots=True)
class Record:
    p: Policy
    sp: Policy
    pct: int = 100
    adkim_strict: bool = False
    aspf_strict: bool = False


@dataclass(frozen=True, slots=True)
class Signed:
    """A DKIM signature's verdict as DMARC needs it."""

    domain: str
    passed: bool


@dataclass(frozen=True, slots=True)
class DmarcResult:
    result: str  # pass | fail | none | temperror | permerror
    from_domain: str
    published: Policy | None = None  # the p= (or sp=) the domain publishes
    applied: Policy = Policy.NONE  # what to do with the message, after pct
    reason: str = ""


_PSL: Final = functools.cache(PublicSuffixList)


def org_domain(domain: str) -> str:
    """RFC 7489 3.2: the public suffix plus one label; the domain itself when it is a suffix."""
    domain = domain.lower().rstrip(".")
    return _PSL().privatesuffix(domain) or domain


def aligned(identity: str, author: str, strict: bool) -> bool:
    identity, author = identity.lower().rstrip("."), author.lower().rstrip(".")
    if strict:
        return identity == author
    return org_domain(identity) == org_domain(author)


def parse_record(text: str) -> Record | None:
    """A DMARC record, or None when it is not one DMARC processing can use (RFC 7489 6.3)."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        key, eq, value = part.partition("=")
        if eq:
            tags.setdefault(key.strip().lower(), value.strip())
    if text.split(";", 1)[0].replace(" ", "") != "v=DMARC1":
        return None
    p = Policy.parse(tags.get("p", ""))
    sp = Policy.parse(tags["sp"]) if "sp" in tags else p
    if p is None or sp is None:
        # 6.6.3: without a valid p (or with a bad sp), a record that names a report address
        # counts as p=none; otherwise there is no record to apply.
        if "rua" not in tags:
            return None
        p = p if p is not None else Policy.NONE
        sp = sp if sp is not None else p
    try:
        pct = int(tags.get("pct", "100"))
    except ValueError:
        pct = 100
    return Record(
        p=p,
        sp=sp,
        pct=pct if 0 <= pct <= 100 else 100,
        adkim_strict=tags.get("adkim", "r").lower() == "s",
        aspf_strict=tags.get("aspf", "r").lower() == "s",
    )


class _Temporary(Exception):
    pass


async def _lookup(resolver: TrustResolver, domain: str) -> Record | None:
    try:
        answer = await resolver.txt(f"_dmarc.{domain}")
    except DnsFailure as exc:
        raise _Temporary(str(exc)) from None
    except (TxtTooLarge, BadName):
        return None
    found = [r for r in answer.records if r.replace(" ", "").startswith("v=DMARC1")]
    if len(found) != 1:
        return None  # 6.6.3: none, or several, is no policy
    return parse_record(found[0])


async def discover(resolver: TrustResolver, domain: str) -> tuple[Record | None, bool]:
    """The record for `domain`, and whether it came from the organisational domain."""
    record = await _lookup(resolver, domain)
    if record is not None:
        return record, False
    org = org_domain(domain)
    if org == domain:
        return None, False
    return await _lookup(resolver, org), True


async def check_dmarc(
    resolver: TrustResolver,
    from_domains: Sequence[str],
    spf: SpfResult,
    dkim: Iterable[Signed],
    rng: random.Random | None = None,
    timeout: float = 20.0,
) -> DmarcResult:
    """`from_domains`: the domains of the From: addresses; empty when there is no usable From:.
    At most `MAX_AUTHOR_DOMAINS` of them are looked up (two lookups each), all within
    `timeout` seconds, else temperror."""
    if not from_domains:
        return DmarcResult("none", "", reason="no usable From: address")
    rng = rng or random.Random()
    signed = list(dkim)
    domains = list(dict.fromkeys(d.lower() for d in from_domains))[:MAX_AUTHOR_DOMAINS]
    try:
        async with asyncio.timeout(timeout):
            results = [await _one(resolver, d, spf, signed, rng) for d in domains]
    except TimeoutError:
        return DmarcResult("temperror", domains[0], reason=f"no verdict within {timeout:g} s")
    failed = [r for r in results if r.result != "pass"]
    if not failed:
        return results[0]
    return max(failed, key=lambda r: (r.applied, r.result == "temperror"))


async def _one(
    resolver: TrustResolver, domain: str, spf: SpfResult, signed: list[Signed], rng: random.Random
) -> DmarcResult:
    try:
        record, inherited = await discover(resolver, domain)
    except _Temporary as exc:
        return DmarcResult("temperror", domain, reason=str(exc))
    if record is None:
        return DmarcResult("none", domain)
    published = record.sp if inherited else record.p
    spf_ok = spf.result is SpfVerdict.PASS and aligned(spf.domain, domain, record.aspf_strict)
    dkim_ok = any(s.passed and aligned(s.domain, domain, record.adkim_strict) for s in signed)
    if spf_ok or dkim_ok:
        return DmarcResult("pass", domain, published)
    applied = published
    if record.pct < 100 and rng.random() * 100 >= record.pct:
        applied = Policy(max(published - 1, 0))  # 6.6.4: outside the sample, one step milder
    return DmarcResult("fail", domain, published, applied)
