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

An attempt is counted *before* its password is checked (`reserve`), and the reservation is then
kept as a failure, or dropped when the login succeeded or the platform could not check it. So a
burst of concurrent attempts obeys the limits exactly: the eleventh concurrent guess from an
address is refused before any of the first ten has been answered. Refused attempts cost no
password check and are not counted again (the attacker's rate is what the window bounds).

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
    """`reserve` cannot decide without knowing whether the source is known to the account."""

    ACCOUNT_FULL = "account-full"


class Reservation:
    """One attempt counted before its password is checked. Settle it exactly once."""

    __slots__ = ("_counts", "_delay", "_settled", "_throttle")

    def __init__(self, throttle: AuthThrottle, counts: list[_Count], delay: float) -> None:
        self._throttle = throttle
        self._counts = counts
        self._delay = delay
        self._settled = False

    def _settle(self) -> bool:
        if self._settled:
            return False
        self._settled = True
        for count in self._counts:
            count.pending -= 1
        return True

    def failed(self) -> float:
        """The password was wrong (or the user unknown): it stays counted. Returns the delay
        before the answer (Dovecot's auth penalty: longer with each failure of the address)."""
        if self._settle():
            now = self._throttle.clock()
            for count in self._counts:
                count.failures.append(now)
        return self._delay

    def cancel(self) -> None:
        """The login succeeded, or the platform could not check it: not a guess to count."""
        self._settle()


class AuthThrottle:
    """Counts failed logins per address, per network and per account; refuses past the limits.

    `blocked(ip)` is the cheap check before any store work; `reserve(...)` counts the attempt
    (atomically: no await between the check and the count) and returns the `Reservation` to
    settle, or what refused it."""

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

    def _total(self, counts: _Counts, key: str, oldest: float) -> int:
        count = counts.peek(key)
        if count is None:
            return 0
        total = count.total(oldest)
        counts.drop_idle(key, count)
        return total

    def blocked(self, ip: str) -> Scope | None:
        """Whether the address or its network is at its limit (no account needed)."""
        oldest = self.clock() - self.limits.window
        if self._total(self._addresses, ip, oldest) >= self.limits.per_address:
            return Scope.ADDRESS
        if self._total(self._networks, self.networks.of(ip), oldest) >= self.limits.per_network:
            return Scope.NETWORK
        return None

    def account_full(self, account: str) -> bool:
        oldest = self.clock() - self.limits.window
        return self._total(self._accounts, account, oldest) >= self.limits.per_account

    def reserve(
        self, ip: str, account: str, *, trusted: bool | None
    ) -> Reservation | Scope | NeedsTrust:
        """Count an attempt from `ip` on `account` before its password is checked.

        `trusted`: whether `ip`'s network has logged in to `account` before (its owner's), or
        None when not looked up yet; it matters only when the account is at its limit, and then
        the answer is `NeedsTrust` and the caller asks again with it. A trusted source is not
        held to the account's limit and does not count against it (the owner's own typos must
        not lock the owner out elsewhere); its address and network limits still hold."""
        limits = self.limits
        oldest = self.clock() - limits.window
        network = self.networks.of(ip)
        if self._total(self._addresses, ip, oldest) >= limits.per_address:
            return Scope.ADDRESS
        if self._total(self._networks, network, oldest) >= limits.per_network:
            return Scope.NETWORK
        counts = [self._addresses.get(ip), self._networks.get(network)]
        if not trusted:
            if self._total(self._accounts, account, oldest) >= limits.per_account:
                if trusted is None:
                    return NeedsTrust.ACCOUNT_FULL
                return Scope.ACCOUNT
            counts.append(self._accounts.get(account))
        for count in counts:
            count.pending += 1
        failures = len(counts[0].failures) + 1
        delay = min(limits.base_delay * failures, limits.max_delay)
        return Reservation(self, counts, delay)

    @property
    def tracked(self) -> int:
        """Keys held (addresses, networks and accounts), for tests of the memory bound."""
        return len(self._addresses) + len(self._networks) + len(self._accounts)
