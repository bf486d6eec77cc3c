"""The checks of mail arriving at the MX, and what the node does with their verdict.

`Verifier.check` runs SPF (`spf.py`), DKIM and ARC (`dkim_check.py`) and DMARC (`dmarc.py`) for
one message, and gives back a `Verdict`: the Authentication-Results field to prepend
(`authres.py`), the forged ones to cut out, and per recipient domain what to do:

- DMARC fail with p=reject (after pct): refuse (550 5.7.1), unless the settings say otherwise;
  with p=quarantine: file to the recipient's Junk mailbox; the settings cap both, per local
  domain (`VerifySettings.caps`: a domain that wants everything delivered says "none");
- a DMARC verdict that a DNS failure may have changed (the record could not be fetched, or it
  failed while SPF or a DKIM key lookup hit a temporary error): `defer` (451 4.7.x, the sender
  tries again) or, with `temperror = "accept"`, delivered (to Junk when the domain's policy
  would have refused or quarantined it). A DNS timeout never becomes a permanent refusal;
- a DMARC fail that a passing ARC chain vouches for, when the client is a trusted forwarder
  (`VerifySettings.forwarders`, by IP network): delivered as if DMARC had passed (RFC 7489
  does not cover it; RFC 8617 7.2 lets a receiver weigh a chain from an intermediary it trusts).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from mailfort.mail.address import AddressError
from mailfort.mail.originator import OriginatorError, from_addresses
from mailfort.trust import authres
from mailfort.trust.dkim_check import MAX_SIGNATURES, Checked, Offload, check
from mailfort.trust.dmarc import DmarcResult, Policy, Signed, check_dmarc
from mailfort.trust.dns import TrustResolver
from mailfort.trust.headers import fields
from mailfort.trust.spf import DEFAULT_TIMEOUT, Result, SpfResult, check_spf

log = logging.getLogger("mailfort.verify")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifySettings:
    # What a DMARC p=reject failure may lead to at most (REJECT, QUARANTINE or NONE).
    reject: Policy = Policy.REJECT
    # Per local domain, the same cap in its place (NONE: everything delivered to the INBOX).
    caps: dict[str, Policy] = field(default_factory=dict)
    defer_on_temperror: bool = True
    forwarders: tuple[Network, ...] = ()
    spf_timeout: float = DEFAULT_TIMEOUT
    # All DMARC lookups of one message (its own and organisational domains, each author's).
    dmarc_timeout: float = 20.0
    max_signatures: int = MAX_SIGNATURES


@dataclass(frozen=True, slots=True)
class Verdict:
    header: bytes  # the Authentication-Results field, CRLF-terminated
    strip: tuple[tuple[int, int], ...]  # (start, end) of forged fields in the message
    spf: SpfResult
    checked: Checked
    dmarc: DmarcResult
    doubtful: bool  # the DMARC verdict may have been changed by a DNS failure
    vouched: bool  # a trusted forwarder's passing ARC chain stands in for DMARC

    def action(self, domain: str, settings: VerifySettings) -> Action:
        """What to do with the copies for recipients at `domain`."""
        cap = settings.caps.get(domain.lower(), settings.reject)
        if self.dmarc.result == "temperror":
            if cap is Policy.NONE:
                return Action.DELIVER
            return Action.DEFER if settings.defer_on_temperror else Action.DELIVER
        if self.dmarc.result != "fail" or self.vouched:
            return Action.DELIVER
        applied = min(self.dmarc.applied, cap)
        if applied is Policy.NONE:
            return Action.DELIVER
        if self.doubtful:
            return Action.DEFER if settings.defer_on_temperror else Action.JUNK
        return Action.REFUSE if applied is Policy.REJECT else Action.JUNK


class Action(Enum):
    """What happens to the copies for the recipients at one domain."""

    DELIVER = "deliver"
    JUNK = "junk"
    REFUSE = "refuse"
    DEFER = "defer"


class Verifier:
    def __init__(
        self,
        resolver: TrustResolver,
        *,
        authserv_id: str,
        settings: VerifySettings | None = None,
        offload: Offload | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.resolver = resolver
        self.authserv_id = authserv_id
        self.settings = settings or VerifySettings()
        self._offload = offload
        self._rng = rng or random.Random()

    async def check(self, *, ip: str, helo: str, sender: str, message: bytes) -> Verdict:
        """`message` as received (without our Received field)."""
        header = fields(message)
        forged = authres.ours(header, self.authserv_id)
        # SPF and DKIM wait on different names: their lookups overlap.
        spf, checked = await asyncio.gather(
            check_spf(self.resolver, ip, sender, helo, timeout=self.settings.spf_timeout),
            check(self.resolver, message, header, self._offload),
        )
        domains = _from_domains([f.value for f in header if f.name == "from"])
        signed = [Signed(s.domain, s.result == "pass") for s in checked.dkim]
        dmarc = await check_dmarc(
            self.resolver, domains, spf, signed, self._rng, self.settings.dmarc_timeout
        )
        doubtful = dmarc.result == "fail" and (
            spf.result is Result.TEMPERROR or any(s.result == "temperror" for s in checked.dkim)
        )
        vouched = dmarc.result == "fail" and checked.arc == "pass" and self._forwarder(ip)
        line = authres.format_header(self.authserv_id, spf, checked.dkim, dmarc, checked.arc)
        log.info(
            "event=verified client=%s spf=%s dkim=%s dmarc=%s from=%s arc=%s forged_ar=%d",
            ip,
            spf.result.value,
            ",".join(s.result for s in checked.dkim) or "none",
            dmarc.result,
            dmarc.from_domain or "-",
            checked.arc,
            len(forged),
        )
        return Verdict(
            header=line,
            strip=tuple((f.start, f.end) for f in forged),
            spf=spf,
            checked=checked,
            dmarc=dmarc,
            doubtful=doubtful,
            vouched=vouched,
        )

    def _forwarder(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self.settings.forwarders)


def _from_domains(values: Sequence[str]) -> list[str]:
    """The domains of every From: address (RFC 7489 6.6.1: each is checked); none when a
    From: field cannot be read."""
    domains: list[str] = []
    for value in values[:5]:
        try:
            addresses = from_addresses(value)
        except (OriginatorError, AddressError):
            return []
        domains.extend(a.rpartition("@")[2].lower() for a in addresses[:10])
    return domains


def cut(message: bytes, ranges: Sequence[tuple[int, int]]) -> bytes:
    """`message` without the octets in `ranges` (sorted, not overlapping)."""
    if not ranges:
        return message
    pieces = []
    at = 0
    for start, end in sorted(ranges):
        pieces.append(message[at:start])
        at = end
    pieces.append(message[at:])
    return b"".join(pieces)
