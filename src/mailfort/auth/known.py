"""The networks each account has logged in from: its owner's places, exempt from the per-account
login limit (`auth/throttle.py`).

They live in the store (`login_networks`), so they survive a restart and every node of a cluster
knows what any node learned. Reads go through a per-node cache: a network is looked up only when
an account is at its limit (an attack, or its owner's bad day), and then at most once per
`cache_seconds` per account. A network is written when it is new or its row is older than
`refresh_seconds` (a day), never on every login: a customer's IMAP client that logs in every
minute costs one write a day.

Only a login with the right password of a real account teaches a network, so an attacker, who
cannot log in, never becomes known. Networks not seen for `remember_seconds` are forgotten;
changing the password forgets them all.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from mailfort.errors import StoreError
from mailfort.store.roles import LoginNetworks

log = logging.getLogger("mailfort.auth")

DAY = 86400.0


@dataclass(slots=True)
class _Entry:
    networks: dict[str, float] = field(default_factory=dict)  # network -> last recorded (store)
    read_at: float | None = None  # when the store was last read for this account


class KnownNetworks:
    def __init__(
        self,
        store: LoginNetworks,
        *,
        remember_seconds: float = 30 * DAY,
        refresh_seconds: float = DAY,
        cache_seconds: float = 60.0,
        max_accounts: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.remember_seconds = remember_seconds
        # Refreshing more often than the memory lasts keeps a network in use from expiring.
        self.refresh_seconds = min(refresh_seconds, remember_seconds / 2)
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._max = max_accounts
        self.reads = 0
        self.writes = 0

    def _entry(self, account_id: int) -> _Entry:
        entry = self._entries.get(account_id)
        if entry is None:
            if len(self._entries) >= self._max:
                self._entries.popitem(last=False)
            entry = self._entries[account_id] = _Entry()
        else:
            self._entries.move_to_end(account_id)
        return entry

    async def known(self, account_id: int, network: str) -> bool:
        """Whether `account_id` has logged in from `network` within the memory. Raises
        StoreError when the store cannot be read (the caller decides what that means)."""
        now = self.clock()
        entry = self._entry(account_id)
        if entry.read_at is None or now - entry.read_at >= self.cache_seconds:
            # Replaced, not merged: a password changed on another node (or by the CLI) forgot
            # them in the store, and this node must forget them too within `cache_seconds`.
            entry.networks = await self.store.login_networks(
                account_id, now - self.remember_seconds
            )
            self.reads += 1
            entry.read_at = now
        return entry.networks.get(network, 0.0) > now - self.remember_seconds

    def fresh(self, account_id: int, network: str) -> bool:
        """Whether this node knows the store has `network` for `account_id`, recorded recently
        enough that writing it again is not needed yet."""
        entry = self._entries.get(account_id)
        seen = entry.networks.get(network) if entry is not None else None
        return seen is not None and self.clock() - seen < self.refresh_seconds

    async def remember(self, account_id: int, network: str) -> None:
        """`account_id` logged in from `network` with its password: record it unless `fresh`.

        A store error is logged and forgotten: the next login tries again, and until then the
        owner is only as protected as before the network was known."""
        if self.fresh(account_id, network):
            return
        now = self.clock()
        try:
            await self.store.remember_login_network(
                account_id, network, now, now - self.remember_seconds
            )
        except StoreError as exc:
            log.warning("event=login_network_not_recorded network=%s error=%s", network, exc)
            return
        self.writes += 1
        self._entry(account_id).networks[network] = now
