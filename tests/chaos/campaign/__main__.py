"""`python -m tests.chaos.campaign`: run a campaign for as long as you like (root, Debian)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tests.chaos.campaign.run import Settings, run, write_result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos.campaign",
        description="A 3-node mailfort cluster on PostgreSQL (primary + synchronous standby) in"
        " network namespaces, under mixed SMTP/submission/IMAP/POP3 load, while a seeded"
        " nemesis kills, pauses, drains and partitions nodes, restarts and fails over the"
        " database and jumps clocks; then a checker judges the recorded history. Exit 1 on"
        " any violation, printing the seed and the history around it.",
    )
    parser.add_argument("--seed", type=int, default=1, help="the fault schedule's seed (1)")
    parser.add_argument("--seconds", type=float, default=600.0, help="faults for this long (600)")
    parser.add_argument("--every", type=float, default=3.0, help="mean seconds between faults (3)")
    parser.add_argument("--lease", type=float, default=3.0, help="queue lease seconds (3)")
    parser.add_argument(
        "--faults",
        default="",
        help="comma-separated kinds only (kill,pause,restart,drain,"
        "partition-db,partition-mx,clock,db-restart,db-failover); default all",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path("/tmp/mailfort-campaign"),
        help="where nodes, logs and history.jsonl go (/tmp/mailfort-campaign)",
    )
    parser.add_argument("--tour", action="store_true", help="begin with one fault of each kind")
    args = parser.parse_args(argv)
    settings = Settings(
        seed=args.seed,
        seconds=args.seconds,
        every=args.every,
        lease=args.lease,
        kinds=tuple(k for k in args.faults.split(",") if k),
        tour=args.tour,
    )
    result = run(settings, args.dir)
    print(result.text())
    write_result(result, args.dir / "result.json")
    print(f"history: {args.dir / 'history.jsonl'}")
    return 1 if result.violations else 0


if __name__ == "__main__":
    sys.exit(main())
