#!/usr/bin/env python3
"""SMTP ingest benchmark: N messages of SIZE bytes over C concurrent sessions, R runs.

Like Postfix's `smtp-source -d -s C -m N -l SIZE`: every session sends many messages over one
connection (RSET, MAIL, RCPT, DATA, body, repeat). By default it starts its own node (a real
`mailfort serve` subprocess on loopback, store in a temporary directory); `--host/--port` measure a
node that is already running (`--pid` to read its CPU and memory, `--db` to verify its mailboxes).

Per run it prints messages/s, p50/p99 of the time from writing MAIL to reading the 250 after the
final dot, the node's CPU seconds per 1000 messages (utime+stime from /proc/PID/stat), the node's
peak RSS during the run (VmHWM, reset before each run through /proc/PID/clear_refs), and the
client's own CPU per 1000 messages, then the median over the runs. It never asserts speed.

Local delivery is atomic with acceptance (the 250 is sent after the INBOX copy is committed), so the
ingest rate is also the rate into mailboxes; at the end the script checks that every message it got
a 250 for is in its recipient's INBOX exactly once, and says so.

    .venv/bin/python benchmarks/smtp_ingest.py                  # N=10000 C=20 R=5, 5 KB
    .venv/bin/python benchmarks/smtp_ingest.py -n 5000 -r 3
    .venv/bin/python benchmarks/smtp_ingest.py --host 127.0.0.1 --port 2525 --pid 1234 \\
        --rcpt demo@example.test

With `--verify` the node checks incoming mail (SPF, DKIM, DMARC, ARC; `[verify]`): a name server
on loopback (tests/dnsserver.py) holds SPF, DKIM (RSA 2048) and DMARC p=reject records for the
sender's domain, every message carries a DKIM signature of From and To and the body (made once
per recipient before the runs: the other header fields vary and are not signed, and signing in
the clients would take the node's CPU), and the node's resolver caches the answers after the
first message. `benchmarks/verify_ingest.py` runs both ways.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CLK_TCK = os.sysconf("SC_CLK_TCK")
LINE = b"The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs.\r\n"
SEQ_HEADER = re.compile(rb"^X-Bench-Id: (\d+)-(\d+)\r$", re.M)
SENDER_DOMAIN = "source.test"
DKIM_SELECTOR = "bench"


# -- the message --------------------------------------------------------------------------------
def make_body(size: int, run: int, seq: int, rcpt: str) -> bytes:
    head = (
        f"From: Bench <bench@source.test>\r\nTo: <{rcpt}>\r\nSubject: ingest {run}-{seq}\r\n"
        f"Message-ID: <bench-{run}-{seq}@source.test>\r\nX-Bench-Id: {run}-{seq}\r\n"
        "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n\r\n"
    ).encode()
    room = max(size - len(head), len(LINE))
    lines = LINE * (room // len(LINE))
    tail = room - len(lines)
    if tail >= 3:
        lines += b"x" * (tail - 2) + b"\r\n"
    return head + lines  # no line starts with ".", so no dot-stuffing is needed


# -- the client ---------------------------------------------------------------------------------
@dataclass
class ClientJob:
    host: str
    port: int
    run: int
    sessions: int
    first: int  # this worker sends sequence numbers first, first+1, ... first+count-1
    count: int
    size: int
    recipients: list[str]
    rcpts_per_message: int
    pipelining: bool
    rset: bool
    # Recipient -> its DKIM-Signature field (From, To and the body are the same for every
    # message to it, and only they are signed): made once, before the runs.
    signatures: dict[str, bytes] | None = None


@dataclass
class ClientResult:
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    refused: set[tuple[int, int]] = field(default_factory=set)  # got a definite non-250
    lost_session: bool = False  # a session died: some outcomes are unknown
    start: float = 0.0
    end: float = 0.0
    cpu: float = 0.0


class SmtpError(Exception):
    pass


class Refused(SmtpError):
    pass


async def read_reply(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    lines = []
    while True:
        line = await reader.readline()
        if not line:
            raise SmtpError("connection closed")
        lines.append(line)
        if line[3:4] != b"-":
            return int(line[:3]), b"".join(lines)


async def expect(reader: asyncio.StreamReader, code: int, what: str) -> None:
    got, text = await read_reply(reader)
    if got != code:
        raise Refused(f"{what}: expected {code}, got {text!r}")


async def session(job: ClientJob, take: list[int], out: ClientResult) -> None:
    """One SMTP session sending messages until the worker's share is gone.

    A refused command (not expected here) ends the connection and opens a new one, so that
    pipelined replies never get out of step.
    """
    n_rcpt = len(job.recipients)
    while take[0] < job.count:
        reader, writer = await asyncio.open_connection(job.host, job.port, limit=1 << 20)
        try:
            await expect(reader, 220, "greeting")
            writer.write(b"EHLO source.test\r\n")
            await expect(reader, 250, "EHLO")
            first = True
            while take[0] < job.count:
                seq = job.first + take[0]
                take[0] += 1
                rcpts = [job.recipients[(seq + i) % n_rcpt] for i in range(job.rcpts_per_message)]
                body = make_body(job.size, job.run, seq, rcpts[0])
                if job.signatures is not None:
                    body = job.signatures[rcpts[0]] + body
                body += b".\r\n"
                commands = [b"MAIL FROM:<bench@source.test>\r\n"]
                commands += [f"RCPT TO:<{r}>\r\n".encode() for r in rcpts]
                if job.rset and not first:
                    commands.insert(0, b"RSET\r\n")
                first = False
                started = time.perf_counter()
                try:
                    if job.pipelining:
                        writer.write(b"".join(commands) + b"DATA\r\n")
                        for command in commands:
                            await expect(reader, 250, command.decode().strip())
                        await expect(reader, 354, "DATA")
                    else:
                        for command in commands:
                            writer.write(command)
                            await expect(reader, 250, command.decode().strip())
                        writer.write(b"DATA\r\n")
                        await expect(reader, 354, "DATA")
                    writer.write(body)
                    await expect(reader, 250, "end of data")
                except Refused as exc:
                    out.failures.append(f"{job.run}-{seq}: {exc}")
                    out.refused.add((job.run, seq))
                    break
                out.latencies.append(time.perf_counter() - started)
            else:
                writer.write(b"QUIT\r\n")
                with contextlib.suppress(SmtpError, ConnectionError):
                    await read_reply(reader)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def dkim_signature(body: bytes, key: bytes) -> bytes:
    import dkim

    domain = SENDER_DOMAIN.encode()
    return bytes(
        dkim.sign(body, DKIM_SELECTOR.encode(), domain, key, include_headers=[b"from", b"to"])
    )


def sender_zone(key: bytes):  # type: ignore[no-untyped-def]
    """A name server on loopback with the sender domain's SPF, DKIM and DMARC records."""
    import base64

    from cryptography.hazmat.primitives import serialization
    from tests.dnsserver import NameServer, Zone

    private = serialization.load_pem_private_key(key, password=None)
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}"
    zone = Zone()
    strings = " ".join(f'"{record[i : i + 255]}"' for i in range(0, len(record), 255))
    zone.add(f"{DKIM_SELECTOR}._domainkey.{SENDER_DOMAIN}", "TXT", strings, ttl=3600)
    zone.add(SENDER_DOMAIN, "TXT", '"v=spf1 ip4:127.0.0.0/8 -all"', ttl=3600)
    zone.add(f"_dmarc.{SENDER_DOMAIN}", "TXT", '"v=DMARC1; p=reject"', ttl=3600)
    return NameServer(zone).start()


