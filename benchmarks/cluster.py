#!/usr/bin/env python3
"""Cluster benchmark: SMTP ingest and IMAP on PostgreSQL with 1, 2 and 3 nodes.

Every node is a real `mailfort serve` subprocess on loopback (tests/nodeproc.py) whose config has
`[store] url = "postgresql://…?search_path=SCHEMA"`; all nodes of one row share that schema. By
default the script runs its own PostgreSQL cluster through `scripts/ensure-postgres` with
MAILFORT_PG_DIR=/tmp/mailfort-pg-bench and MAILFORT_PG_PORT=54339 (so that nothing else, such
as the test suite on the default cluster, uses the server while we measure it); `--dsn` names
another one. A SQLite single node, driven by the same code with the same parameters, is the
reference row of each table.

Workloads (the clients are those of smtp_ingest.py and imap.py, imported from them):

  smtp          N messages of SIZE bytes over C concurrent SMTP sessions (pipelined, RSET), the
                sessions spread round-robin over the nodes and sharing one pool of messages (a
                free session sends the next one); a fresh schema per row; median of R runs.
                Afterwards every message that got a 250 is checked to be in its INBOX once.
  header-warm   F clients (spread round-robin over the nodes) each repeating
                `FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)` on a 2000-message INBOX after one
                unmeasured FETCH per client (warm node caches); aggregate messages/s.
  sessions      20 clients, each its own account with its own 2000-message INBOX, looping
                connect / LOGIN / SELECT / FETCH 1:20 header fields / LOGOUT for --duration
                seconds (imap.py's sessions-plain), client i on node i mod k.

The IMAP mailboxes are filled once per engine through the store API before any node starts.

CPU is counted for the node processes (utime+stime from /proc/PID/stat, all threads) and for
the PostgreSQL server: the postmaster (found as the parent of a backend) with the CPU of its
children it has reaped (cutime+cstime), plus every live child (backends, WAL writer,
checkpointer, ...). `other CPU %` is the rest of the machine (from /proc/stat) minus nodes, server
and the benchmark's own client processes: near 0 for a clean measurement. The PostgreSQL WAL
fsyncs and commits per message (pg_stat_wal, pg_stat_database) show how well commits are shared.

    .venv/bin/python benchmarks/cluster.py                       # nodes 1,2,3; N=4000 R=3
    .venv/bin/python benchmarks/cluster.py --nodes 3 --only smtp -n 10000
    .venv/bin/python benchmarks/cluster.py --no-sqlite --dsn postgresql://me@db:5432/mail
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imap as imapbench
import smtp_ingest as smtp

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PG_DIR = "/tmp/mailfort-pg-bench"
PG_PORT = 54339
DOMAIN = "bench.test"
PASSWORD = imapbench.PASSWORD


# -- the database -------------------------------------------------------------------------------
def ensure_postgres() -> str:
    env = dict(os.environ, MAILFORT_PG_DIR=PG_DIR, MAILFORT_PG_PORT=str(PG_PORT))
    done = subprocess.run(
        [str(ROOT / "scripts" / "ensure-postgres")], env=env, capture_output=True, text=True
    )
    if done.returncode:
        sys.exit(f"scripts/ensure-postgres failed:\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


def pg(dsn: str, sql: str, *args: Any) -> Any:
    """One value from a fresh connection."""
    import asyncpg

    async def run() -> Any:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def with_schema(dsn: str, schema: str) -> str:
    return f"{dsn}{'&' if '?' in dsn else '?'}search_path={schema}"


def new_schema(dsn: str, what: str) -> str:
    schema = f"mailfort_bench_{what}_{secrets.token_hex(4)}"
    pg(dsn, f"CREATE SCHEMA {schema}")
    return schema


def drop_schema(dsn: str, schema: str) -> None:
    pg(dsn, f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def proc_stat(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name: [0] state, [1] ppid, [11] utime ..."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def postmaster_pid(dsn: str) -> int:
    """The PostgreSQL server's main process: the parent of our backend (same machine only)."""
    import asyncpg

    async def run() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            return int(proc_stat(await conn.fetchval("SELECT pg_backend_pid()"))[1])
        finally:
            await conn.close()

    return asyncio.run(run())


