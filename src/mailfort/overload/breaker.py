"""Per-destination circuit breaker for outbound delivery.

Why: when a remote MX fails, retrying it at full rate wastes our connection slots and queue
workers, and piles load on a host that is already struggling (Google SRE book ch. 22: retries
and load amplification drive cascading failures). A breaker stops sending to a destination
after repeated failures, defers its mail (a 4xx-style deferral costs nothing: SMTP queues
retry for days), and probes it again later:

* CLOSED -> OPEN after ``failure_threshold`` consecutive failures, or when the failure rate in
  a sliding window reaches ``failure_rate`` with at least ``min_calls`` results (so a flaky
  host trips too, but one failure in a quiet hour does not).
* OPEN -> HALF_OPEN when a backoff has passed. The backoff doubles with each failed probe up
  to a cap, and is jittered (SRE ch. 22: exponential backoff with jitter) so many nodes and
  many destinations do not probe in lockstep.
* HALF_OPEN lets ``half_open_probes`` attempts through; a success closes the breaker, a
  failure reopens it with the next, longer backoff. A probe that never reports is given up
  after ``probe_timeout_seconds`` so the breaker cannot stay stuck half-open.

Results recorded while OPEN (attempts started before it tripped) are ignored: the probe
decides. Pure logic: the caller passes ``now``; randomness is an injected ``rand`` callable.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mailfort.overload.budget import WindowCounter


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    failure_threshold: int = 5
    failure_rate: float = 0.5
    min_calls: int = 20
    window_seconds: float = 120.0
    base_backoff_seconds: float = 60.0
    max_backoff_seconds: float = 3600.0
    jitter: float = 0.5  # backoff is scaled by a factor in [1 - jitter, 1]
    half_open_probes: int = 1
    probe_timeout_seconds: float = 600.0

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or self.min_calls < 1 or self.half_open_probes < 1:
            raise ValueError("failure_threshold, min_calls, half_open_probes must be >= 1")
        if not 0.0 < self.failure_rate <= 1.0 or not 0.0 <= self.jitter < 1.0:
            raise ValueError("failure_rate in (0, 1], jitter in [0, 1)")
        if not 0 < self.base_backoff_seconds <= self.max_backoff_seconds:
            raise ValueError("need 0 < base_backoff_seconds <= max_backoff_seconds")


_OK = 0
_FAIL = 1


class CircuitBreaker:
    """One destination's breaker. Ask :meth:`allow` before an attempt, then record its result."""

    __slots__ = (
        "_config",
        "_consecutive",
        "_last_event",
        "_last_success",
        "_probe_started",
        "_probes",
        "_rand",
        "_retry_at",
        "_state",
        "_trips",
        "_window",
    )

    def __init__(
        self, config: BreakerConfig | None = None, *, rand: Callable[[], float] = random.random
    ) -> None:
        self._config = config or BreakerConfig()
        self._rand = rand
        self._state = BreakerState.CLOSED
        self._consecutive = 0
        self._window = WindowCounter(self._config.window_seconds, fields=2)
        self._trips = 0
        self._retry_at: float | None = None
        self._probes = 0
        self._probe_started = 0.0
        self._last_event = 0.0
        self._last_success: float | None = None

    @property
    def trips(self) -> int:
        """Consecutive trips without a successful probe (drives the backoff exponent)."""
        return self._trips

    @property
    def retry_at(self) -> float | None:
        """While OPEN: when a probe becomes allowed (schedule deferred mail for then)."""
        return self._retry_at if self._state is BreakerState.OPEN else None

    @property
    def last_event(self) -> float:
        return self._last_event

    def state(self, now: float) -> BreakerState:
        if (
            self._state is BreakerState.OPEN
            and self._retry_at is not None
            and now >= self._retry_at
        ):
            self._state = BreakerState.HALF_OPEN
            self._probes = 0
        return self._state

    def allow(self, now: float) -> bool:
        """May an attempt start now? In HALF_OPEN a True answer reserves a probe slot."""
        state = self.state(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        if self._probes > 0 and now - self._probe_started >= self._config.probe_timeout_seconds:
            self._probes = 0  # the earlier probe never reported; give up on it
        if self._probes >= self._config.half_open_probes:
            return False
        self._probes += 1
        self._probe_started = now
        return True

    def delivering(self, now: float, within: float) -> bool:
        """Closed, and an attempt succeeded in the last `within` seconds: the destination works."""
        return (
            self.state(now) is BreakerState.CLOSED
            and self._last_success is not None
            and now - self._last_success <= within
        )

    def record_success(self, now: float) -> None:
        self._last_event = max(self._last_event, now)
        self._last_success = max(self._last_success or now, now)
        state = self.state(now)
        if state is BreakerState.HALF_OPEN:
            self._close()
        elif state is BreakerState.CLOSED:
            self._consecutive = 0
            self._window.add(now, _OK)

    def record_failure(self, now: float) -> None:
        self._last_event = max(self._last_event, now)
        state = self.state(now)
        if state is BreakerState.HALF_OPEN:
            self._trip(now)
        elif state is BreakerState.CLOSED:
            self._consecutive += 1
            self._window.add(now, _FAIL)
            if self._should_trip(now):
                self._trip(now)

    def _should_trip(self, now: float) -> bool:
        cfg = self._config
        if self._consecutive >= cfg.failure_threshold:
            return True
        ok, failed = self._window.totals(now)
        calls = ok + failed
        return calls >= cfg.min_calls and failed >= cfg.failure_rate * calls

    def backoff_seconds(self, trips: int, rand: float) -> float:
        """Backoff before probing after ``trips`` consecutive trips, jittered by ``rand``."""
        cfg = self._config
        # min() before the power would overflow: cap the exponent.
        raw = cfg.base_backoff_seconds * 2.0 ** min(max(trips - 1, 0), 62)
        return min(cfg.max_backoff_seconds, raw) * (1.0 - cfg.jitter * rand)

    def _trip(self, now: float) -> None:
        self._trips += 1
        self._state = BreakerState.OPEN
        self._retry_at = now + self.backoff_seconds(self._trips, self._rand())
        self._probes = 0

    def _close(self) -> None:
        self._state = BreakerState.CLOSED
        self._trips = 0
        self._consecutive = 0
        self._retry_at = None
        self._probes = 0
        self._window.clear()


class CircuitBreakers:
    """Breakers keyed by destination (e.g. the MX host or the recipient domain)."""

    __slots__ = ("_breakers", "_config", "_rand")

    def __init__(
        self, config: BreakerConfig | None = None, *, rand: Callable[[], float] = random.random
    ) -> None:
        self._config = config or BreakerConfig()
        self._rand = rand
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, destination: str) -> CircuitBreaker:
        breaker = self._breakers.get(destination)
        if breaker is None:
            breaker = CircuitBreaker(self._config, rand=self._rand)
            self._breakers[destination] = breaker
        return breaker

    def allow(self, destination: str, now: float) -> bool:
        return self.get(destination).allow(now)

    def record_success(self, destination: str, now: float) -> None:
        self.get(destination).record_success(now)

    def record_failure(self, destination: str, now: float) -> None:
        self.get(destination).record_failure(now)

    def not_closed(self, now: float) -> Iterator[tuple[str, CircuitBreaker]]:
        """Destinations whose breaker is open or half-open (for metrics and status)."""
        for destination, breaker in self._breakers.items():
            if breaker.state(now) is not BreakerState.CLOSED:
                yield destination, breaker

    def prune(self, now: float, idle_seconds: float) -> int:
        """Forget closed breakers idle for ``idle_seconds``; bounds memory. Returns count."""
        stale = [
            d
            for d, b in self._breakers.items()
            if b.state(now) is BreakerState.CLOSED and now - b.last_event >= idle_seconds
        ]
        for destination in stale:
            del self._breakers[destination]
        return len(stale)

    def __len__(self) -> int:
        return len(self._breakers)