def new_dkim_key() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


async def client_main(job: ClientJob, out: ClientResult) -> None:
    take = [0]  # shared by this worker's sessions: whoever is free sends the next message
    results = await asyncio.gather(
        *(session(job, take, out) for _ in range(job.sessions)), return_exceptions=True
    )
    for r in results:
        if isinstance(r, BaseException):
            out.failures.append(f"session died: {r!r}")
            out.lost_session = True


def run_client(job: ClientJob) -> ClientResult:
    """One client process: its sessions, and the wall and CPU time it spent."""
    out = ClientResult()
    cpu0 = os.times()
    out.start = time.monotonic()
    asyncio.run(client_main(job, out))
    out.end = time.monotonic()
    cpu1 = os.times()
    out.cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return out


# -- the node -----------------------------------------------------------------------------------
def cpu_seconds(stat_path: str) -> float:
    fields = Path(stat_path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def node_cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds of the whole node and of its main thread (the event loop)."""
    return cpu_seconds(f"/proc/{pid}/stat"), cpu_seconds(f"/proc/{pid}/task/{pid}/stat")


def machine_busy_seconds() -> float:
    """CPU seconds all processes on this machine spent (all cores), from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def node_status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])  # kB
    return 0


def reset_peak_rss(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def start_node(args: argparse.Namespace, recipients: list[str]):  # type: ignore[no-untyped-def]
    from tests.nodeproc import NodeProcess

    root = Path(tempfile.mkdtemp(prefix="mailfort-bench-", dir=args.tmp))
    extra = (
        "\n[limits]\n"
        f"max_connections_per_ip = {max(args.sessions * 2, 20)}\n"
        f"max_connections = {max(args.sessions * 2, 1000)}\n"
    )
    node = NodeProcess(root, name="bench", extra_config=extra)
    if args.dns is not None:
        node.delivery = f'dns_nameservers = ["{args.dns.address}"]\ndns_timeout = 2.0\n'
        node.verify = "enabled = true"
    node.provision(
        domains=("bench.test",), users=dict.fromkeys(recipients, "bench password"), aliases=()
    )
    if args.node_wrapper:
        # e.g. --node-wrapper "python -m cProfile -o /tmp/node.prof": start under a profiler.
        _start_wrapped(node, args.node_wrapper.split())
    else:
        node.start()
    return node


def _start_wrapped(node, wrapper: list[str]) -> None:  # type: ignore[no-untyped-def]
    """NodeProcess.start, but the interpreter is replaced by `wrapper` (a profiler)."""
    import subprocess

    from tests.nodeproc import _LISTENER

    out = node.root / f"{node.name}.out"
    out.write_text("")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    command = [*wrapper, "-m", "mailfort", "--config", str(node.config_path), "serve"]
    with open(out, "ab") as stdout, open(node.log_path, "ab") as stderr:
        node.proc = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = out.read_text()
        if "Stop with" in text:
            node.ports = {m[0]: int(m[2]) for m in _LISTENER.findall(text)}
            return
        if node.proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"node did not start:\n{node.log()[-3000:]}")


