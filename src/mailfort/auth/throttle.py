"""The throttle on password guessing: per client address, per client network, and per account.

What the careful operators do, and what is taken from each:

* Dovecot's auth penalty delays the answer to a failed login, longer with every failure from the
  address (IPv6 counted per /48 so that one host cannot spread over many addresses), and never
  refuses: a guesser is slowed, nobody is locked out. The growing delay is kept here.
* Postfix's anvil counts a client's AUTH commands per minute and answers 4xx past a limit
  (`smtpd_client_auth_rate_limit`), per address or network (`smtpd_client_ipv6_prefix_length`).
  fail2ban bans an address after `maxretry` failures within `findtime`. Both count the *source*:
  the counts per address and per network (`mailfort.network`) are theirs.
* A limit per *account* stops a guesser that spreads over many networks, but counted naively
  (20 failures from anywhere lock the account) it is a weapon: any stranger can lock any owner
  out. Here it applies only to sources the account has never logged in from
  (`auth/known.py`): the owner's networks are exempt, so an attack on an account costs its owner
  nothing where they usually log in, and the attacker, who cannot log in, can never become known.

An attempt is counted before anything is done for it: against its address and network before
the account is read (`reserve`), against the account before the password is checked
(`include_account`). The reservation is then kept as a failure, or dropped when the login
succeeded or the platform could not check it. So a burst of concurrent attempts obeys the
limits exactly: the eleventh concurrent guess from an address is refused before any of the
first ten has been answered, and costs neither a store read nor a password check. An attempt
refused past an address's or network's limit costs nothing and is not counted; one refused for
its account's limit cost a store read and counts against its source.

Pure logic on strings and a clock; memory bounded by `max_tracked` keys per kind.
"""

from __future__ import annotations

import enum
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from mailfort.network import Networks


class Scope(enum.Enum):
    """What a refused attempt ran into."""

    ADDRESS = "ip"
    NETWORK = "network"
    ACCOUNT = "account"


@dataclass(frozen=True, slots=True, kw_only=True)
class ThrottleLimits:
    """Failures allowed within `window` seconds, and the delay that answers each failure."""

    per_address: int = 10
    per_network: int = 30
    per_account: int = 20
    window: float = 900.0
    base_delay: float = 1.0  # × the address's failures in the window ...
    max_delay: float = 5.0  # ... up to this


class _Count:
    """Failures in the window plus attempts under way (reserved, not yet answered)."""

    __slots__ = ("failures", "pending")

    def __init__(self) -> None:
        self.failures: deque[float] = deque()
        self.pending = 0

    def total(self, oldest: float) -> int:
        failures = self.failures
        while failures and failures[0] <= oldest:
            failures.popleft()
        return len(failures) + self.pending

    def idle(self) -> bool:
        return not self.failures and not self.pending


class _Counts:
    """One `_Count` per key, the least recently used dropped past `max_tracked`.

    A dropped key forgets its failures, which a flood of fresh keys could use to make the
    throttle forget an address; the bound is large and a network's count outlives its addresses'
    (there are far fewer networks). A reservation holds its `_Count` itself, so dropping a key
    with attempts under way cannot make a count negative."""

    def __init__(self, max_tracked: int) -> None:
        self._counts: OrderedDict[str, _Count] = OrderedDict()
        self._max = max_tracked

    def peek(self, key: str) -> _Count | None:
        return self._counts.get(key)

    def get(self, key: str) -> _Count:
        count = self._counts.get(key)
        if count is None:
            if len(self._counts) >= self._max:
                self._counts.popitem(last=False)
            count = self._counts[key] = _Count()
        else:
            self._counts.move_to_end(key)
        return count

    def drop_idle(self, key: str, count: _Count) -> None:
        if count.idle() and self._counts.get(key) is count:
            del self._counts[key]

    def __len__(self) -> int:
        return len(self._counts)


class NeedsTrust(enum.Enum):
    """`include_account` cannot decide without knowing whether the source is the owner's."""

    ACCOUNT_FULL = "account-full"


