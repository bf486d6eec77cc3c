#!/usr/bin/env python3
"""The capacity simulator against a real cluster: one node of three killed under load.

Three `mailfort serve` nodes on one PostgreSQL schema, each in its own cgroup with a fixed CPU
quota (`--node-cpus`), a remote MX (tests/smtpsink.py) that answers each message after
`--sink-delay` seconds, and an open-loop load: messages of `--size` bytes arriving as a Poisson
process, a share of them (`--remote-share`) addressed to aliases that forward to the remote MX,
each sent to the nodes in turn; a 4xx comes back after `--sender-retry` seconds, a dead node's
refused connection goes to the next node at once (tests/capacity_cluster.py has all of it).

Each run (`--repeat`, each on a fresh schema and fresh nodes):

1. Calibration: the figures the simulator needs, for this exact setup: a node's idle CPU, CPU
   per accepted message and per remote delivery (light load), the commit latency, and one node
   overloaded without retries (the adaptive limit it settles on, what it accepts, what it
   refuses). They are written as a profile (`capacity/profile.py`) and, with the run's rate,
   as a workload (`capacity/workload.py`) describing the run below: `OUT/run-K/profile.json`,
   `OUT/run-K/workload.toml`.
2. The run: the load at `--load` of the three nodes' quota (so 1.5 × that of the two left after
   the kill) for `--warmup` seconds, then node 1 is killed (SIGKILL), `--backlog` remote items
   are put in the queue at that moment, and the load goes on for `--after` seconds. The queue
   depth (PostgreSQL `queue` rows), attempts, 250s, 4xx and deliveries are recorded per second
   (`OUT/run-K/series.json`). Afterwards every message that got a 250 is checked to have arrived
   exactly once (INBOX or remote MX; a remote delivery the dead node had in flight may arrive
   twice, RFC 5321 6.1), and every backlog item at least once.
3. The prediction: `mailfort capacity plan --profile P --workload W --json` when this mailfort has
   it, and the closed form (survivors' capacity = 2 × quota / CPU per message, refusal share with
   retries) always.

Figures, from the kill to the end of the run: throughput (250s per second), peak queue, refusal
share (4xx over all answered attempts), drain time (until the queue is back to its warmup level:
mean over the warmup + 10 %, at least + 1, and stays there). The table shows the medians over the
runs, measured against predicted, and whether each is within `--tolerance`.

    .venv/bin/python benchmarks/capacity_validation.py              # 3 runs, about 5 min each
    .venv/bin/python benchmarks/capacity_validation.py --quick      # 1 short run
    .venv/bin/python benchmarks/capacity_validation.py --repeat 5 --node-cpus 0.3

Needs root (cgroup v1 `cpu` controller at /sys/fs/cgroup/cpu) and PostgreSQL (`--dsn`, or
scripts/ensure-postgres's shared test server).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests import capacity_cluster as cc  # noqa: E402

from mailfort.capacity.workload import load_workload  # noqa: E402


def one_run(args: argparse.Namespace, k: int, out: Path) -> dict[str, Any]:
    setup = cc.Setup(
        node_cpus=args.node_cpus,
        size=args.size,
        remote_share=args.remote_share,
        sink_delay=args.sink_delay,
        delivery_concurrency=args.concurrency,
        lease_seconds=args.lease,
        sender_retry=args.sender_retry,
    )
    here = out / f"run-{k}"
    here.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="capacity-validation-"))
    cluster = cc.Cluster(setup, tmp, args.dsn)
    try:
        cal = cc.calibrate(cluster, phase_seconds=args.phase)
        # The rate that keeps the three nodes at `load` of what one overloaded node accepted.
        mix = cal.cpu_per_message(setup.remote_share)
        rate = args.load * setup.nodes * cal.saturation_rate
        scenario = cc.Scenario(
            rate=rate, warmup=args.warmup, after=args.after, backlog=args.backlog
        )
        cc.write_profile(here / "profile.json", setup, cal, cc.node_rss(cluster.pids[1]))
        (here / "workload.toml").write_text(cc.workload_text(setup, rate, scenario))
        load_workload(here / "workload.toml")  # the planner must be able to read it
        print(
            f"run {k}: {rate:.1f} msg/s ({mix * 1000:.2f} ms CPU each, {args.load:.0%} of 3 nodes"
            f" at {setup.node_cpus} CPU by the saturation rate), node 1 killed at"
            f" {args.warmup:.0f} s, backlog {args.backlog}, {args.after:.0f} s after",
            flush=True,
        )
        measured = cc.run_scenario(cluster, scenario)
    finally:
        cluster.close()
        shutil.rmtree(tmp, ignore_errors=True)
    obs = measured.observed
    (here / "series.json").write_text(json.dumps(measured.series()) + "\n")
    closed = cc.closed_form(
        rate=rate,
        survivors=setup.nodes - 1,
        node_cpus=setup.node_cpus,
        cpu_per_message=mix,
        retry_delay=setup.sender_retry,
        horizon=args.after,
    )
    # The retry arithmetic alone: the closed form given the throughput the survivors really had.
    retries = cc.closed_form(
        rate=rate,
        survivors=setup.nodes - 1,
        node_cpus=setup.node_cpus,
        cpu_per_message=(setup.nodes - 1) * setup.node_cpus / max(1e-9, obs.throughput),
        retry_delay=setup.sender_retry,
        horizon=args.after,
    )
    predicted = None
    if cc.simulator_available():
        plan = cc.simulate(here / "profile.json", here / "workload.toml")
        (here / "plan.json").write_text(json.dumps(plan, indent=2) + "\n")
        predicted = cc.predicted_from_plan(plan, cc.SCENARIO)
    print(
        f"run {k}: throughput {obs.throughput:.1f}/s, peak queue {obs.peak_queue:.0f} (before"
        f" {obs.before_level:.1f}), refused {obs.refused_share:.1%}, drain"
        f" {'-' if obs.drain_seconds is None else f'{obs.drain_seconds:.0f} s'}; node CPU/s"
        f" before {[round(c, 3) for c in measured.node_cpu_before]} after"
        f" {[round(c, 3) for c in measured.node_cpu_after]}; generator"
        f" {measured.load.cpu / max(1e-9, measured.load.wall):.0%} CPU;"
        f" {measured.arrivals or 'every acknowledged message arrived once'}",
        flush=True,
    )
    return {
        "measured": obs.figures(),
        "closed_form": closed,
        "retries_given_throughput": retries,
        "predicted": predicted,
        "calibration": cal.__dict__,
        "rate": rate,
        "after": args.after,
        "arrivals": measured.arrivals,
        "generator_cpu_share": measured.load.cpu / max(1e-9, measured.load.wall),
        "node_cpu_before": measured.node_cpu_before,
        "node_cpu_after": measured.node_cpu_after,
    }


def median(values: list[float | None]) -> float | None:
    """The median; a drain that never came back (None) counts as the largest value."""
    if not values:
        return None
    ordered = sorted(values, key=lambda v: (v is None, v or 0.0))
    return ordered[(len(ordered) - 1) // 2] if len(ordered) % 2 else _mid(ordered)


def _mid(ordered: list[float | None]) -> float | None:
    a, b = ordered[len(ordered) // 2 - 1], ordered[len(ordered) // 2]
    if a is None or b is None:
        return None
    return (a + b) / 2


def medians(runs: list[dict[str, Any]], key: str) -> dict[str, float | None]:
    return {
        m: median([r[key][m] for r in runs if r[key] is not None and m in r[key]])
        for m in cc.METRICS
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="one short run (about 90 s)")
    p.add_argument("--node-cpus", type=float, default=0.1)
    p.add_argument("--size", type=int, default=65536)
    p.add_argument("--remote-share", type=float, default=0.2)
    p.add_argument("--load", type=float, default=0.7, help="share of 3 nodes' capacity")
    p.add_argument("--warmup", type=float, default=45.0)
    p.add_argument("--after", type=float, default=90.0)
    p.add_argument("--backlog", type=int, default=200)
    p.add_argument("--sink-delay", type=float, default=0.2)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--lease", type=float, default=10.0)
    p.add_argument("--sender-retry", type=float, default=5.0)
    p.add_argument("--phase", type=float, default=12.0, help="seconds per calibration phase")
    p.add_argument("--tolerance", type=float, default=0.15)
    p.add_argument("--dsn", default=os.environ.get("MAILFORT_TEST_PG_DSN", ""))
    p.add_argument("--out", type=Path, default=ROOT / "var" / "capacity-validation")
    p.add_argument(
        "--replan",
        action="store_true",
        help="run no cluster: predict again for the runs saved in --out (after a simulator change)",
    )
    args = p.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    if args.quick:
        args.repeat, args.warmup, args.after, args.backlog, args.phase = 1, 25.0, 35.0, 100, 8.0
    if not args.dsn:
        done = subprocess.run(
            [str(ROOT / "scripts" / "ensure-postgres")], capture_output=True, text=True
        )
        if done.returncode:
            print(f"scripts/ensure-postgres failed: {done.stderr.strip()}", file=sys.stderr)
            return 2
        args.dsn = done.stdout.strip().splitlines()[-1]
    started = time.monotonic()
    runs = []
    if args.replan:
        saved = args.out / "runs.json"
        if not saved.exists() or not cc.simulator_available():
            print(
                f"capacity_validation: no {saved}, or no `mailfort capacity plan`", file=sys.stderr
            )
            return 2
        runs = json.loads(saved.read_text())
        for k, run in enumerate(runs, 1):
            here = args.out / f"run-{k}"
            plan = cc.simulate(here / "profile.json", here / "workload.toml")
            (here / "plan.json").write_text(json.dumps(plan, indent=2) + "\n")
            run["predicted"] = cc.predicted_from_plan(plan, cc.SCENARIO)
        args.after = float(runs[0].get("after", args.after))
    else:
        try:
            for k in range(1, args.repeat + 1):
                runs.append(one_run(args, k, args.out))
        except cc.CgroupUnavailable as exc:
            print(f"capacity_validation: {exc}", file=sys.stderr)
            return 2
    (args.out / "runs.json").write_text(json.dumps(runs, indent=2, default=str) + "\n")
    measured = medians(runs, "measured")
    print(f"\nmedians of {len(runs)} runs; horizon {args.after:.0f} s after the kill")
    if runs[0]["predicted"] is not None:
        rows = cc.compare(measured, medians(runs, "predicted"), args.tolerance, horizon=args.after)
        print("\nsimulator (mailfort capacity plan):\n" + cc.table(rows, args.tolerance))
    else:
        print("\nsimulator: not in this mailfort (mailfort capacity plan); closed form only")
    closed = medians(runs, "closed_form")
    rows = cc.compare(measured, closed, args.tolerance, names=cc.CLOSED_FORM)
    print("\nclosed form (throughput and refusals only):\n" + cc.table(rows, args.tolerance))
    shares = medians(runs, "retries_given_throughput")["refused_share"] or 0.0
    print(f"refusal share by the retry arithmetic on the measured throughput: {shares:.3f}")
    bad = [r["arrivals"] for r in runs if r["arrivals"]]
    print(f"\ntook {time.monotonic() - started:.0f} s; runs in {args.out}")
    if bad:
        print("ARRIVALS CHECK FAILED: " + " | ".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
