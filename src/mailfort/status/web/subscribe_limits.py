"""How often, and how many at once, clients may ask for webhook subscriptions.

Every attempt costs the node an outbound verification request (and the URL's host an inbound
one), and every stored subscription costs a POST per status change, so strangers must not get
either at will. Attempts are counted per client address and per client network (`Networks`) over
a sliding hour and recorded before the request is even read, the way failed logins are; a
client past either count is told to come back later (429 with Retry-After). Verifications in
progress are bounded in all and per network (`max_network_share` of them), since each may wait
the whole `webhook_timeout` for an answer. How many subscriptions are stored is bounded by the
store (in all and per network, `StatusRecords.add_status_webhook`).
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable
from typing import Final

from mailfort.network import share_of

WINDOW: Final = 3600.0  # seconds over which attempts are counted
MAX_VERIFYING: Final = 16  # verification requests in flight per node
_MAX_TRACKED: Final = 100_000  # clients remembered at once; the oldest is forgotten past it


class AttemptWindow:
    """Attempts per key over the last `window` seconds; memory bounded by `max_tracked` keys
    of at most `limit` timestamps each."""

    def __init__(
        self,
        limit: int,
        *,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
        max_tracked: int = _MAX_TRACKED,
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_tracked = max_tracked
        self._times: dict[str, collections.deque[float]] = {}

    def wait(self, key: str) -> float:
        """0 if `key` may make another attempt now, else the seconds until it may."""
        times = self._times.get(key)
        if times is None:
            return 0.0
        now = self.clock()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._times[key]
            return 0.0
        if len(times) < self.limit:
            return 0.0
        return times[0] + self.window - now

    def record(self, key: str) -> None:
        times = self._times.get(key)
        if times is None:
            if len(self._times) >= self.max_tracked:
                self._times.pop(next(iter(self._times)))
            times = self._times[key] = collections.deque(maxlen=self.limit)
        times.append(self.clock())


class SubscribeLimits:
    """Per-node bounds on subscription attempts and verifications in progress."""

    def __init__(
        self,
        *,
        per_ip: int = 5,
        per_network: int = 20,
        window: float = WINDOW,
        max_verifying: int = MAX_VERIFYING,
        network_share: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ips = AttemptWindow(per_ip, window=window, clock=clock)
        self._networks = AttemptWindow(per_network, window=window, clock=clock)
        self.max_verifying = max_verifying
        self.network_verifying = share_of(max_verifying, network_share)
        self._verifying: collections.Counter[str] = collections.Counter()

    def attempt(self, ip: str, network: str) -> int:
        """Record an attempt by `ip` of `network` and return 0, or return the whole seconds
        (at least 1) until one is allowed again (the refused attempt is not recorded)."""
        wait = max(self._ips.wait(ip), self._networks.wait(network))
        if wait > 0:
            return max(1, math.ceil(wait))
        self._ips.record(ip)
        self._networks.record(network)
        return 0

    def start_verifying(self, network: str) -> bool:
        """Take a verification slot for `network`, or False when none is free."""
        if (
            self._verifying.total() >= self.max_verifying
            or self._verifying[network] >= self.network_verifying
        ):
            return False
        self._verifying[network] += 1
        return True

    def done_verifying(self, network: str) -> None:
        self._verifying[network] -= 1
        if self._verifying[network] <= 0:
            del self._verifying[network]
