"""Failed-login throttle per client address: each failure delays the answer, too many refuse."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class LoginThrottle:
    def __init__(
        self,
        *,
        max_failures: int,
        window: float,
        base_delay: float,
        clock: Callable[[], float] = time.monotonic,
        max_tracked: int = 100_000,
    ) -> None:
        self._max = max_failures
        self._window = window
        self._delay = base_delay
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._max_tracked = max_tracked

    def _recent(self, key: str) -> deque[float]:
        now = self._clock()
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def blocked(self, key: str) -> bool:
        return len(self._recent(key)) >= self._max

    def failed(self, key: str) -> float:
        """Record a failure; returns how long to wait before answering it."""
        times = self._recent(key)
        if key not in self._failures:
            if len(self._failures) >= self._max_tracked:
                self._failures.pop(next(iter(self._failures)))
            self._failures[key] = times
        times.append(self._clock())
        return min(self._delay * len(times), 5.0)
