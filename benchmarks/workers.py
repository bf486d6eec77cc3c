#!/usr/bin/env python3
"""Workers benchmark: SMTP ingest on PostgreSQL into one node run as 1 and as N processes.

`mailfort serve --workers N` runs N node processes on the same ports (SO_REUSEPORT). This
measures what the second core buys: the node is a real `mailfort serve` subprocess on loopback
(tests/nodeproc.py) with `workers = N` and `[store] url` naming a fresh schema; the client is
smtp_ingest.py's (pipelined sessions, RSET, one pool of messages), all sessions on the one
shared SMTP port, so the kernel spreads them over the workers.

Rows (`--rows`, each `WORKERS:NODE_CPUS:CLIENT_CPUS`, CPUs as for taskset, `all` = unpinned):

  1:1:0       one worker pinned to CPU 1, the load generator pinned to CPU 0
  2:all:all   two workers and the load generator on both CPUs
  1:all:all   one worker, unpinned: the same conditions as the row above, one process

PostgreSQL is the private server of cluster.py (scripts/ensure-postgres with
MAILFORT_PG_DIR=/tmp/mailfort-pg-bench, MAILFORT_PG_PORT=54339; `--dsn` for another), never
pinned. CPU is counted for the node (the supervisor and every worker, /proc/PID/stat), for the
PostgreSQL server (postmaster, reaped and live children) and for the client processes; `other`
is the rest of the machine. The median of R runs per row, after an unmeasured warm-up; then
every message that got a 250 is checked to be in its INBOX exactly once. It never asserts speed.

    .venv/bin/python benchmarks/workers.py                       # N=4000 R=3, rows as above
    .venv/bin/python benchmarks/workers.py -n 500 -r 1 --warmup 50   # does it run?
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cluster as clusterbench
import smtp_ingest as smtp

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_ROWS = "1:1:0,2:all:all,1:all:all"


@dataclass(frozen=True)
class Row:
    workers: int
    node_cpus: str  # taskset's list ("1", "0-1") or "all"
    client_cpus: str

    @classmethod
    def parse(cls, text: str) -> Row:
        workers, node, client = text.split(":")
        return cls(int(workers), node, client)

    @property
    def label(self) -> str:
        return f"x{self.workers} node@{self.node_cpus} load@{self.client_cpus}"


def cpu_set(text: str) -> set[int] | None:
    """taskset's CPU list ("0", "0-1", "0,2") as a set; None for "all"."""
    if text == "all":
        return None
    found: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        found.update(range(int(low), int(high or low) + 1))
    return found


def pin(cpus: set[int] | None) -> None:
    """ProcessPoolExecutor initializer: the load generator on its CPUs."""
    if cpus is not None:
        os.sched_setaffinity(0, cpus)


def process_tree(pid: int) -> list[int]:
    """`pid` and every process below it (the supervisor, its workers, their helpers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                children.setdefault(int(clusterbench.proc_stat(int(entry.name))[1]), []).append(
                    int(entry.name)
                )
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


class Meter:
    """CPU of the node's processes, of PostgreSQL and of the machine over one run."""

    def __init__(self, pids: list[int], postmaster: int) -> None:
        self.pids = pids
        self.postmaster = postmaster
        for pid in pids:
            smtp.reset_peak_rss(pid)
        self.node0 = self._node()
        self.pg0 = clusterbench.pg_cpu_seconds(postmaster)
        self.busy0 = smtp.machine_busy_seconds()

    def _node(self) -> float:
        return sum(smtp.cpu_seconds(f"/proc/{pid}/stat") for pid in self.pids)

    def stop(self, client_cpu: float) -> dict[str, Any]:
        node = self._node() - self.node0
        server = clusterbench.pg_cpu_seconds(self.postmaster) - self.pg0
        busy = smtp.machine_busy_seconds() - self.busy0
        return {
            "node_cpu": node,
            "pg_cpu": server,
            "other_cpu": busy - node - server - client_cpu,
            "rss": max(smtp.node_status(pid, "VmHWM") for pid in self.pids) / 1024,
        }


def start_node(root: Path, url: str, row: Row, args: argparse.Namespace) -> Any:
    from tests.nodeproc import NodeProcess

    node = NodeProcess(
        root,
        name="bench",
        workers=row.workers,
        extra_config=clusterbench.node_extra(url, args.sessions, 0),
        wrap=[] if row.node_cpus == "all" else ["taskset", "-c", row.node_cpus],
    )
    node.write_config()
    return node.start(timeout=60)