def pg_cpu_seconds(postmaster: int) -> float:
    """All CPU the server has used: the postmaster, its reaped children, its live children."""
    f = proc_stat(postmaster)
    total = sum(int(x) for x in f[11:15])  # utime, stime, cutime, cstime
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            c = proc_stat(int(entry.name))
            if int(c[1]) == postmaster:
                total += int(c[11]) + int(c[12])
    return total / CLK_TCK


def pg_counters(dsn: str) -> tuple[int, int]:
    """(WAL syncs in the whole cluster, commits in our database)."""
    import asyncpg

    async def run() -> tuple[int, int]:
        conn = await asyncpg.connect(dsn)
        try:
            syncs = await conn.fetchval("SELECT wal_sync FROM pg_stat_wal")
            commits = await conn.fetchval(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
            )
            return int(syncs), int(commits)
        finally:
            await conn.close()

    return asyncio.run(run())


# -- the nodes ----------------------------------------------------------------------------------
@dataclass
class Target:
    """Where a row runs: an engine, the store URL its nodes use, and the server's pid."""

    engine: str  # "sqlite" or "postgres"
    dsn: str  # the admin DSN (postgres), "" for sqlite
    postmaster: int | None

    def url(self, schema: str | None) -> str:
        return with_schema(self.dsn, schema) if self.engine == "postgres" and schema else ""


def node_extra(url: str, sessions: int, clients: int) -> str:
    extra = (
        "\n[auth]\nallow_plaintext_loopback = true\n"
        "\n[limits]\n"
        f"max_connections_per_ip = {max(sessions * 2, 20)}\n"
        f"max_connections = {max(sessions * 2, 1000)}\n"
        f"imap_max_connections_per_ip = {max(4 * clients, 50)}\n"
        f"imap_max_connections = {max(4 * clients, 5000)}\n"
    )
    if url:
        extra += f'\n[store]\nurl = "{url}"\n'
    return extra


def start_nodes(root: Path, count: int, url: str, args: argparse.Namespace) -> list[Any]:
    from tests.nodeproc import NodeProcess

    nodes = []
    extra = node_extra(url, args.sessions, args.clients)
    try:
        for i in range(count):
            node = NodeProcess(root / f"node{i + 1}", name=f"bench{i + 1}", extra_config=extra)
            if not url:  # SQLite: the one node's data directory holds the store
                node.root = root
            node.write_config()
            nodes.append(node.start())
    except BaseException:
        stop_nodes(nodes)
        raise
    return nodes


def stop_nodes(nodes: list[Any]) -> None:
    for node in nodes:
        node.stop()


async def provision(url: str, data_dir: Path, users: list[str], fill: int, size: int) -> float:
    """Domain and accounts through the store API; with `fill`, that many messages per INBOX."""
    from mailfort.auth.passwords import hash_password
    from mailfort.store import open_store
    from mailfort.store.records import AppendItem

    data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(url, data_dir)
    await store.open()
    started = time.perf_counter()
    try:
        await store.add_domain(DOMAIN)
        hashed = hash_password(PASSWORD)  # one Argon2 hash (with its salt) for every account
        for address in users:
            account = await store.add_account(address, hashed)
            for start in range(0, fill, 500):
                items = [
                    AppendItem(
                        data=imapbench.make_message(i, address, size),
                        flags=imapbench.message_flags(i),
                        internal_date=imapbench.BASE_DATE + i * 61 + 5,
                    )
                    for i in range(start, min(fill, start + 500))
                ]
                await store.append(account.id, "INBOX", items)
    finally:
        await store.close()
    return time.perf_counter() - started


# -- measuring ----------------------------------------------------------------------------------
def machine_busy_seconds() -> float:
    return smtp.machine_busy_seconds()


class Meter:
    """CPU of the nodes (together), of the PostgreSQL server, of the machine; peak RSS per node."""

    def __init__(self, nodes: list[Any], postmaster: int | None) -> None:
        self.pids = [n.proc.pid for n in nodes]
        self.postmaster = postmaster
        for pid in self.pids:
            smtp.reset_peak_rss(pid)
        self.node0 = sum(smtp.cpu_seconds(f"/proc/{pid}/stat") for pid in self.pids)
        self.pg0 = pg_cpu_seconds(postmaster) if postmaster else 0.0
        self.busy0 = machine_busy_seconds()
        self.t0 = time.perf_counter()

    def stop(self, client_cpu: float) -> dict[str, Any]:
        wall = time.perf_counter() - self.t0
        node = sum(smtp.cpu_seconds(f"/proc/{pid}/stat") for pid in self.pids) - self.node0
        server = pg_cpu_seconds(self.postmaster) - self.pg0 if self.postmaster else 0.0
        busy = machine_busy_seconds() - self.busy0
        return {
            "wall": wall,
            "node_cpu": node,
            "pg_cpu": server,
            "client_cpu": client_cpu,
            "other_cpu": busy - node - server - client_cpu,
            "rss": [smtp.node_status(pid, "VmHWM") / 1024 for pid in self.pids],
        }


