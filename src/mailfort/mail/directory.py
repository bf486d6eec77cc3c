"""Who is local, who is an alias, and which addresses a logged-in user may send as.

Resolution follows Postfix's virtual alias semantics: an exact alias rewrites the address (a target
equal to the source keeps a local copy); otherwise an account receives it; otherwise the address
without its `+detail`; otherwise the domain's catch-all (`@domain`). Aliases may point at other
aliases or at remote addresses (forwarding), up to `MAX_DEPTH` levels.

An SRS address of ours (the envelope sender we gave mail we forwarded, `trust/srs.py`) receives
that mail's bounces: it resolves to the original sender, whom they are forwarded to, when
`bounce_to` vouches for it; a forged or expired one resolves to nobody (550 5.1.1), before any
alias or catch-all could take it, so that nobody can relay through it.

The local domains and each address's resolution are remembered for `cache_seconds` (5 s by
default): every RCPT would otherwise cost two or three store reads. The command line changes
users, aliases and domains from another process, so a node sees such a change within that time,
not at once; mail accepted in that window under an old answer can name an account that is gone,
and the local queue worker drops what it cannot deliver for that reason (see
`queue/local_worker.py`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from mailfort.mail.address import domain_of, without_detail
from mailfort.store.records import Account
from mailfort.store.roles import Accounts

MAX_DEPTH = 8


def looks_like_srs(address: str) -> bool:
    """An SRS-shaped local part (SRS0=… or SRS1=…); whether it is valid is `bounce_to`'s say."""
    return address[:5].lower() in ("srs0=", "srs1=")


# Bounds the memory of the resolution cache; a spammer's dictionary attack only churns it.
MAX_CACHED = 10_000


@dataclass(slots=True)
class Resolution:
    """Where mail for one envelope recipient goes."""

    local: dict[int, str] = field(default_factory=dict)  # account id → account address
    remote: list[str] = field(default_factory=list)
    # Accounts in `local` that have a quota: only these need a look at their use before RCPT.
    limited: set[int] = field(default_factory=set)

    def merge(self, other: Resolution) -> None:
        for account_id, address in other.local.items():
            self.local.setdefault(account_id, address)
        for address in other.remote:
            if address not in self.remote:
                self.remote.append(address)
        self.limited |= other.limited

    def copy(self) -> Resolution:
        return Resolution(
            local=dict(self.local), remote=list(self.remote), limited=set(self.limited)
        )

    def add(self, account: Account) -> None:
        self.local[account.id] = account.address
        if account.quota_bytes > 0:
            self.limited.add(account.id)


