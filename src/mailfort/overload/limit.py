"""Adaptive concurrency limit driven by measured latency and an external stress signal.

Why adaptive: a fixed cap is either too low (wasted capacity) or too high (a slow disk makes the
node queue work in memory until it falls over, and its load then moves to the next node: the
cascade the Google SRE book ch. 22 describes). Postfix's STRESS_README switches to a fixed
"stress" profile when every smtpd is busy; that is a single step. Here the limit follows
what the node can really do, continuously, in the manner of Netflix concurrency-limits:

* Gradient2Limit: keep a long-term exponential average of latency (the baseline) and compare
  each sample with it. ``gradient = clamp(tolerance * baseline / sample, min_gradient, 1)``.
  Latency within ``tolerance`` of the baseline means no queueing: grow by ``queue_size``;
  latency above it means work is queueing: scale the limit by the gradient. The new value is
  smoothed (``estimate = (1 - s) * estimate + s * target``) so single outliers do not flap it,
  and the gradient is floored (0.5) so one outlier cannot halve the limit.
* AIMDLimit: a dropped request (timeout, abandoned, store error) multiplies the limit by
  ``backoff_ratio`` (0.9), a loss signal independent of latency.

Deviations from Gradient2, on purpose:

* Gradient2 always adds ``queue_size`` (``limit * gradient + queue``), which puts a floor of
  ``queue / (1 - 0.5) = 8`` under the limit however slow the node gets. A mail node on a slow
  disk must be able to go down to ``min_limit``, so ``queue_size`` is added only while latency
  is healthy.
* Gradient2 does not change the limit at all while app-limited (in-flight < limit / 2). We
  still *shrink* then: high latency at low concurrency is still a reason to take less work;
  we only refuse to *grow* without evidence of saturation.
* An external stress signal (event-loop lag, store commit latency), smoothed over time and
  compared with an absolute target, caps the gradient. The latency baseline re-learns a new
  normal after ~``long_window`` samples (Gradient2's drift, which avoids the stale-minimum
  problem of Gradient v1); the absolute stress target keeps a persistently slow disk or
  database shrinking the limit anyway.

The limit refuses new work (``acquire`` returns None -> the caller answers 4xx) but never
touches work already admitted: in-flight may briefly exceed a freshly shrunk limit.

Pure logic: the caller passes ``now`` (seconds) and the measured latency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LimitConfig:
    """Knobs; defaults follow Netflix Gradient2Limit/AIMDLimit where they have one."""

    initial_limit: int = 20
    min_limit: int = 1
    max_limit: int = 1000
    smoothing: float = 0.2  # Gradient2 default
    tolerance: float = 1.5  # Gradient2 rttTolerance: latency up to 1.5x baseline is "no queue"
    queue_size: float = 4.0  # Gradient2 default queueSize: growth step before smoothing
    long_window: int = 600  # Gradient2 longWindow, in samples
    warmup: int = 10  # samples averaged plainly before the exponential average starts
    min_gradient: float = 0.5  # Gradient2 floor: one outlier never halves the limit
    backoff_ratio: float = 0.9  # AIMDLimit default, applied on a dropped request
    stress_target_seconds: float = 0.1  # loop lag / commit latency considered healthy
    stress_tau_seconds: float = 5.0  # time constant of the stress average

    def __post_init__(self) -> None:
        if not 1 <= self.min_limit <= self.initial_limit <= self.max_limit:
            raise ValueError("need 1 <= min_limit <= initial_limit <= max_limit")
        if not 0.0 < self.smoothing <= 1.0:
            raise ValueError("smoothing must be in (0, 1]")
        if not 0.0 < self.min_gradient < 1.0 or not 0.0 < self.backoff_ratio < 1.0:
            raise ValueError("min_gradient and backoff_ratio must be in (0, 1)")
        if self.tolerance < 1.0 or self.queue_size <= 0 or self.long_window < 1:
            raise ValueError("tolerance >= 1, queue_size > 0, long_window >= 1")
        if self.stress_target_seconds <= 0 or self.stress_tau_seconds <= 0:
            raise ValueError("stress target and tau must be > 0")


class _ExpAverage:
    """Netflix ExpAvgMeasurement: plain mean during warmup, then EWMA with 2/(window+1)."""

    __slots__ = ("_count", "_factor", "_warmup", "value")

    def __init__(self, window: int, warmup: int) -> None:
        self._factor = 2.0 / (window + 1)
        self._warmup = warmup
        self._count = 0
        self.value = 0.0

    def add(self, sample: float) -> float:
        if self._count < self._warmup:
            self._count += 1
            self.value += (sample - self.value) / self._count
        else:
            self.value += (sample - self.value) * self._factor
        return self.value


# Latency samples below this are treated as this (avoid division by zero on coarse clocks).
_MIN_LATENCY = 1e-6


class Token:
    """One admitted unit of work. Release it exactly once (or :meth:`ignore` it)."""

    __slots__ = ("_limit", "_released", "acquired_at", "in_flight_at_acquire")

    def __init__(self, limit: AdaptiveLimit, acquired_at: float, in_flight: int) -> None:
        self._limit = limit
        self._released = False
        self.acquired_at = acquired_at
        self.in_flight_at_acquire = in_flight

    @property
    def released(self) -> bool:
        return self._released

    def _finish(self) -> None:
        if self._released:
            raise RuntimeError("token released twice")
        self._released = True
        self._limit._in_flight -= 1

    def release(
        self, now: float, latency_seconds: float | None = None, dropped: bool = False
    ) -> None:
        """Work finished. ``latency_seconds`` defaults to ``now - acquired_at``.

        ``dropped`` marks work that timed out, was abandoned or failed for lack of resources:
        a loss signal that backs the limit off multiplicatively (AIMD).
        """
        self._finish()
        latency = now - self.acquired_at if latency_seconds is None else latency_seconds
        self._limit._on_sample(latency, self.in_flight_at_acquire, dropped)

    def ignore(self) -> None:
        """Release without a sample (e.g. the client vanished: its latency says nothing)."""
        self._finish()


class AdaptiveLimit:
    """Concurrency limit that shrinks when latency or stress rises and grows back when healthy."""

    __slots__ = ("_config", "_estimate", "_in_flight", "_long", "_stress", "_stress_at")

    def __init__(self, config: LimitConfig | None = None) -> None:
        self._config = config or LimitConfig()
        self._estimate = float(self._config.initial_limit)
        self._in_flight = 0
        self._long = _ExpAverage(self._config.long_window, self._config.warmup)
        self._stress: float | None = None
        self._stress_at = 0.0

    @property
    def config(self) -> LimitConfig:
        return self._config

    @property
    def limit(self) -> int:
        """Current limit: the smoothed estimate rounded down, within [min_limit, max_limit]."""
        return max(self._config.min_limit, min(self._config.max_limit, int(self._estimate)))

    @property
    def estimate(self) -> float:
        """Unrounded smoothed limit (for metrics)."""
        return self._estimate

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def baseline_latency(self) -> float:
        """Long-term average latency the samples are compared with (0 before any sample)."""
        return self._long.value

    @property
    def stress_seconds(self) -> float | None:
        """Smoothed stress signal, or None if none was observed."""
        return self._stress

    def acquire(self, now: float) -> Token | None:
        """Admit one unit of work, or return None: refuse it (answer 4xx, keep old sessions)."""
        if self._in_flight >= self.limit:
            return None
        self._in_flight += 1
        return Token(self, now, self._in_flight)

    def observe_stress(self, now: float, seconds: float) -> None:
        """Feed an external stress measurement: event-loop lag or store commit latency.

        Smoothed with a time-based EWMA (time constant ``stress_tau_seconds``) so the result
        does not depend on how often the caller probes, and one GC pause does not shrink the
        limit. Applied on the next released sample; an idle node needs no shrinking.
        """
        seconds = max(0.0, seconds)
        if self._stress is None:
            self._stress = seconds
        else:
            dt = max(0.0, now - self._stress_at)
            alpha = 1.0 - math.exp(-dt / self._config.stress_tau_seconds)
            self._stress += (seconds - self._stress) * alpha
        self._stress_at = max(self._stress_at, now)

    def _stress_gradient(self) -> float:
        cfg = self._config
        if self._stress is None or self._stress <= cfg.stress_target_seconds:
            return 1.0
        return max(cfg.min_gradient, cfg.stress_target_seconds / self._stress)

    def _clamp(self, value: float) -> float:
        return max(float(self._config.min_limit), min(float(self._config.max_limit), value))

    def _on_sample(self, latency: float, in_flight: int, dropped: bool) -> None:
        cfg = self._config
        if dropped:
            # AIMDLimit: loss is a congestion signal. The latency of dropped work is not
            # representative (often a timeout), so it does not feed the baseline.
            self._estimate = self._clamp(self._estimate * cfg.backoff_ratio)
            return
        sample = max(latency, _MIN_LATENCY)
        baseline = self._long.add(sample)
        if baseline / sample > 2.0:
            # Gradient2: after a long overload the baseline sits far above current latency;
            # decay it faster than the EWMA would so the limit returns to steady state sooner.
            self._long.value *= 0.95
        gradient = max(cfg.min_gradient, min(1.0, cfg.tolerance * baseline / sample))
        gradient = min(gradient, self._stress_gradient())
        if gradient >= 1.0:
            if in_flight < self._estimate / 2:
                # Gradient2: app-limited; healthy latency at low load proves nothing about
                # higher load, so do not grow (otherwise the limit creeps to max while idle).
                return
            target = self._estimate + cfg.queue_size
        else:
            target = self._estimate * gradient
        smoothed = self._estimate * (1.0 - cfg.smoothing) + target * cfg.smoothing
        self._estimate = self._clamp(smoothed)