class Reservation:
    """One attempt, counted against its address and network before any work is done for it,
    then against its account once that is known. Settle it exactly once."""

    __slots__ = ("_address", "_counts", "_settled", "_throttle")

    def __init__(self, throttle: AuthThrottle, address: _Count, network: _Count) -> None:
        self._throttle = throttle
        self._address = address
        self._counts = [address, network]
        self._settled = False
        address.pending += 1
        network.pending += 1

    def include_account(self, account: str, *, trusted: bool | None) -> Scope | NeedsTrust | None:
        """Count the attempt against `account` too; or say why not (the attempt stays counted
        against its source: refused unchecked, it still cost a store read).

        `trusted`: whether the source's network has logged in to `account` before (its
        owner's), or None when not looked up yet; it matters only when the account is at its
        limit, and then the answer is `NeedsTrust` and the caller asks again with it. A trusted
        source is not held to the account's limit and does not count against it (the owner's
        own typos must not lock the owner out elsewhere); its address and network limits hold."""
        if trusted:
            return None
        throttle = self._throttle
        if throttle.account_full(account):
            return NeedsTrust.ACCOUNT_FULL if trusted is None else Scope.ACCOUNT
        count = throttle._accounts.get(account)
        count.pending += 1
        self._counts.append(count)
        return None

    def _settle(self) -> bool:
        if self._settled:
            return False
        self._settled = True
        for count in self._counts:
            count.pending -= 1
        return True

    def failed(self) -> float:
        """A guess: the password was wrong, the user unknown, or the attempt refused unchecked.
        It stays counted. Returns the delay before a wrong password is answered (Dovecot's auth
        penalty: longer with each failure of the address)."""
        limits = self._throttle.limits
        now = self._throttle.clock()
        if self._settle():
            for count in self._counts:
                count.failures.append(now)
        self._address.total(now - limits.window)  # forgets what left the window
        return min(limits.base_delay * len(self._address.failures), limits.max_delay)

    def cancel(self) -> None:
        """The login succeeded, or the platform could not check it: not a guess to count."""
        self._settle()


class AuthThrottle:
    """Counts failed logins per address, per network and per account; refuses past the limits.

    `reserve(ip)` counts an attempt against its address and network before any work is done
    for it (none past their limits: the refusal costs nothing); `Reservation.include_account`
    adds the account once it is known. There is no await between a check and its count, so
    concurrent attempts cannot all pass a check before any of them is counted."""

    def __init__(
        self,
        limits: ThrottleLimits,
        *,
        networks: Networks | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_tracked: int = 100_000,
    ) -> None:
        self.limits = limits
        self.networks = networks or Networks()
        self.clock = clock
        self._addresses = _Counts(max_tracked)
        self._networks = _Counts(max_tracked)
        self._accounts = _Counts(max_tracked)

    def _total(self, counts: _Counts, key: str) -> int:
        count = counts.peek(key)
        if count is None:
            return 0
        total = count.total(self.clock() - self.limits.window)
        counts.drop_idle(key, count)
        return total

    def blocked(self, ip: str) -> Scope | None:
        """Whether the address or its network is at its limit."""
        if self._total(self._addresses, ip) >= self.limits.per_address:
            return Scope.ADDRESS
        if self._total(self._networks, self.networks.of(ip)) >= self.limits.per_network:
            return Scope.NETWORK
        return None

    def account_full(self, account: str) -> bool:
        return self._total(self._accounts, account) >= self.limits.per_account

    def reserve(self, ip: str) -> Reservation | Scope:
        """Count an attempt from `ip` before anything is done for it, or say what refuses it."""
        scope = self.blocked(ip)
        if scope is not None:
            return scope
        return Reservation(self, self._addresses.get(ip), self._networks.get(self.networks.of(ip)))

    @property
    def tracked(self) -> int:
        """Keys held (addresses, networks and accounts), for tests of the memory bound."""
        return len(self._addresses) + len(self._networks) + len(self._accounts)
