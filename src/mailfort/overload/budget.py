"""Sliding-window counting and a retry budget.

Why a retry budget: retries multiply load exactly when a backend is already failing, which is
how one slow node turns into a cascade. The Google SRE book (ch. 22, "Addressing Cascading
Failures" -> "Retries") recommends a per-client retry budget: retries may be at most ~10 % of
requests over a window, on top of a per-request cap of ~3 tries, retrying at one layer only,
with exponential backoff and jitter. When the budget is spent the caller does not retry now;
for mailfort that means a queue item stays deferred (SMTP senders and our queue retry for days,
so a deferral costs nothing, while a retry storm against a sick MX costs everyone).

Pure logic: the caller passes ``now``; memory is ``O(buckets)``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


class WindowCounter:
    """Counts events per field over a sliding time window, in fixed time buckets.

    The window is ``buckets`` slices of ``window_seconds / buckets`` each; totals cover the
    current slice and the ``buckets - 1`` before it, so an event counts for between
    ``window_seconds * (buckets - 1) / buckets`` and ``window_seconds``. Bucketing (rather than
    one timestamp per event) keeps memory bounded at any event rate, which matters precisely
    under overload. If the clock steps backwards, events are counted in the newest slice.
    """

    __slots__ = ("_buckets", "_fields", "_slots", "_width")

    def __init__(self, window_seconds: float, *, buckets: int = 10, fields: int = 1) -> None:
        if window_seconds <= 0 or buckets < 1 or fields < 1:
            raise ValueError("window_seconds must be > 0, buckets and fields >= 1")
        self._width = window_seconds / buckets
        self._buckets = buckets
        self._fields = fields
        self._slots: deque[tuple[int, list[int]]] = deque()

    def _index(self, now: float) -> int:
        index = math.floor(now / self._width)
        if self._slots and index < self._slots[-1][0]:
            return self._slots[-1][0]
        return index

    def _prune(self, index: int) -> None:
        while self._slots and self._slots[0][0] <= index - self._buckets:
            self._slots.popleft()

    def add(self, now: float, field: int = 0, n: int = 1) -> None:
        """Count ``n`` events of ``field`` at time ``now``."""
        index = self._index(now)
        self._prune(index)
        if not self._slots or self._slots[-1][0] != index:
            self._slots.append((index, [0] * self._fields))
        self._slots[-1][1][field] += n

    def totals(self, now: float) -> tuple[int, ...]:
        """Per-field totals over the window ending at ``now``."""
        self._prune(self._index(now))
        sums = [0] * self._fields
        for _, counts in self._slots:
            for i, c in enumerate(counts):
                sums[i] += c
        return tuple(sums)

    def total(self, now: float, field: int = 0) -> int:
        return self.totals(now)[field]

    def clear(self) -> None:
        self._slots.clear()


@dataclass(frozen=True, slots=True)
class RetryBudgetConfig:
    """Retry budget knobs.

    ``ratio``: retries may be at most this share of all attempts (first tries + retries) in the
    window; 0.1 follows SRE ch. 22. ``reserve``: retries allowed per window regardless of the
    ratio, so a low-traffic destination can still retry at all (Finagle's RetryBudget has the
    same "minimum retries per second" for the same reason); set 0 for a strict share.
    ``max_attempts``: the SRE per-request cap (3 tries), checked by :meth:`RetryBudget.try_retry`
    when the caller passes the attempt number.
    """

    ratio: float = 0.1
    window_seconds: float = 60.0
    reserve: int = 10
    max_attempts: int = 3
    buckets: int = 10

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio < 1.0:
            raise ValueError("ratio must be in [0, 1)")
        if self.reserve < 0 or self.max_attempts < 1:
            raise ValueError("reserve must be >= 0 and max_attempts >= 1")


_FIRST = 0
_RETRY = 1


class RetryBudget:
    """Allows a retry only while retries stay within a fixed share of attempts.

    Usage: call :meth:`record_attempt` for every first try; before each retry call
    :meth:`try_retry`, which either counts the retry and returns True, or returns False (do
    not retry now; defer). A retry is granted only if, counting it, the current window holds
    ``retries <= ratio * attempts + reserve`` (``attempts`` includes the retries). As first
    attempts age out of the window before the retries they paid for, the share may briefly read
    higher afterwards; no new retry is granted until it is back under.
    """

    __slots__ = ("_config", "_counts")

    def __init__(self, config: RetryBudgetConfig | None = None) -> None:
        self._config = config or RetryBudgetConfig()
        self._counts = WindowCounter(
            self._config.window_seconds, buckets=self._config.buckets, fields=2
        )

    @property
    def config(self) -> RetryBudgetConfig:
        return self._config

    def record_attempt(self, now: float) -> None:
        """Count a first attempt (not a retry)."""
        self._counts.add(now, _FIRST)

    def _allowed(self, first: int, retries: int) -> bool:
        attempts = first + retries
        # The retry itself is an attempt too, hence the +1 on both sides. A tiny epsilon keeps
        # exact shares (e.g. 11 of 111 at 10 %) from failing on float rounding.
        limit = self._config.ratio * (attempts + 1) + self._config.reserve
        return retries + 1 <= limit + 1e-9

    def can_retry(self, now: float) -> bool:
        """Would a retry be allowed now? Does not count anything."""
        first, retries = self._counts.totals(now)
        return self._allowed(first, retries)

    def try_retry(self, now: float, attempt: int | None = None) -> bool:
        """Spend budget for one retry; False means "do not retry now".

        ``attempt`` is the 1-based number of the try about to be made (2 for the first retry);
        if given, tries beyond ``max_attempts`` are refused regardless of budget.
        """
        if attempt is not None and attempt > self._config.max_attempts:
            return False
        first, retries = self._counts.totals(now)
        if not self._allowed(first, retries):
            return False
        self._counts.add(now, _RETRY)
        return True

    def counts(self, now: float) -> tuple[int, int]:
        """``(first_attempts, retries)`` in the current window."""
        first, retries = self._counts.totals(now)
        return first, retries