# -- SMTP ---------------------------------------------------------------------------------------
@dataclass
class SmtpJob:
    ports: list[int]  # one per session: the sessions are spread round-robin over the nodes
    run: int
    first: int
    count: int
    size: int
    recipients: list[str]
    rcpts: int


def run_smtp_client(job: SmtpJob) -> smtp.ClientResult:
    """smtp_ingest's sessions, each to its own node, taking messages from one shared pool."""
    out = smtp.ClientResult()
    cpu0 = os.times()
    out.start = time.monotonic()

    async def main() -> None:
        take = [0]
        jobs = [
            smtp.ClientJob(
                "127.0.0.1",
                port,
                job.run,
                1,
                job.first,
                job.count,
                job.size,
                job.recipients,
                job.rcpts,
                True,  # pipelining
                True,  # RSET
            )
            for port in job.ports
        ]
        results = await asyncio.gather(
            *(smtp.session(j, take, out) for j in jobs), return_exceptions=True
        )
        for r in results:
            if isinstance(r, BaseException):
                out.failures.append(f"session died: {r!r}")
                out.lost_session = True

    asyncio.run(main())
    out.end = time.monotonic()
    cpu1 = os.times()
    out.cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return out


def smtp_run(
    pool: ProcessPoolExecutor,
    args: argparse.Namespace,
    ports: list[int],
    recipients: list[str],
    run: int,
    count: int,
    sessions: int,
) -> tuple[smtp.RunResult, list[smtp.ClientResult]]:
    procs = max(1, min(args.procs, sessions))
    session_ports = [ports[s % len(ports)] for s in range(sessions)]
    per = [count // procs + (i < count % procs) for i in range(procs)]
    firsts = [sum(per[:i]) for i in range(procs)]
    jobs = [
        SmtpJob(session_ports[i::procs], run, firsts[i], per[i], args.size, recipients, 1)
        for i in range(procs)
    ]
    results = list(pool.map(run_smtp_client, jobs))
    acked: set[tuple[int, int]] | None = set()
    for i, r in enumerate(results):
        if r.lost_session:
            acked = None
        elif acked is not None:
            acked |= {(run, firsts[i] + k) for k in range(per[i])} - r.refused
    out = smtp.RunResult(
        latencies=sorted(x for r in results for x in r.latencies),
        failures=[f for r in results for f in r.failures],
        acked=acked,
        wall=max(r.end for r in results) - min(r.start for r in results),
        client_cpu=sum(r.cpu for r in results),
    )
    return out, results


async def check_mailboxes(
    url: str, data_dir: Path, recipients: list[str], acked: set[tuple[int, int]]
) -> str:
    """Every (run, seq) that got a 250 is in its recipient's INBOX exactly once."""
    from mailfort.store import open_store

    store = open_store(url, data_dir)
    await store.open()
    problems, copies = [], 0
    try:
        n = len(recipients)
        for index, address in enumerate(recipients):
            account = await store.get_account(address)
            assert account is not None, address
            ids = []
            for m in await store.list_messages(account.id, "INBOX"):
                data = await store.message_bytes(account.id, "INBOX", m.uid)
                match = smtp.SEQ_HEADER.search(data or b"")
                if match:
                    ids.append((int(match[1]), int(match[2])))
            copies += len(ids)
            expected = {(r, s) for r, s in acked if s % n == index}
            dup = len(ids) - len(set(ids))
            missing, extra = expected - set(ids), set(ids) - expected
            if dup or missing or extra:
                problems.append(
                    f"{address}: {len(missing)} missing, {dup} duplicated, {len(extra)} extra"
                )
    finally:
        await store.close()
    if problems:
        return "MAILBOX CHECK FAILED: " + "; ".join(problems)
    return f"all {len(acked)} acknowledged messages in their INBOX exactly once ({copies} copies)"


def smtp_row(
    pool: ProcessPoolExecutor, args: argparse.Namespace, target: Target, k: int, tmp: Path
) -> dict[str, Any]:
    recipients = [f"user{i}@{DOMAIN}" for i in range(args.users)]
    schema = new_schema(target.dsn, "smtp") if target.engine == "postgres" else None
    url = target.url(schema)
    root = Path(tempfile.mkdtemp(prefix=f"smtp-{target.engine}-{k}-", dir=tmp))
    nodes: list[Any] = []
    try:
        asyncio.run(provision(url, root / "data", recipients, 0, args.size))
        nodes = start_nodes(root, k, url, args)
        ports = [n.ports["smtp"] for n in nodes]
        warm, _ = smtp_run(pool, args, ports, recipients, 0, args.warmup, args.sessions)
        acked = warm.acked
        counters0 = pg_counters(target.dsn) if target.postmaster else None
        runs = []
        for run in range(1, args.runs + 1):
            meter = Meter(nodes, target.postmaster)
            out, _ = smtp_run(pool, args, ports, recipients, run, args.messages, args.sessions)
            m = meter.stop(out.client_cpu)
            done = len(out.latencies)
            wall = out.wall
            runs.append(
                {
                    "msg/s": done / wall,
                    "p50": smtp.percentile(out.latencies, 50) * 1000,
                    "p99": smtp.percentile(out.latencies, 99) * 1000,
                    "node": m["node_cpu"] / done * 1000,
                    "pg": m["pg_cpu"] / done * 1000,
                    "client": m["client_cpu"] / done * 1000,
                    "node%": m["node_cpu"] / m["wall"] * 100,
                    "pg%": m["pg_cpu"] / m["wall"] * 100,
                    "other%": m["other_cpu"] / m["wall"] * 100,
                    "rss": m["rss"],
                    "errors": len(out.failures),
                    "done": done,
                }
            )
            for failure in out.failures[:3]:
                print(f"  error: {failure}", file=sys.stderr)
            acked = acked | out.acked if acked is not None and out.acked is not None else None
            r = runs[-1]
            print(
                f"  smtp {target.engine} x{k} run {run}: {r['msg/s']:.0f} msg/s, p50 "
                f"{r['p50']:.1f} ms, CPU/1000 node {r['node']:.2f} + pg {r['pg']:.2f} s",
                flush=True,
            )
        row = median_row(runs)
        if counters0 is not None:
            time.sleep(1.1)  # PostgreSQL publishes its statistics at most once a second
            syncs, commits = (
                b - a for a, b in zip(counters0, pg_counters(target.dsn), strict=True)
            )
            total = sum(r["done"] for r in runs)
            row["syncs/msg"] = syncs / total
            row["commits/msg"] = commits / total
        stop_nodes(nodes)
        nodes = []
        if args.verify and acked is not None:
            check = asyncio.run(check_mailboxes(url, root / "data", recipients, acked))
        else:
            check = "not checked"
        row["check"] = check
        print(f"  smtp {target.engine} x{k} mailbox check: {check}", flush=True)
        return row
    finally:
        stop_nodes(nodes)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
            if schema:
                drop_schema(target.dsn, schema)


def median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key in runs[0]:
        if key == "rss":  # the peak per node over the runs
            row[key] = [max(r[key][i] for r in runs) for i in range(len(runs[0][key]))]
        elif key == "errors":
            row[key] = sum(r[key] for r in runs)
        else:
            row[key] = statistics.median(r[key] for r in runs)
    return row


# -- IMAP ---------------------------------------------------------------------------------------
async def header_fetches(
    ports: list[int], clients: int, repeat: int, n: int, meter: Callable[[], Meter]
) -> tuple[list[float], int, dict[str, Any]]:
    """`clients` connections round-robin over the nodes, each warmed by one FETCH; then, metered,
    `repeat` FETCHes on each at once. Returns the latencies, the errors and the meter's figures
    (its wall time is that of the measured FETCHes only)."""
    conns = []
    for i in range(clients):
        client = await imapbench.Client.connect("127.0.0.1", ports[i % len(ports)], None)
        await client.login(imapbench.FETCH_USER, PASSWORD)
        await client.ok(b"SELECT INBOX")
        await client.ok(imapbench.HEADER_FETCH)  # warms this node's caches
        conns.append(client)
    latencies: list[float] = []
    errors = [0]

    async def loop(client: imapbench.Client) -> None:
        for _ in range(repeat):
            started = time.perf_counter()
            reply = await client.command(imapbench.HEADER_FETCH)
            latencies.append(time.perf_counter() - started)
            if reply.status != b"OK" or reply.fetches != n:
                errors[0] += 1

    metering = meter()
    own = time.process_time()  # the clients run in this process
    await asyncio.gather(*(loop(c) for c in conns))
    figures = metering.stop(time.process_time() - own)
    for client in conns:
        await client.logout()
    return sorted(latencies), errors[0], figures


def imap_rows(
    pool: ProcessPoolExecutor,
    args: argparse.Namespace,
    target: Target,
    counts: list[int],
    tmp: Path,
) -> dict[int, dict[str, dict[str, Any]]]:
    """header-warm and sessions rows for each node count, on one filled store."""
    users = [imapbench.FETCH_USER] + [f"s{i:02d}@{DOMAIN}" for i in range(args.clients)]
    session_users = users[1:]
    schema = new_schema(target.dsn, "imap") if target.engine == "postgres" else None
    url = target.url(schema)
    root = Path(tempfile.mkdtemp(prefix=f"imap-{target.engine}-", dir=tmp))
    out: dict[int, dict[str, dict[str, Any]]] = {}
    try:
        took = asyncio.run(provision(url, root / "data", users, args.imap_messages, args.size))
        print(
            f"  imap {target.engine}: filled {len(users)} INBOX(es) x {args.imap_messages} "
            f"messages through the store API in {took:.1f} s",
            flush=True,
        )
        for k in counts:
            nodes = start_nodes(root if not url else root / f"x{k}", k, url, args)
            try:
                out[k] = imap_one(pool, args, target, nodes, session_users)
            finally:
                stop_nodes(nodes)
        return out
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
            if schema:
                drop_schema(target.dsn, schema)


def imap_one(
    pool: ProcessPoolExecutor,
    args: argparse.Namespace,
    target: Target,
    nodes: list[Any],
    session_users: list[str],
) -> dict[str, dict[str, Any]]:
    k = len(nodes)
    ports = [n.ports["imap"] for n in nodes]
    by_node = [session_users[i::k] for i in range(k)]  # client i on node i mod k

    async def warm() -> None:  # Argon2 once per user on the node it will use (unmeasured)
        await asyncio.gather(
            *(imapbench.warm_logins("127.0.0.1", p, u) for p, u in zip(ports, by_node, strict=True))
        )

    asyncio.run(warm())
    fetch_runs, session_runs = [], []
    for run in range(1, args.runs + 1):
        lat, errors, m = asyncio.run(
            header_fetches(
                ports,
                args.fetch_clients,
                args.repeat,
                args.imap_messages,
                lambda: Meter(nodes, target.postmaster),
            )
        )
        ops = len(lat)
        fetch_runs.append(
            {
                "rate": ops * args.imap_messages / m["wall"],
                "p50": smtp.percentile(lat, 50) * 1000,
                "p99": smtp.percentile(lat, 99) * 1000,
                "node": m["node_cpu"] / ops * 1000,
                "pg": m["pg_cpu"] / ops * 1000,
                "node%": m["node_cpu"] / m["wall"] * 100,
                "pg%": m["pg_cpu"] / m["wall"] * 100,
                "client%": m["client_cpu"] / m["wall"] * 100,
                "other%": m["other_cpu"] / m["wall"] * 100,
                "rss": m["rss"],
                "errors": errors,
            }
        )
        start_at = time.monotonic() + 0.3
        jobs = [
            imapbench.SessionJob("127.0.0.1", p, False, u, args.duration, start_at)
            for p, u in zip(ports, by_node, strict=True)
            if u
        ]
        meter = Meter(nodes, target.postmaster)
        results = list(pool.map(imapbench.run_sessions, jobs))
        m = meter.stop(sum(r.cpu for r in results))
        lat = sorted(x for r in results for x in r.latencies)
        errs = [e for r in results for e in r.errors]
        for e in errs[:3]:
            print(f"  error in sessions: {e[:200]}", file=sys.stderr)
        span = max(r.end for r in results) - min(r.start for r in results)
        ops = max(len(lat), 1)
        session_runs.append(
            {
                "rate": len(lat) / span,
                "p50": smtp.percentile(lat, 50) * 1000,
                "p99": smtp.percentile(lat, 99) * 1000,
                "node": m["node_cpu"] / ops * 1000,
                "pg": m["pg_cpu"] / ops * 1000,
                "node%": m["node_cpu"] / m["wall"] * 100,
                "pg%": m["pg_cpu"] / m["wall"] * 100,
                "client%": m["client_cpu"] / m["wall"] * 100,
                "other%": m["other_cpu"] / m["wall"] * 100,
                "rss": m["rss"],
                "errors": len(errs),
            }
        )
        print(
            f"  imap {target.engine} x{k} run {run}: header-warm "
            f"{fetch_runs[-1]['rate']:.0f} msg/s (p50 {fetch_runs[-1]['p50']:.0f} ms), "
            f"sessions {session_runs[-1]['rate']:.0f}/s (p50 {session_runs[-1]['p50']:.0f} ms)",
            flush=True,
        )
    return {"header-warm": median_row(fetch_runs), "sessions": median_row(session_runs)}


# -- output -------------------------------------------------------------------------------------
def table(
    title: str,
    columns: list[tuple[str, Callable[[dict[str, Any]], str]]],
    rows: list[tuple[str, dict[str, Any]]],
) -> None:
    print()
    print(title)
    cells = [[name for name, _ in columns]]
    for label, row in rows:
        cells.append([label] + [fn(row) for _, fn in columns[1:]])
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    for line in cells:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(line, widths, strict=True))
            )
        )


