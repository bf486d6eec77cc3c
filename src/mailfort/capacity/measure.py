"""`mailfort capacity measure`: a bounded benchmark of one node, written as a profile.

The node runs as `mailfort serve` in a subprocess (`benchnode.py`) and is driven from outside,
through its listeners, by clients in this process; the remote MX it delivers to is a sink in
this process too. Each cost is one phase measured alone, after a warmup: the node's CPU
(utime + stime of every thread, /proc) over the phase divided by the units the phase completed.
The node's idle CPU (timers, the queue's polls, the status evaluation) is counted in, as it is
in a real node's load; it is a small share of a phase that keeps the node busy.

What the clients cost is not counted, but on a small machine they share the cores with the node:
the saturation figures are then a floor for what the node could do with its own machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from mailfort import __version__
from mailfort.capacity import procstat, promtext
from mailfort.capacity.benchnode import DOMAIN, PASSWORD, REMOTE_DOMAIN, BenchNode
from mailfort.capacity.cgroup import CpuQuota
from mailfort.capacity.machine import describe, load_average
from mailfort.capacity.mailclients import ClientError, Imap, InUse, Pop3
from mailfort.capacity.profile import Profile, SizeClass
from mailfort.capacity.promtext import ScrapeError
from mailfort.capacity.smtpwire import Sink, SmtpClient, SmtpReplyError, dot_stuffed

Progress = Callable[[str], None]
COMMIT_HISTOGRAM = "mailfort_store_commit_duration_seconds"
LINE = b"The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs.\r\n"
SENDER = "load@client.test"
BACKOFF = 1.0  # seconds a saturating client waits after a "not now"


class MeasureError(Exception):
    """The measurement could not run or gave no figure; one line saying why."""


class CountError(MeasureError):
    """A count or option that cannot be measured with (bad input)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SizeSpec:
    name: str
    max_bytes: int  # 0: unbounded
    measured_bytes: int
    messages: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Counts:
    """How much work each phase does: more is steadier and slower."""

    accounts: int = 16  # half of them: POP3 sessions added for the memory figure
    warmup: int = 50
    # SMTP clients at once in the acceptance phases: a busy node, whose event loop serves
    # several sessions per wakeup and whose store commits several messages at once.
    concurrency: int = 16
    sizes: tuple[SizeSpec, ...] = (
        SizeSpec(name="small", max_bytes=16 * 1024, measured_bytes=4 * 1024, messages=600),
        SizeSpec(name="medium", max_bytes=256 * 1024, measured_bytes=64 * 1024, messages=300),
        SizeSpec(name="large", max_bytes=0, measured_bytes=1024 * 1024, messages=60),
    )
    remote: int = 400
    logins: int = 300
    fetch_small: int = 10
    fetch_large: int = 100
    fetches: int = 200
    pop3_sessions: int = 200
    connections: int = 100  # idle SMTP and IMAP connections for the memory figure
    saturation_steps: tuple[int, ...] = (8, 16, 32, 64, 128, 256)
    step_seconds: float = 4.0

    def check(self) -> None:
        numbers = {
            "accounts": self.accounts,
            "warmup": self.warmup,
            "concurrency": self.concurrency,
            "remote": self.remote,
            "logins": self.logins,
            "fetches": self.fetches,
            "pop3 sessions": self.pop3_sessions,
            "connections": self.connections,
            "step seconds": self.step_seconds,
            **{f"{s.name} messages": s.messages for s in self.sizes},
        }
        for name, value in numbers.items():
            if not value > 0:
                raise CountError(f"{name} must be > 0, not {value}")
        if self.accounts < 2:
            raise CountError(
                f"accounts must be >= 2 (POP3 sessions in two steps), not {self.accounts}"
            )
        if not 0 < self.fetch_small < self.fetch_large:
            raise CountError("the two FETCH sizes must satisfy 0 < small < large")
        if not self.saturation_steps or min(self.saturation_steps) <= 0:
            raise CountError("saturation steps must be concurrencies > 0")


