"""How much of the node's own CPU time a concurrency allows, measured by event-loop lag (AIMD).

Why a second limit beside `limit.AdaptiveLimit`: that one bounds store-bound work and learns from
how long that work takes. An SMTP transaction also spends most of its life waiting for its client
(round trips, the upload), and time spent waiting for a client must never count as the node's
latency, or a stranger could shrink the limit by being slow. Yet the node cannot serve every
transaction offered at once either: each one costs CPU at every step, and past the point where the
CPU is saturated, more concurrent transactions only make every one of them slower (at 2x load
without a bound, ~1,000 sessions in progress took a second each, where 100 took 15 ms).

The signal that measures the node and nothing else is the event loop's lag: how late it runs a
timer. Idle or slow clients cost nothing and move it not at all; work does. So this limit moves
like TCP's congestion window: while the lag is below `target_lag` and the limit is being used, it
grows a little at every observation; while the lag is above `high_lag`, it shrinks by a factor;
in between it holds. A node that is not busy never grows it (growth needs evidence of use).

Pure logic: the caller passes the lag and the concurrency in use.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LagLimitConfig:
    initial: int = 256
    minimum: int = 16
    maximum: int = 8192
    target_lag: float = 0.025  # seconds: below it the CPU has time to spare
    high_lag: float = 0.1  # seconds: above it the CPU is saturated
    increase: float = 0.05  # growth per observation while used and healthy, as a share
    decrease: float = 0.9  # factor per observation while saturated
    used: float = 0.8  # share of the limit in use that counts as using it

    def __post_init__(self) -> None:
        if not 1 <= self.minimum <= self.initial <= self.maximum:
            raise ValueError("need 1 <= minimum <= initial <= maximum")
        if not 0 < self.target_lag < self.high_lag:
            raise ValueError("need 0 < target_lag < high_lag")
        if self.increase <= 0 or not 0 < self.decrease < 1 or not 0 < self.used <= 1:
            raise ValueError("need increase > 0, 0 < decrease < 1, 0 < used <= 1")


class LagLimit:
    __slots__ = ("_config", "_estimate")

    def __init__(self, config: LagLimitConfig | None = None) -> None:
        self._config = config or LagLimitConfig()
        self._estimate = float(self._config.initial)

    @property
    def config(self) -> LagLimitConfig:
        return self._config

    @property
    def limit(self) -> int:
        return int(self._estimate)

    def observe(self, lag: float, in_use: int) -> None:
        """One lag sample (seconds, smoothed by the caller) with `in_use` units in play."""
        cfg = self._config
        if lag >= cfg.high_lag:
            self._estimate = max(float(cfg.minimum), self._estimate * cfg.decrease)
        elif lag < cfg.target_lag and in_use >= self._estimate * cfg.used:
            grown = self._estimate * (1 + cfg.increase) + 1
            self._estimate = min(float(cfg.maximum), grown)
