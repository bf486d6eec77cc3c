"""Closed forms: M/M/c waiting (Erlang C), Little's law, and how long a backlog takes to drain.

They hold for a steady state with Poisson arrivals and exponential service; the simulator
(`simulate.py`) covers what they cannot (retries, limits, time of day, failures), and the report
shows both and says why they differ.
"""

from __future__ import annotations

import math


def erlang_b(servers: int, offered: float) -> float:
    """Blocking probability of M/M/c/c with `offered` erlangs (the stable recursion)."""
    b = 1.0
    for k in range(1, servers + 1):
        b = offered * b / (k + offered * b)
    return b


def erlang_c(servers: int, offered: float) -> float:
    """Probability that an arrival waits in M/M/c; 1 when the queue is unstable."""
    if offered <= 0:
        return 0.0
    if offered >= servers:
        return 1.0
    b = erlang_b(servers, offered)
    rho = offered / servers
    return b / (1 - rho * (1 - b))


def mmc_wait_mean(arrivals: float, service_rate: float, servers: int) -> float:
    """Mean time in the queue (before service) of M/M/c; inf when unstable."""
    if arrivals <= 0:
        return 0.0
    offered = arrivals / service_rate
    if offered >= servers:
        return math.inf
    return erlang_c(servers, offered) / (servers * service_rate - arrivals)


def mmc_wait_quantile(arrivals: float, service_rate: float, servers: int, q: float) -> float:
    """The `q` quantile of the time in the queue of M/M/c: P(W > t) = C·e^(−(cμ−λ)t)."""
    if arrivals <= 0:
        return 0.0
    offered = arrivals / service_rate
    if offered >= servers:
        return math.inf
    c = erlang_c(servers, offered)
    tail = 1 - q
    if c <= tail:
        return 0.0
    return math.log(c / tail) / (servers * service_rate - arrivals)


def little_in_system(arrivals: float, time_in_system: float) -> float:
    """Little's law: L = λW."""
    return arrivals * time_in_system


def drain_seconds(backlog: float, capacity: float, arrivals: float) -> float:
    """Time to clear `backlog` at `capacity` per second while `arrivals` per second keep coming:
    B / (cμ − λ); inf when nothing is left over for it."""
    if backlog <= 0:
        return 0.0
    spare = capacity - arrivals
    return backlog / spare if spare > 0 else math.inf