def measure_row(
    args: argparse.Namespace, row: Row, dsn: str, postmaster: int, tmp: Path
) -> dict[str, Any]:
    recipients = [f"user{i}@{clusterbench.DOMAIN}" for i in range(args.users)]
    schema = clusterbench.new_schema(dsn, "workers")
    url = clusterbench.with_schema(dsn, schema)
    root = Path(tempfile.mkdtemp(prefix=f"workers-{row.workers}-", dir=tmp))
    node = None
    try:
        asyncio.run(clusterbench.provision(url, root / "data", recipients, 0, args.size))
        node = start_node(root, url, row, args)
        target = ("127.0.0.1", node.ports["smtp"])
        pids = process_tree(node.proc.pid)
        runs = []
        with ProcessPoolExecutor(
            args.procs, initializer=pin, initargs=(cpu_set(row.client_cpus),)
        ) as pool:
            warm = smtp.one_run(pool, args, target, recipients, 0, args.warmup, args.sessions)
            acked = warm.acked
            for run in range(1, args.runs + 1):
                meter = Meter(pids, postmaster)
                count, sessions = args.messages, args.sessions
                out = smtp.one_run(pool, args, target, recipients, run, count, sessions)
                m = meter.stop(out.client_cpu)
                done = max(1, len(out.latencies))
                runs.append(
                    {
                        "msg/s": done / out.wall,
                        "p50": smtp.percentile(out.latencies, 50) * 1000,
                        "p99": smtp.percentile(out.latencies, 99) * 1000,
                        "node": m["node_cpu"] / done * 1000,
                        "pg": m["pg_cpu"] / done * 1000,
                        "client": out.client_cpu / done * 1000,
                        "node%": m["node_cpu"] / out.wall * 100,
                        "pg%": m["pg_cpu"] / out.wall * 100,
                        "other%": m["other_cpu"] / out.wall * 100,
                        "rss": m["rss"],
                        "errors": len(out.failures),
                    }
                )
                for failure in out.failures[:3]:
                    print(f"  error: {failure}", file=sys.stderr)
                known = acked is not None and out.acked is not None
                acked = (acked or set()) | (out.acked or set()) if known else None
                r = runs[-1]
                print(
                    f"  {row.label} run {run}: {r['msg/s']:.0f} msg/s, CPU/1000 node"
                    f" {r['node']:.2f} + pg {r['pg']:.2f} s",
                    flush=True,
                )
        result = clusterbench.median_row([{**r, "rss": [r["rss"]]} for r in runs])
        node.stop()
        node = None
        if acked is None:
            result["check"] = "not checked (a session died)"
        else:
            result["check"] = asyncio.run(
                clusterbench.check_mailboxes(url, root / "data", recipients, acked)
            )
        print(f"  {row.label} mailbox check: {result['check']}", flush=True)
        return result
    finally:
        if node is not None:
            node.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
            clusterbench.drop_schema(dsn, schema)


COLUMNS = (
    ("row", "{}"),
    ("msg/s", "{:.0f}"),
    ("p50 ms", "{:.1f}"),
    ("p99 ms", "{:.1f}"),
    ("node CPU s/1000", "{:.2f}"),
    ("PG CPU s/1000", "{:.2f}"),
    ("total s/1000", "{:.2f}"),
    ("client s/1000", "{:.2f}"),
    ("node CPU %", "{:.0f}"),
    ("PG CPU %", "{:.0f}"),
    ("other CPU %", "{:.0f}"),
    ("peak RSS MB/worker", "{:.0f}"),
    ("errors", "{}"),
)


def print_table(results: list[tuple[Row, dict[str, Any]]]) -> None:
    width = max(len(row.label) for row, _ in results)
    print("  ".join([f"{'row':<{width}}", *(name for name, _ in COLUMNS[1:])]))
    for row, r in results:
        values = [
            r["msg/s"], r["p50"], r["p99"], r["node"], r["pg"], r["node"] + r["pg"],
            r["client"], r["node%"], r["pg%"], r["other%"], r["rss"][0], r["errors"],
        ]  # fmt: skip
        cells = [f"{row.label:<{width}}"]
        for (name, spec), value in zip(COLUMNS[1:], values, strict=True):
            cells.append(spec.format(value).rjust(len(name)))
        print("  ".join(cells))


def print_scaling(results: list[tuple[Row, dict[str, Any]]]) -> None:
    """What N workers give over the pinned single worker: throughput, and per core."""
    base = next((r for row, r in results if row.workers == 1 and row.node_cpus != "all"), None)
    if base is None:
        return
    for row, r in results:
        if row.workers < 2:
            continue
        scaling = r["msg/s"] / base["msg/s"]
        cpu_ratio = (base["node"] + base["pg"]) / (r["node"] + r["pg"])
        print(
            f"{row.label} over x1 on one core: {scaling:.2f}x msg/s, per-core efficiency"
            f" {scaling / row.workers:.2f} (1.00 = each worker as fast as the pinned one);"
            f" node CPU per message {r['node'] / base['node']:.2f}x, node+PG CPU per message"
            f" {1 / cpu_ratio:.2f}x"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--rows", default=DEFAULT_ROWS, help="WORKERS:NODE_CPUS:CLIENT_CPUS, comma-separated"
    )
    clusterbench.add_smtp_options(parser)
    return parser


def main() -> int:
    args = build_parser().parse_args()
    # smtp_ingest's client settings: one recipient per message, pipelining, RSET.
    args.rcpts, args.pipelining, args.rset = 1, True, True
    rows = [Row.parse(text) for text in args.rows.split(",")]
    dsn = args.dsn or clusterbench.ensure_postgres()
    postmaster = clusterbench.postmaster_pid(dsn)
    tmp = Path(args.tmp or tempfile.gettempdir())
    print(
        f"mailfort workers: SMTP ingest on PostgreSQL, {args.messages} x {args.size} B,"
        f" {args.sessions} sessions, {args.runs} runs per row, {os.cpu_count()} CPUs,"
        f" PostgreSQL pid {postmaster} (not pinned)",
        flush=True,
    )
    started = time.monotonic()
    results = [(row, measure_row(args, row, dsn, postmaster, tmp)) for row in rows]
    print()
    print(f"SMTP ingest, {args.messages} x {args.size} B (median of {args.runs} runs)")
    print_table(results)
    print_scaling(results)
    print(f"took {time.monotonic() - started:.0f} s")
    failed = any(r["errors"] or "FAILED" in r["check"] for _, r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