class Directory:
    def __init__(
        self,
        store: Accounts,
        *,
        config_domains: Iterable[str] = (),
        delimiter: str = "+",
        cache_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        postmaster: str = "",
        senders: Mapping[str, Iterable[str]] | None = None,
        bounce_to: Callable[[str], str | None] | None = None,
    ) -> None:
        self._store = store
        ordered = [d.lower() for d in config_domains]
        self._config_domains = frozenset(ordered)
        self._first_domain = ordered[0] if ordered else None
        self._postmaster = postmaster
        # Extra send-as patterns ([submission] senders): owner ("user@dom" or "@dom") -> patterns.
        self._senders = {owner: tuple(p) for owner, p in (senders or {}).items()}
        self._delimiter = delimiter
        # SRS: the original sender an SRS address of ours stands for, None if it is not valid.
        self._bounce_to = bounce_to
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._domains: frozenset[str] = frozenset()
        self._domains_at = float("-inf")
        self._resolved: dict[str, tuple[float, Resolution | None]] = {}

    async def local_domains(self) -> frozenset[str]:
        now = self._clock()
        if now - self._domains_at > self._cache_seconds:
            stored = await self._store.list_domains()
            self._domains = self._config_domains | frozenset(stored)
            self._domains_at = now
        return self._domains

    def forget_domains(self) -> None:
        self._domains_at = float("-inf")

    def forget(self) -> None:
        """Drop everything remembered: the next questions go to the store."""
        self.forget_domains()
        self._resolved.clear()

    async def is_local(self, address: str) -> bool:
        return domain_of(address) in await self.local_domains()

    async def postmaster(self) -> str | None:
        """Where mail for the bare `postmaster` goes (RFC 5321 4.5.1): the configured address,
        else postmaster@ the first configured local domain, else @ the first stored one."""
        if self._postmaster:
            return self._postmaster
        if self._first_domain is not None:
            return f"postmaster@{self._first_domain}"
        domains = sorted(await self.local_domains())
        return f"postmaster@{domains[0]}" if domains else None

    async def resolve(self, address: str) -> Resolution | None:
        """None when the address is in a local domain but nobody receives it.

        postmaster@ every local domain reaches somebody (RFC 5321 4.5.1 requires it): where no
        account or alias of that name exists, the configured postmaster.
        The caller gets its own copy (the SMTP policy drops full mailboxes from it)."""
        now = self._clock()
        cached = self._resolved.get(address)
        if cached is not None and now - cached[0] < self._cache_seconds:
            found = cached[1]
        else:
            found = await self._resolve(address, 0, set())
            if found is None and address.startswith("postmaster@"):
                target = await self.postmaster()
                if target is not None and target != address:
                    found = await self._resolve(target, 0, set())
            if self._cache_seconds > 0:
                self._remember(address, now, found)
        return None if found is None else found.copy()

    def _remember(self, address: str, now: float, found: Resolution | None) -> None:
        self._resolved.pop(address, None)
        if len(self._resolved) >= MAX_CACHED:
            del self._resolved[next(iter(self._resolved))]  # the oldest answer
        self._resolved[address] = (now, found)

    async def _resolve(self, address: str, depth: int, seen: set[str]) -> Resolution | None:
        if not await self.is_local(address):
            return Resolution(remote=[address])
        if depth > MAX_DEPTH or address in seen:
            return None
        seen = seen | {address}
        if self._bounce_to is not None and looks_like_srs(address):
            original = self._bounce_to(address)
            return None if original is None else Resolution(remote=[original])
        targets = await self._store.alias_targets(address)
        if targets:
            return await self._expand(address, targets, depth, seen)
        account = await self._store.get_account(address)
        if account is not None:
            result = Resolution()
            result.add(account)
            return result
        base = without_detail(address, self._delimiter)
        if base is not None:
            found = await self._resolve(base, depth + 1, seen)
            if found is not None:
                return found
        catch_all = await self._store.alias_targets("@" + domain_of(address))
        if catch_all:
            return await self._expand(address, catch_all, depth, seen)
        return None

    async def _expand(
        self, source: str, targets: list[str], depth: int, seen: set[str]
    ) -> Resolution | None:
        result = Resolution()
        for target in targets:
            if target == source:
                account = await self._store.get_account(source)
                if account is not None:
                    result.add(account)
                continue
            found = await self._resolve(target, depth + 1, seen)
            if found is not None:
                result.merge(found)
        if not result.local and not result.remote:
            return None
        return result

    async def may_send_as(self, account: Account, sender: str) -> bool:
        """The user's own address (with or without +detail), an alias that delivers to them, or
        what the operator allows the user or their domain besides ([submission] senders).

        `sender` is normalized; the same rule holds for the envelope and the header From:."""
        base = without_detail(sender, self._delimiter)
        if account.address in (sender, base) or self._allowed_extra(account.address, sender, base):
            return True
        if not await self.is_local(sender):
            return False
        resolution = await self.resolve(sender)
        return resolution is not None and account.id in resolution.local

    def _allowed_extra(self, user: str, sender: str, base: str | None) -> bool:
        for owner in (user, "@" + domain_of(user)):
            for pattern in self._senders.get(owner, ()):
                if pattern in (sender, base) or pattern == "@" + domain_of(sender):
                    return True
        return False
