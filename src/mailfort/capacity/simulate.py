"""The discrete-event simulator (SimPy): one scenario, message by message, on one node of the
cluster that stands for every survivor.

Nodes are interchangeable and the load is spread evenly (senders pick among equal MX hosts;
workers lease from one queue), so each survivor sees the same thing: the simulator runs one node
with its share of everything — 1/N of the offered load before the event, 1/(N−k) after it — and
multiplies its counts by the number of live nodes. What it models:

- Messages arrive as a Poisson process following the workload's curve (thinning), each with a
  size class; a node admits one while its accept work in flight (waiting for a CPU or in
  service) is under its limit (the profile's `saturation_limit`, the adaptive limit at
  saturation), else it answers 4xx and the sender tries again after its own schedule
  (`[[senders]]`), until it gives up. An admitted message takes its CPU time, then the store's
  commit (drawn from a log-normal through the profile's p50 and p99), then its `250`.
- Local mail is in its mailbox at the `250`. Remote mail becomes a queue item; at most
  `delivery_concurrency` deliveries per node each take the delivery's CPU time and
  `remote_delivery_seconds` of waiting on the other side.
- IMAP and POP3 sessions take CPU from the same CPUs (FCFS), and are refused with the messages.
- The events: nodes lost (their share of the queue and of the senders' retries moves to the
  survivors, their deliveries in flight come back after `lease_seconds`, their messages in
  progress are retried by their senders), the database away for T seconds (every accept and
  login refused, no delivery finishes), a destination down for H hours (its deliveries fail
  after `connect_timeout_seconds` and wait for our retry schedule: full jitter, capped), a
  backlog of B queue items.

Large loads are simulated in cohorts: each simulated message stands for `cohort` messages (its
CPU time multiplied), so that a scenario stays within an event budget; the report says so, and
the latency figures of a cohort run come from the closed form.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import simpy

from mailfort.capacity.demand import Costs, Node, costs, planned_node
from mailfort.capacity.profile import Profile
from mailfort.capacity.workload import Scenario, Workload

# About this many simulated jobs per scenario (a few seconds of CPU); more are made cohorts.
EVENT_BUDGET = 400_000
# A queue item waiting longer than this (or five deliveries' time) for a free delivery slot is
# late — in a cluster with slots to spare items wait for none — and the drain lasts while items
# are: behind a backlog, new mail waits too, and the queue is back to normal only when it no
# longer does (B / (cμ − λ), not B / cμ).
LATE_SECONDS = 5.0
CONNECT_TIMEOUT = 30.0  # [delivery] connect_timeout
STRESS_POLL = 0.5  # how often a held-back delivery slot looks again
DESTINATION_SLOTS = 10  # [delivery] destination_concurrency


# What the simulation is held against: the closed form, and reality (the validation benchmark).
COMPARED = (
    "accepted_per_second",
    "peak_queue",
    "refused_share",
    "queue_drain_seconds",
    "drain_seconds",
)


def compared(result: Any) -> dict[str, float | None]:
    """The `COMPARED` figures of a simulation's or a closed form's result."""
    return {name: getattr(result, name) for name in COMPARED}


@dataclass(slots=True)
class Sample:
    """One interval of the run, counts for the whole cluster."""

    t: float  # end of the interval, seconds since the start of the simulated day/run
    offered: float = 0.0  # attempts to hand us a message, retries included
    retried: float = 0.0  # ... of which retries after a 4xx (or a node lost mid-transaction)
    accepted: float = 0.0
    refused: float = 0.0
    delivered: float = 0.0  # remote deliveries done
    queue: float = 0.0  # remote items not yet delivered (sampled at the end of the interval)
    waiting_senders: float = 0.0  # refused messages the senders hold for a retry
    cpu_busy: float = 0.0  # CPU seconds used / CPU seconds available, per node


@dataclass(frozen=True, slots=True, kw_only=True)
class SimResult:
    name: str
    nodes: int
    nodes_lost: int
    cohort: int
    start: float
    event: float
    end: float
    step: float
    series: tuple[Sample, ...]
    peak_queue: float
    baseline_queue: float
    drain_seconds: float | None  # all the event's work done; None: not within the horizon
    queue_drain_seconds: float | None  # the last late or event-made queue item delivered
    refused_share: float  # refused attempts / attempts, from the event to the end
    retried_share: float  # retries / attempts, from the event to the end
    accepted_per_second: float  # cluster, from the event to the end
    offered_per_second: float
    p99_time_to_250: float | None
    p99_time_to_mailbox: float | None
    undelivered: float  # messages first offered after the event, not in a mailbox by the end
    gave_up: float  # messages senders gave up on (would bounce at the sender)
    limit_reached: bool  # a node refused at its limit (not only during a database outage)
    max_utilisation: float  # busiest interval after the event, per node
    jobs: int  # simulated jobs (cohorts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "peak_queue": round(self.peak_queue),
            "baseline_queue": round(self.baseline_queue, 1),
            "drain_seconds": None if self.drain_seconds is None else round(self.drain_seconds, 1),
            "queue_drain_seconds": _round(self.queue_drain_seconds),
            "refused_share": round(self.refused_share, 4),
            "retried_share": round(self.retried_share, 4),
            "accepted_per_second": round(self.accepted_per_second, 2),
            "offered_per_second": round(self.offered_per_second, 2),
            "p99_time_to_250_seconds": _round(self.p99_time_to_250),
            "p99_time_to_mailbox_seconds": _round(self.p99_time_to_mailbox),
            "undelivered": round(self.undelivered),
            "gave_up": round(self.gave_up),
            "limit_reached": self.limit_reached,
            "max_utilisation": round(self.max_utilisation, 3),
            "cohort": self.cohort,
            "simulated_jobs": self.jobs,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass(slots=True)
class _Message:
    first: float  # first attempt
    cost: float  # CPU seconds (the cohort's)
    remote: bool
    after_event: bool
    attempts: int = 0
    sender: int = 0
    down: bool = False  # bound for the destination that is down
    tries: int = 0  # our delivery attempts
    caused: bool = False  # extra work the event made: the drain ends when none is left
    queued_at: float = 0.0


@dataclass(slots=True)
class _State:
    alive: int
    accept_in_flight: int = 0
    queue: deque[_Message] = field(default_factory=deque)
    deferred: int = 0  # queue items waiting for our retry
    delivering: int = 0
    waiting_senders: int = 0
    db_down: bool = False
    remote_down: bool = False
    down_connecting: int = 0  # deliveries waiting on the destination that is down


class Simulation:
    """One scenario on `nodes` nodes; `run()` once."""

    def __init__(
        self,
        profile: Profile,
        workload: Workload,
        scenario: Scenario,
        nodes: int,
        *,
        seed: int = 1,
        budget: int = EVENT_BUDGET,
        step: float | None = None,
        exponential: bool = False,
    ) -> None:
        if scenario.nodes_lost >= nodes:
            raise ValueError(f"{scenario.name}: losing {scenario.nodes_lost} of {nodes} nodes")
        self.profile = profile
        self.workload = workload
        self.scenario = scenario
        self.nodes = nodes
        self.costs: Costs = costs(profile, workload)
        self.node: Node = planned_node(profile, workload)
        self.rng = random.Random(seed)
        self.start = scenario.at_seconds - scenario.warmup_seconds
        self.event = scenario.at_seconds
        self.end = scenario.at_seconds + scenario.horizon_seconds
        self.cohort = self._cohort(budget)
        self.step = step or max(1.0, (self.end - self.start) / 720)
        n_steps = math.ceil((self.end - self.start) / self.step)
        self.samples = [Sample(t=self.start + (i + 1) * self.step) for i in range(n_steps)]
        # Cohorts arrive `cohort` times less often and stay as much longer in service, so by
        # Little's law as many are in flight as single messages would be: the limit is unscaled.
        self.limit = float(profile.saturation_limit)
        self.concurrency = max(1, round(workload.delivery_concurrency / self.cohort))
        # A stressed node (its CPUs queueing) claims only a quarter of its delivery slots, so
        # that taking over a lost node's queue does not take the CPU its own clients need.
        self.stressed_concurrency = max(1, self.concurrency // 4)
        self.refusal_cost = (profile.refusal_cpu or 0.0) * self.cohort / self.node.speed
        # A log-normal through the store's p50 and p99 commit times (z(0.99) = 2.326).
        p50, p99 = (
            profile.commit_p50_seconds,
            max(profile.commit_p99_seconds, profile.commit_p50_seconds),
        )
        self.commit_mu = math.log(p50)
        self.commit_sigma = math.log(p99 / p50) / 2.326
        self.env = simpy.Environment(initial_time=self.start)
        self.cpu = simpy.Resource(self.env, capacity=self.node.servers)
        self.state = _State(alive=nodes)
        self.queue_ready = simpy.Store(self.env)
        self.jobs = 0
        self.to_250: list[float] = []
        self.to_mailbox: list[float] = []
        self.gave_up = 0
        self.peak_items = 0.0
        self.caused_open = 0
        # A queue item that waited longer than this for a delivery slot is late.
        self.late = max(LATE_SECONDS, 5 * workload.remote_delivery_seconds)
        self.last_settled: float | None = None
        self.last_delivered_late: float | None = None  # the queue's part of the drain
        # Service times drawn exponentially around their means (M/M/c, to check the engine
        # against Erlang C) instead of each kind of work's measured time (the default).
        self.exponential = exponential
        self.waits: list[float] = []  # accepted messages' time waiting for a CPU, after warmup
        self._granted = 0.0  # CPU seconds handed out (at speed), for the utilisation
        # Messages first offered after the event and not yet in a mailbox, by id: those left at
        # the end count with the time they have waited (the p99 is then a lower bound).
        self._open: dict[int, _Message] = {}
        self.refused_at_limit = 0
        self.sender_weights = [s.share for s in workload.senders]
        self._size_weights = [share for _, share, _ in self.costs.accept_by_class]
        self._size_costs = [cpu for _, _, cpu in self.costs.accept_by_class]

    # --- setup ---------------------------------------------------------------------------------

    def _mean_rate(self, rate: Callable[[float], float]) -> float:
        points = [self.start + i * (self.end - self.start) / 48 for i in range(49)]
        return sum(rate(t) for t in points) / len(points)

    def _cohort(self, budget: int) -> int:
        w = self.workload
        per_node = 1 / max(1, self.nodes - self.scenario.nodes_lost)
        jobs = (
            self._mean_rate(
                lambda t: (
                    w.messages_per_second(t) * (1 + w.remote_share)
                    + w.logins_per_second("imap", t)
                    + w.logins_per_second("pop3", t)
                )
            )
            * (self.end - self.start)
            * per_node
        )
        jobs += self.scenario.backlog * per_node
        return max(1, math.ceil(jobs / budget))

    def _sample(self, t: float) -> Sample:
        i = int((t - self.start) // self.step)
        return self.samples[min(max(i, 0), len(self.samples) - 1)]

    def _scale(self) -> float:
        """A representative count → the cluster's count."""
        return self.cohort * self.state.alive

    # --- processes -----------------------------------------------------------------------------

    def _arrivals(
        self,
        rate: Callable[[float], float],
        top: float,
        make: Callable[[], Generator[Any, Any, None]],
    ) -> Generator[Any, Any, None]:
        """A Poisson process of `rate(t)` (per node, cohorts) by thinning against `top`."""
        env = self.env
        if top <= 0:
            return
        while True:
            yield env.timeout(self.rng.expovariate(top))
            if env.now >= self.end:
                return
            if self.rng.random() * top <= rate(env.now):
                env.process(make())

    def _node_rate(self, cluster_rate: float) -> float:
        return cluster_rate / self.state.alive / self.cohort

    def _new_message(self) -> Generator[Any, Any, None]:
        w = self.workload
        cost = self.rng.choices(self._size_costs, self._size_weights)[0] * self.cohort
        remote = self.rng.random() < w.remote_share
        m = _Message(
            first=self.env.now,
            cost=cost,
            remote=remote,
            after_event=self.env.now >= self.event,
            sender=self.rng.choices(range(len(w.senders)), self.sender_weights)[0],
        )
        if remote and self.scenario.remote_down_share:
            m.down = self.rng.random() < self.scenario.remote_down_share
        if m.after_event and not m.down:
            self._open[id(m)] = m
        yield from self._attempt(m)

    def _attempt(self, m: _Message) -> Generator[Any, Any, None]:
        env, state = self.env, self.state
        m.attempts += 1
        sample = self._sample(env.now)
        scale = self._scale()
        sample.offered += scale
        if m.attempts > 1:
            sample.retried += scale
        if state.db_down or state.accept_in_flight >= self.limit:
            if not state.db_down:
                self.refused_at_limit += 1
            sample.refused += scale
            self._refuse()
            self._sender_retry(m)
            return
        self.jobs += 1
        state.accept_in_flight += 1
        started = env.now
        yield from self._use_cpu(m.cost / self.node.speed, waits=True)
        commit = self.rng.lognormvariate(self.commit_mu, self.commit_sigma)
        yield env.timeout(commit)
        state.accept_in_flight -= 1
        if state.db_down:  # the commit never happened: the sender sees no 250
            sample = self._sample(env.now)
            sample.refused += self._scale()
            self._sender_retry(m)
            return
        self._sample(env.now).accepted += self._scale()
        if env.now >= self.event:
            self.to_250.append(env.now - started)
        if m.remote:
            self._settle(m)  # the refusal is over; its delivery is ordinary work
            self._enqueue(m)
        else:
            self._done(m)

    def _use_cpu(self, seconds: float, waits: bool = False) -> Generator[Any, Any, None]:
        if self.exponential:
            seconds = self.rng.expovariate(1 / seconds)
        asked = self.env.now
        with self.cpu.request() as cpu:
            yield cpu
            if waits and asked >= self.event:
                self.waits.append(self.env.now - asked)
            self._granted += seconds
            yield self.env.timeout(seconds)

    def _cause(self, m: _Message) -> _Message:
        """Mark `m` as work the event made (moved from a lost node, refused, held by a silent
        destination, the backlog); the drain is over when the last such message is settled."""
        if not m.caused and self.env.now >= self.event:
            m.caused = True
            self.caused_open += 1
        return m

    def _settle(self, m: _Message, delivered: bool = False) -> None:
        if m.caused:
            m.caused = False
            self.caused_open -= 1
            self.last_settled = self.env.now
            if delivered:
                self.last_delivered_late = self.env.now

    def _done(self, m: _Message, delivered: bool = False) -> None:
        self._settle(m, delivered)
        # Mail for a destination that was down waits on it, not on us: the p99 that judges the
        # platform is everyone else's.
        if m.down:
            self._open.pop(id(m), None)
        elif m.after_event:
            self.to_mailbox.append(self.env.now - m.first)
            self._open.pop(id(m), None)

    def _sender_retry(self, m: _Message) -> None:
        sender = self.workload.senders[m.sender]
        delay = sender.delay(m.attempts)
        if self.env.now + delay - m.first > sender.give_up_seconds:
            self.gave_up += 1
            self._settle(m)  # the sender bounces it: nothing more for us to do
            return
        self._cause(m)
        self.state.waiting_senders += 1
        self._note()
        self.env.process(self._retry_later(m, delay))

    def _retry_later(self, m: _Message, delay: float) -> Generator[Any, Any, None]:
        yield self.env.timeout(delay)
        self.state.waiting_senders -= 1
        self._note()
        yield from self._attempt(m)

    def _stressed(self) -> bool:
        return len(self.cpu.queue) > self.node.servers

    def _refuse(self) -> None:
        """A refusal takes the CPU of a connection turned away (nothing if not measured)."""
        if self.refusal_cost:
            self.env.process(self._use_cpu(self.refusal_cost))

    def _session(self, cost: float) -> Generator[Any, Any, None]:
        state = self.state
        if state.db_down or state.accept_in_flight >= self.limit:
            self._refuse()
            return
        self.jobs += 1
        yield from self._use_cpu(cost * self.cohort / self.node.speed)

    def _deliverer(self) -> Generator[Any, Any, None]:
        env, state, w = self.env, self.state, self.workload
        while True:
            if not state.queue:
                yield self.queue_ready.get()
                continue
            if state.db_down:
                yield env.timeout(1.0)
                continue
            if state.delivering >= self.stressed_concurrency and self._stressed():
                yield env.timeout(STRESS_POLL)
                continue
            m = state.queue.popleft()
            if env.now - m.queued_at > self.late:
                # It waited behind a backlog or for a CPU taken by accepting: the event's work
                # too, so the drain lasts until items stop being late.
                self._cause(m)
            state.delivering += 1
            self.jobs += 1
            yield from self._use_cpu(self.costs.delivery * self.cohort / self.node.speed)
            if m.down and state.remote_down:
                # Per-destination concurrency and the circuit breaker keep a silent destination
                # from holding every delivery slot: past `DESTINATION_SLOTS` waiting on it, the
                # item is deferred at once.
                if state.down_connecting < max(1, DESTINATION_SLOTS / self.cohort):
                    state.down_connecting += 1
                    yield env.timeout(CONNECT_TIMEOUT)
                    state.down_connecting -= 1
                state.delivering -= 1
                m.tries += 1
                self._cause(m)
                ceiling = min(w.retry_max_seconds, w.retry_base_seconds * 2 ** min(m.tries - 1, 30))
                state.deferred += 1
                env.process(self._requeue(m, self.rng.uniform(ceiling / 2, ceiling)))
                continue
            yield env.timeout(w.remote_delivery_seconds)
            while state.db_down:  # the delivery cannot be recorded: wait for the store
                yield env.timeout(1.0)
            state.delivering -= 1
            self._note()
            self._sample(env.now).delivered += self._scale()
            self._done(m, delivered=True)

    def _requeue(self, m: _Message, delay: float) -> Generator[Any, Any, None]:
        yield self.env.timeout(delay)
        self.state.deferred -= 1
        self._enqueue(m)

    def _monitor(self) -> Generator[Any, Any, None]:
        state = self.state
        busy_before = 0.0
        for sample in self.samples:
            yield self.env.timeout(max(0.0, sample.t - self.env.now))
            items = len(state.queue) + state.deferred + state.delivering
            sample.queue = items * self._scale()
            sample.waiting_senders = state.waiting_senders * self._scale()
            # CPU time handed out in the interval (counted when granted) over what it had.
            sample.cpu_busy = (
                (self._granted - busy_before) * self.node.speed / (self.step * self.node.cpus)
            )
            busy_before = self._granted

    def _event(self) -> Generator[Any, Any, None]:
        env, s, state = self.env, self.scenario, self.state
        yield env.timeout(self.event - env.now)
        if s.nodes_lost:
            before = state.alive
            state.alive = before - s.nodes_lost
            moved = s.nodes_lost / state.alive
            # The dead nodes' share of the queue and of the senders' pending retries comes to
            # the survivors; so do the messages they had in progress (no 250: retried) and,
            # once their leases expire, the deliveries they held.
            extra_queue = self._take(len(state.queue) + state.deferred, moved)
            in_flight = self._take(state.delivering, moved)
            retrying = self._take(state.waiting_senders, moved)
            broken = self._take(state.accept_in_flight, moved)
            for _ in range(extra_queue):
                self._enqueue(self._cause(self._copy_item()))
            for _ in range(retrying + broken):
                self._sender_retry(self._copy_message())
            env.process(self._after(self.workload.lease_seconds, in_flight))
        if s.backlog:
            for _ in range(self._take(s.backlog, 1 / state.alive / self.cohort)):
                self._enqueue(
                    self._cause(_Message(first=env.now, cost=0.0, remote=True, after_event=False))
                )
        if s.database_down_seconds:
            state.db_down = True
            env.process(self._until(s.database_down_seconds, "db_down"))
        if s.remote_down_seconds:
            state.remote_down = True
            env.process(self._until(s.remote_down_seconds, "remote_down"))

    def _take(self, count: float, share: float) -> int:
        """`count × share` as a whole number, the fraction drawn at random (unbiased)."""
        exact = count * share
        whole = int(exact)
        return whole + (1 if self.rng.random() < exact - whole else 0)

    def _copy_item(self) -> _Message:
        down = bool(self.scenario.remote_down_share) and (
            self.rng.random() < self.scenario.remote_down_share
        )
        return _Message(first=self.env.now, cost=0.0, remote=True, after_event=False, down=down)

    def _copy_message(self) -> _Message:
        w = self.workload
        cost = self.rng.choices(self._size_costs, self._size_weights)[0] * self.cohort
        return _Message(
            first=self.env.now,
            cost=cost,
            remote=self.rng.random() < w.remote_share,
            after_event=False,
            attempts=1,
            sender=self.rng.choices(range(len(w.senders)), self.sender_weights)[0],
        )

    def _enqueue(self, m: _Message) -> None:
        m.queued_at = self.env.now
        self.state.queue.append(m)
        self.queue_ready.put(None)
        self._note()

    def _note(self) -> None:
        """Follow the queue's peak at every change, not only at the samples."""
        state, scale = self.state, self._scale()
        items = (len(state.queue) + state.deferred + state.delivering) * scale
        self.peak_items = max(self.peak_items, items)

    def _after(self, delay: float, count: int) -> Generator[Any, Any, None]:
        yield self.env.timeout(delay)
        for _ in range(count):
            self._enqueue(self._cause(self._copy_item()))

    def _until(self, seconds: float, flag: str) -> Generator[Any, Any, None]:
        yield self.env.timeout(seconds)
        setattr(self.state, flag, False)

    # --- run -----------------------------------------------------------------------------------

    def run(self) -> SimResult:
        w, env = self.workload, self.env
        top_messages = max(w.messages_per_second(t) for t in _hours(self.start, self.end))
        top_messages = top_messages / (self.nodes - self.scenario.nodes_lost) / self.cohort
        env.process(
            self._arrivals(
                lambda t: self._node_rate(w.messages_per_second(t)), top_messages, self._new_message
            )
        )
        for protocol, cost in (
            ("imap", self.costs.imap_session),
            ("pop3", self.costs.pop3_session),
        ):
            top = max(w.logins_per_second(protocol, t) for t in _hours(self.start, self.end))
            top = top / (self.nodes - self.scenario.nodes_lost) / self.cohort
            env.process(
                self._arrivals(
                    lambda t, p=protocol: self._node_rate(w.logins_per_second(p, t)),  # type: ignore[misc]
                    top,
                    lambda c=cost: self._session(c),  # type: ignore[misc]
                )
            )
        for _ in range(self.concurrency):
            env.process(self._deliverer())
        env.process(self._monitor())
        env.process(self._event())
        env.run(until=self.end + 1e-6)  # the last sample falls at `end` itself
        return self._result()

    def _result(self) -> SimResult:
        s = self.scenario
        before = [x for x in self.samples if x.t < self.event]
        after = [x for x in self.samples if x.t > self.event]
        baseline = _mean([x.queue for x in before])
        # None: work the event made is still open at the end of the horizon.
        drain = None if self.caused_open else (self.last_settled or self.event) - self.event
        queue_open = any(m.caused for m in self.state.queue) or self.state.deferred
        late = self.last_delivered_late
        queue_drain = None if queue_open else (late or self.event) - self.event
        attempts = sum(x.offered for x in after)
        duration = self.end - self.event
        for m in self._open.values():
            self.to_mailbox.append(self.end - m.first)
        return SimResult(
            name=s.name,
            nodes=self.nodes,
            nodes_lost=s.nodes_lost,
            cohort=self.cohort,
            start=self.start,
            event=self.event,
            end=self.end,
            step=self.step,
            series=tuple(self.samples),
            peak_queue=self.peak_items,
            baseline_queue=baseline,
            drain_seconds=drain,
            queue_drain_seconds=queue_drain,
            refused_share=(sum(x.refused for x in after) / attempts) if attempts else 0.0,
            retried_share=(sum(x.retried for x in after) / attempts) if attempts else 0.0,
            accepted_per_second=sum(x.accepted for x in after) / duration,
            offered_per_second=attempts / duration,
            # A cohort's wait is `cohort` messages long: no time to 250 is honest then.
            p99_time_to_250=quantile(self.to_250, 0.99) if self.cohort == 1 else None,
            p99_time_to_mailbox=quantile(self.to_mailbox, 0.99),
            undelivered=len(self._open) * self.cohort * self.state.alive,
            gave_up=self.gave_up * self.cohort * self.state.alive,
            limit_reached=self.refused_at_limit > 0,
            max_utilisation=max((x.cpu_busy for x in after), default=0.0),
            jobs=self.jobs,
        )


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _hours(start: float, end: float) -> list[float]:
    """A time in each hour between start and end (for the top of a piecewise-constant rate)."""
    points = [start]
    t = (start // 3600 + 1) * 3600
    while t < end:
        points.append(t)
        t += 3600
    return points


def simulate(
    profile: Profile,
    workload: Workload,
    scenario: Scenario,
    nodes: int,
    *,
    seed: int = 1,
    budget: int = EVENT_BUDGET,
) -> SimResult:
    """Run one scenario on `nodes` nodes."""
    return Simulation(profile, workload, scenario, nodes, seed=seed, budget=budget).run()
