"""`mailfort capacity upgrade`: a rolling upgrade's schedule that keeps N+k, and its announcement.

The schedule is pure planning (`capacity/upgrade.py`) and runs on a laptop with a profile and a
workload, no store. `--announce` writes one maintenance window per night of batches through the
status records every node's page reads (as `mailfort status maintenance add` does); only then are
the config and the store read. Bad input is one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from datetime import UTC, datetime
from typing import Any

from mailfort.capacity.profile import ProfileError, load_profile
from mailfort.capacity.upgrade import (
    Schedule,
    UpgradeError,
    announcements,
    next_hour,
    schedule,
)
from mailfort.capacity.workload import WorkloadError, load_workload
from mailfort.cli_status import TIME_HELP, UsageError, parse_time
from mailfort.config import Config, load
from mailfort.status.repository import StatusRepository
from mailfort.store import open_store


def plan(args: argparse.Namespace, now: float) -> Schedule:
    """The schedule the arguments ask for; every fault of the input is a UsageError."""
    try:
        profile = load_profile(args.profile, any_version=args.any_version)
        workload = load_workload(args.workload)
        nodes = args.nodes if args.nodes is not None else workload.nodes
        if nodes is None:
            raise UsageError(f"--nodes: how many nodes run now? ({args.workload} names none)")
        start = parse_time(args.start, "--start") if args.start else next_hour(now, args.utc_offset)
        return schedule(
            profile,
            workload,
            nodes=nodes,
            target=args.to if args.to is not None else nodes,
            replace=args.replace,
            batch_seconds=args.batch_minutes * 60,
            start=start,
            spare_nodes=args.spare_nodes,
            utc_offset_hours=args.utc_offset,
            max_batch=args.max_batch,
        )
    except (ProfileError, WorkloadError, UpgradeError) as exc:
        raise UsageError(str(exc)) from None


def _at(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _duration(seconds: float) -> str:
    minutes = math.ceil(seconds / 60)
    return f"{minutes // 60}h{minutes % 60:02d}m"


def _range(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


def format_schedule(s: Schedule) -> str:
    rows = [("BATCH", "START", "END", "ACTION", "NODES", "DRAINED", "LIVE", "NEEDED", "MARGIN")]
    for b in s.batches:
        rows.append(
            (
                str(b.index),
                _at(b.start),
                _at(b.end),
                b.action,
                _range(b.first, b.last),
                str(b.drained),
                str(b.live),
                str(b.needed),
                str(b.margin),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    # Dates hold a space: two spaces between cells keep the columns apart for the eye.
    lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    what = f"{s.nodes} -> {s.target} nodes" + (", every old node replaced" if s.replace else "")
    lines.append("")
    lines.append(
        f"{len(s.batches)} batches from {_at(s.start)} to {_at(s.end)} UTC"
        f" ({_duration(s.end - s.start)}); {what}"
    )
    least = s.min_margin
    if least is not None:
        lines.append(
            f"never below N+k: while nodes are out, at least {least} more serve than the load"
            f" needs (k={s.spare_nodes})"
        )
    if s.skipped_hours:
        lines.append(f"{s.skipped_hours} hour(s) skipped: their load leaves no node to drain")
    return "\n".join(lines)


def schedule_json(s: Schedule) -> dict[str, Any]:
    return {
        "nodes": s.nodes,
        "target": s.target,
        "replace": s.replace,
        "spare_nodes": s.spare_nodes,
        "start": _iso(s.start),
        "end": _iso(s.end),
        "duration_seconds": s.end - s.start,
        "skipped_hours": s.skipped_hours,
        "min_margin": s.min_margin,
        "needed_by_hour": list(s.needed_by_hour),
        "batches": [
            {
                "index": b.index,
                "action": b.action,
                "start": _iso(b.start),
                "end": _iso(b.end),
                "first": b.first,
                "last": b.last,
                "drained": b.drained,
                "live": b.live,
                "needed": b.needed,
                "margin": b.margin,
            }
            for b in s.batches
        ],
    }


async def announce(config: Config, s: Schedule) -> list[str]:
    """One maintenance window per run of back-to-back batches; no component's state changes."""
    store = open_store(config.store.url, config.data_dir)
    await store.open()
    try:
        repo = StatusRepository(store, history_days=config.status.history_days)
        found = []
        for a in announcements(s):
            window = await repo.add_maintenance(a.title, a.text, a.start, a.end, ())
            found.append(f"{window.id} {_at(a.start)} - {_at(a.end)} UTC  {a.title}")
        return found
    finally:
        await store.close()


def run_upgrade(args: argparse.Namespace) -> int:
    s = plan(args, time.time())
    if args.json:
        print(json.dumps(schedule_json(s), indent=2))
    else:
        print(format_schedule(s))
    if args.announce:
        # Read only now: the schedule alone needs no config, so a laptop without one plans.
        config = load(args.config)
        for line in asyncio.run(announce(config, s)):
            print(f"announced {line}")
    return 0


def add_upgrade_parser(capacity: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `upgrade` to the `mailfort capacity` group."""
    p = capacity.add_parser(
        "upgrade",
        help="a rolling upgrade's batches, hour by hour, never below N+k",
        description="How many nodes may be drained at once at each hour without the live ones"
        " falling below what that hour's load needs plus the k spare nodes; new nodes join"
        " first. Needs no store unless --announce.",
    )
    p.add_argument("--profile", required=True, help="a profile JSON (mailfort capacity measure)")
    p.add_argument("--workload", required=True, help="the workload TOML")
    p.add_argument("--nodes", type=int, help="nodes now (default: the workload's [cluster] nodes)")
    p.add_argument("--to", type=int, metavar="N", help="nodes after the upgrade (default: --nodes)")
    p.add_argument(
        "--replace", action="store_true", help="drain and replace every old node (an upgrade)"
    )
    p.add_argument(
        "--batch-minutes",
        type=float,
        default=30.0,
        help="how long one batch takes: drain, upgrade or replace, start (default 30)",
    )
    p.add_argument(
        "--start", metavar="TIME", help=f"when to begin: {TIME_HELP} (default: next hour)"
    )
    p.add_argument(
        "--spare-nodes", type=int, metavar="K", help="the k of N+k (default: the workload's)"
    )
    p.add_argument("--max-batch", type=int, metavar="N", help="never drain more at once")
    p.add_argument(
        "--utc-offset",
        type=float,
        default=0.0,
        metavar="HOURS",
        help="the workload's diurnal hours are local time this far from UTC (default 0)",
    )
    p.add_argument("--any-version", action="store_true", help="accept another version's profile")
    p.add_argument("--json", action="store_true", help="the schedule as JSON")
    p.add_argument(
        "--announce",
        action="store_true",
        help="create the status page's maintenance windows for it (needs the config's store)",
    )
    # Planning needs neither config nor store; `run_upgrade` reads both only to announce.
    p.set_defaults(standalone=run_upgrade)