QUICK = Counts(
    accounts=4,
    warmup=10,
    concurrency=8,
    sizes=(
        SizeSpec(name="small", max_bytes=16 * 1024, measured_bytes=4 * 1024, messages=120),
        SizeSpec(name="medium", max_bytes=256 * 1024, measured_bytes=64 * 1024, messages=60),
        SizeSpec(name="large", max_bytes=0, measured_bytes=1024 * 1024, messages=12),
    ),
    remote=80,
    logins=60,
    fetch_small=5,
    fetch_large=30,
    fetches=40,
    pop3_sessions=40,
    connections=30,
    saturation_steps=(8, 32, 128),
    step_seconds=1.5,
)


class ScratchDatabase(Protocol):
    """A PostgreSQL schema for one run (`store/postgres/scratch.py`, passed in by the wiring:
    this layer holds no database driver)."""

    server_pid: int  # a server process that served create(), 0 before

    async def create(self) -> str: ...  # the url the node is given

    async def drop(self) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    counts: Counts = field(default_factory=Counts)
    # PostgreSQL: a new schema per run, made and dropped by what this returns; None: SQLite.
    database: Callable[[], ScratchDatabase] | None = None
    cpu_quota: float | None = None  # a share of one CPU for the node (cgroup)
    work_dir: Path | None = None  # default: a temporary directory, removed afterwards


def message(size: int, seq: int) -> bytes:
    """A message of about `size` octets, as dot_stuffed() sends it."""
    head = (
        f"From: <{SENDER}>\r\nTo: <user@{DOMAIN}>\r\nSubject: capacity measure {seq}\r\n"
        f"Message-ID: <measure-{seq}@client.test>\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
        "\r\n"
    ).encode()
    room = max(size - len(head), len(LINE))
    return dot_stuffed(head + LINE * (room // len(LINE)))


@dataclass
class Tally:
    accepted: int = 0
    refused: int = 0  # 4xx (or 421 on connect): the node said "not now"
    failed: int = 0  # 5xx, or a connection that broke

    def count(self, code: int) -> None:
        if code == 250:
            self.accepted += 1
        elif 400 <= code < 500:
            self.refused += 1
        else:
            self.failed += 1


async def send_many(
    port: int,
    recipients: Sequence[str],
    payload: bytes,
    concurrency: int,
) -> Tally:
    """Send one message to each recipient over `concurrency` connections; refusals are not
    retried (the phases run below saturation: a refusal there is a fault worth seeing)."""
    tally = Tally()
    todo = iter(recipients)

    async def worker() -> None:
        client = await SmtpClient.connect("127.0.0.1", port)
        try:
            for rcpt in todo:
                code = await client.send(SENDER, rcpt, payload)
                tally.count(code)
                if code == 421:  # the node closed the connection
                    client.abort()
                    client = await SmtpClient.connect("127.0.0.1", port)
        finally:
            await client.close()

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(recipients)))))
    return tally


@dataclass
class Phase:
    """The node's CPU (and the database server's) over one piece of work."""

    node: BenchNode
    postmaster: int | None
    cpu0: procstat.CpuSample = field(default_factory=lambda: procstat.CpuSample(0.0, 0.0))
    db0: float = 0.0
    t0: float = 0.0
    cpu: float = 0.0
    db: float = 0.0
    wall: float = 0.0

    def __enter__(self) -> Phase:
        self.t0 = time.monotonic()
        self.cpu0 = self.node.cpu()
        self.db0 = procstat.tree_cpu_seconds(self.postmaster) if self.postmaster else 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu = procstat.cpu_between(self.cpu0, self.node.cpu())
        if self.postmaster:
            self.db = procstat.tree_cpu_seconds(self.postmaster) - self.db0
        self.wall = time.monotonic() - self.t0


def per_unit(seconds: float, units: int, what: str) -> float:
    if units <= 0:
        raise MeasureError(f"{what}: nothing was completed, no figure")
    if seconds <= 0:
        # Below the kernel's accounting resolution (a clock tick): too little work to see.
        raise MeasureError(f"{what}: no CPU counted over {units} units; measure more of them")
    return seconds / units


