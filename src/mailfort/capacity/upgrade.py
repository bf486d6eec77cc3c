"""A rolling upgrade's schedule: how many nodes may be out at once, hour by hour, keeping N+k.

At each hour of the workload's day the load needs `sizing.nodes_needed_at` nodes; while a batch
runs, the nodes still serving must be at least that plus the k spare nodes, so a batch may drain
`live − needed − k` nodes (the most any hour it overlaps needs). The schedule:

1. new nodes join first (a grown cluster drains bigger batches, and adding never lowers the
   margin);
2. with `replace`, every old node the target keeps is drained and comes back as a new one
   (upgraded in place, or replaced by a new machine) at the end of its batch;
3. nodes beyond the target are drained and leave for good; the target carries the peak with k
   spare (checked first), so any batch of them is safe at any hour.

An hour that allows no drain is skipped to the next. Times are seconds since the epoch; the
workload's hour 0 is midnight at `utc_offset_hours` from UTC (its diurnal curve is local time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mailfort.capacity.profile import Profile
from mailfort.capacity.sizing import nodes_needed_at
from mailfort.capacity.workload import DAY, HOUR, Workload
from mailfort.errors import MailfortError

# A schedule longer than this is a mistake in the input (a batch of seconds), not a plan.
MAX_BATCHES = 100_000


class UpgradeError(MailfortError):
    """An upgrade that cannot be scheduled; one line saying which number fails and by how much."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Batch:
    index: int  # 1, 2, ...
    action: str  # add | replace | remove
    start: float
    end: float
    first: int  # the nodes it concerns, numbered 1.. (old nodes, then new ones)
    last: int
    drained: int  # out of service during the batch
    live: int  # serving during the batch
    needed: int  # the most nodes any hour of the batch needs

    @property
    def count(self) -> int:
        return self.last - self.first + 1

    @property
    def margin(self) -> int:
        return self.live - self.needed


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    nodes: int
    target: int
    replace: bool
    spare_nodes: int
    start: float
    batches: tuple[Batch, ...]
    needed_by_hour: tuple[int, ...]  # 24 values, the workload's hours of day
    skipped_hours: int  # hours waited because no node could be drained

    @property
    def end(self) -> float:
        return self.batches[-1].end if self.batches else self.start

    @property
    def min_margin(self) -> int | None:
        """The fewest nodes beyond the load's need while some were out (None: none were)."""
        return min((b.margin for b in self.batches if b.drained), default=None)

    @property
    def peak_hour(self) -> int:
        return max(range(24), key=lambda h: self.needed_by_hour[h])


