#!/usr/bin/env python3
"""IMAP benchmark: FETCH over a 2000-message mailbox, and 20 clients logging in over and over.

It starts its own node (a real `mailfort serve` subprocess on loopback, SQLite store in a
temporary directory) and fills the mailboxes *before* the node starts, through the store API in
this process (`Store.append`, 500 messages per transaction): that takes seconds, and the node
under test has parsed nothing yet. Each run starts the node afresh (so "cold" is cold for the
node's process and its caches; the OS page cache holds the SQLite file either way), then measures:

  header-cold   `FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)`, the first FETCH after node start
  header-warm   the same, repeated (--repeat times)
  bodies        `UID FETCH 1:* BODY.PEEK[]` (2000 x 5 KB = 10 MB), repeated; the bytes are
                compared with what was appended, once per run
  sessions-*    C clients (default 20), each looping connect / LOGIN / SELECT INBOX /
                `FETCH 1:20 (BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])` / LOGOUT for
                --duration seconds; each client its own account with its own 2000-message
                INBOX. `plain`: LOGIN without TLS on loopback (`[auth] allow_plaintext_loopback`),
                `imaps`: implicit TLS, a full handshake per session (no resumption)

The fetch cases use one connection, plaintext on loopback unless --fetch-tls. The clients are raw
asyncio streams with a buffered response parser that reads literals by their length; the session
clients run in --procs separate process(es). Per case it reports throughput, latency p50/p99, the
node's CPU per operation (utime+stime of all its threads from /proc/PID/stat) and the share of
it spent in the event-loop thread, the node's peak RSS during the case (VmHWM, reset through
/proc/PID/clear_refs before each case), the client's CPU, and the CPU the rest of the machine
used meanwhile (`other CPU %`: near 0 means nothing else disturbed the measurement). The table
shows the median of each column over the runs. It never asserts speed.

    .venv/bin/python benchmarks/imap.py                      # 2000 x 5 KB, 5 runs, 20 clients 10 s
    .venv/bin/python benchmarks/imap.py -r 3 --duration 5    # quicker
    .venv/bin/python benchmarks/imap.py --only header-cold,header-warm,bodies
    .venv/bin/python benchmarks/imap.py -r 1 --profile sessions-plain=/tmp/node.svg   # py-spy
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.utils
import json
import math
import os
import re
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CLK_TCK = os.sysconf("SC_CLK_TCK")
PASSWORD = "bench password"
DOMAIN = "bench.test"
FETCH_USER = f"bench@{DOMAIN}"
HEADER_FETCH = b"FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)"
BODY_FETCH = b"UID FETCH 1:* BODY.PEEK[]"
SESSION_FETCH = b"FETCH 1:20 (BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])"
CASES = ("header-cold", "header-warm", "bodies", "sessions-plain", "sessions-imaps")
# Dovecot 2.3 on the same kind of 2-core machine: the reference column of benchmarks/README.md.
DOVECOT = {
    "header-cold": "81 ms",
    "header-warm": "37 ms",
    "bodies": "37 ms",
    "sessions-plain": "116/s",
}
BASE_DATE = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC


# -- the messages ---------------------------------------------------------------------------------
NAMES = (
    "Alice Martin",
    "Bob Dupont",
    "Chloé Bernard",
    "David Müller",
    "Eve O'Brien",
    "Frank Li",
    "Grace Hopper",
    "Hiro Tanaka",
    "Inès Moreau",
    "Jonas Berg",
    "Kasia Nowak",
    "Luis García",
)
TOPICS = (
    "quarterly report",
    "lunch on Friday?",
    "build failed on main",
    "invoice 2026-0042",
    "holiday schedule",
    "meeting notes",
    "your order has shipped",
    "re: design review",
)
TEXT = (
    "Thanks for the update. I went through the numbers again and the totals match what we\r\n"
    "discussed on the call; the only open point is the shipping estimate for next month.\r\n"
)


def _address(i: int) -> tuple[str, str]:
    name = NAMES[i % len(NAMES)]
    local = name.split()[0].lower().replace("é", "e").replace("è", "e")
    return name, f"{local}.{i % 97}@example.org"


def _fill(room: int, unit: str) -> str:
    text = unit * (room // len(unit))
    tail = room - len(text)
    return text + ("x" * (tail - 2) + "\r\n" if tail >= 3 else " " * tail)


def make_message(i: int, rcpt: str, size: int) -> bytes:
    """A plausible message of exactly `size` bytes (when size allows): mostly text/plain, every
    5th multipart/alternative; an encoded-word subject, Cc and In-Reply-To now and then."""
    name, sender = _address(i)
    cc_name, cc = _address(i + 5)
    topic = TOPICS[i % len(TOPICS)]
    subject = (
        f"=?UTF-8?Q?R=C3=A9union_{i}_=E2=80=93_{topic.replace(' ', '_')}?="
        if i % 10 == 0
        else f"{topic} ({i})"
    )
    date = email.utils.formatdate(BASE_DATE + i * 61, usegmt=True)
    head = [
        f"Return-Path: <{sender}>",
        f"Received: from mx.example.org (mx.example.org [192.0.2.{i % 250 + 1}])\r\n"
        f"\tby mx.mailfort.test with ESMTPS id B{i:06d}; {date}",
        f'From: "{name}" <{sender}>',
        f"To: Bench User <{rcpt}>",
    ]
    if i % 3 == 0:
        head.append(f"Cc: {cc_name} <{cc}>, team@example.org")
    head += [f"Subject: {subject}", f"Date: {date}", f"Message-ID: <{i}.bench@example.org>"]
    if i % 4 == 0 and i:
        head.append(f"In-Reply-To: <{i - 1}.bench@example.org>")
    head.append("MIME-Version: 1.0")
    if i % 5:
        head += ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"]
        top = "\r\n".join(head) + "\r\n\r\n"
        return (top + _fill(size - len(top.encode()), TEXT)).encode()
    boundary = f"=_bench_{i}"
    head.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
    top = "\r\n".join(head) + "\r\n\r\nThis is a multi-part message in MIME format.\r\n"
    part1 = f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    part2 = f"\r\n--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>"
    end = f"</p></body></html>\r\n--{boundary}--\r\n"
    room = size - len((top + part1 + part2 + end).encode())
    text = _fill(room // 2, TEXT)
    html = _fill(room - len(text), TEXT.replace("\r\n", "<br>\r\n", 1))
    return (top + part1 + text + part2 + html + end).encode()


def message_flags(i: int) -> frozenset[str]:
    if i % 7 == 0:
        return frozenset({"\\Seen", "\\Flagged"})
    return frozenset({"\\Seen"}) if i % 3 else frozenset()


async def fill_store(db: Path, users: list[str], count: int, size: int) -> None:
    """Append `count` messages to each user's INBOX, 500 per transaction, through the store."""
    from mailfort.store.records import AppendItem
    from mailfort.store.sqlite import SqliteStore

    store = SqliteStore(db)
    await store.open()
    try:
        for address in users:
            account = await store.get_account(address)
            assert account is not None, address
            for start in range(0, count, 500):
                items = [
                    AppendItem(
                        data=make_message(i, address, size),
                        flags=message_flags(i),
                        internal_date=BASE_DATE + i * 61 + 5,
                    )
                    for i in range(start, min(count, start + 500))
                ]
                await store.append(account.id, "INBOX", items)
    finally:
        await store.close()


