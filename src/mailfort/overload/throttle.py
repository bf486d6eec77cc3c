"""Adaptive client-side throttling (Google SRE book, ch. 21 "Handling Overload").

Why: when a backend is overloaded, even rejecting a request costs it something. A client that
sees most of its requests rejected should stop sending most of them, locally, before they reach
the backend. Each client keeps, over a sliding window (the book uses two minutes):

* ``requests`` -- requests attempted by the application layer, including those this throttle
  rejected locally;
* ``accepts`` -- requests the backend accepted;

and rejects a new request locally with probability
``max(0, (requests - K * accepts) / (requests + 1))``. With ``K = 2`` the backend sees at most
about twice as many requests as it accepts; a larger K is more lenient. Because locally
rejected requests still count as requests, the probability never reaches 1, so some requests
always get through and notice recovery.

Pure logic: the caller passes ``now`` and a uniform random number in ``[0, 1)``.
"""

from __future__ import annotations

from mailfort.overload.budget import WindowCounter

_REQUESTS = 0
_ACCEPTS = 1


def rejection_probability(requests: int, accepts: int, k: float = 2.0) -> float:
    """The SRE ch. 21 formula ``max(0, (requests - k*accepts) / (requests + 1))``."""
    return max(0.0, (requests - k * accepts) / (requests + 1))


class AdaptiveThrottle:
    """Per-backend adaptive throttle; one instance per destination/backend a client talks to."""

    __slots__ = ("_counts", "_k")

    def __init__(self, k: float = 2.0, window_seconds: float = 120.0, buckets: int = 12) -> None:
        if k <= 0:
            raise ValueError("k must be > 0")
        self._k = k
        self._counts = WindowCounter(window_seconds, buckets=buckets, fields=2)

    def rejection_probability(self, now: float) -> float:
        requests, accepts = self._counts.totals(now)
        return rejection_probability(requests, accepts, self._k)

    def allow(self, now: float, rand: float) -> bool:
        """Decide one request. Counts it as a request whatever the outcome.

        ``rand`` is uniform in ``[0, 1)``; the request is rejected locally when
        ``rand < probability``. Returns True when the caller should send it.
        """
        probability = self.rejection_probability(now)
        self._counts.add(now, _REQUESTS)
        return rand >= probability

    def record_accepted(self, now: float) -> None:
        """The backend accepted a request sent after :meth:`allow` returned True."""
        self._counts.add(now, _ACCEPTS)

    def counts(self, now: float) -> tuple[int, int]:
        """``(requests, accepts)`` in the current window."""
        requests, accepts = self._counts.totals(now)
        return requests, accepts