def verify(db: Path, recipients: list[str], acked: set[tuple[int, int]], per_msg: int) -> str:
    """Every (run, seq) that got 250 is in each of its recipients' INBOX exactly once."""
    from mailfort.store.sqlite import SqliteStore

    async def collect() -> dict[str, list[tuple[int, int]]]:
        store = SqliteStore(db)
        await store.open()
        try:
            found: dict[str, list[tuple[int, int]]] = {}
            for address in recipients:
                account = await store.get_account(address)
                if account is None:
                    found[address] = []
                    continue
                ids = []
                for m in await store.list_messages(account.id, "INBOX"):
                    data = await store.message_bytes(account.id, "INBOX", m.uid)
                    match = SEQ_HEADER.search(data or b"")
                    if match:
                        ids.append((int(match[1]), int(match[2])))
                found[address] = ids
            return found
        finally:
            await store.close()

    found = asyncio.run(collect())
    expected: dict[str, set[tuple[int, int]]] = {r: set() for r in recipients}
    n = len(recipients)
    for run, seq in acked:
        for i in range(per_msg):
            expected[recipients[(seq + i) % n]].add((run, seq))
    problems = []
    copies = 0
    for address in recipients:
        ids = found[address]
        copies += len(ids)
        dup = len(ids) - len(set(ids))
        missing = expected[address] - set(ids)
        extra = set(ids) - expected[address]
        if dup or missing or extra:
            problems.append(
                f"{address}: {len(missing)} missing, {dup} duplicated, {len(extra)} extra"
            )
    if problems:
        return "MAILBOX CHECK FAILED: " + "; ".join(problems)
    return (
        f"mailbox check: all {len(acked)} acknowledged messages are in their INBOX exactly once"
        f" ({copies} copies in {len(recipients)} mailboxes)"
    )


# -- the runs -----------------------------------------------------------------------------------
def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class RunResult:
    latencies: list[float]
    failures: list[str]
    acked: set[tuple[int, int]] | None  # None: a session died, we do not know exactly
    wall: float
    client_cpu: float