# -- the IMAP client ------------------------------------------------------------------------------
class ImapError(Exception):
    pass


_LITERAL = re.compile(rb"~?\{(\d+)\+?\}$")


@dataclass
class Reply:
    status: bytes  # OK, NO, BAD
    line: bytes  # the tagged line
    fetches: int = 0  # untagged `* n FETCH` responses
    literal_bytes: int = 0
    literals: list[bytes] | None = None


class Client:
    """One IMAP connection: writes a command, parses responses from a buffer until its tag.

    Literals are taken by their announced length, so a body containing anything (even a line
    that looks like our tag) cannot confuse it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buf = bytearray()
        self.pos = 0
        self.tags = 0

    @classmethod
    async def connect(cls, host: str, port: int, tls: ssl.SSLContext | None) -> Client:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=tls, server_hostname="localhost" if tls else None, limit=1 << 22
        )
        client = cls(reader, writer)
        line = await client._line()
        if not line.startswith(b"* OK"):
            raise ImapError(f"greeting: {line!r}")
        return client

    async def _more(self) -> None:
        if self.pos > 1 << 20:  # only between responses' lines: positions are still valid
            del self.buf[: self.pos]
            self.pos = 0
        data = await self.reader.read(1 << 18)
        if not data:
            raise ImapError("connection closed")
        self.buf += data

    async def _line(self) -> bytes:
        while True:
            end = self.buf.find(b"\r\n", self.pos)
            if end >= 0:
                line = bytes(self.buf[self.pos : end])
                self.pos = end + 2
                return line
            await self._more()

    async def command(self, text: bytes, *, keep: bool = False) -> Reply:
        self.tags += 1
        tag = b"b%d" % self.tags
        self.writer.write(tag + b" " + text + b"\r\n")
        reply = Reply(status=b"", line=b"", literals=[] if keep else None)
        prefix = tag + b" "
        buf = self.buf
        while True:
            # One response: a line, and for each literal it ends with, the literal and more line.
            end = buf.find(b"\r\n", self.pos)
            while end < 0:
                await self._more()
                buf = self.buf
                end = buf.find(b"\r\n", self.pos)
            start = self.pos
            if buf.startswith(prefix, start):
                reply.line = bytes(buf[start:end])
                reply.status = reply.line[len(prefix) :].split(b" ", 1)[0]
                self.pos = end + 2
                return reply
            if buf.startswith(b"* ", start) and buf.find(b" FETCH (", start, end) >= 0:
                reply.fetches += 1
            while True:
                m = (
                    _LITERAL.search(buf, max(start, end - 24), end)
                    if buf[end - 1] == 0x7D
                    else None
                )
                if m is None:
                    self.pos = end + 2
                    break
                n = int(m[1])
                lit = end + 2
                while len(buf) < lit + n:
                    await self._more_keep()
                    buf = self.buf
                if keep:
                    assert reply.literals is not None
                    reply.literals.append(bytes(buf[lit : lit + n]))
                reply.literal_bytes += n
                start = lit + n
                end = buf.find(b"\r\n", start)
                while end < 0:
                    await self._more_keep()
                    buf = self.buf
                    end = buf.find(b"\r\n", start)

    async def _more_keep(self) -> None:
        """Read more without moving anything (inside a response, positions must stay)."""
        data = await self.reader.read(1 << 18)
        if not data:
            raise ImapError("connection closed")
        self.buf += data

    async def ok(self, text: bytes, **kw: bool) -> Reply:
        reply = await self.command(text, **kw)
        if reply.status != b"OK":
            raise ImapError(f"{text[:40]!r}: {reply.line[:200]!r}")
        return reply

    async def login(self, user: str, password: str) -> None:
        await self.ok(b'LOGIN "%s" "%s"' % (user.encode(), password.encode()))

    async def logout(self) -> None:
        with contextlib.suppress(ImapError, ConnectionError):
            await self.command(b"LOGOUT")
        await self.close()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 5)


def client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the node's self-signed certificate
    return context


# -- the concurrent sessions (in worker processes) ------------------------------------------------
@dataclass
class SessionJob:
    host: str
    port: int
    tls: bool
    users: list[str]
    duration: float
    start_at: float  # time.monotonic() when all processes begin


@dataclass
class SessionResult:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    start: float = 0.0
    end: float = 0.0
    cpu: float = 0.0


async def one_session(host: str, port: int, tls: ssl.SSLContext | None, user: str) -> None:
    client = await Client.connect(host, port, tls)
    try:
        await client.login(user, PASSWORD)
        await client.ok(b"SELECT INBOX")
        reply = await client.ok(SESSION_FETCH)
        if reply.fetches != 20:
            raise ImapError(f"expected 20 FETCH responses, got {reply.fetches}")
        await client.ok(b"LOGOUT")
    finally:
        await client.close()


async def session_loop(job: SessionJob, user: str, deadline: float, out: SessionResult) -> None:
    tls = client_tls() if job.tls else None
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            await one_session(job.host, job.port, tls, user)
        except (ImapError, OSError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
            out.errors.append(f"{user}: {exc!r}")
            await asyncio.sleep(0.05)
            continue
        out.latencies.append(time.perf_counter() - started)
        out.end = time.monotonic()


def run_sessions(job: SessionJob) -> SessionResult:
    out = SessionResult()
    delay = job.start_at - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    cpu0 = time.process_time()
    out.start = out.end = time.monotonic()
    deadline = out.start + job.duration

    async def main() -> None:
        await asyncio.gather(*(session_loop(job, u, deadline, out) for u in job.users))

    asyncio.run(main())
    out.cpu = time.process_time() - cpu0
    return out


# -- the node -------------------------------------------------------------------------------------
def cpu_seconds(stat_path: str) -> float:
    fields = Path(stat_path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def task_cpu_ns(pid: int) -> dict[int, int]:
    """CPU time of each live thread in nanoseconds (/proc/PID/task/TID/schedstat, field 1).

    Clock ticks (/proc/PID/stat, 10 ms) are too coarse for a 40 ms FETCH; schedstat is exact.
    A thread that ended between two readings is missed, so the difference is also taken with
    ticks and the larger one is used (see Meter)."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            found[int(task.name)] = int((task / "schedstat").read_text().split()[0])
    return found