def num(key: str, spec: str) -> Callable[[dict[str, Any]], str]:
    def fmt(row: dict[str, Any]) -> str:
        value = row.get(key, float("nan"))
        return "-" if isinstance(value, float) and math.isnan(value) else format(value, spec)

    return fmt


def total(keys: tuple[str, str], spec: str) -> Callable[[dict[str, Any]], str]:
    return lambda row: format(row[keys[0]] + row[keys[1]], spec)


def rss(row: dict[str, Any]) -> str:
    return "/".join(f"{x:.0f}" for x in row["rss"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--nodes", default="1,2,3", help="node counts on PostgreSQL, comma-separated")
    add("--only", help="smtp or imap (default both)")
    add("--no-sqlite", dest="sqlite", action="store_false", help="no SQLite reference row")
    add_smtp_options(parser)
    add("--no-verify", dest="verify", action="store_false", help="skip the SMTP mailbox check")
    add("--imap-messages", type=int, default=2000, help="messages in each IMAP INBOX")
    add("--fetch-clients", type=int, default=3, help="concurrent header-warm FETCH clients")
    add("--repeat", type=int, default=5, help="header-warm FETCHes per client per run")
    add("--clients", type=int, default=20, help="IMAP session clients")
    add("--duration", type=float, default=5.0, help="seconds of each IMAP sessions run")
    return parser


def add_smtp_options(parser: argparse.ArgumentParser) -> None:
    """The database, the SMTP ingest workload and the nodes' directories (also workers.py's)."""
    add = parser.add_argument
    add("--dsn", help="PostgreSQL DSN (default: a private cluster via scripts/ensure-postgres)")
    add("-n", "--messages", type=int, default=4000, help="SMTP messages per run")
    add("-c", "--sessions", type=int, default=20, help="concurrent SMTP sessions")
    add("-r", "--runs", type=int, default=3, help="runs per row; the median is shown")
    add("-s", "--size", type=int, default=5 * 1024, help="message size in bytes")
    add("--users", type=int, default=10, help="SMTP recipients (mailboxes)")
    add("--warmup", type=int, default=200, help="SMTP messages before run 1 (not measured)")
    add("--procs", type=int, default=1, help="SMTP client processes")
    add("--tmp", help="parent directory of the nodes' directories")
    add("--keep", action="store_true", help="keep the node directories and schemas")


def main() -> int:
    args = build_parser().parse_args()
    counts = [int(x) for x in args.nodes.split(",") if x]
    wanted = {args.only} if args.only else {"smtp", "imap"}
    dsn = args.dsn or ensure_postgres()
    postmaster = postmaster_pid(dsn)
    version = pg(dsn, "SHOW server_version")
    sync = pg(dsn, "SHOW synchronous_commit")
    targets = [(Target("sqlite", "", None), 1)] if args.sqlite else []
    targets += [(Target("postgres", dsn, postmaster), k) for k in counts]
    tmp = Path(tempfile.mkdtemp(prefix="mailfort-cluster-bench-", dir=args.tmp))
    print(
        f"mailfort cluster benchmark: nodes {counts} on PostgreSQL {version} "
        f"(synchronous_commit={sync}, postmaster pid {postmaster}, {dsn})"
        f"{' + SQLite 1 node' if args.sqlite else ''}; {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}, load average {imapbench.loadavg()}",
        flush=True,
    )
    started = time.perf_counter()
    smtp_out: list[tuple[str, dict[str, Any]]] = []
    imap_out: dict[str, list[tuple[str, dict[str, Any]]]] = {"header-warm": [], "sessions": []}
    errors = 0
    try:
        with ProcessPoolExecutor(max(3, args.procs, max(counts, default=1))) as pool:
            if "smtp" in wanted:
                print(
                    f"SMTP: {args.messages} messages x {args.size} bytes, {args.sessions} "
                    f"sessions round-robin over the nodes, {args.runs} runs",
                    flush=True,
                )
                for target, k in targets:
                    row = smtp_row(pool, args, target, k, tmp)
                    errors += row["errors"] + row["check"].startswith("MAILBOX CHECK FAILED")
                    smtp_out.append((f"{target.engine} x{k}", row))
            if "imap" in wanted:
                print(
                    f"IMAP: {args.imap_messages}-message INBOXes, header-warm by "
                    f"{args.fetch_clients} clients x {args.repeat}, sessions by {args.clients} "
                    f"clients x {args.duration:g} s, {args.runs} runs",
                    flush=True,
                )
                groups = [(t, [k]) for t, k in targets if t.engine == "sqlite"]
                pgs = [k for t, k in targets if t.engine == "postgres"]
                if pgs:
                    groups.append((Target("postgres", dsn, postmaster), pgs))
                for target, ks in groups:
                    for k, rows in imap_rows(pool, args, target, ks, tmp).items():
                        for case, row in rows.items():
                            errors += row["errors"]
                            imap_out[case].append((f"{target.engine} x{k}", row))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    cpu = [
        ("node CPU s/1000", num("node", ".2f")),
        ("PG CPU s/1000", num("pg", ".2f")),
        ("total s/1000", total(("node", "pg"), ".2f")),
        ("nodes CPU %", num("node%", ".0f")),
        ("PG CPU %", num("pg%", ".0f")),
        ("other CPU %", num("other%", ".0f")),
        ("peak RSS MB/node", rss),
        ("errors", num("errors", "d")),
    ]
    if smtp_out:
        table(
            f"SMTP ingest, {args.messages} x {args.size} B, {args.sessions} sessions "
            f"(median of {args.runs} runs)",
            [
                ("engine x nodes", str),
                ("msg/s", num("msg/s", ".0f")),
                ("p50 ms", num("p50", ".1f")),
                ("p99 ms", num("p99", ".1f")),
                *cpu[:3],
                ("client s/1000", num("client", ".2f")),
                *cpu[3:],
                ("WAL syncs/msg", num("syncs/msg", ".2f")),
                ("commits/msg", num("commits/msg", ".2f")),
            ],
            smtp_out,
        )
    ms = [(name.replace("s/1000", "ms/op"), fn) for name, fn in cpu]
    ms.insert(5, ("client CPU %", num("client%", ".0f")))
    if imap_out["header-warm"]:
        table(
            f"IMAP header-warm: FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE) of {args.imap_messages}"
            f" messages, {args.fetch_clients} clients x {args.repeat} (median of {args.runs})",
            [
                ("engine x nodes", str),
                ("msg/s", num("rate", ".0f")),
                ("p50 ms", num("p50", ".1f")),
                ("p99 ms", num("p99", ".1f")),
                *ms,
            ],
            imap_out["header-warm"],
        )
        table(
            f"IMAP sessions: {args.clients} clients x {args.duration:g} s, LOGIN/SELECT/"
            f"FETCH 1:20 headers/LOGOUT (median of {args.runs})",
            [
                ("engine x nodes", str),
                ("sess/s", num("rate", ".0f")),
                ("p50 ms", num("p50", ".1f")),
                ("p99 ms", num("p99", ".1f")),
                *ms,
            ],
            imap_out["sessions"],
        )
    print(
        f"\ntook {time.perf_counter() - started:.0f} s; load average {imapbench.loadavg()}; "
        f"PostgreSQL left running (stop: pg_ctl -D {PG_DIR}/data stop, as its owner)"
        if not args.dsn
        else f"\ntook {time.perf_counter() - started:.0f} s"
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
