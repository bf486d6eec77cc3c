"""DKIM key rotation in steps, one per run of `mailfort dkim rotate DOMAIN` (M3AAWG "DKIM Key
Rotation Best Common Practices"; RFC 6376 3.6.1 on selectors):

1. start: new keys (one per algorithm) are made under new selectors, state published; the
   operator publishes their TXT records and runs the command again after `publish_wait`;
2. switch: once that time has passed and the new records are seen in DNS, the new keys sign and
   the old ones retire (one store transaction: the domain never signs with both, nor with none);
   the old records stay in DNS for `retire_wait`, for mail in transit and verified late;
3. finish: after that, the old keys are marked retired and the operator is told which records to
   remove.
A run that comes too early changes nothing and says when to come back. `skip_wait` (--now) skips
the waiting, for tests and for a key that leaked.

The DNS check asks for `<selector>._domainkey.<domain>` TXT and compares its `p=` with the new
key's; `lookup` answers None when it cannot ask (no resolver, a timeout), which is said and does
not stop the switch: the operator was told what to publish, and the check is a safety net.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from mailfort.store.records import DkimKey, DkimState
from mailfort.store.roles import DkimKeys
from mailfort.trust.dkim_keys import generate_set, zone_line

# A TXT lookup: the record's strings joined, one entry per record; None: could not look.
TxtLookup = Callable[[str], Awaitable[list[str] | None]]

OK = 0
NOT_NOW = 1  # too early, not in DNS, nothing to rotate: the operator acts and runs it again


@dataclass(slots=True)
class Step:
    """What one run did and what the operator is to do next."""

    status: int = OK
    lines: list[str] = field(default_factory=list)

    def say(self, *lines: str) -> None:
        self.lines.extend(lines)


def when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


def record_name(key: DkimKey) -> str:
    return f"{key.selector}._domainkey.{key.domain}"


def published_key(records: Sequence[str]) -> str | None:
    """The `p=` value of a DKIM record among `records` (tag=value list, RFC 6376 3.6.1)."""
    for record in records:
        tags = {}
        for part in record.split(";"):
            name, sep, value = part.partition("=")
            if sep:
                tags[name.strip()] = "".join(value.split())
        if tags.get("v", "DKIM1") == "DKIM1" and "p" in tags:
            return tags["p"]
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Rotation:
    store: DkimKeys
    algorithms: Sequence[str]
    prefix: str
    publish_wait: float
    retire_wait: float
    lookup: TxtLookup | None = None
    clock: Callable[[], float] = time.time

    async def step(self, domain: str, *, skip_wait: bool = False) -> Step:
        keys = await self.store.dkim_keys(domain)
        by_state: dict[DkimState, list[DkimKey]] = {s: [] for s in DkimState}
        for key in keys:
            by_state[key.state].append(key)
        published = by_state[DkimState.PUBLISHED]
        if published:
            return await self._switch(domain, published, skip_wait)
        retiring = by_state[DkimState.RETIRING]
        if retiring:
            return await self._finish(domain, retiring, skip_wait)
        return await self._start(domain, keys)

    async def _start(self, domain: str, keys: list[DkimKey]) -> Step:
        now = self.clock()
        made = generate_set(
            domain,
            self.algorithms,
            DkimState.PUBLISHED,
            prefix=self.prefix,
            taken={k.selector for k in keys},
            now=now,
        )
        await self.store.add_dkim_keys(made)
        step = Step()
        step.say(f"step 1 of 3: new keys for {domain}, not signing yet. Publish in DNS:", "")
        step.say(*(zone_line(k) for k in made), "")
        step.say(
            f"then run `mailfort dkim rotate {domain}` again after {when(now + self.publish_wait)}"
            f" (resolvers must see the new records before mail is signed with them).",
        )
        return step

    async def _switch(self, domain: str, published: list[DkimKey], skip_wait: bool) -> Step:
        now = self.clock()
        step = Step()
        due = max(k.created for k in published) + self.publish_wait
        if now < due and not skip_wait:
            step.status = NOT_NOW
            step.say(
                f"the new keys of {domain} ({', '.join(k.selector for k in published)}) were"
                f" published less than {self.publish_wait / 3600:g} h ago: run this again after"
                f" {when(due)} (or with --now to switch at once)."
            )
            return step
        missing = await self._check_dns(published, step)
        if missing:
            step.status = NOT_NOW
            step.say("not switching: publish these records first, then run this again:", "")
            step.say(*(zone_line(k) for k in missing))
            return step
        retire_after = now + self.retire_wait
        retiring = await self.store.activate_dkim_keys(
            domain, [k.selector for k in published], now, retire_after
        )
        step.say(
            f"step 2 of 3: {domain} now signs with {', '.join(k.selector for k in published)}."
        )
        if retiring:
            step.say(
                f"the old keys ({', '.join(k.selector for k in retiring)}) sign no more; keep"
                f" their records in DNS until {when(retire_after)}, then run"
                f" `mailfort dkim rotate {domain}` again to retire them."
            )
        else:
            step.say("there were no old keys to retire: the rotation is complete.")
        return step

    async def _check_dns(self, keys: list[DkimKey], step: Step) -> list[DkimKey]:
        """The keys whose records DNS does not show (yet); [] also when it cannot tell."""
        if self.lookup is None:
            step.say("DNS not checked: no resolver is configured.")
            return []
        missing = []
        for key in keys:
            found = await self.lookup(record_name(key))
            if found is None:
                step.say(f"DNS not checked for {record_name(key)}: the resolver gave no answer.")
            elif published_key(found) != key.public_key:
                missing.append(key)
            else:
                step.say(f"DNS has {record_name(key)}.")
        return missing

    async def _finish(self, domain: str, retiring: list[DkimKey], skip_wait: bool) -> Step:
        now = self.clock()
        step = Step()
        due = max(k.retire_after or 0.0 for k in retiring)
        if now < due and not skip_wait:
            step.status = NOT_NOW
            step.say(
                f"the old keys of {domain} ({', '.join(k.selector for k in retiring)}) stay in"
                f" DNS until {when(due)}: run this again after that (or with --now)."
            )
            return step
        await self.store.retire_dkim_keys(domain, [k.selector for k in retiring], now)
        step.say(f"step 3 of 3: the old keys of {domain} are retired. Remove from DNS:", "")
        step.say(*(f"{record_name(k)}. IN TXT" for k in retiring), "")
        step.say("the rotation is complete; the next one starts with `mailfort dkim rotate`.")
        return step