def hour_of_day(t: float, utc_offset_hours: float = 0.0) -> int:
    return int(((t + utc_offset_hours * HOUR) % DAY) // HOUR)


def next_hour(t: float, utc_offset_hours: float = 0.0) -> float:
    local = t + utc_offset_hours * HOUR
    return (math.floor(local / HOUR) + 1) * HOUR - utc_offset_hours * HOUR


def needed_by_hour(profile: Profile, workload: Workload) -> tuple[int, ...]:
    found = []
    for h in range(24):
        sizing = nodes_needed_at(profile, workload, h * HOUR)
        if sizing is None:
            raise UpgradeError(
                f"at {h:02d}:00 no number of nodes meets the workload's latency targets"
            )
        found.append(sizing.nodes)
    return tuple(found)


def _span_needed(needed: tuple[int, ...], start: float, end: float, utc_offset_hours: float) -> int:
    """The most nodes any hour overlapping [start, end) needs."""
    most, t = 0, start
    while t < end:
        most = max(most, needed[hour_of_day(t, utc_offset_hours)])
        if most == max(needed):
            break
        t = next_hour(t, utc_offset_hours)
    return most


def schedule(
    profile: Profile,
    workload: Workload,
    *,
    nodes: int,
    target: int,
    replace: bool,
    batch_seconds: float,
    start: float,
    spare_nodes: int | None = None,
    utc_offset_hours: float = 0.0,
    max_batch: int | None = None,
) -> Schedule:
    """The batches that take `nodes` nodes to `target`, replacing the old ones with `replace`;
    `max_batch` bounds the nodes drained at once besides the margin (the operator's own limit:
    draining moves sessions, and a bad new version should meet few nodes first)."""
    if nodes < 1 or target < 1:
        raise UpgradeError(f"--nodes and --to must be at least 1, not {nodes} and {target}")
    if not batch_seconds > 0 or not math.isfinite(batch_seconds):
        raise UpgradeError(f"--batch-minutes must be more than 0, not {batch_seconds / 60:g}")
    if target == nodes and not replace:
        raise UpgradeError(f"--to {target} is --nodes already; give --replace to replace them")
    k = workload.spare_nodes if spare_nodes is None else spare_nodes
    if max_batch is not None and max_batch < 1:
        raise UpgradeError(f"--max-batch must be at least 1, not {max_batch}")
    if k < 0:
        raise UpgradeError(f"--spare-nodes must be at least 0, not {k}")
    needed = needed_by_hour(profile, workload)
    peak = max(needed)
    peak_hour = needed.index(peak)
    if target < peak + k:
        sizing = nodes_needed_at(profile, workload, peak_hour * HOUR)
        bound = f" for {sizing.bound.replace('_', ' ')}" if sizing is not None else ""
        raise UpgradeError(
            f"--to {target}: the peak hour ({peak_hour:02d}:00) needs {peak} nodes{bound}"
            f" + k={k} = {peak + k}; {peak + k - target} short"
        )
    batches: list[Batch] = []
    t, live, skipped = start, nodes, 0

    def add(action: str, first: int, count: int, drained: int, live_during: int) -> None:
        nonlocal t
        end = t + batch_seconds
        needs = _span_needed(needed, t, end, utc_offset_hours)
        batches.append(
            Batch(
                index=len(batches) + 1,
                action=action,
                start=t,
                end=end,
                first=first,
                last=first + count - 1,
                drained=drained,
                live=live_during,
                needed=needs,
            )
        )
        t = end

    if target > nodes:
        add("add", nodes + 1, target - nodes, 0, nodes)
        live = target
    to_replace = min(nodes, target) if replace else 0
    quietest = min(needed)
    if to_replace and live - quietest - k < 1:
        raise UpgradeError(
            f"no hour leaves a node to drain: {live} nodes, the quietest hour needs {quietest}"
            f" + k={k}; grow to --to {quietest + k + 1} or more first"
        )
    # Old nodes are numbered 1..nodes: the target keeps the first ones, the rest leave.
    done = removed = stalled = 0
    to_remove = max(0, nodes - target)
    while done < to_replace or removed < to_remove:
        if len(batches) >= MAX_BATCHES:
            raise UpgradeError(f"more than {MAX_BATCHES} batches: is --batch-minutes right?")
        allowed = live - _span_needed(needed, t, t + batch_seconds, utc_offset_hours) - k
        if allowed < 1:
            t = next_hour(t, utc_offset_hours)
            skipped += 1
            stalled += 1  # the hour's load leaves nothing over: wait for a quieter one
            if stalled > 24 + math.ceil(batch_seconds / HOUR):
                raise UpgradeError(
                    f"no {batch_seconds / 60:g}-minute stretch of the day leaves a node to drain"
                    f" ({live} nodes, the peak needs {peak} + k={k}); shorten --batch-minutes"
                    " or grow the cluster first"
                )
            continue
        stalled = 0
        if max_batch is not None:
            allowed = min(allowed, max_batch)
        if done < to_replace:
            b = min(allowed, to_replace - done)
            add("replace", done + 1, b, b, live - b)
            done += b
        else:
            b = min(allowed, to_remove - removed)
            add("remove", target + removed + 1, b, b, live - b)
            removed += b
            live -= b
    return Schedule(
        nodes=nodes,
        target=target,
        replace=replace,
        spare_nodes=k,
        start=start,
        batches=tuple(batches),
        needed_by_hour=needed,
        skipped_hours=skipped,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Announcement:
    """One maintenance window for the status page: contiguous batches together."""

    start: float
    end: float
    title: str
    text: str


_VERBS = {"add": "added", "replace": "replaced", "remove": "taken out of service"}


def _nodes(first: int, last: int) -> str:
    return f"node {first}" if first == last else f"nodes {first}–{last}"


def announcements(s: Schedule) -> list[Announcement]:
    """A window per run of back-to-back batches (a night's work), naming what happens in it."""
    runs: list[list[Batch]] = []
    for b in s.batches:
        if runs and runs[-1][-1].end == b.start:
            runs[-1].append(b)
        else:
            runs.append([b])
    found = []
    for run in runs:
        parts = []
        for action in ("add", "replace", "remove"):
            mine = [b for b in run if b.action == action]
            if mine:
                parts.append(f"{_nodes(mine[0].first, mine[-1].last)} {_VERBS[action]}")
        what = "; ".join(parts)
        found.append(
            Announcement(
                start=run[0].start,
                end=run[-1].end,
                title=f"Rolling upgrade: {what}",
                text=(
                    f"{what[0].upper()}{what[1:]}, a few at a time ({len(run)} batches of the"
                    f" {len(s.batches)} in this upgrade). Service continues, no outage expected:"
                    " sessions on a node being drained may reconnect once."
                ),
            )
        )
    return found
