"""`mailfort capacity measure`: measure a node's costs and write them as a profile (JSON).

Needs no configuration and no store: the benchmark starts its own node (`capacity/measure.py`),
and `--from-metrics` reads running nodes' `/metrics` (`capacity/frommetrics.py`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable
from pathlib import Path

from mailfort.capacity.benchnode import NodeError
from mailfort.capacity.cgroup import CgroupError
from mailfort.capacity.frommetrics import FromMetricsError, profile_from_metrics
from mailfort.capacity.measure import (
    QUICK,
    CountError,
    Counts,
    MeasureError,
    Options,
    ScratchDatabase,
    measure,
)
from mailfort.capacity.profile import Profile, ProfileError, load_profile
from mailfort.capacity.promtext import ScrapeError
from mailfort.errors import MailfortError, StoreError


def _scratch(url: str) -> Callable[[], ScratchDatabase]:
    if not url.startswith(("postgresql://", "postgres://")):
        raise CountError(f"--store-url must be a postgresql:// url, not {url!r}")
    from mailfort.store.postgres.scratch import ScratchSchema

    return lambda: ScratchSchema(url)


def _progress(line: str) -> None:
    print(f"measure: {line}", file=sys.stderr, flush=True)


def _counts(args: argparse.Namespace) -> Counts:
    counts = QUICK if args.quick else Counts()
    changes = {
        name: value
        for name, value in (
            ("remote", args.remote),
            ("logins", args.logins),
            ("fetches", args.fetches),
            ("pop3_sessions", args.pop3_sessions),
            ("connections", args.connections),
            ("accounts", args.accounts),
        )
        if value is not None
    }
    if args.messages is not None:
        scale = args.messages / counts.sizes[0].messages
        changes["sizes"] = tuple(
            dataclasses.replace(s, messages=max(1, round(s.messages * scale)))
            if args.messages > 0
            else dataclasses.replace(s, messages=args.messages)
            for s in counts.sizes
        )
    return dataclasses.replace(counts, **changes)


def _table(profile: Profile) -> str:
    ms = 1000.0
    rows = [
        (f"accept {c.name} ({c.measured_bytes} B)", f"{c.cpu_seconds * ms:.3f} ms CPU")
        for c in profile.accept
    ]
    rows += [
        ("remote delivery", f"{profile.remote_delivery_cpu * ms:.3f} ms CPU"),
        ("IMAP login", f"{profile.imap_login_cpu * ms:.3f} ms CPU"),
        (
            "header FETCH of n",
            f"{profile.header_fetch_cpu * ms:.3f} + n x"
            f" {profile.header_fetch_per_message_cpu * ms:.4f} ms CPU",
        ),
        ("POP3 session", f"{profile.pop3_session_cpu * ms:.3f} ms CPU"),
        (
            "store commit",
            f"p50 {profile.commit_p50_seconds * ms:.1f} ms,"
            f" p99 {profile.commit_p99_seconds * ms:.1f} ms",
        ),
        (
            "database CPU per message",
            "-"
            if profile.db_cpu_per_message is None
            else f"{profile.db_cpu_per_message * ms:.3f} ms",
        ),
        ("memory base", f"{profile.memory_base_bytes / 2**20:.1f} MiB"),
        *(
            (f"memory per {k} connection", f"{v / 1024:.1f} KiB")
            for k, v in profile.memory_per_connection_bytes.items()
        ),
        (
            "saturation",
            f"limit {profile.saturation_limit}, {profile.saturation_messages_per_second:.0f} msg/s,"
            f" {profile.saturation_refused_share:.1%} refused",
        ),
        (
            "refused connection",
            "-" if profile.refusal_cpu is None else f"{profile.refusal_cpu * 1000:.3f} ms CPU",
        ),
        ("node CPUs", f"{profile.node_cpus:g}"),
    ]
    width = max(len(k) for k, _ in rows)
    head = (
        f"{profile.machine.hostname}: {profile.machine.cpu_model}, {profile.machine.cpus} CPUs,"
        f" {profile.engine}, mailfort {profile.mailfort_version}"
    )
    return "\n".join([head, *(f"  {k:<{width}}  {v}" for k, v in rows)])


def cmd_measure(args: argparse.Namespace) -> int:
    """Exit 0 with the profile written, 2 on bad input, 1 when the measurement failed."""
    output = Path(args.output)
    # Before minutes of measuring: a path that cannot be written fails now (and nothing is
    # left there when the measurement fails).
    problem = _unwritable(output)
    if problem:
        print(f"mailfort: cannot write {output}: {problem}", file=sys.stderr)
        return 2
    try:
        _check_options(args)
        if args.from_metrics:
            base = load_profile(args.base) if args.base else None
            profile = profile_from_metrics(
                args.from_metrics, interval=args.interval, base=base, progress=_progress
            )
        else:
            options = Options(
                counts=_counts(args),
                database=_scratch(args.store_url) if args.store_url else None,
                cpu_quota=args.cpu_quota,
            )
            options.counts.check()
            profile = measure(options, _progress, repeat=args.repeat)
    except (CountError, ProfileError, ScrapeError, FromMetricsError, CgroupError) as exc:
        print(f"mailfort: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"mailfort: --store-url: {exc}", file=sys.stderr)
        return 2
    except (MeasureError, NodeError, MailfortError, OSError) as exc:
        print(f"mailfort: measurement failed: {exc}", file=sys.stderr)
        return 1
    output.write_text(profile.to_json(), encoding="utf-8")
    print(f"profile written to {output}")
    print(_table(profile))
    return 0


def _unwritable(path: Path) -> str:
    """Why `path` cannot be written, or ""."""
    if path.is_dir():
        return "is a directory"
    if path.exists():
        return "" if os.access(path, os.W_OK) else "permission denied"
    parent = path.parent
    if not parent.is_dir():
        return f"no directory {parent}"
    return "" if os.access(parent, os.W_OK | os.X_OK) else f"{parent} is not writable"


def _check_options(args: argparse.Namespace) -> None:
    """Numbers argparse read but did not judge: one line for the caller (exit 2), not argparse's
    usage block."""
    if args.repeat < 1:
        raise CountError(f"--repeat must be > 0, not {args.repeat}")
    for flag, value in (("--cpu-quota", args.cpu_quota), ("--interval", args.interval)):
        if value is not None and not (0 < value < float("inf")):
            raise CountError(f"{flag} must be a number > 0, not {value}")


def add_measure_parser(capacity_sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = capacity_sub.add_parser(
        "measure",
        help="measure what one node costs per message, login, fetch, delivery (a profile)",
        description="Run a bounded benchmark against a node of its own (about 2 minutes;"
        " --quick about 30 s) or read running nodes' /metrics, and write a profile (JSON) for"
        " `mailfort capacity plan`.",
    )
    p.add_argument(
        "-o", "--output", default="profile.json", metavar="FILE", help="default: %(default)s"
    )
    p.add_argument(
        "--store-url",
        metavar="URL",
        help="measure on PostgreSQL (postgresql://...; a private schema is made and dropped);"
        " default: the embedded SQLite",
    )
    p.add_argument("--quick", action="store_true", help="small counts: about 30 s, coarser figures")
    p.add_argument(
        "--cpu-quota",
        type=float,
        metavar="FRACTION",
        help="run the node under a cgroup CPU quota, a share of one CPU (e.g. 0.4); needs root",
    )
    p.add_argument(
        "--repeat", type=int, default=1, metavar="N", help="runs; each figure the median"
    )
    counts = p.add_argument_group("counts (default: the run's, --quick's smaller)")
    for flag, help_text in (
        ("--messages", "messages of the small class (the others scale with it)"),
        ("--remote", "messages delivered to the remote MX"),
        ("--logins", "IMAP logins"),
        ("--fetches", "header FETCH commands per mailbox size"),
        ("--pop3-sessions", "POP3 sessions"),
        ("--connections", "idle connections per protocol for the memory figure"),
        ("--accounts", "accounts (and POP3 sessions held for the memory figure)"),
    ):
        counts.add_argument(flag, type=int, metavar="N", help=help_text)
    live = p.add_argument_group("a running cluster instead of a benchmark")
    live.add_argument(
        "--from-metrics",
        nargs="+",
        metavar="URL",
        help="scrape these nodes' /metrics twice, --interval apart, and derive what they show",
    )
    live.add_argument(
        "--interval", type=float, default=60.0, metavar="S", help="default: %(default)s"
    )
    live.add_argument(
        "--base",
        metavar="PROFILE",
        help="take the figures /metrics cannot show from this profile (else none is written)",
    )
    p.set_defaults(func=None, standalone=cmd_measure)
