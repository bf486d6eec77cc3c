"""The nemesis: a seeded schedule of faults, and the thread that injects them.

The schedule is a pure function of the seed, the length and the cluster's size, so a failed run
can be repeated. At most one fault touches a node at a time, and one the database; a fault's own
record in the history runs from the moment it begins to the moment it is healed (for a killed
node: until it is serving again).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from tests.chaos.campaign.history import History, Op

# Faults during which a node may lose the answer to a delivery it made, or the lease on it:
# only these may explain a second copy of a message at the remote MX.
LOSES_LEASES = frozenset(
    {"kill", "pause", "partition-db", "partition-mx", "db-restart", "db-failover"}
)
NODE_FAULTS = ("kill", "pause", "restart", "drain", "partition-db", "partition-mx", "clock")
DB_FAULTS = ("db-restart", "db-failover")

# How often each fault is chosen; kills dominate, as the campaign's figure counts them.
WEIGHTS = {
    "kill": 8,
    "pause": 3,
    "restart": 1,
    "drain": 1,
    "partition-db": 2,
    "partition-mx": 2,
    "clock": 1,
    "db-restart": 0.5,
    "db-failover": 0.7,
}


@dataclass(frozen=True)
class Fault:
    at: float  # seconds from the start of the campaign
    kind: str
    node: int  # 1..n for a node's fault, 0 for the database
    seconds: float  # how long it lasts (a kill: how long the node stays down)
    sign: int = 1  # a clock jump's direction


def schedule(
    seed: int,
    length: float,
    nodes: int,
    lease: float,
    every: float = 3.0,
    kinds: Sequence[str] = (*NODE_FAULTS, *DB_FAULTS),
    tour: bool = False,
) -> list[Fault]:
    """Faults for `length` seconds, about one per `every` seconds; with `tour`, the first ones
    are one of each kind (in a seeded order), so a short run still tries every fault."""
    rng = random.Random(seed)
    names = [k for k in WEIGHTS if k in kinds]
    weights = [WEIGHTS[k] for k in names]
    first = rng.sample(names, len(names)) if tour else []
    busy_until = dict.fromkeys(range(nodes + 1), 0.0)
    faults: list[Fault] = []
    t = 2.0
    while t < length:
        kind = first[0] if first else rng.choices(names, weights)[0]
        if kind in DB_FAULTS:
            target = 0
        else:
            free = [i for i in range(1, nodes + 1) if busy_until[i] <= t]
            target = rng.choice(free) if free else -1
        if target >= 0 and busy_until[target] <= t:
            if kind == "pause":
                seconds = rng.uniform(lease + 0.5, lease * 2.5)  # long enough to lose leases
            elif kind == "kill":
                seconds = rng.uniform(0.5, lease * 1.5)
            elif kind in ("partition-db", "partition-mx"):
                seconds = rng.uniform(1.0, lease * 3)
            elif kind == "clock":
                seconds = rng.uniform(lease, lease * 4)
            else:
                seconds = 0.0
            faults.append(Fault(round(t, 2), kind, target, round(seconds, 2), rng.choice((1, -1))))
            if first:
                first.pop(0)
            # A restart of a node or of the database takes a few seconds beyond the fault.
            busy_until[target] = t + seconds + 6.0
        t += rng.expovariate(1 / every)
    return faults


class NodeHandle(Protocol):
    name: str

    def kill(self) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def restart(self) -> None: ...  # graceful stop, then start
    def drain(self) -> None: ...  # `mailfort node drain`, wait for the exit, start
    def start(self) -> None: ...
    def cut(self, what: str) -> None: ...  # "db" or "mx"
    def heal(self, what: str) -> None: ...
    def jump_clock(self, seconds: float) -> None: ...


class DatabaseHandle(Protocol):
    def restart_primary(self) -> None: ...
    def failover(self) -> None: ...


class Nemesis:
    """Runs a schedule in a thread; each fault in a thread of its own, so that a long one does
    not delay the next on another node."""

    def __init__(
        self,
        faults: list[Fault],
        nodes: dict[int, NodeHandle],
        database: DatabaseHandle,
        history: History,
        clock_jump: float = 600.0,
    ) -> None:
        self.faults = faults
        self.nodes = nodes
        self.database = database
        self.history = history
        self.clock_jump = clock_jump
        self._threads: list[threading.Thread] = []
        # A fault that runs late (a node slow to restart, a failover under load) holds its
        # target until it is over: the next one on it waits instead of overlapping.
        self._locks = {i: threading.Lock() for i in (0, *nodes)}
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []

    def start(self, stop: threading.Event) -> None:
        self._thread = threading.Thread(target=self._run, args=(stop,), name="nemesis")
        self._thread.start()

    def join(self, timeout: float = 120.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
        for t in self._threads:
            t.join(timeout)

    def _run(self, stop: threading.Event) -> None:
        began = time.monotonic()
        for fault in self.faults:
            wait = fault.at - (time.monotonic() - began)
            if wait > 0 and stop.wait(wait):
                return
            t = threading.Thread(target=self._inject, args=(fault,), name=f"fault-{fault.kind}")
            self._threads.append(t)
            t.start()

    def _inject(self, fault: Fault) -> None:
        target = "db" if fault.node == 0 else self.nodes[fault.node].name
        args = {"seconds": fault.seconds}
        if fault.kind == "clock":
            args["jump"] = fault.sign * self.clock_jump
        with self._locks[fault.node], self.history.op("nemesis", fault.kind, target, **args) as op:
            self._do(fault, op)
        if op.outcome != "ok":
            self.errors.append(op.line())

    def _do(self, fault: Fault, op: Op) -> None:
        if fault.node == 0:
            if fault.kind == "db-restart":
                self.database.restart_primary()
            else:
                self.database.failover()
            op.ok()
            return
        node = self.nodes[fault.node]
        steps: dict[str, Callable[[], None]] = {
            "kill": lambda: self._down(node.kill, node.start, fault.seconds),
            "pause": lambda: self._down(node.pause, node.resume, fault.seconds),
            "restart": node.restart,
            "drain": node.drain,
            "partition-db": lambda: self._down(
                lambda: node.cut("db"), lambda: node.heal("db"), fault.seconds
            ),
            "partition-mx": lambda: self._down(
                lambda: node.cut("mx"), lambda: node.heal("mx"), fault.seconds
            ),
            "clock": lambda: self._down(
                lambda: node.jump_clock(fault.sign * self.clock_jump),
                lambda: node.jump_clock(0),
                fault.seconds,
            ),
        }
        steps[fault.kind]()
        op.ok()

    @staticmethod
    def _down(begin: Callable[[], None], end: Callable[[], None], seconds: float) -> None:
        begin()
        try:
            time.sleep(seconds)
        finally:
            end()


def signal_process(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
