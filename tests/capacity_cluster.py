"""A real cluster under a measured open-loop load, for checking the capacity simulator against it.

Shared by `benchmarks/capacity_validation.py` (minutes, repeated) and
`tests/chaos/test_capacity_validation.py` (its bounded version). The pieces:

- `CpuGroup`: a cgroup (v1 `cpu` controller) with a fixed CPU quota per node. Without one, the
  nodes share the machine's cores with PostgreSQL and the load generator, and a killed node just
  hands its CPU to the others: "a node" of the model would mean nothing. The node is started
  inside its group (a shell writes its own pid to `cgroup.procs`, then execs the node), so every
  thread and worker it ever starts is counted. (`capacity/cgroup.py`'s CpuQuota, written at the
  same time for `capacity measure`, does the same with the kernel's 100 ms period and a process
  moved in after it started; the two are to be folded into one, with the period a parameter.)
- `Cluster`: N `mailfort serve` nodes on one PostgreSQL schema, each in its own group, a remote
  MX (tests/smtpsink.py) that answers each message after a fixed delay, and aliases that forward
  to it, so that part of the load is relayed and a real queue forms.
- `generate`: an open-loop load generator (its own process): messages arrive as a Poisson process
  at a fixed rate whatever the nodes do, each on a new connection to the nodes in turn, as an MTA
  treats MX hosts of equal preference: a refused or reset connection goes to the next node at
  once, a 4xx comes back after the sender's retry delay. Every attempt is recorded.
- `observe`: throughput, peak queue, refusal share and drain time from the records, as the
  planner defines them; `compare`: measured against predicted, within a tolerance.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib.util
import json
import math
import os
import platform
import random
import re
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CGROUP_CPU = Path("/sys/fs/cgroup/cpu")
CLK_TCK = os.sysconf("SC_CLK_TCK")
DOMAIN = "bench.test"
REMOTE = "remote.test"
SENDER = "sender@source.test"
LINE = b"The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs.\r\n"
SEQ = re.compile(rb"^X-Load-Id: (\d+)-(\d+)\r?$", re.M)
METRICS = ("throughput", "peak_queue", "refused_share", "drain_seconds")

# A reply code for an attempt that got no SMTP answer: the connection was refused or reset (a
# dead node), or timed out.
NO_ANSWER = 0


# -- CPU quotas ---------------------------------------------------------------------------------
class CgroupUnavailable(RuntimeError):
    """No writable cgroup v1 `cpu` controller: the validation cannot give nodes a fixed CPU."""


@dataclass
class CpuGroup:
    """A cgroup with `cpus` CPUs of quota (`cpu.cfs_quota_us` / `cpu.cfs_period_us`).

    The period is short (10 ms, not the kernel's 100 ms): a node over its quota is stopped until
    the period ends, and with 100 ms and a quota of 0.2 CPU that is 80 ms at a time, which the
    node's event-loop lag signal reads as a stall and answers by shrinking its session limit. A
    short period spreads the same CPU evenly, as a slower CPU would."""

    path: Path
    cpus: float
    period_us: int

    @classmethod
    def create(cls, name: str, cpus: float, period_us: int = 10_000) -> CpuGroup:
        """A new group, without a quota until `limit()`: a node starts (imports, migrations) at
        full speed, then runs with its quota."""
        if not (CGROUP_CPU / "cpu.cfs_quota_us").exists():
            raise CgroupUnavailable(
                f"no cgroup v1 cpu controller at {CGROUP_CPU} (needed for a CPU quota per node)"
            )
        path = CGROUP_CPU / name
        try:
            path.mkdir()
            (path / "cpu.cfs_period_us").write_text(str(period_us))
        except OSError as exc:
            with contextlib.suppress(OSError):
                path.rmdir()
            raise CgroupUnavailable(f"cannot make the cgroup {path}: {exc}") from None
        return cls(path, cpus, period_us)

    def limit(self) -> None:
        quota = max(1000, round(self.cpus * self.period_us))
        (self.path / "cpu.cfs_quota_us").write_text(str(quota))

    def wrap(self) -> list[str]:
        """A command prefix that runs the command inside this group from its first instruction."""
        return ["sh", "-c", f'echo $$ > {self.path}/cgroup.procs && exec "$@"', "cpu-quota"]

    def throttled(self) -> tuple[int, float]:
        """(periods in which the group ran out of quota, seconds it was held back)."""
        stat = dict(
            line.split() for line in (self.path / "cpu.stat").read_text().splitlines() if line
        )
        return int(stat.get("nr_throttled", 0)), int(stat.get("throttled_time", 0)) / 1e9

    def remove(self) -> None:
        procs = self.path / "cgroup.procs"
        for _ in range(50):
            with contextlib.suppress(OSError):
                for pid in procs.read_text().split():
                    (CGROUP_CPU / "cgroup.procs").write_text(pid)
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (all threads), from /proc; NaN once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# -- the setup ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Setup:
    """Everything that makes one run of the cluster what it is (the workload file says it)."""

    nodes: int = 3
    node_cpus: float = 0.1
    size: int = 65536
    remote_share: float = 0.2
    users: int = 20
    forwards: int = 20
    sink_delay: float = 0.2  # the remote MX's time to answer the final dot
    delivery_concurrency: int = 16  # remote deliveries one node runs at once
    lease_seconds: float = 10.0
    retry_base: float = 2.0
    retry_max: float = 10.0
    sender_retry: float = 5.0  # the load generator's delay after a 4xx
    connections: int = 16  # per node from the load generator, then 421 at connect

    def node_delivery(self, sink_port: int) -> str:
        return (
            'dns_nameservers = ["127.0.0.1:9"]\ndns_timeout = 1.0\n'
            f"retry_base = {self.retry_base}\nretry_max = {self.retry_max}\n"
            f"max_in_flight = {self.delivery_concurrency}\n"
            f"destination_concurrency = {self.delivery_concurrency}\n"
            f'[delivery.transports]\n"{REMOTE}" = "127.0.0.1:{sink_port}"\n'
        )


# Every client of the run comes from 127.0.0.1: the per-network shares and rates that keep a
# stranger from taking a node would turn the load generator away long before the CPU runs out.
# What bounds a node's work in flight is then its connection limit for one client (421 at
# connect): without one, an overloaded node took every connection, shared its CPU among all of
# them, and each one took longer than the sender waits (goodput near zero, see the benchmark's
# README section).
NODE_EXTRA = """
[limits]
max_connections = 4000
max_connections_per_ip = {connections}
max_network_share = 1.0
max_connection_rate_per_network = 0

[dkim]
sign = false
arc = false
"""


class Cluster:
    """The nodes, their groups, the schema and the remote MX of one run; `close()` undoes it."""

    def __init__(self, setup: Setup, root: Path, admin_dsn: str) -> None:
        from tests.cluster_support import PgSchema
        from tests.nodeproc import NodeProcess
        from tests.smtpsink import Sink

        self.setup = setup
        self.groups: list[CpuGroup] = []
        self.nodes: list[NodeProcess] = []
        self.schema = PgSchema.create(admin_dsn)
        self.sink = Sink(delay=setup.sink_delay, record_prefix=1024, timeout=300.0).start()
        token = secrets.token_hex(3)
        try:
            self.schema.provision(
                domains=(DOMAIN,),
                users={self.user(i): "x" for i in range(setup.users)},
                aliases=tuple((self.forward(i), f"far{i}@{REMOTE}") for i in range(setup.forwards)),
            )
            for i in range(setup.nodes):
                group = CpuGroup.create(f"mailfort-validate-{token}-n{i + 1}", setup.node_cpus)
                self.groups.append(group)
                node = NodeProcess(
                    root / f"n{i + 1}",
                    name=f"n{i + 1}",
                    store_url=self.schema.url,
                    lease_seconds=setup.lease_seconds,
                    delivery=setup.node_delivery(self.sink.port),
                    extra_config=NODE_EXTRA.format(connections=setup.connections),
                    http=True,
                    wrap=group.wrap(),
                )
                node.write_config()
                self.nodes.append(node)
            with ThreadPoolExecutor(len(self.nodes)) as pool:
                list(pool.map(lambda node: node.start(timeout=60), self.nodes))
            for group in self.groups:
                group.limit()
        except BaseException:
            self.close()
            raise

    @staticmethod
    def user(i: int) -> str:
        return f"u{i}@{DOMAIN}"

    @staticmethod
    def forward(i: int) -> str:
        return f"fw{i}@{DOMAIN}"

    @property
    def ports(self) -> list[int]:
        return [n.ports["smtp"] for n in self.nodes]

    @property
    def pids(self) -> list[int]:
        # The node is the shell's exec: the same pid.
        return [n.proc.pid if n.proc else 0 for n in self.nodes]

    def cpu_seconds(self) -> list[float]:
        """CPU seconds each node has used (NaN for a dead one)."""
        return [process_cpu_seconds(pid) for pid in self.pids]

    def alive(self) -> list[bool]:
        return [n.proc is not None and n.proc.poll() is None for n in self.nodes]

    def kill(self, index: int) -> None:
        self.nodes[index].kill()

    def metrics(self, index: int) -> dict[str, float]:
        """The node's /metrics, flattened to `name{labels}` -> value."""
        port = self.nodes[index].ports["http"]
        text = ""
        # An overloaded node may refuse the page (503) or answer late: try for a while.
        for _ in range(3):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                    text = r.read().decode()
                break
            except OSError:
                time.sleep(1.0)
        found: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    found[name] = float(value)
        return found

    def close(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop()
        for group in self.groups:
            group.remove()
        self.sink.stop()
        self.schema.drop()


# -- the load -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadJob:
    ports: Sequence[int]
    rate: float  # first attempts per second (Poisson)
    duration: float  # seconds of arrivals
    start_at: float  # time.time() of the first arrival
    size: int
    remote_share: float
    users: int
    forwards: int
    retry_delay: float  # after a 4xx; 0: a refused message is dropped (calibration)
    run: int = 1
    seed: int = 1
    first_node: int | None = None  # every message starts on this node (None: in turn)
    attempt_timeout: float = 30.0


@dataclass
class LoadResult:
    # (start, end, node, code, seq): times are time.time(); code NO_ANSWER for no SMTP reply
    attempts: list[tuple[float, float, int, int, int]] = field(default_factory=list)
    remote: dict[int, bool] = field(default_factory=dict)  # seq -> relayed (not local)
    cpu: float = 0.0  # the generator's own CPU seconds
    wall: float = 0.0
    run: int = 0  # the first number of X-Load-Id: this run's messages

    def acked(self) -> set[int]:
        return {a[4] for a in self.attempts if a[3] == 250}

    def uncertain(self) -> set[int]:
        """Messages whose connection broke after the greeting: the node may have committed."""
        return {a[4] for a in self.attempts if a[3] == NO_ANSWER and a[1] - a[0] > 0.0}


async def _reply(reader: asyncio.StreamReader) -> int:
    while True:
        line = await reader.readline()
        if len(line) < 4:
            raise ConnectionResetError("connection closed")
        if line[3:4] != b"-":
            return int(line[:3])


async def _transaction(port: int, rcpt: str, payload: bytes) -> tuple[int, bool]:
    """(reply code, whether the node had answered the greeting)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return NO_ANSWER, False
    greeted = False
    try:
        code = await _reply(reader)
        if code != 220:
            return code, True
        greeted = True
        for command in (
            b"EHLO load.test\r\n",
            f"MAIL FROM:<{SENDER}>\r\n".encode(),
            f"RCPT TO:<{rcpt}>\r\n".encode(),
        ):
            writer.write(command)
            code = await _reply(reader)
            if code != 250:
                return code, True
        writer.write(b"DATA\r\n")
        code = await _reply(reader)
        if code != 354:
            return code, True
        writer.write(payload)
        code = await _reply(reader)
        writer.write(b"QUIT\r\n")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(_reply(reader), 5)
        return code, True
    except (OSError, asyncio.IncompleteReadError, ValueError):
        return NO_ANSWER, greeted
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def message(run: int, seq: int, rcpt: str, size: int) -> bytes:
    head = (
        f"X-Load-Id: {run}-{seq}\r\nFrom: <{SENDER}>\r\nTo: <{rcpt}>\r\n"
        f"Subject: load {seq}\r\nMessage-ID: <{run}.{seq}@source.test>\r\n\r\n"
    ).encode()
    body = LINE * max(1, (size - len(head)) // len(LINE))
    return head + body + b".\r\n"


async def _load(job: LoadJob, out: LoadResult) -> None:
    rng = random.Random(job.seed)
    n = len(job.ports)
    end = job.start_at + job.duration
    tasks: set[asyncio.Task[None]] = set()

    async def one(seq: int, rcpt: str, payload: bytes) -> None:
        node = seq % n if job.first_node is None else job.first_node
        failures = 0
        while True:
            started = time.time()
            try:
                code, greeted = await asyncio.wait_for(
                    _transaction(job.ports[node], rcpt, payload), job.attempt_timeout
                )
            except TimeoutError:
                code, greeted = NO_ANSWER, True
            finished = time.time()
            # A refused connection is recorded as taking no time: `uncertain` tells them apart.
            out.attempts.append((started, finished if greeted else started, node, code, seq))
            if code == 250 or 500 <= code < 600:
                return
            node = (node + 1) % n
            if code == NO_ANSWER and not greeted:
                failures += 1
                if failures < n:
                    continue  # the next MX host at once
                failures = 0
            if not job.retry_delay or time.time() + job.retry_delay > end:
                return
            await asyncio.sleep(job.retry_delay)

    seq = 0
    due = job.start_at
    while True:
        due += rng.expovariate(job.rate)
        if due >= end:
            break
        remote = rng.random() < job.remote_share
        rcpt = Cluster.forward(seq % job.forwards) if remote else Cluster.user(seq % job.users)
        payload = message(job.run, seq, rcpt, job.size)
        await asyncio.sleep(max(0.0, due - time.time()))
        out.remote[seq] = remote
        task = asyncio.create_task(one(seq, rcpt, payload))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        seq += 1
    if tasks:
        await asyncio.wait(tasks)


def generate(job: LoadJob) -> LoadResult:
    """Run the load (in its own process: its CPU must not be the nodes')."""
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    out = LoadResult(run=job.run)
    cpu0 = os.times()
    t0 = time.monotonic()
    asyncio.run(_load(job, out))
    cpu1 = os.times()
    out.cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    out.wall = time.monotonic() - t0
    return out


# -- watching the run ---------------------------------------------------------------------------
@dataclass
class Sample:
    t: float  # time.time()
    queue: int  # queue items not yet delivered (PostgreSQL `queue` rows)
    delivered: int  # transactions the remote MX answered 250, so far
    cpu: list[float]  # CPU seconds of each node's group so far


class Watcher:
    """Samples the queue depth, the remote MX's deliveries and the nodes' CPU every second."""

    def __init__(self, cluster: Cluster, interval: float = 1.0) -> None:
        self.cluster = cluster
        self.interval = interval
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watcher", daemon=True)

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        self._thread.join(30)
        return self.samples

    def _run(self) -> None:
        asyncio.run(self._watch())

    async def _watch(self) -> None:

        conn = await _connect(self.cluster)
        try:
            next_at = time.time()
            while not self._stop.is_set():
                depth = await conn.fetchval("SELECT count(*) FROM queue")
                self.samples.append(
                    Sample(
                        time.time(),
                        int(depth),
                        self.cluster.sink.delivered,
                        self.cluster.cpu_seconds(),
                    )
                )
                next_at += self.interval
                await asyncio.sleep(max(0.0, next_at - time.time()))
        finally:
            await conn.close()


async def _connect(cluster: Cluster) -> Any:
    import asyncpg

    return await asyncpg.connect(
        cluster.schema.admin_dsn,
        timeout=10,
        server_settings={"search_path": cluster.schema.name},
    )


def queue_depth(cluster: Cluster) -> int:
    return len(cluster.schema.queue())


def check_arrivals(
    cluster: Cluster, load: LoadResult, *, allowed_duplicates: int, backlog: int = 0
) -> str:
    """Every message of `load` that got a 250 arrived once: in its INBOX, or at the remote MX
    (where a delivery the killed node had in flight may arrive twice: RFC 5321 6.1), and every
    backlog item reached the remote MX. Returns "" or what is wrong."""
    from tests.cluster_support import run_async

    async def stored() -> list[bytes]:
        conn = await _connect(cluster)
        try:
            rows = await conn.fetch(
                "SELECT substring(b.data from 1 for 1024) FROM messages m"
                " JOIN blobs b ON b.id = m.blob_id"
            )
            return [bytes(r[0]) for r in rows]
        finally:
            await conn.close()

    def ids(chunks: Sequence[bytes], run: int) -> list[int]:
        found = (SEQ.search(c) for c in chunks)
        return [int(m[2]) for m in found if m and int(m[1]) == run]

    sunk = [t.data for t in cluster.sink.received()]
    local, remote = ids(run_async(stored), load.run), ids(sunk, load.run)
    acked, uncertain = load.acked(), load.uncertain()
    problems = []
    for kind, found, wanted in (
        ("local", local, {s for s in acked if not load.remote[s]}),
        ("remote", remote, {s for s in acked if load.remote[s]}),
    ):
        seen = set(found)
        missing = wanted - seen
        extra = seen - wanted - uncertain
        # A connection that broke after the DATA went out leaves the sender unsure, and it
        # sends again: a second copy then is SMTP's own (RFC 5321 6.1), not the node's.
        dupes = (
            len(found) - len(seen) - len({s for s in uncertain if s in seen and found.count(s) > 1})
        )
        if kind == "local" and dupes:
            problems.append(f"{dupes} local messages stored twice")
        if kind == "remote" and dupes > allowed_duplicates:
            problems.append(f"{dupes} remote duplicates (at most {allowed_duplicates} expected)")
        if missing:
            problems.append(f"{len(missing)} {kind} messages acknowledged and missing")
        if extra:
            problems.append(f"{len(extra)} {kind} messages stored that were never sent")
    lost = set(range(backlog)) - set(ids(sunk, BACKLOG_RUN))
    if lost:
        problems.append(f"{len(lost)} of {backlog} backlog items never delivered")
    return "; ".join(problems)


# -- what happened ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Observed:
    throughput: float  # 250s per second from the event to the end
    peak_queue: float
    refused_share: float  # 4xx over all answered attempts from the event to the end
    drain_seconds: float | None  # None: the queue was not back to its level by the end
    before_level: float  # the queue's mean level over the warmup
    offered_per_second: float  # answered attempts per second from the event to the end
    no_answer: int  # attempts that got no SMTP reply (the dead node, resets), after the event

    def figures(self) -> dict[str, float | None]:
        return {
            "throughput": self.throughput,
            "peak_queue": self.peak_queue,
            "refused_share": self.refused_share,
            "drain_seconds": self.drain_seconds,
        }


def drain_time(
    series: Sequence[tuple[float, float]], event: float, end: float, warm_from: float
) -> tuple[float | None, float]:
    """(seconds from `event` until the queue is back to its warmup level for good, that level).

    The level is the mean over [warm_from, event); "back" is at most 10 % above it (and at
    least 1 item above: a queue of 0.4 items is not undrained at 1). None: not back by `end`."""
    before = [q for t, q in series if warm_from <= t < event]
    level = statistics.fmean(before) if before else 0.0
    bound = max(level * 1.1, level + 1.0)
    after = [(t, q) for t, q in series if event <= t <= end]
    if not after:
        return None, level
    if after[-1][1] > bound:
        return None, level
    back = event
    for t, q in after:
        if q > bound:
            back = None  # type: ignore[assignment]
        elif back is None:
            back = t
    return (0.0 if back is None else max(0.0, back - event)), level


def observe(
    load: LoadResult, samples: Sequence[Sample], event: float, end: float, warm_from: float
) -> Observed:
    after = [a for a in load.attempts if event <= a[1] < end]
    answered = [a for a in after if a[3] != NO_ANSWER]
    accepted = sum(1 for a in answered if a[3] == 250)
    refused = sum(1 for a in answered if 400 <= a[3] < 500)
    series = [(s.t, float(s.queue)) for s in samples]
    peak = max((q for t, q in series if event <= t <= end), default=0.0)
    drain, level = drain_time(series, event, end, warm_from)
    span = max(1e-9, end - event)
    return Observed(
        throughput=accepted / span,
        peak_queue=peak,
        refused_share=refused / max(1, accepted + refused),
        drain_seconds=drain,
        before_level=level,
        offered_per_second=len(answered) / span,
        no_answer=len(after) - len(answered),
    )


# -- measured against predicted -----------------------------------------------------------------
# Below these, a relative error means nothing (a refusal share of 0.001 against 0.004 is "300 %"
# and the same thing): the error is taken against the floor instead.
FLOORS: Mapping[str, float] = {
    "throughput": 1.0,
    "peak_queue": 5.0,
    "refused_share": 0.02,
    "drain_seconds": 5.0,
}


@dataclass(frozen=True)
class Row:
    name: str
    measured: float | None
    predicted: float | None
    error: float | None  # (predicted - measured) / max(|measured|, floor); None: not comparable
    ok: bool


def compare(
    measured: Mapping[str, float | None],
    predicted: Mapping[str, float | None],
    tolerance: float,
    *,
    horizon: float | None = None,
    names: Sequence[str] = METRICS,
) -> list[Row]:
    """One row per figure of `names`. A drain of None ("not back by the end") on both sides
    agrees; on one side only it is compared as the horizon (if given), else it fails."""
    rows = []
    for name in names:
        m, p = measured.get(name), predicted.get(name)
        if name == "drain_seconds" and horizon is not None:
            if m is None and p is None:
                rows.append(Row(name, m, p, 0.0, True))
                continue
            m = horizon if m is None else m
            p = horizon if p is None else p
        if m is None or p is None:
            rows.append(Row(name, m, p, None, False))
            continue
        error = (p - m) / max(abs(m), FLOORS[name])
        rows.append(Row(name, m, p, error, abs(error) <= tolerance))
    return rows


def table(rows: Sequence[Row], tolerance: float) -> str:
    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"

    lines = [
        f"{'figure':<15}{'measured':>12}{'predicted':>12}{'error':>9}  within ±{tolerance:.0%}"
    ]
    for r in rows:
        err = "-" if r.error is None else f"{r.error:+.0%}"
        lines.append(
            f"{r.name:<15}{num(r.measured):>12}{num(r.predicted):>12}{err:>9}  "
            f"{'yes' if r.ok else 'NO'}"
        )
    return "\n".join(lines)


def predicted_from_plan(plan: Mapping[str, Any], scenario: str) -> dict[str, float | None]:
    """The figures of one scenario of `mailfort capacity plan --json`."""
    for s in plan.get("scenarios", []):
        if s.get("name") == scenario:
            drain = s.get("drain_seconds")
            return {
                "throughput": float(s["accepted_per_second"]),
                "peak_queue": float(s["peak_queue"]),
                "refused_share": float(s["refused_share"]),
                "drain_seconds": None if drain is None else float(drain),
            }
    raise KeyError(f"no scenario {scenario!r} in the plan")


def closed_form(
    *,
    rate: float,
    survivors: int,
    node_cpus: float,
    cpu_per_message: float,
    retry_delay: float,
    horizon: float,
) -> dict[str, float | None]:
    """Throughput and refusal share of the survivors, by hand (no queue figures).

    The survivors accept at most μ = survivors × node_cpus / cpu_per_message per second. Below
    it everything is accepted. Above it, with every refused message coming back after `d`
    seconds, the messages waiting to retry grow as (λ − μ)t, so attempts run at λ + (λ − μ)t/d,
    and over the horizon H the refused share is 1 − μ / (λ + (λ − μ)H / 2d)."""
    mu = survivors * node_cpus / cpu_per_message
    if rate <= mu:
        return {"throughput": rate, "refused_share": 0.0}
    attempts = rate + (rate - mu) * horizon / (2 * retry_delay)
    return {"throughput": mu, "refused_share": 1 - mu / attempts}


CLOSED_FORM = ("throughput", "refused_share")  # the figures `closed_form` predicts


# -- a backlog ----------------------------------------------------------------------------------
BACKLOG_RUN = 0  # the run number in the X-Load-Id of backlog items


def add_backlog(cluster: Cluster, count: int, size: int) -> float:
    """`count` remote items put straight into the queue (as if accepted long ago and deferred
    until now), each its own message; returns the seconds it took."""
    if count <= 0:
        return 0.0
    from mailfort.store.postgres import PostgresStore
    from mailfort.store.records import AcceptRequest, QueuedRecipient
    from tests.cluster_support import run_async

    started = time.monotonic()
    forwards = cluster.setup.forwards

    async def fill() -> None:
        store = PostgresStore(cluster.schema.url, pool_size=4, listen=False)
        await store.open()
        try:

            async def one(i: int) -> None:
                rcpt = f"far{i % forwards}@{REMOTE}"
                await store.accept(
                    AcceptRequest(
                        queue_id=f"backlog{secrets.token_hex(6)}",
                        sender=SENDER,
                        body=message(BACKLOG_RUN, i, rcpt, size)[:-3],
                        received=time.time(),
                        client="127.0.0.1",
                        authenticated=None,
                        queued=(QueuedRecipient(recipient=rcpt, original=rcpt),),
                    )
                )

            for start in range(0, count, 4):
                await asyncio.gather(*(one(i) for i in range(start, min(count, start + 4))))
        finally:
            await store.close()

    run_async(fill)
    return time.monotonic() - started


# -- calibration --------------------------------------------------------------------------------
@dataclass
class Calibration:
    """What the model needs for this exact setup, measured on its nodes."""

    idle_cpu: float  # CPU per second of a node with no load (its pollers and timers)
    # Per accepted local message and per remote delivery (on top of accepting the message), as
    # the planner uses them: scaled so that a node's quota over their mix is what one node
    # accepted when overloaded. Measured at a light load (idle CPU taken out) they are higher:
    # a busy node spends less per message (its commits, reads and loop turns are shared).
    accept_cpu: float
    remote_cpu: float
    accept_cpu_light: float
    remote_cpu_light: float
    commit_p50: float
    commit_p99: float
    saturation_limit: int  # the store gate's adaptive limit at the end of the saturation phase
    sessions_limit: int  # the session (loop-lag) limit then
    saturation_rate: float  # messages one node accepted per second, overloaded, no retries
    saturation_refused_share: float
    saturation_cpu: float  # CPU per second the overloaded node used (its quota, if all went well)
    generator_cpu_per_message: float
    refusal_cpu: float  # a connection turned away: connect, banner, QUIT (the upper bound)

    def cpu_per_message(self, remote_share: float) -> float:
        return self.accept_cpu + remote_share * self.remote_cpu


def _histogram(
    before: Mapping[str, float], after: Mapping[str, float], name: str
) -> list[tuple[float, float]]:
    """(upper bound, count) of a Prometheus histogram's buckets, counted between two scrapes."""
    found = []
    for key, value in after.items():
        m = re.fullmatch(rf'{name}_bucket\{{le="([^"]+)"\}}', key)
        if m:
            found.append((float(m[1]), value - before.get(key, 0.0)))
    return sorted(found)


def _quantile(buckets: Sequence[tuple[float, float]], q: float) -> float:
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return math.nan
    for bound, count in buckets:
        if count >= q * total:
            return bound
    return buckets[-1][0]


def _scrape_all(cluster: Cluster) -> list[dict[str, float]]:
    return [cluster.metrics(i) for i, alive in enumerate(cluster.alive()) if alive]


def _run_load(job: LoadJob) -> LoadResult:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(generate, job).result()


def _job(cluster: Cluster, rate: float, duration: float, **changes: Any) -> LoadJob:
    s = cluster.setup
    fields: dict[str, Any] = {
        "ports": cluster.ports,
        "rate": rate,
        "duration": duration,
        "start_at": time.time() + 1.0,
        "size": s.size,
        "remote_share": s.remote_share,
        "users": s.users,
        "forwards": s.forwards,
        "retry_delay": 0.0,
        "seed": secrets.randbelow(1 << 30),
    }
    fields.update(changes)
    return LoadJob(**fields)


def _wait_queue_empty(cluster: Cluster, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while queue_depth(cluster) and time.monotonic() < deadline:
        time.sleep(0.5)


def _connection_cpu(cluster: Cluster, index: int, idle: float, log: Any, count: int = 300) -> float:
    """What a connection turned away costs the node: connect, read the banner, QUIT, close (a
    421 at connect is a banner and a close, so this is its upper bound), idle CPU taken out."""

    def one(_: int) -> None:
        with socket.create_connection(("127.0.0.1", cluster.ports[index]), timeout=30) as s:
            reader = s.makefile("rb")
            reader.readline()
            s.sendall(b"QUIT\r\n")
            reader.readline()

    cpu0, t0 = cluster.cpu_seconds()[index], time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(count)))
    used = cluster.cpu_seconds()[index] - cpu0 - idle * (time.monotonic() - t0)
    cost = max(0.0, used / count)
    log(f"calibration: a connection turned away: {cost * 1000:.3f} ms CPU")
    return cost


def calibrate(
    cluster: Cluster,
    *,
    phase_seconds: float = 12.0,
    light_share: float = 0.5,
    guess_cpu: float = 0.004,
    overload: float = 3.0,
    log: Any = print,
) -> Calibration:
    """Idle CPU, then a light local load, a light remote load (drained), then one node alone
    overloaded without retries: each phase measures one figure of the profile."""
    s = cluster.setup
    n = len(cluster.nodes)
    # Unmeasured: the first messages open the store's connections and fill the node's caches.
    rate = n * light_share * s.node_cpus / guess_cpu
    _run_load(_job(cluster, rate, 4.0))
    _wait_queue_empty(cluster, 30.0)
    cpu0 = cluster.cpu_seconds()
    time.sleep(3.0)
    idle = statistics.fmean(b - a for a, b in zip(cpu0, cluster.cpu_seconds(), strict=True)) / 3.0

    # Light: each node at `light_share` of what the guessed cost would allow.
    m0, cpu0, t0 = _scrape_all(cluster), cluster.cpu_seconds(), time.monotonic()
    local = _run_load(_job(cluster, rate, phase_seconds, remote_share=0.0))
    m1, cpu1, t1 = _scrape_all(cluster), cluster.cpu_seconds(), time.monotonic()
    accepted = len(local.acked())
    used = sum(cpu1) - sum(cpu0) - n * idle * (t1 - t0)
    accept_cpu = used / max(1, accepted)
    merged: dict[float, float] = {}
    for a, b in zip(m0, m1, strict=True):
        for bound, count in _histogram(a, b, "mailfort_store_commit_duration_seconds"):
            merged[bound] = merged.get(bound, 0.0) + count
    buckets = sorted(merged.items())
    log(
        f"calibration: idle {idle * 1000:.1f} ms CPU/s per node; local {accepted} msgs at"
        f" {rate:.1f}/s: {accept_cpu * 1000:.2f} ms CPU each"
    )

    # Remote: the same rate, every message relayed, until the queue is empty again.
    cpu0, t0 = cluster.cpu_seconds(), time.monotonic()
    delivered0 = cluster.sink.delivered
    remote = _run_load(_job(cluster, rate, phase_seconds, remote_share=1.0))
    _wait_queue_empty(cluster, 60.0)
    cpu1, t1 = cluster.cpu_seconds(), time.monotonic()
    delivered = cluster.sink.delivered - delivered0
    used = sum(cpu1) - sum(cpu0) - n * idle * (t1 - t0) - len(remote.acked()) * accept_cpu
    remote_cpu = max(1e-6, used / max(1, delivered))
    log(f"calibration: {delivered} remote deliveries: {remote_cpu * 1000:.2f} ms CPU each")

    # Saturation: node 1 alone, offered `overload` times what its quota allows, no retries.
    mix = accept_cpu + s.remote_share * remote_cpu
    sat_rate = overload * s.node_cpus / (mix + idle / max(1e-9, s.node_cpus / mix))
    cpu0, t0 = cluster.cpu_seconds(), time.monotonic()
    sat = _run_load(_job(cluster, sat_rate, phase_seconds, first_node=0))
    cpu1, t1 = cluster.cpu_seconds(), time.monotonic()
    limits = cluster.metrics(0)
    codes = [a[3] for a in sat.attempts]
    took = sorted(a[1] - a[0] for a in sat.attempts)
    log(
        f"calibration: saturation replies {dict(collections.Counter(codes))}, attempt p50"
        f" {took[len(took) // 2]:.2f} s p99 {took[int(len(took) * 0.99)]:.2f} s"
    )
    ok = codes.count(250)
    refused = sum(1 for c in codes if 400 <= c < 500)
    _wait_queue_empty(cluster, 60.0)
    refusal_cpu = _connection_cpu(cluster, 0, idle, log)
    saturation_rate = ok / phase_seconds
    # Scaled so that the quota over the mix is what the node accepted: that folds in what its
    # refusals cost here — 451s after DATA (the store gate) cost a whole message's receipt, far
    # more than `refusal_cpu` (a refusal at connect), which the simulator adds for every one.
    scale = s.node_cpus / max(1e-9, saturation_rate) / mix
    cal = Calibration(
        idle_cpu=idle,
        accept_cpu=accept_cpu * scale,
        remote_cpu=remote_cpu * scale,
        accept_cpu_light=accept_cpu,
        remote_cpu_light=remote_cpu,
        commit_p50=_quantile(buckets, 0.5),
        commit_p99=_quantile(buckets, 0.99),
        saturation_limit=int(limits.get('mailfort_concurrency_limit{scope="store"}', 0)),
        sessions_limit=int(limits.get('mailfort_concurrency_limit{scope="sessions"}', 0)),
        saturation_rate=saturation_rate,
        saturation_refused_share=refused / max(1, ok + refused),
        saturation_cpu=(cpu1[0] - cpu0[0]) / (t1 - t0),
        generator_cpu_per_message=(local.cpu + remote.cpu) / max(1, len(local.remote) * 2),
        refusal_cpu=refusal_cpu,
    )
    log(
        f"calibration: node 1 offered {sat_rate:.1f}/s: accepted {cal.saturation_rate:.1f}/s,"
        f" refused {cal.saturation_refused_share:.0%}, CPU {cal.saturation_cpu:.3f}/s, limits"
        f" store {cal.saturation_limit} sessions {cal.sessions_limit}; CPU per message at"
        f" saturation {s.node_cpus / max(1e-9, cal.saturation_rate) * 1000:.2f} ms (light"
        f" {mix * 1000:.2f} ms)"
    )
    return cal


# -- the measured run ---------------------------------------------------------------------------
@dataclass
class Scenario:
    rate: float
    warmup: float  # seconds of load before the kill
    after: float  # seconds of load after it (the horizon)
    backlog: int = 0
    killed: int = 0  # index of the node killed


@dataclass
class Measured:
    observed: Observed
    load: LoadResult
    samples: list[Sample]
    start: float
    event: float
    end: float
    arrivals: str  # "" when every acknowledged message arrived once
    backlog_seconds: float
    node_cpu_before: list[float]  # CPU per second of each node over the warmup
    node_cpu_after: list[float]  # ... and after the event (NaN for the dead node)

    def series(self) -> list[dict[str, float]]:
        """Per second from the start: answered attempts, 250s, 4xx, queue, deliveries."""
        out = []
        for k, s in enumerate(self.samples):
            lo = s.t - 1.0
            window = [a for a in self.load.attempts if lo <= a[1] < s.t and a[3] != NO_ANSWER]
            out.append(
                {
                    "t": round(s.t - self.start, 1),
                    "offered": len(window),
                    "accepted": sum(1 for a in window if a[3] == 250),
                    "refused": sum(1 for a in window if 400 <= a[3] < 500),
                    "queue": s.queue,
                    "delivered": s.delivered - (self.samples[k - 1].delivered if k else 0),
                }
            )
        return out


def run_scenario(cluster: Cluster, scenario: Scenario, log: Any = print) -> Measured:
    s = cluster.setup
    job = _job(
        cluster,
        scenario.rate,
        scenario.warmup + scenario.after,
        retry_delay=s.sender_retry,
        run=1_000_000 + secrets.randbelow(1 << 20),
    )
    watcher = Watcher(cluster).start()
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        running = pool.submit(generate, job)
        start = job.start_at
        event = start + scenario.warmup
        time.sleep(max(0.0, event - time.time()))
        cluster.kill(scenario.killed)
        log(f"run: node {scenario.killed + 1} killed at {event - start:.0f} s")
        backlog_seconds = add_backlog(cluster, scenario.backlog, s.size)
        load = running.result()
    end = start + scenario.warmup + scenario.after
    # The samples go on until the queue is empty (the arrivals check needs it), but the figures
    # are taken to `end`.
    _wait_queue_empty(cluster, 120.0)
    samples = watcher.stop()
    observed = observe(load, samples, event, end, start + scenario.warmup * 0.2)

    def rate(lo: float, hi: float) -> list[float]:
        # The last sample before `hi`: at the kill itself the dead node has no CPU figure.
        a = min(samples, key=lambda x: abs(x.t - lo))
        b = max((x for x in samples if x.t < hi), key=lambda x: x.t, default=samples[-1])
        return [(y - x) / max(1e-9, b.t - a.t) for x, y in zip(a.cpu, b.cpu, strict=True)]

    arrivals = check_arrivals(
        cluster, load, allowed_duplicates=s.delivery_concurrency, backlog=scenario.backlog
    )
    return Measured(
        observed=observed,
        load=load,
        samples=samples,
        start=start,
        event=event,
        end=end,
        arrivals=arrivals,
        backlog_seconds=backlog_seconds,
        node_cpu_before=rate(start + scenario.warmup * 0.2, event),
        node_cpu_after=rate(event + 1, end),
    )


# -- the planner's view of the run --------------------------------------------------------------
SCENARIO = "one node killed"


def machine() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory = int(line.split()[1]) * 1024
    return {
        "hostname": socket.gethostname(),
        "cpu_model": model,
        "cpus": os.cpu_count() or 1,
        "memory_bytes": memory,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def node_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def write_profile(path: Path, setup: Setup, cal: Calibration, rss: int) -> None:
    from mailfort import __version__
    from mailfort.capacity.profile import profile_from_dict

    data = {
        "format": "mailfort-capacity-profile",
        "schema": 1,
        "mailfort_version": __version__,
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "engine": "postgresql",
        "source": "benchmark",
        "node_cpus": setup.node_cpus,
        "accept": [
            {
                "name": "bulk",
                "max_bytes": 0,
                "measured_bytes": setup.size,
                "cpu_seconds": cal.accept_cpu,
            }
        ],
        "remote_delivery_cpu": cal.remote_cpu,
        # No logins in this workload: placeholders, not measurements (see notes).
        "imap_login_cpu": 0.001,
        "header_fetch_cpu": 0.0,
        "header_fetch_per_message_cpu": 1e-5,
        "pop3_session_cpu": 0.001,
        "commit_p50_seconds": cal.commit_p50,
        "commit_p99_seconds": cal.commit_p99,
        "db_cpu_per_message": None,
        "memory_base_bytes": rss,
        "memory_per_connection_bytes": {},
        "saturation_limit": max(1, cal.saturation_limit),
        "saturation_messages_per_second": cal.saturation_rate,
        "saturation_refused_share": cal.saturation_refused_share,
        "refusal_cpu": cal.refusal_cpu,
        "notes": [
            "benchmarks/capacity_validation.py calibration, one node per cgroup with a CPU quota",
            f"idle CPU per node (pollers, timers, not in the costs above): {cal.idle_cpu:.4f}/s",
            "costs scaled to the saturation rate; at a light load they were"
            f" {cal.accept_cpu_light:.5f} (accept) and {cal.remote_cpu_light:.5f} (remote)",
            f"sessions limit at saturation: {cal.sessions_limit}",
            "imap_login_cpu, header_fetch_*, pop3_session_cpu: placeholders (no logins here)",
        ],
    }
    profile_from_dict(data, str(path))  # what the planner will read must be a valid profile
    path.write_text(json.dumps(data, indent=2) + "\n")


def workload_text(setup: Setup, rate: float, scenario: Scenario) -> str:
    return f"""\
# The validation run of benchmarks/capacity_validation.py, as the planner sees it.
[mailboxes]
count = {setup.users + setup.forwards}

[messages]
per_second = {rate:.4f}
remote_share = {setup.remote_share}
sizes = {{ bulk = 1.0 }}

[[senders]]
name = "load generator"
share = 1.0
retry_seconds = [{setup.sender_retry}]

[cluster]
nodes = {setup.nodes}
node_cpus = {setup.node_cpus}
delivery_concurrency = {setup.delivery_concurrency}
remote_delivery_seconds = {setup.sink_delay}
lease_seconds = {setup.lease_seconds}
retry_base_seconds = {setup.retry_base}
retry_max_seconds = {setup.retry_max}

[[scenarios]]
name = "{SCENARIO}"
at_seconds = {scenario.warmup}
nodes_lost = 1
backlog = {scenario.backlog}
warmup_seconds = {scenario.warmup}
horizon_seconds = {scenario.after}
"""


def simulator_available() -> bool:
    return importlib.util.find_spec("mailfort.cli_capacity") is not None


def simulate(profile: Path, workload: Path) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mailfort",
            "capacity",
            "plan",
            "--profile",
            str(profile),
            "--workload",
            str(workload),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    # Exit 1 is a plan whose targets are not met (here: the scenario refuses mail, on purpose);
    # its JSON is the prediction all the same.
    if done.returncode not in (0, 1):
        raise RuntimeError(f"capacity plan failed ({done.returncode}): {done.stderr.strip()}")
    return dict(json.loads(done.stdout))
