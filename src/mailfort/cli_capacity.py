"""`mailfort capacity plan`: how many nodes a workload needs and what each failure scenario does
to them (`capacity/`). It needs no store and no config: a plan is made on any machine from a
measured profile and a workload file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mailfort.capacity.plan import PlanError, make_plan
from mailfort.capacity.profile import ProfileError, load_profile
from mailfort.capacity.report import json_report, text_report
from mailfort.capacity.simulate import EVENT_BUDGET
from mailfort.capacity.workload import WorkloadError, load_workload
from mailfort.errors import MailfortError

# Exit statuses: 0 every target met, 1 the deployed cluster misses one (the report says which
# and by how much), 2 bad input or a target no number of nodes can meet.
MISSED = 1
BAD_INPUT = 2


def _fail(message: str) -> int:
    print(f"mailfort: {message}", file=sys.stderr)
    return BAD_INPUT


def cmd_plan(args: argparse.Namespace) -> int:
    if args.nodes is not None and args.nodes < 1:
        return _fail(f"--nodes must be at least 1, not {args.nodes}")
    if args.events < 1000:
        return _fail(f"--events must be at least 1000, not {args.events}")
    try:
        profile = load_profile(args.profile, any_version=args.any_version)
        workload = load_workload(args.workload)
        plan = make_plan(profile, workload, nodes=args.nodes, seed=args.seed, budget=args.events)
    except (ProfileError, WorkloadError) as exc:
        return _fail(str(exc))
    except PlanError as exc:
        return _fail(f"{args.workload}: {exc}")
    except ValueError as exc:  # a scenario that loses every deployed node, say
        return _fail(f"{args.workload}: {exc}")
    if args.html:
        from mailfort.capacity.plots import html_report

        try:
            Path(args.html).write_text(html_report(plan), encoding="utf-8")
        except MailfortError as exc:
            return _fail(str(exc))
        except OSError as exc:
            return _fail(f"{args.html}: cannot write: {exc.strerror or exc}")
        print(f"report: {args.html}", file=sys.stderr)
    if args.json:
        sys.stdout.write(json_report(plan, series=not args.no_series))
    else:
        sys.stdout.write(text_report(plan))
    return MISSED if plan.findings else 0


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """Add `capacity` to the `mailfort` parser; returns its subcommands for the others."""
    capacity = sub.add_parser(
        "capacity", help="plan nodes from measured figures: measure, plan, upgrade"
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    p = capacity.add_parser(
        "plan",
        help="nodes needed at the peak, with N+k, and what each failure scenario does (exit 1"
        " if the deployed nodes miss a target, 2 on bad input)",
        description="Plan a cluster from a measured profile (`mailfort capacity measure`) and a"
        " workload (TOML; docs/capacity.md). Needs no store or config.",
    )
    p.add_argument("--profile", required=True, metavar="PROFILE.json")
    p.add_argument("--workload", required=True, metavar="WORKLOAD.toml")
    p.add_argument(
        "--nodes",
        type=int,
        help="nodes deployed for the scenarios (default: [cluster] nodes, else N+k)",
    )
    p.add_argument("--json", action="store_true", help="print JSON for scripts instead of text")
    p.add_argument("--no-series", action="store_true", help="leave the time series out of --json")
    p.add_argument("--html", metavar="FILE", help="also write the report with plots as HTML")
    p.add_argument("--seed", type=int, default=1, help="the simulator's random seed (default 1)")
    p.add_argument(
        "--events",
        type=int,
        default=EVENT_BUDGET,
        metavar="N",
        help=f"simulated jobs per scenario (default {EVENT_BUDGET:,}); past it messages are"
        " simulated in cohorts: fewer is faster and coarser",
    )
    p.add_argument(
        "--any-version",
        action="store_true",
        help="use a profile measured with another mailfort version",
    )
    p.set_defaults(standalone=cmd_plan)
    return capacity