def one_run(
    pool: ProcessPoolExecutor,
    args: argparse.Namespace,
    target: tuple[str, int],
    recipients: list[str],
    run: int,
    count: int,
    sessions: int,
) -> RunResult:
    procs = args.procs
    per = [count // procs + (i < count % procs) for i in range(procs)]
    ses = [max(1, sessions // procs + (i < sessions % procs)) for i in range(procs)]
    firsts = [sum(per[:i]) for i in range(procs)]
    jobs = [
        ClientJob(
            target[0],
            target[1],
            run,
            ses[i],
            firsts[i],
            per[i],
            args.size,
            recipients,
            args.rcpts,
            args.pipelining,
            args.rset,
            args.signatures,
        )
        for i in range(procs)
    ]
    results = list(pool.map(run_client, jobs))
    failures = [f for r in results for f in r.failures]
    acked: set[tuple[int, int]] | None = set()
    for i, r in enumerate(results):
        if r.lost_session:
            acked = None
        elif acked is not None:
            acked |= {(run, firsts[i] + k) for k in range(per[i])} - r.refused
    return RunResult(
        latencies=sorted(x for r in results for x in r.latencies),
        failures=failures,
        acked=acked,
        wall=max(r.end for r in results) - min(r.start for r in results),
        client_cpu=sum(r.cpu for r in results),
    )


COLUMNS = (
    ("run", "{:>6}"),
    ("msg/s", "{:>6.0f}"),
    ("p50 ms", "{:>6.1f}"),
    ("p99 ms", "{:>6.1f}"),
    ("node CPU s/1000", "{:>6.2f}"),
    ("node CPU %", "{:>6.0f}"),
    ("loop CPU %", "{:>6.0f}"),
    ("node peak RSS MB", "{:>6.0f}"),
    ("client CPU s/1000", "{:>6.2f}"),
    ("other CPU %", "{:>6.0f}"),
    ("wall s", "{:>6.2f}"),
    ("errors", "{:>6}"),
)


def fmt_row(values: list[object]) -> str:
    cells = []
    for (name, spec), value in zip(COLUMNS, values, strict=True):
        if isinstance(value, float) and math.isnan(value):  # not measured
            text = "-"
        elif isinstance(value, str):
            text = value
        else:
            text = spec.format(value).strip()
        cells.append(text.rjust(max(len(name), 6)))
    return "  ".join(cells)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("-n", "--messages", type=int, default=10_000, help="messages per run")
    add("-c", "--sessions", type=int, default=20, help="concurrent SMTP sessions")
    add("-r", "--runs", type=int, default=5, help="runs; the median is shown")
    add("-s", "--size", type=int, default=5 * 1024, help="message size in bytes")
    add("--rcpts", type=int, default=1, help="recipients per message")
    add("--users", type=int, default=10, help="mailboxes on our own node")
    add("--procs", type=int, default=1, help="client processes (sessions are split among them)")
    add("--warmup", type=int, default=200, help="messages sent before run 1 (not measured)")
    add(
        "--no-pipelining",
        dest="pipelining",
        action="store_false",
        help="one round trip per command (like smtp-source) instead of MAIL+RCPT+DATA at once",
    )
    add(
        "--no-rset",
        dest="rset",
        action="store_false",
        help="no RSET before the 2nd, 3rd, ... MAIL of a session",
    )
    add("--host", help="measure a running node at this address instead of starting one")
    add("--port", type=int, default=25, help="with --host")
    add("--pid", type=int, help="with --host: the node's pid, for the CPU and RSS columns")
    add("--rcpt", action="append", help="with --host: a recipient address (repeatable)")
    add("--db", type=Path, help="with --host: the node's SQLite file, to verify mailboxes")
    add("--tmp", help="parent directory of our own node's data directory (default: $TMPDIR)")
    add("--keep", action="store_true", help="keep our own node's directory (and its log)")
    add(
        "--node-wrapper",
        help="start our node as WRAPPER -m mailfort ..., e.g. 'python -m cProfile -o node.prof'",
    )
    add("--json", type=Path, help="also write the per-run figures to this file")
    add(
        "--verify",
        action="store_true",
        help="our node checks SPF/DKIM/DMARC; messages are DKIM-signed (see the docstring)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.signatures = args.dns = None
    if args.verify:
        if args.host:
            parser.error("--verify starts its own node and name server (no --host)")
        key = new_dkim_key()
        args.dns = sender_zone(key)
    node = None
    if args.host:
        target = (args.host, args.port)
        recipients = args.rcpt or [f"postmaster@{args.host}"]
        pid, db = args.pid, args.db
    else:
        recipients = [f"user{i}@bench.test" for i in range(args.users)]
        if args.verify:
            args.signatures = {
                r: dkim_signature(make_body(args.size, 0, 0, r), key) for r in recipients
            }
        node = start_node(args, recipients)
        assert node.proc is not None
        target, pid, db = ("127.0.0.1", node.ports["smtp"]), node.proc.pid, node.db_path
    if args.rcpts > len(recipients):
        parser.error("--rcpts is larger than the number of recipients")

    print(
        f"mailfort SMTP ingest: {args.messages} messages x {args.size} bytes, "
        f"{args.sessions} sessions, {args.runs} runs, {args.rcpts} rcpt/msg, "
        f"pipelining {'on' if args.pipelining else 'off'}, RSET {'on' if args.rset else 'off'}, "
        f"{args.procs} client process(es), {os.cpu_count()} CPUs, "
        f"verification {'on (DKIM-signed, SPF, DMARC p=reject)' if args.verify else 'off'}; "
        f"node pid {pid or '?'} at {target[0]}:{target[1]}",
        flush=True,
    )
    acked: set[tuple[int, int]] | None = set()
    rows: list[dict[str, float]] = []
    failures_total = 0
    try:
        with ProcessPoolExecutor(args.procs) as pool:
            if args.warmup:
                out = one_run(
                    pool, args, target, recipients, 0, args.warmup, min(args.sessions, args.warmup)
                )
                acked = out.acked
                failures_total += len(out.failures)
            print()
            print(fmt_row([name for name, _ in COLUMNS]))
            for run in range(1, args.runs + 1):
                if pid:
                    reset_peak_rss(pid)
                    cpu0 = node_cpu_seconds(pid)
                busy0 = machine_busy_seconds()
                out = one_run(pool, args, target, recipients, run, args.messages, args.sessions)
                busy = machine_busy_seconds() - busy0
                done = len(out.latencies)
                if pid:
                    cpu1 = node_cpu_seconds(pid)
                    node_cpu, loop_cpu = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
                else:
                    node_cpu = loop_cpu = float("nan")
                row: dict[str, float] = {
                    "run": run,
                    "msg_per_s": done / out.wall,
                    "p50_ms": percentile(out.latencies, 50) * 1000,
                    "p99_ms": percentile(out.latencies, 99) * 1000,
                    "node_cpu_s_per_1000": node_cpu / done * 1000 if done else float("nan"),
                    "node_cpu_pct": node_cpu / out.wall * 100,
                    "loop_cpu_pct": loop_cpu / out.wall * 100,
                    "node_peak_rss_mb": node_status(pid, "VmHWM") / 1024 if pid else float("nan"),
                    "client_cpu_s_per_1000": out.client_cpu / done * 1000 if done else float("nan"),
                    # Everything else on the machine: should be near 0 for a clean measurement.
                    "other_cpu_pct": (
                        busy - out.client_cpu - (0 if math.isnan(node_cpu) else node_cpu)
                    )
                    / out.wall
                    * 100,
                    "wall_s": out.wall,
                    "errors": len(out.failures),
                }
                rows.append(row)
                failures_total += len(out.failures)
                for failure in out.failures[:3]:
                    print(f"  error: {failure}", file=sys.stderr)
                if acked is not None and out.acked is not None:
                    acked |= out.acked
                else:
                    acked = None
                print(fmt_row(list(row.values())), flush=True)
        median = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "run"}
        median["errors"] = sum(r["errors"] for r in rows)  # the total, not a median
        print(fmt_row(["median", *median.values()]) + " (errors: total)")
        rates = [r["msg_per_s"] for r in rows]
        print(f"msg/s over {len(rows)} runs: min {min(rates):.0f}, max {max(rates):.0f}")
        print(
            "into mailbox: local delivery commits the INBOX copy in the same transaction as the"
            " acceptance, before the 250, so the end-to-end rate equals the ingest rate."
        )
        if node is not None:
            node.stop()
        if args.dns is not None:
            asked = len(args.dns.zone.queries)
            print(f"DNS questions the node asked the name server: {asked} (the rest were cached)")
        if db is None:
            print("mailbox check skipped (a running node without --db)")
        elif acked is None:
            print("mailbox check skipped (a session died, so the set of 250s is not known)")
        else:
            print(verify(db, recipients, acked, args.rcpts))
        if args.json:
            args.json.write_text(json.dumps({"runs": rows, "median": median}, indent=1))
    finally:
        if args.dns is not None:
            args.dns.stop()
        if node is not None:
            node.stop()
            if args.keep:
                print(f"node directory kept: {node.root}")
            else:
                shutil.rmtree(node.root, ignore_errors=True)
    return 1 if failures_total else 0


if __name__ == "__main__":
    sys.exit(main())
