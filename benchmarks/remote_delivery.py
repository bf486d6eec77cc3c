#!/usr/bin/env python3
"""Remote delivery benchmark: how fast one node empties its queue into a remote MX.

N messages of SIZE bytes for remote recipients are put into a stopped node's queue (through the
store API, as acceptance would commit them); then the node starts, and its remote worker looks up
the MX at a name server on loopback (dnslib, in this process) and delivers to an SMTP sink on
loopback (aiosmtpd, in this process, STARTTLS offered), like Postfix's `smtp-sink` in front of a
queue flush. The clock starts when the first message reaches the sink (so node start-up is not
counted) and stops when the last one did; the queue must then be empty.

Per run it prints messages/s, the node's CPU per 1000 messages (utime+stime from /proc/PID/stat)
and in its event-loop thread, its peak RSS (VmHWM; reset through /proc/PID/clear_refs at start),
the CPU of this process (sink + name server) per 1000 messages, the SMTP connections the node
opened, and a check that every message arrived exactly once. It never asserts speed.

    .venv/bin/python benchmarks/remote_delivery.py                 # N=2000, 10 KB, 1 run
    .venv/bin/python benchmarks/remote_delivery.py -n 5000 -r 3 --concurrency 20
    .venv/bin/python benchmarks/remote_delivery.py --rcpts 5 --domains 4
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CLK_TCK = os.sysconf("SC_CLK_TCK")
LINE = b"The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs.\r\n"
BENCH_ID = re.compile(rb"^X-Bench-Id: (\d+)-(\d+)\r$", re.M)
SENDER = "sender@example.test"


def make_body(size: int, run: int, seq: int) -> bytes:
    head = (
        f"Received: from client.test ([192.0.2.1]) by mx.mailfort.test; "
        f"Thu, 01 Jan 2026 00:00:00 +0000\r\nFrom: <{SENDER}>\r\nTo: undisclosed-recipients:;\r\n"
        f"Subject: remote {run}-{seq}\r\nMessage-ID: <remote-{run}-{seq}@example.test>\r\n"
        f"X-Bench-Id: {run}-{seq}\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\n\r\n"
    ).encode()
    room = max(size - len(head), len(LINE))
    return head + LINE * (room // len(LINE))


# -- /proc ---------------------------------------------------------------------------------------
def cpu_seconds(stat_path: str) -> float:
    fields = Path(stat_path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def node_cpu(pid: int) -> tuple[float, float]:
    return cpu_seconds(f"/proc/{pid}/stat"), cpu_seconds(f"/proc/{pid}/task/{pid}/stat")


def machine_busy() -> float:
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system


# -- the queue -----------------------------------------------------------------------------------
def preload(db: Path, run: int, args: argparse.Namespace) -> None:
    """Commit N messages for remote recipients, as N accepted SMTP transactions would."""
    from mailfort.mail.trace import new_queue_id
    from mailfort.store.records import AcceptRequest, QueuedRecipient
    from mailfort.store.sqlite import SqliteStore

    async def fill() -> None:
        store = SqliteStore(db)
        await store.open()
        try:
            now = time.time()
            requests = []
            for seq in range(args.messages):
                domain = f"d{seq % args.domains}.bench.test"
                rcpts = [f"user{seq % 50}.{i}@{domain}" for i in range(args.rcpts)]
                requests.append(
                    AcceptRequest(
                        queue_id=new_queue_id(now),
                        sender=SENDER,
                        body=make_body(args.size, run, seq),
                        received=now,
                        client="192.0.2.1",
                        authenticated=SENDER,
                        queued=tuple(QueuedRecipient(recipient=r, original=r) for r in rcpts),
                    )
                )
            for start in range(0, len(requests), 200):
                await asyncio.gather(*(store.accept(r) for r in requests[start : start + 200]))
        finally:
            await store.close()

    asyncio.run(fill())


def one_run(run: int, node, sink, args: argparse.Namespace) -> dict[str, float]:  # type: ignore[no-untyped-def]
    preload(node.db_path, run, args)
    before_tx = len(sink.received())
    before_conn = sink.connections
    node.start()
    pid = node.proc.pid
    with contextlib.suppress(OSError):  # peak RSS of this run only
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    target = before_tx + args.messages
    deadline = time.monotonic() + args.timeout
    while len(sink.transactions) == before_tx:
        if time.monotonic() > deadline:
            raise SystemExit(
                f"nothing delivered in {args.timeout}s; node log:\n{node.log()[-3000:]}"
            )
        time.sleep(0.002)
    t0, (cpu0, loop0), own0, busy0 = time.monotonic(), node_cpu(pid), own_cpu(), machine_busy()
    while len(sink.transactions) < target:
        if time.monotonic() > deadline:
            break
        time.sleep(0.005)
    t1, (cpu1, loop1), own1, busy1 = time.monotonic(), node_cpu(pid), own_cpu(), machine_busy()
    rss = peak_rss_mb(pid)
    # Settling the last items may lag the sink's 250 by a commit.
    while node.queue() and time.monotonic() < deadline:
        time.sleep(0.05)
    left = len(node.queue())
    node.stop()

    ids: Counter[int] = Counter()
    for t in sink.received()[before_tx:]:
        m = BENCH_ID.search(t.data)
        if m and int(m[1]) == run:
            ids[int(m[2])] += 1
    delivered = len(sink.received()) - before_tx
    wall = t1 - t0
    measured = max(delivered - 1, 1)  # the first arrival started the clock
    node_s = cpu1 - cpu0
    own_s = own1 - own0
    return {
        "run": run,
        "msg/s": measured / wall if wall > 0 else float("nan"),
        "node CPU s/1000": node_s / measured * 1000,
        "node CPU %": node_s / wall * 100,
        "loop CPU %": (loop1 - loop0) / wall * 100,
        "node peak RSS MB": rss,
        "sink CPU s/1000": own_s / measured * 1000,
        "other CPU %": max(0.0, (busy1 - busy0) - node_s - own_s) / wall * 100,
        "connections": sink.connections - before_conn,
        "wall s": wall,
        "missing": args.messages - len(ids),
        "dupes": sum(n - 1 for n in ids.values() if n > 1),
        "left in queue": left,
    }


COLUMNS = (
    "run",
    "msg/s",
    "node CPU s/1000",
    "node CPU %",
    "loop CPU %",
    "node peak RSS MB",
    "sink CPU s/1000",
    "other CPU %",
    "connections",
    "wall s",
    "missing",
    "dupes",
    "left in queue",
)


def fmt(values: dict[str, object]) -> str:
    out = []
    for col in COLUMNS:
        v = values[col]
        if isinstance(v, float):
            text = (
                f"{v:.0f}"
                if col in ("msg/s", "node CPU %", "loop CPU %", "other CPU %")
                else f"{v:.2f}"
            )
        else:
            text = str(v)
        out.append(text.rjust(max(len(col), 6)))
    return "  ".join(out)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("-n", "--messages", type=int, default=2000)
    p.add_argument("-s", "--size", type=int, default=10240, help="bytes per message")
    p.add_argument("-r", "--runs", type=int, default=1)
    p.add_argument("--rcpts", type=int, default=1, help="recipients per message (one domain)")
    p.add_argument("--domains", type=int, default=1, help="destination domains (one MX)")
    p.add_argument("--concurrency", type=int, default=10, help="[delivery] destination_concurrency")
    p.add_argument("--in-flight", type=int, default=100, help="[delivery] max_in_flight")
    p.add_argument("--no-tls", action="store_true", help="[delivery] tls = none")
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--keep", action="store_true", help="keep the node's directory and log")
    p.add_argument("--tmp", default=None, help="where the node's directory goes")
    return p


def main() -> int:
    args = build_parser().parse_args()
    from tests.dnsserver import NameServer, Zone
    from tests.nodeproc import NodeProcess
    from tests.smtpsink import Sink

    root = Path(tempfile.mkdtemp(prefix="mailfort-remote-bench-", dir=args.tmp))
    zone = Zone().add("mx.bench.test", "A", "127.0.0.1")
    for i in range(args.domains):
        zone.add(f"d{i}.bench.test", "MX", "10 mx.bench.test.")
    dns = NameServer(zone).start()
    sink = Sink(tls_dir=root / "sink-tls").start()
    delivery = "\n".join(
        [
            f'dns_nameservers = ["{dns.address}"]',
            f"smtp_port = {sink.port}",
            f"destination_concurrency = {args.concurrency}",
            f"max_in_flight = {args.in_flight}",
            f'tls = "{"none" if args.no_tls else "may"}"',
        ]
    )
    node = NodeProcess(root / "node", name="bench", delivery=delivery + "\n")
    node.provision(domains=("example.test",), users={SENDER: "bench password"})
    print(
        f"remote delivery: {args.messages} messages of {args.size} bytes, {args.rcpts} recipient(s)"
        f" each, {args.domains} domain(s), destination_concurrency={args.concurrency},"
        f" max_in_flight={args.in_flight}, tls={'none' if args.no_tls else 'may'}; node in {root}",
        flush=True,
    )
    print("  ".join(c.rjust(max(len(c), 6)) for c in COLUMNS), flush=True)
    rows = []
    try:
        for run in range(1, args.runs + 1):
            row = one_run(run, node, sink, args)
            rows.append(row)
            print(fmt(row), flush=True)
    finally:
        node.stop()
        sink.stop()
        dns.stop()
    if len(rows) > 1:
        median = {c: statistics.median(float(r[c]) for r in rows) for c in COLUMNS}
        median["run"] = "median"  # type: ignore[assignment]
        for col in ("missing", "dupes", "left in queue", "connections"):
            median[col] = int(sum(int(r[col]) for r in rows))  # type: ignore[assignment]
        print(fmt(median))  # type: ignore[arg-type]
    problems = sum(int(r["missing"]) + int(r["dupes"]) + int(r["left in queue"]) for r in rows)
    print(
        "delivery check: every message arrived exactly once and the queue is empty"
        if problems == 0
        else f"delivery check: {problems} problem(s) (missing, duplicated or left in the queue)"
    )
    if args.keep:
        print(f"kept {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if problems == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