def machine_busy_seconds() -> float:
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Meter:
    """Node CPU (all threads, and the event-loop thread), peak RSS, machine CPU over a span."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset VmHWM
        self.node0 = cpu_seconds(f"/proc/{pid}/stat")
        self.tasks0 = task_cpu_ns(pid)
        self.busy0 = machine_busy_seconds()
        self.self0 = time.process_time()
        self.t0 = time.perf_counter()

    def stop(
        self,
        *,
        ops: int,
        units: float,
        latencies: list[float],
        client_cpu: float | None,
        errors: int,
        wall: float | None = None,
    ) -> dict[str, float]:
        """`wall`: the span the work took, when it is shorter than the metered one."""
        if wall is None:
            wall = time.perf_counter() - self.t0
        tasks = task_cpu_ns(self.pid)
        ticks = cpu_seconds(f"/proc/{self.pid}/stat") - self.node0
        exact = sum(ns - self.tasks0.get(tid, 0) for tid, ns in tasks.items()) / 1e9
        # Ticks are exact to 10 ms but count threads that ended meanwhile: take them if larger.
        node = exact if exact >= ticks - 0.02 else ticks
        loop = (tasks.get(self.pid, 0) - self.tasks0.get(self.pid, 0)) / 1e9
        busy = machine_busy_seconds() - self.busy0
        if client_cpu is None:  # the client ran in this process
            client_cpu = time.process_time() - self.self0
        lat = sorted(latencies)
        return {
            "ops": ops,
            "throughput": units / wall if wall > 0 else float("nan"),
            "p50_ms": percentile(lat, 50) * 1000,
            "p99_ms": percentile(lat, 99) * 1000,
            "node_cpu_ms_per_op": node / ops * 1000 if ops else float("nan"),
            "node_cpu_pct": node / wall * 100,
            "loop_cpu_pct": loop / wall * 100,
            "node_peak_rss_mb": peak_rss_mb(self.pid),
            "client_cpu_pct": client_cpu / wall * 100,
            "other_cpu_pct": (busy - node - client_cpu) / wall * 100,
            "wall_s": wall,
            "errors": errors,
        }


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not sorted_values:
        return float("nan")
    return sorted_values[max(1, math.ceil(p / 100 * len(sorted_values))) - 1]


class Profiler:
    """py-spy recording the node for the span of one case (ended with SIGINT, which saves)."""

    def __init__(self, pid: int, path: str, gil: bool) -> None:
        spy = Path(sys.executable).with_name("py-spy")
        fmt = {".txt": "raw", ".json": "speedscope"}.get(Path(path).suffix, "flamegraph")
        command = [
            str(spy if spy.exists() else "py-spy"),
            "record",
            "--pid",
            str(pid),
            "--rate",
            "250",
            "--format",
            fmt,
            "--output",
            path,
            "--nonblocking",
        ]
        if gil:
            command.append("--gil")
        else:
            command.append("--threads")
        self.path = path
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)  # attach before the case starts

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        tail = err.decode(errors="replace").strip().splitlines()[-1:]
        print(f"  py-spy wrote {self.path} {' '.join(tail)}".rstrip(), flush=True)


# -- one run --------------------------------------------------------------------------------------
@dataclass
class Setup:
    args: argparse.Namespace
    session_users: list[str]
    expected_bodies: list[bytes]
    pool: ProcessPoolExecutor | None = None


def make_node(root: Path, args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from tests.nodeproc import NodeProcess

    clients = max(args.clients, 1)
    extra = (
        "\n[auth]\nallow_plaintext_loopback = true\n"
        "\n[limits]\n"
        f"imap_max_connections_per_ip = {max(4 * clients, 50)}\n"
        f"imap_max_connections = {max(4 * clients, 5000)}\n"
    )
    return NodeProcess(root, name="bench", extra_config=extra)


async def fetch_cases(
    setup: Setup,
    host: str,
    port: int,
    pid: int,
    run: int,
    wanted: set[str],
    profile: dict[str, str],
) -> dict[str, dict[str, float]]:
    args = setup.args
    n = args.messages
    out: dict[str, dict[str, float]] = {}
    client = await Client.connect(host, port, client_tls() if args.fetch_tls else None)
    await client.login(FETCH_USER, PASSWORD)
    await client.ok(b"SELECT INBOX")

    async def case(
        name: str,
        repeat: int,
        command: bytes,
        units_per_op: float,
        check: Callable[[Reply], str | None],
    ) -> None:
        spy = Profiler(pid, profile[name], args.gil) if name in profile and run == 1 else None
        meter = Meter(pid)
        latencies, errors = [], 0
        for k in range(repeat):
            started = time.perf_counter()
            reply = await client.command(command, keep=k == 0 and name == "bodies")
            latencies.append(time.perf_counter() - started)
            problem = check(reply) if reply.status == b"OK" else reply.line.decode(errors="replace")
            if problem:
                errors += 1
                print(f"  error in {name}: {problem[:200]}", file=sys.stderr)
        out[name] = meter.stop(
            ops=repeat,
            units=units_per_op * repeat,
            latencies=latencies,
            client_cpu=None,
            errors=errors,
        )
        if spy:
            spy.stop()

    def check_headers(reply: Reply) -> str | None:
        return None if reply.fetches == n else f"{reply.fetches} FETCH responses, expected {n}"

    total = sum(len(b) for b in setup.expected_bodies)

    def check_bodies(reply: Reply) -> str | None:
        if reply.fetches != n or reply.literal_bytes != total:
            return f"{reply.fetches} FETCH, {reply.literal_bytes} literal bytes; expected {total}"
        if reply.literals is not None and reply.literals != setup.expected_bodies:
            return "the bodies differ from the appended bytes"
        return None

    if "header-cold" in wanted:
        await case("header-cold", 1, HEADER_FETCH, n, check_headers)
    elif "header-warm" in wanted:  # warm is warm only after a first FETCH
        await client.ok(HEADER_FETCH)
    if "header-warm" in wanted:
        await case("header-warm", args.repeat, HEADER_FETCH, n, check_headers)
    if "bodies" in wanted:
        await case("bodies", args.repeat, BODY_FETCH, total / 1e6, check_bodies)
    await client.logout()
    return out


def session_case(
    setup: Setup, host: str, port: int, tls: bool, pid: int, spy_path: str | None
) -> dict[str, float]:
    args = setup.args
    assert setup.pool is not None
    users = setup.session_users
    procs = args.procs
    start_at = time.monotonic() + 0.3
    jobs = [
        SessionJob(host, port, tls, users[i::procs], args.duration, start_at)
        for i in range(procs)
        if users[i::procs]
    ]
    spy = Profiler(pid, spy_path, args.gil) if spy_path else None
    meter = Meter(pid)
    results = list(setup.pool.map(run_sessions, jobs))
    latencies = [x for r in results for x in r.latencies]
    errors = [e for r in results for e in r.errors]
    for e in errors[:3]:
        print(f"  error in sessions: {e[:200]}", file=sys.stderr)
    # Rates over the sessions' own span (from the common start to the last completed session),
    # not over the process-pool start-up around it; the node is idle outside that span.
    span = max(r.end for r in results) - min(r.start for r in results)
    row = meter.stop(
        ops=len(latencies),
        units=len(latencies),
        latencies=latencies,
        client_cpu=sum(r.cpu for r in results),
        errors=len(errors),
        wall=span if span > 0 else None,
    )
    if spy:
        spy.stop()
    return row


async def warm_logins(host: str, port: int, users: list[str]) -> float:
    """One login per session user: the node verifies the Argon2 hash once and remembers it
    (`auth.passwords.Verifier`), so the sessions cases measure logins that hit that cache.
    Returns the seconds it took."""
    started = time.perf_counter()

    async def one(user: str) -> None:
        client = await Client.connect(host, port, None)
        await client.login(user, PASSWORD)
        await client.logout()

    for start in range(0, len(users), 4):  # few at a time: each verification is 64 MiB
        await asyncio.gather(*(one(u) for u in users[start : start + 4]))
    return time.perf_counter() - started


def one_run(
    setup: Setup, root: Path, run: int, wanted: set[str], profile: dict[str, str]
) -> dict[str, dict[str, float]]:
    args = setup.args
    node = make_node(root, args)
    node.start()
    try:
        assert node.proc is not None
        pid = node.proc.pid
        host = "127.0.0.1"
        port = node.ports["imaps" if args.fetch_tls else "imap"]
        rows = asyncio.run(fetch_cases(setup, host, port, pid, run, wanted, profile))
        if {"sessions-plain", "sessions-imaps"} & wanted:
            took = asyncio.run(warm_logins(host, node.ports["imap"], setup.session_users))
            print(
                f"  run {run}: first logins of {len(setup.session_users)} users (Argon2, "
                f"not measured below) took {took:.1f} s",
                flush=True,
            )
        for name, tls in (("sessions-plain", False), ("sessions-imaps", True)):
            if name in wanted:
                port = node.ports["imaps" if tls else "imap"]
                spy = profile.get(name) if run == 1 else None
                rows[name] = session_case(setup, host, port, tls, pid, spy)
        return rows
    finally:
        node.stop()


# -- output ---------------------------------------------------------------------------------------
COLUMNS = (
    ("case", "{}", 14),
    ("ops/run", "{:.0f}", 7),
    ("throughput", "{}", 13),
    ("p50 ms", "{:.1f}", 7),
    ("p99 ms", "{:.1f}", 7),
    ("node CPU ms/op", "{:.1f}", 14),
    ("node CPU %", "{:.0f}", 10),
    ("loop CPU %", "{:.0f}", 10),
    ("node peak RSS MB", "{:.0f}", 16),
    ("client CPU %", "{:.0f}", 12),
    ("other CPU %", "{:.0f}", 11),
    ("errors", "{:.0f}", 6),
    ("Dovecot 2.3", "{}", 11),
)
UNITS = {"header-cold": "msg/s", "header-warm": "msg/s", "bodies": "MB/s"}


def throughput_text(case: str, value: float) -> str:
    return f"{value:.0f} {UNITS.get(case, 'sess/s')}"


def table_row(case: str, row: dict[str, float]) -> str:
    values: list[object] = [
        case,
        row["ops"],
        throughput_text(case, row["throughput"]),
        row["p50_ms"],
        row["p99_ms"],
        row["node_cpu_ms_per_op"],
        row["node_cpu_pct"],
        row["loop_cpu_pct"],
        row["node_peak_rss_mb"],
        row["client_cpu_pct"],
        row["other_cpu_pct"],
        row["errors"],
        DOVECOT.get(case, "-"),
    ]
    cells = []
    for (name, spec, width), value in zip(COLUMNS, values, strict=True):
        text = "-" if isinstance(value, float) and math.isnan(value) else spec.format(value)
        cells.append(text.ljust(width) if name == "case" else text.rjust(max(width, len(name))))
    return "  ".join(cells)


def header_row() -> str:
    return "  ".join(
        name.ljust(width) if name == "case" else name.rjust(max(width, len(name)))
        for name, _, width in COLUMNS
    )


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("-n", "--messages", type=int, default=2000, help="messages in each INBOX")
    add("-s", "--size", type=int, default=5 * 1024, help="message size in bytes")
    add("-r", "--runs", type=int, default=5, help="runs (each with a fresh node); medians shown")
    add("--repeat", type=int, default=5, help="warm header FETCHes and body FETCHes per run")
    add("-c", "--clients", type=int, default=20, help="concurrent session clients")
    add("--duration", type=float, default=10.0, help="seconds of each sessions case")
    add("--procs", type=int, default=1, help="client processes for the sessions cases")
    add("--only", help=f"comma-separated subset of: {','.join(CASES)}")
    add("--fetch-tls", action="store_true", help="fetch cases over IMAPS instead of plaintext")
    add(
        "--profile",
        action="append",
        default=[],
        metavar="CASE=PATH",
        help="record the node with py-spy during CASE of run 1 (.svg flamegraph, .txt raw, "
        ".json speedscope)",
    )
    add("--gil", action="store_true", help="with --profile: only samples holding the GIL")
    add("--tmp", help="parent directory of the node's data directory (system default)")
    add("--keep", action="store_true", help="keep the node's directory (and its log)")
    add("--json", type=Path, help="also write the per-run figures to this file")
    return parser


def main() -> int:
    args = build_parser().parse_args()
    wanted = set(args.only.split(",")) if args.only else set(CASES)
    if unknown := wanted - set(CASES):
        sys.exit(f"unknown case(s): {', '.join(sorted(unknown))}")
    profile = dict(p.split("=", 1) for p in args.profile)
    if unknown := set(profile) - set(CASES):
        sys.exit(f"unknown --profile case(s): {', '.join(sorted(unknown))}")
    args.procs = max(1, min(args.procs, args.clients))
    sessions = {"sessions-plain", "sessions-imaps"} & wanted
    session_users = [f"s{i:02d}@{DOMAIN}" for i in range(args.clients)] if sessions else []
    root = Path(tempfile.mkdtemp(prefix="mailfort-imapbench-", dir=args.tmp))
    setup = Setup(
        args=args,
        session_users=session_users,
        expected_bodies=[make_message(i, FETCH_USER, args.size) for i in range(args.messages)],
    )
    print(
        f"mailfort IMAP benchmark: {args.messages} messages x {args.size} bytes per INBOX, "
        f"{args.runs} runs (fresh node each), {args.repeat} repeats, {args.clients} session "
        f"clients x {args.duration:g} s in {args.procs} process(es), fetches over "
        f"{'IMAPS' if args.fetch_tls else 'plaintext on loopback'}; {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}, load average {loadavg()}",
        flush=True,
    )
    per_run: list[dict[str, dict[str, float]]] = []
    try:
        users = [FETCH_USER, *session_users]
        started = time.perf_counter()
        node = make_node(root, args)
        node.provision(domains=(DOMAIN,), users=dict.fromkeys(users, PASSWORD), aliases=())
        asyncio.run(fill_store(node.db_path, users, args.messages, args.size))
        db_mb = sum(p.stat().st_size for p in node.data_dir.glob("mailfort.sqlite3*")) / 1e6
        print(
            f"filled {len(users)} INBOX(es) x {args.messages} messages through the store API in "
            f"{time.perf_counter() - started:.1f} s (SQLite {db_mb:.0f} MB)",
            flush=True,
        )
        with ProcessPoolExecutor(args.procs) as pool:
            setup.pool = pool
            for run in range(1, args.runs + 1):
                rows = one_run(setup, root, run, wanted, profile)
                per_run.append(rows)
                summary = ", ".join(
                    f"{case} {throughput_text(case, r['throughput'])} p50 {r['p50_ms']:.0f} ms"
                    for case, r in rows.items()
                )
                print(f"run {run}: {summary}; load {loadavg()}", flush=True)
        print()
        print(header_row())
        medians: dict[str, dict[str, float]] = {}
        for case in CASES:
            runs = [r[case] for r in per_run if case in r]
            if not runs:
                continue
            medians[case] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            medians[case]["errors"] = sum(r["errors"] for r in runs)  # the total
            print(table_row(case, medians[case]))
        print(
            f"medians over {len(per_run)} runs (errors: total); "
            "ops/run: FETCH commands or completed sessions"
        )
        for case in CASES:
            values = [r[case]["throughput"] for r in per_run if case in r]
            if len(values) > 1:
                print(
                    f"  {case}: throughput min {throughput_text(case, min(values))}, "
                    f"max {throughput_text(case, max(values))}"
                )
        print(f"load average at the end: {loadavg()}")
        if args.json:
            args.json.write_text(json.dumps({"runs": per_run, "median": medians}, indent=1))
        errors = sum(m["errors"] for m in medians.values())
        return 1 if errors else 0
    finally:
        if args.keep:
            print(f"node directory kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
