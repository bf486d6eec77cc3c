"""Connection admission: a bound per node, per client address and per client network, checked
before any work is done for a connection."""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from enum import Enum

from mailfort.network import Networks, share_of


class Refusal(Enum):
    NODE_FULL = "node"
    IP_FULL = "ip"
    NETWORK_FULL = "network"  # too many connections, or connecting too fast, from one network
    DRAINING = "draining"


# Share of a listener's connection slots in use from which it is under stress (Postfix's stress
# mode starts when every smtpd process is busy; starting a little earlier leaves room to recover).
STRESS_SHARE = 0.8


class ConnectionLimiter:
    """Counts open connections; `admit` either takes a slot or says why not.

    A client is bounded per address (`max_per_ip`) and per network (`network_share` of the
    slots): one machine that owns a /24 or a /64 must not take the whole listener by using many
    addresses, and the slots it cannot take stay free for everyone else."""

    def __init__(
        self,
        *,
        max_total: int,
        max_per_ip: int,
        networks: Networks | None = None,
        network_share: float = 1.0,
        network_rate: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.networks = networks or Networks()
        self.max_per_network = share_of(max_total, network_share)
        # New connections a second one network may open (0: unbounded), as Postfix's anvil
        # bounds a client's connection rate: a session costs the node far more than a refusal,
        # so a machine that connects as fast as it can must hear "not now" after a while.
        self._rates = _RateLimit(network_rate, clock) if network_rate > 0 else None
        self._per_ip: Counter[str] = Counter()
        self._per_network: Counter[str] = Counter()
        self.total = 0
        self.draining = False
        self.refused = Counter[Refusal]()

    def admit(self, ip: str) -> Refusal | None:
        refusal = None
        network = self.networks.of(ip)
        if self.draining:
            refusal = Refusal.DRAINING
        elif self._per_ip[ip] >= self.max_per_ip:
            refusal = Refusal.IP_FULL
        elif self._network_full(network) or (
            self._rates is not None and not self._rates.take(network)
        ):
            refusal = Refusal.NETWORK_FULL
        elif self.total >= self.max_total:
            refusal = Refusal.NODE_FULL
        if refusal is not None:
            self.refused[refusal] += 1
            return refusal
        self.total += 1
        self._per_ip[ip] += 1
        self._per_network[network] += 1
        return None

    def _network_full(self, network: str) -> bool:
        # A share of 1 (or one that rounds to every slot) is the node's own bound, not a
        # network's: the refusal is then "node", as it is for a client that is alone.
        if self.max_per_network >= self.max_total:
            return False
        return self._per_network[network] >= self.max_per_network

    @property
    def stressed(self) -> bool:
        """Most slots are taken (`STRESS_SHARE`): idle sessions should make room for new ones."""
        return self.total >= self.max_total * STRESS_SHARE

    def login_deadline(self, connected_at: float, usual: float, under_stress: float) -> float:
        """When a client that connected at `connected_at` and has not logged in is sent away:
        `usual` seconds later, or `under_stress` while most slots are taken (Postfix's stress
        mode, for the part of it that cannot hurt a user): strangers must not keep a full node
        from its users. Asked again while the client waits, since the node may fill meanwhile."""
        return connected_at + (min(usual, under_stress) if self.stressed else usual)

    def release(self, ip: str) -> None:
        self.total -= 1
        _drop(self._per_ip, ip)
        _drop(self._per_network, self.networks.of(ip))


def _drop(counts: Counter[str], key: str) -> None:
    counts[key] -= 1
    if counts[key] <= 0:
        del counts[key]


class _RateLimit:
    """A token bucket per key: `rate` a second, up to one second's worth saved up.

    Keys are kept in the order they were last used, at most `max_keys` of them: a key not seen
    for a while has a full bucket anyway, so forgetting the oldest costs nothing but memory."""

    def __init__(self, rate: float, clock: Callable[[], float], max_keys: int = 65536) -> None:
        self.rate = rate
        self.burst = max(1.0, rate)
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def take(self, key: str) -> bool:
        now = self._clock()
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return allowed
