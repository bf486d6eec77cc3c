"""Overload defences as pure logic: admission limits, breakers, retry budgets, throttling.

Contract for everything in this package (DESIGN.md, "Overload"):

* Pure, synchronous logic. No sockets, no asyncio, no store or config imports, no threads, no
  logging side effects: it may import nothing but the standard library and itself
  (tests/unit/test_layers.py). Wiring into the servers and the delivery queue lives elsewhere.
* Callers pass the clock: every method that depends on time takes ``now`` (seconds, any
  monotonic origin, e.g. ``time.monotonic()`` or ``loop.time()``). Randomness is passed in too
  (a number in ``[0, 1)`` or an injected ``rand`` callable), so every decision is reproducible
  in tests.
* Memory is bounded: sliding windows are bucketed, never one entry per event.
* A refusal is cheap and temporary: the caller answers 4xx / ``NO [UNAVAILABLE]`` /
  ``-ERR [SYS/TEMP]`` / ``503`` and keeps serving the sessions it already has.

Modules:

* :mod:`.limit` -- adaptive concurrency limit (Gradient2/AIMD style) driven by latency and an
  external stress signal (event-loop lag, store commit latency).
* :mod:`.lag_limit` -- a concurrency limit driven by event-loop lag alone (AIMD), for work that
  mostly waits for its client (SMTP transactions), whose duration says nothing about the node.
* :mod:`.breaker` -- per-destination circuit breaker with jittered exponential backoff.
* :mod:`.budget` -- sliding-window counter and retry budget (retries <= a share of attempts).
* :mod:`.throttle` -- SRE adaptive client throttling,
  ``max(0, (requests - K*accepts) / (requests + 1))``.
"""

from mailfort.overload.breaker import BreakerConfig, BreakerState, CircuitBreaker, CircuitBreakers
from mailfort.overload.budget import RetryBudget, RetryBudgetConfig, WindowCounter
from mailfort.overload.lag_limit import LagLimit, LagLimitConfig
from mailfort.overload.limit import AdaptiveLimit, LimitConfig, Token
from mailfort.overload.throttle import AdaptiveThrottle

__all__ = [
    "AdaptiveLimit",
    "AdaptiveThrottle",
    "BreakerConfig",
    "BreakerState",
    "CircuitBreaker",
    "CircuitBreakers",
    "LagLimit",
    "LagLimitConfig",
    "LimitConfig",
    "RetryBudget",
    "RetryBudgetConfig",
    "Token",
    "WindowCounter",
]