class Run:
    """One measurement: a fresh node, every phase, the figures."""

    def __init__(self, options: Options, progress: Progress) -> None:
        self.options = options
        self.counts = options.counts
        self.say = progress
        self.notes: list[str] = []
        self.postmaster: int | None = None
        self.database: ScratchDatabase | None = None
        self.pop3_in_use = 0
        self.users = [f"u{i}@{DOMAIN}" for i in range(self.counts.accounts)]
        self.fetcher = f"fetch@{DOMAIN}"
        self.forward = f"fwd@{DOMAIN}"

    # -- the phases --------------------------------------------------------------------------
    async def accept(self, node: BenchNode) -> tuple[list[SizeClass], float | None, int]:
        classes, db_per_message, accepted_total = [], None, 0
        db_total = 0.0
        for spec in self.counts.sizes:
            payload = message(spec.measured_bytes, spec.measured_bytes)
            rcpts = [self.users[i % len(self.users)] for i in range(spec.messages)]
            with Phase(node, self.postmaster) as ph:
                tally = await send_many(node.ports["smtp"], rcpts, payload, self.counts.concurrency)
            self._refusals(tally, f"accepting {spec.name} messages")
            cpu = per_unit(ph.cpu, tally.accepted, f"{spec.name} messages")
            accepted_total += tally.accepted
            self.say(
                f"accept {spec.name} ({spec.measured_bytes} B): {tally.accepted} in"
                f" {ph.wall:.1f} s, {cpu * 1000:.2f} ms CPU each"
            )
            classes.append(
                SizeClass(
                    name=spec.name,
                    max_bytes=spec.max_bytes,
                    measured_bytes=len(payload),
                    cpu_seconds=cpu,
                )
            )
            db_total += ph.db
        if self.postmaster:
            # Over every class: the kernel counts each server process's CPU in clock ticks, and
            # one short phase spread over several backends can round to nothing.
            if db_total > 0:
                db_per_message = db_total / max(1, accepted_total)
                self.notes.append(
                    "db_cpu_per_message: the PostgreSQL server's CPU (every process of it) over"
                    " the acceptance phases, per message of the size mix measured"
                )
            else:
                self.notes.append(
                    "db_cpu_per_message: the PostgreSQL server used too little CPU to count"
                    " (clock ticks); measure more messages"
                )
        return classes, db_per_message, accepted_total

    async def remote(self, node: BenchNode, sink: Sink) -> float:
        count = self.counts.remote
        before = node.metrics().total("mailfort_remote_deliveries_total", result="delivered") or 0.0
        tally = await send_many(
            node.ports["smtp"], [self.forward] * count, message(4096, 7), self.counts.concurrency
        )
        self._refusals(tally, "accepting mail for the remote MX")
        # The node's deliveries now wait at the sink's closed gate; once it opens, what the
        # node spends is delivery alone: connect, the SMTP dialogue, settling each recipient.
        await asyncio.sleep(1.0)
        done = 0.0
        with Phase(node, None) as ph:
            sink.open()
            deadline = time.monotonic() + 60 + count * 0.1
            while sink.counts.messages < tally.accepted and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            while time.monotonic() < deadline:
                done = (
                    node.metrics().total("mailfort_remote_deliveries_total", result="delivered")
                    or 0.0
                ) - before
                if done >= tally.accepted:
                    break
                await asyncio.sleep(0.2)
        cpu = per_unit(ph.cpu, int(done), "remote delivery")
        self.say(
            f"remote delivery: {int(done)} in {ph.wall:.1f} s over {sink.counts.connections}"
            f" connections, {cpu * 1000:.2f} ms CPU each"
        )
        return cpu

    async def logins(self, node: BenchNode) -> float:
        port = node.ports["imap"]

        async def one(i: int) -> None:
            client = await Imap.login(port, self.users[i % len(self.users)], PASSWORD)
            await client.logout()

        with Phase(node, None) as ph:
            await _in_parallel(self.counts.logins, 4, one)
        cpu = per_unit(ph.cpu, self.counts.logins, "IMAP logins")
        self.say(f"IMAP login + SELECT + LOGOUT: {cpu * 1000:.2f} ms CPU each")
        return cpu

    async def refusal(self, node: BenchNode) -> float:
        """What a connection turned away costs, measured as the nearest thing a healthy node
        does: connect, read the banner, QUIT, close (a refusal at connect is a 421 banner and a
        close, so this is its upper bound)."""
        port = node.ports["smtp"]

        async def one(i: int) -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                await reader.readline()
                writer.write(b"QUIT\r\n")
                await writer.drain()
                await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

        count = max(100, 2 * self.counts.logins)
        with Phase(node, None) as ph:
            await _in_parallel(count, 4, one)
        cpu = per_unit(ph.cpu, count, "SMTP connections")
        self.say(f"a connection turned away (banner, QUIT): {cpu * 1000:.3f} ms CPU each")
        return cpu

    async def header_fetch(self, node: BenchNode) -> tuple[float, float]:
        small, large = self.counts.fetch_small, self.counts.fetch_large
        client = await Imap.login(node.ports["imap"], self.fetcher, PASSWORD)
        costs = []
        try:
            for n in (small, large):
                command = f"FETCH 1:{n} (UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE)"
                await client.command(command)
                with Phase(node, None) as ph:
                    for _ in range(self.counts.fetches):
                        await client.command(command)
                costs.append(per_unit(ph.cpu, self.counts.fetches, f"FETCH of {n}"))
        finally:
            await client.logout()
        per_message = (costs[1] - costs[0]) / (large - small)
        if per_message <= 0:
            raise MeasureError(
                f"FETCH of {large} cost no more than of {small} ({costs[1]:.6f} s vs"
                f" {costs[0]:.6f} s): too noisy, measure more fetches"
            )
        fixed = costs[0] - small * per_message
        if fixed < 0:
            self.notes.append(
                f"header_fetch_cpu: the fit through FETCH of {small} and {large} crossed below 0"
                f" ({fixed:.6f} s): the fixed part is taken as 0"
            )
            fixed = 0.0
        self.say(
            f"header FETCH: {fixed * 1000:.3f} ms + {per_message * 1000:.4f} ms per message"
            f" (of {small}: {costs[0] * 1000:.2f} ms, of {large}: {costs[1] * 1000:.2f} ms)"
        )
        return fixed, per_message

    async def pop3(self, node: BenchNode) -> float:
        port = node.ports["pop3"]

        async def one(i: int) -> None:
            # One session per maildrop at a time (RFC 1939 locks it): a worker per account. A
            # cluster store may release the lock a moment after the session closed.
            for _ in range(100):
                try:
                    client = await Pop3.login(port, self.users[i % len(self.users)], PASSWORD)
                    break
                except InUse:
                    self.pop3_in_use += 1
                    await asyncio.sleep(0.01)
            else:
                raise MeasureError("POP3: a maildrop stayed locked after its session ended")
            await client.command("STAT")
            await client.command("UIDL", multiline=True)
            await client.quit()

        # Half as many workers as accounts: a worker alternates between its two maildrops, and
        # each maildrop has one worker, so a session never waits for its own predecessor's lock.
        workers = max(1, len(self.users) // 2)
        with Phase(node, None) as ph:
            await _in_parallel(self.counts.pop3_sessions, workers, one, stripe=True)
        cpu = per_unit(ph.cpu, self.counts.pop3_sessions, "POP3 sessions")
        if self.pop3_in_use:
            self.notes.append(
                f"pop3_session_cpu: includes {self.pop3_in_use} logins refused with [IN-USE]"
                " (the maildrop's lock released a moment after the previous session)"
            )
        self.say(f"POP3 session (USER/PASS, STAT, UIDL, QUIT): {cpu * 1000:.2f} ms CPU each")
        return cpu

    async def memory(self, node: BenchNode) -> dict[str, int]:
        """RSS per idle connection: the growth from K to 2K connections held open, / K. The
        first K fill what the allocator had free from earlier work (pages already resident),
        the next K are new memory."""
        k = self.counts.connections
        per: dict[str, int] = {}
        openers: dict[str, Callable[[int], Awaitable[Callable[[], Awaitable[None]]]]] = {}

        async def smtp(i: int) -> Callable[[], Awaitable[None]]:
            return (await SmtpClient.connect("127.0.0.1", node.ports["smtp"])).close

        async def imap(i: int) -> Callable[[], Awaitable[None]]:
            user = self.users[i % len(self.users)]
            return (await Imap.login(node.ports["imap"], user, PASSWORD)).logout

        async def pop3(i: int) -> Callable[[], Awaitable[None]]:
            return (await Pop3.login(node.ports["pop3"], self.users[i], PASSWORD)).quit

        # The fewest connections first, while the allocator has the least free memory to reuse.
        openers = {"pop3": pop3, "imap": imap, "smtp": smtp}
        for protocol, opener in openers.items():
            # One POP3 session per maildrop (RFC 1939 locks it): as many as there are accounts.
            count = len(self.users) // 2 if protocol == "pop3" else k
            closers = [await opener(i) for i in range(count)]
            await asyncio.sleep(0.5)  # the node finishes what each connection started
            first = node.rss()
            closers += [await opener(count + i) for i in range(count)]
            await asyncio.sleep(0.5)
            grown = node.rss() - first
            for close in closers:
                await close()
            if grown <= 0:
                raise MeasureError(
                    f"{protocol}: {count} more idle connections did not grow the node's memory;"
                    " measure with more connections (--connections, --accounts)"
                )
            per[protocol] = grown // count
            self.say(f"memory: {per[protocol] / 1024:.1f} KiB per idle {protocol} connection")
        if len(self.users) < 20:
            self.notes.append(
                f"memory_per_connection_bytes.pop3: from {len(self.users) // 2} sessions (one"
                " per maildrop), a coarse figure"
            )
        return per

    async def saturate(self, node: BenchNode) -> tuple[int, float, float]:
        """SMTP at rising concurrency until the node refuses or stops gaining throughput; the
        figures of the step that accepted the most (the knee of the curve).

        A client told "not now" (4xx, or a refused connection) waits `BACKOFF` before it tries
        again, as a sender's retry would, compressed: a client that came straight back would
        measure how fast the node says no, not what it accepts."""
        port = node.ports["smtp"]
        payload = message(4096, 99)
        best: tuple[float, int, float] = (0.0, 0, 0.0)  # msg/s, limit, refused share
        ladder = []
        flat = 0
        for concurrency in self.counts.saturation_steps:
            tally = Tally()
            stop = time.monotonic() + self.counts.step_seconds

            async def client(i: int, tally: Tally = tally, stop: float = stop) -> None:
                conn: SmtpClient | None = None
                while time.monotonic() < stop:
                    try:
                        if conn is None:
                            conn = await SmtpClient.connect("127.0.0.1", port)
                        code = await conn.send(SENDER, self.users[i % len(self.users)], payload)
                    except (OSError, SmtpReplyError):
                        tally.refused += 1  # refused at the connect, or the node closed
                        conn = None
                        await asyncio.sleep(BACKOFF)
                        continue
                    tally.count(code)
                    if code == 421:
                        conn.abort()
                        conn = None
                    if 400 <= code < 500:
                        await asyncio.sleep(BACKOFF)
                if conn is not None:
                    await conn.close()

            t0, cpu0 = time.monotonic(), node.cpu()
            await asyncio.gather(*(client(i) for i in range(concurrency)))
            wall, busy = time.monotonic() - t0, procstat.cpu_between(cpu0, node.cpu())
            rate = tally.accepted / wall
            offered = tally.accepted + tally.refused
            refused = tally.refused / offered if offered else 0.0
            limit = node.metrics().value("mailfort_concurrency_limit", scope="store")
            if limit is None:
                raise MeasureError("the node's /metrics has no mailfort_concurrency_limit")
            self.say(
                f"saturation: {concurrency} clients, {rate:.0f} msg/s, {refused:.1%} refused,"
                f" store limit {limit:.0f}, node CPU {busy / wall:.0%}"
            )
            ladder.append(
                f"{concurrency}: {rate:.0f}/s {refused:.1%} limit {limit:.0f} CPU {busy / wall:.0%}"
            )
            flat = flat + 1 if rate < best[0] * 1.05 else 0
            if rate > best[0]:
                best = (rate, int(limit), refused)
            if refused > 0.01 or flat >= 2:
                break
        if best[0] <= 0:
            raise MeasureError("saturation: the node accepted nothing")
        self.notes.append(
            f"saturation: the step that accepted the most of SMTP clients at rising concurrency"
            f" ({self.counts.step_seconds:g} s each; clients told 4xx wait {BACKOFF:g} s; the"
            f" load clients share this machine's CPUs): {'; '.join(ladder)}"
        )
        return best[1], best[0], best[2]

    def _refusals(self, tally: Tally, what: str) -> None:
        if tally.refused or tally.failed:
            self.notes.append(
                f"{what}: {tally.refused} refused (4xx), {tally.failed} failed; costs are per"
                " accepted message"
            )

    # -- the whole run -----------------------------------------------------------------------
    async def run(self, root: Path) -> Profile:
        # The quota first: where cgroups cannot give one, the run fails before any setup.
        quota = CpuQuota(self.options.cpu_quota) if self.options.cpu_quota is not None else None
        sink = await Sink().start()
        try:
            node = BenchNode(root, store_url=await self._store_url(), sink_port=sink.port)
            try:
                return await self._measure(node, sink, quota)
            except (ClientError, SmtpReplyError, OSError, procstat.ProcError, ScrapeError) as exc:
                # The node misbehaved or went away under measurement: that ends the run.
                tail = node.log_path.read_text(errors="replace").strip().splitlines()[-1:]
                raise MeasureError(f"{exc} (node log: {(tail or [''])[0][:200]})") from None
            finally:
                await asyncio.to_thread(node.stop)
        finally:
            if quota is not None:
                quota.remove()
            await sink.stop()
            await self._drop_schema()

    async def _measure(self, node: BenchNode, sink: Sink, quota: CpuQuota | None) -> Profile:
        self.say("starting the node and creating accounts")
        await asyncio.to_thread(node.cli, "alias", "add", self.forward, f"dest@{REMOTE_DOMAIN}")
        await asyncio.to_thread(node.add_users, [*self.users, self.fetcher])
        await asyncio.to_thread(node.start)
        if quota is None:
            return await self._phases(node, sink)
        quota.add(node.pid)
        profile = await self._phases(node, sink)
        waited = (
            f"the node waited {quota.throttled_seconds():.1f} s in all for its CPU quota"
            " (cgroup cpu.stat)"
        )
        return replace(profile, notes=(*profile.notes, waited))

    async def _phases(self, node: BenchNode, sink: Sink) -> Profile:
        c = self.counts
        load0 = load_average()
        # Each account's first login (argon2: its memory is mapped for the hash and returned).
        with Phase(node, None) as first:
            for user in [*self.users, self.fetcher]:
                await (await Imap.login(node.ports["imap"], user, PASSWORD)).logout()
        self.notes.append(
            "imap_login_cpu: a login whose password the node has verified before (it remembers"
            " successes); a first login after a restart also runs argon2:"
            f" {first.cpu / (len(self.users) + 1):.3f} s CPU here"
        )
        # Memory before the message phases: what they free, the allocator keeps and hands to
        # the next connections, which would then seem to cost nothing.
        await (await Pop3.login(node.ports["pop3"], self.users[0], PASSWORD)).quit()
        await send_many(node.ports["smtp"], [self.users[0]], message(2048, 0), 1)
        await asyncio.sleep(1.0)
        memory_base = node.rss()
        memory = await self.memory(node)
        # Warmup: the code paths imported and compiled, the store's caches and connections
        # made; the mailbox the header FETCH reads filled.
        await send_many(
            node.ports["smtp"], [self.fetcher] * c.fetch_large, message(2048, 1), c.concurrency
        )
        await send_many(
            node.ports["smtp"],
            self.users * (c.warmup // len(self.users) + 1),
            message(4096, 2),
            c.concurrency,
        )
        commits0 = node.metrics().buckets(COMMIT_HISTOGRAM)
        classes, db_cpu, _ = await self.accept(node)
        commits = promtext.bucket_delta(commits0, node.metrics().buckets(COMMIT_HISTOGRAM))
        p50 = promtext.quantile(0.5, commits)
        p99 = promtext.quantile(0.99, commits)
        if not p50 or not p99:
            raise MeasureError(f"the node's /metrics has no {COMMIT_HISTOGRAM} observations")
        self.say(f"store commit: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
        remote = await self.remote(node, sink)
        login = await self.logins(node)
        fetch_fixed, fetch_each = await self.header_fetch(node)
        pop3 = await self.pop3(node)
        limit, rate, refused = await self.saturate(node)
        refusal = await self.refusal(node)
        self.notes.append(
            "refusal_cpu: a connection that reads the banner and quits, the upper bound of a"
            " refusal at connect (421 and close)"
        )
        mean_mailbox = sum(s.messages for s in c.sizes) // len(self.users)
        self.notes.append(
            f"pop3_session_cpu: maildrops of about {mean_mailbox} messages; UIDL lists them all"
        )
        self.notes.append(
            f"commit latency: the {COMMIT_HISTOGRAM} histogram over the acceptance phases"
            f" ({c.concurrency} SMTP clients), quantiles interpolated within its buckets"
        )
        cpus, how = self._node_cpus()
        self.notes.append(f"node_cpus: {how}")
        self.notes.append(
            f"the machine's load average was {load0:.1f} at the start and {load_average():.1f}"
            f" at the end ({describe().cpus} CPUs): other work shares them, which the CPU"
            " figures see little of and the latencies and saturation figures see much of"
        )
        return Profile(
            mailfort_version=__version__,
            measured_at=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            machine=describe(),
            engine="postgresql" if self.options.database else "sqlite",
            source="benchmark",
            node_cpus=cpus,
            accept=tuple(classes),
            remote_delivery_cpu=remote,
            imap_login_cpu=login,
            header_fetch_cpu=fetch_fixed,
            header_fetch_per_message_cpu=fetch_each,
            pop3_session_cpu=pop3,
            commit_p50_seconds=p50,
            commit_p99_seconds=p99,
            db_cpu_per_message=db_cpu,
            memory_base_bytes=memory_base,
            memory_per_connection_bytes=memory,
            saturation_limit=limit,
            saturation_messages_per_second=rate,
            saturation_refused_share=refused,
            refusal_cpu=refusal,
            notes=tuple(self.notes),
        )

    def _node_cpus(self) -> tuple[float, str]:
        quota = self.options.cpu_quota
        if quota is not None:
            cpus = min(quota, describe().cpus)
            return cpus, f"the CPU quota the node ran under (cgroup cpu controller): {cpus:g}"
        return 1.0, (
            "1: one node process (workers = 1) runs Python code on one CPU at a time (the"
            " interpreter lock); run several workers or nodes per machine to use more"
        )

    # -- PostgreSQL --------------------------------------------------------------------------
    async def _store_url(self) -> str:
        if self.options.database is None:
            return ""
        self.database = self.options.database()
        url = await self.database.create()
        # The server's processes can be counted only when it runs on this machine (the backend
        # that served us is then one of them, its parent the server's main process).
        try:
            self.postmaster = procstat.parent_pid(self.database.server_pid)
            procstat.tree_cpu_seconds(self.postmaster)
        except (procstat.ProcError, ValueError):
            self.postmaster = None
            self.notes.append(
                "db_cpu_per_message: not measured, the PostgreSQL server is not on this machine"
            )
        return url

    async def _drop_schema(self) -> None:
        if self.database is not None:
            await self.database.drop()


async def _in_parallel(
    count: int,
    workers: int,
    one: Callable[[int], Awaitable[None]],
    *,
    stripe: bool = False,
) -> None:
    """Run one(0) .. one(count - 1) on `workers` tasks; with `stripe`, worker w runs only the
    i with i % workers == w (what one(i) touches stays with one worker)."""
    if stripe:

        async def worker(w: int) -> None:
            for i in range(w, count, workers):
                await one(i)

        await asyncio.gather(*(worker(w) for w in range(min(workers, count))))
        return
    todo = iter(range(count))

    async def pull() -> None:
        for i in todo:
            await one(i)

    await asyncio.gather(*(pull() for _ in range(min(workers, count))))


def measure_once(options: Options, progress: Progress) -> Profile:
    options.counts.check()
    root = options.work_dir or Path(tempfile.mkdtemp(prefix="mailfort-measure-"))
    try:
        return asyncio.run(Run(options, progress).run(root))
    finally:
        if options.work_dir is None:
            shutil.rmtree(root, ignore_errors=True)


def median_profile(profiles: Sequence[Profile]) -> Profile:
    """Every figure the median of the runs' (the machine and classes of the first); the notes
    all runs share once, the others by run."""
    first = profiles[0]
    if len(profiles) == 1:
        return first

    def med(get: Callable[[Profile], float]) -> float:
        return statistics.median(get(p) for p in profiles)

    classes = tuple(
        replace(c, cpu_seconds=statistics.median(p.accept[i].cpu_seconds for p in profiles))
        for i, c in enumerate(first.accept)
    )
    db = None if first.db_cpu_per_message is None else med(lambda p: p.db_cpu_per_message or 0.0)
    return replace(
        first,
        accept=classes,
        remote_delivery_cpu=med(lambda p: p.remote_delivery_cpu),
        imap_login_cpu=med(lambda p: p.imap_login_cpu),
        header_fetch_cpu=med(lambda p: p.header_fetch_cpu),
        header_fetch_per_message_cpu=med(lambda p: p.header_fetch_per_message_cpu),
        pop3_session_cpu=med(lambda p: p.pop3_session_cpu),
        commit_p50_seconds=med(lambda p: p.commit_p50_seconds),
        commit_p99_seconds=med(lambda p: p.commit_p99_seconds),
        db_cpu_per_message=db,
        memory_base_bytes=int(med(lambda p: p.memory_base_bytes)),
        memory_per_connection_bytes={
            k: int(statistics.median(p.memory_per_connection_bytes[k] for p in profiles))
            for k in first.memory_per_connection_bytes
        },
        saturation_limit=int(med(lambda p: p.saturation_limit)),
        saturation_messages_per_second=med(lambda p: p.saturation_messages_per_second),
        saturation_refused_share=med(lambda p: p.saturation_refused_share),
        refusal_cpu=(
            None
            if any(p.refusal_cpu is None for p in profiles)
            else med(lambda p: p.refusal_cpu or 0.0)
        ),
        notes=(
            *(n for n in first.notes if all(n in p.notes for p in profiles)),
            f"every figure is the median of {len(profiles)} runs; what each run saw:",
            *(
                f"run {i}: {n}"
                for i, p in enumerate(profiles, 1)
                for n in p.notes
                if not all(n in q.notes for q in profiles)
            ),
        ),
    )


def measure(options: Options, progress: Progress, *, repeat: int = 1) -> Profile:
    """The profile of `repeat` runs, each with a fresh node (the median of each figure)."""
    if repeat < 1:
        raise CountError(f"repeat must be >= 1, not {repeat}")
    profiles = []
    for i in range(repeat):
        if repeat > 1:
            progress(f"run {i + 1} of {repeat}")
        profiles.append(measure_once(options, progress))
    return median_profile(profiles)
