"""The workload model (TOML): what the cluster must carry, what it must promise, what may go wrong.

A file has these tables (docs/capacity.md shows one whole; every key is checked, an unknown one
is an error so that a typo never silently plans with a default):

- `[mailboxes] count`
- `[messages]`: `per_mailbox_per_day` with a diurnal curve (`diurnal`, 24 weights, or the
  default office-hours curve scaled to `peak_factor`), or `per_second` for a constant rate;
  `remote_share` (accepted messages relayed to other providers), `sizes` (shares of the
  profile's size classes).
- `[logins]`: per mailbox per hour (`imap`, `pop3`), following the same curve, and the messages
  a client fetches headers of after an IMAP login (`header_fetch_messages`).
- `[[senders]]`: how other MTAs retry after our 4xx, as successive delays (the last repeats)
  with the share of mail they carry (RFC 5321 4.5.4.1: at least 30 minutes; Postfix starts at
  5, Exim at 15).
- `[cluster]`: nodes deployed, CPUs per node, delivery concurrency and network time, lease time
  (how long before a dead node's queue items are free), our retry schedule, database CPUs.
- `[targets]`: p99 time to `250`, p99 time to mailbox, the CPU share allowed at peak, the spare
  nodes (k of N+k).
- `[[scenarios]]`: nodes lost at an hour, the database failing over for some seconds, a remote
  destination down for some hours, a backlog of messages — alone or together.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailfort.errors import MailfortError

HOUR = 3600.0
DAY = 86400.0

# Weights per hour of day (local time) for a provider whose customers are mostly in one time
# zone: quiet at night, a morning peak, a lull at lunch, an afternoon peak. Normalised to a mean
# of 1 and then stretched so that its peak over its mean is the workload's `peak_factor`.
OFFICE_DAY = (
    0.25, 0.18, 0.14, 0.12, 0.13, 0.2, 0.45, 0.95, 1.55, 1.85, 1.95, 1.9,
    1.6, 1.7, 1.85, 1.8, 1.65, 1.4, 1.15, 0.95, 0.8, 0.65, 0.5, 0.35,
)  # fmt: skip

# What well-known MTAs do after a 4xx, when a workload names none: Postfix (queue_run_delay and
# minimal_backoff_time 300 s, doubling to maximal_backoff_time 4000 s), Exim's default retry
# rule (15 min for 2 h, then growing), and senders that keep to RFC 5321's 30-minute minimum.
DEFAULT_SENDERS = (
    ("postfix", 0.5, (300.0, 600.0, 1200.0, 2400.0, 4000.0)),
    ("exim", 0.3, (900.0, 900.0, 900.0, 900.0, 900.0, 900.0, 900.0, 900.0, 1800.0, 2700.0, 4050.0)),
    ("rfc5321-minimum", 0.2, (1800.0,)),
)
GIVE_UP = 5 * DAY


class WorkloadError(MailfortError):
    """A workload that cannot be planned; one line naming the file, the key and the fault."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Sender:
    name: str
    share: float
    retry_seconds: tuple[float, ...]
    give_up_seconds: float

    def delay(self, attempt: int) -> float:
        """Seconds before retry number `attempt` (1 is the first retry)."""
        return self.retry_seconds[min(attempt, len(self.retry_seconds)) - 1]


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    name: str
    at_seconds: float  # simulation time of the event (from the start of the day, or of the run)
    nodes_lost: int = 0
    backlog: int = 0
    database_down_seconds: float = 0.0
    remote_down_seconds: float = 0.0
    remote_down_share: float = 0.0  # of remote mail, bound for the destination that is down
    warmup_seconds: float = 1800.0  # simulated before the event, to reach a steady state
    horizon_seconds: float = 12 * HOUR  # simulated after it at most


@dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    mailboxes: int
    per_mailbox_per_day: float  # 0 when `per_second` is given
    per_second: float | None  # a constant rate, no diurnal curve
    diurnal: tuple[float, ...]  # 24 weights with mean 1
    remote_share: float
    sizes: Mapping[str, float]  # size class name -> share
    imap_logins_per_hour: float  # per mailbox
    pop3_logins_per_hour: float
    header_fetch_messages: int
    senders: tuple[Sender, ...]
    nodes: int | None  # deployed; None: the plan's N+k
    node_cpus: float | None  # None: the profile's
    delivery_concurrency: int
    remote_delivery_seconds: float
    lease_seconds: float
    retry_base_seconds: float
    retry_max_seconds: float
    database_cpus: float | None
    p99_time_to_250: float
    p99_time_to_mailbox: float
    max_utilisation: float
    spare_nodes: int
    scenarios: tuple[Scenario, ...]

    def weight(self, t: float) -> float:
        """The diurnal weight at simulation time `t` (seconds since midnight, wrapping)."""
        if self.per_second is not None:
            return 1.0
        hour = int((t % DAY) // HOUR)
        return self.diurnal[hour]

    def messages_per_second(self, t: float) -> float:
        """Messages offered to the whole cluster per second at time `t` (first attempts)."""
        if self.per_second is not None:
            return self.per_second
        return self.mailboxes * self.per_mailbox_per_day / DAY * self.weight(t)

    def logins_per_second(self, protocol: str, t: float) -> float:
        per_hour = self.imap_logins_per_hour if protocol == "imap" else self.pop3_logins_per_hour
        return self.mailboxes * per_hour / HOUR * self.weight(t)

    @property
    def peak_seconds(self) -> float:
        """The start of the busiest hour (simulation time)."""
        if self.per_second is not None:
            return 0.0
        return max(range(24), key=lambda h: self.diurnal[h]) * HOUR


# --- reading ------------------------------------------------------------------------------------


class _Table:
    """One TOML table read key by key; `done()` rejects the keys nobody asked for."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise WorkloadError(f"{where} must be a table")
        self.data: dict[str, Any] = data
        self.where = where
        self.seen: set[str] = set()

    def _get(self, key: str) -> Any:
        self.seen.add(key)
        return self.data.get(key)

    def number(
        self,
        key: str,
        default: float | None = None,
        *,
        low: float = 0.0,
        high: float = math.inf,
        low_open: bool = False,
    ) -> float:
        value = self._get(key)
        if value is None:
            if default is None:
                raise WorkloadError(f"{self.where}.{key} is missing")
            return default
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise WorkloadError(f"{self.where}.{key} must be a number, not {value!r}")
        if value < low or (low_open and value == low) or value > high:
            lower = f"> {low:g}" if low_open else f">= {low:g}"
            bound = lower if high == math.inf else f"{lower} and <= {high:g}"
            raise WorkloadError(f"{self.where}.{key} must be {bound}, not {value:g}")
        return float(value)

    def optional(self, key: str, **bounds: Any) -> float | None:
        if self.data.get(key) is None:
            self.seen.add(key)
            return None
        return self.number(key, **bounds)

    def integer(self, key: str, default: int | None = None, *, low: int = 0) -> int:
        value = self.number(key, None if default is None else float(default), low=low)
        if value != int(value):
            raise WorkloadError(f"{self.where}.{key} must be a whole number, not {value:g}")
        return int(value)

    def text(self, key: str, default: str | None = None) -> str:
        value = self._get(key)
        if value is None and default is not None:
            return default
        if not isinstance(value, str) or not value.strip():
            raise WorkloadError(f"{self.where}.{key} must be a non-empty string")
        return value

    def numbers(self, key: str) -> tuple[float, ...] | None:
        value = self._get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not value:
            raise WorkloadError(f"{self.where}.{key} must be a non-empty list of numbers")
        out = []
        for i, v in enumerate(value):
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise WorkloadError(f"{self.where}.{key}[{i}] must be a number, not {v!r}")
            if v < 0:
                raise WorkloadError(f"{self.where}.{key}[{i}] must be >= 0, not {v:g}")
            out.append(float(v))
        return tuple(out)

    def table(self, key: str) -> _Table:
        value = self._get(key)
        return _Table({} if value is None else value, f"{self.where}.{key}" if self.where else key)

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            where = f"{self.where}: " if self.where else ""
            raise WorkloadError(f"{where}unknown key {unknown[0]!r}")


def _diurnal(
    weights: tuple[float, ...] | None, peak_factor: float | None, where: str
) -> tuple[float, ...]:
    if weights is not None:
        if len(weights) != 24:
            raise WorkloadError(
                f"{where}.diurnal must have 24 weights (one per hour), not {len(weights)}"
            )
        if peak_factor is not None:
            raise WorkloadError(f"{where}: give diurnal or peak_factor, not both")
        mean = sum(weights) / 24
        if mean <= 0:
            raise WorkloadError(f"{where}.diurnal must not be all zero")
        return tuple(w / mean for w in weights)
    base = [w / (sum(OFFICE_DAY) / 24) for w in OFFICE_DAY]
    if peak_factor is None:
        return tuple(base)

    # Stretch around the mean (1), w' = 1 + s(w - 1), an hour below zero clipped and the curve
    # renormalised; the stretch s that makes the peak `peak_factor` is found by bisection (the
    # peak grows with s).
    def shaped(s: float) -> list[float]:
        curve = [max(0.0, 1 + s * (w - 1)) for w in base]
        mean = sum(curve) / 24
        return [w / mean for w in curve]

    low, high = 0.0, 1.0
    while max(shaped(high)) < peak_factor and high < 1e6:
        high *= 2
    if max(shaped(high)) < peak_factor - 1e-9:
        most = max(shaped(high))
        raise WorkloadError(
            f"{where}.peak_factor {peak_factor:g} is more than the default curve can take"
            f" ({most:.2f}); give the 24 weights as {where}.diurnal"
        )
    for _ in range(100):
        mid = (low + high) / 2
        if max(shaped(mid)) < peak_factor:
            low = mid
        else:
            high = mid
    return tuple(shaped(high))


def _senders(raw: Any) -> tuple[Sender, ...]:
    if raw is None:
        return tuple(
            Sender(name=n, share=s, retry_seconds=d, give_up_seconds=GIVE_UP)
            for n, s, d in DEFAULT_SENDERS
        )
    if not isinstance(raw, list) or not raw:
        raise WorkloadError("senders must be a list of tables ([[senders]])")
    found = []
    for i, item in enumerate(raw):
        t = _Table(item, f"senders[{i}]")
        delays = t.numbers("retry_seconds")
        if delays is None:
            raise WorkloadError(f"senders[{i}].retry_seconds is missing")
        if min(delays) <= 0:
            raise WorkloadError(f"senders[{i}].retry_seconds must all be > 0")
        found.append(
            Sender(
                name=t.text("name", f"sender{i}"),
                share=t.number("share", high=1.0),
                retry_seconds=delays,
                give_up_seconds=t.number("give_up_seconds", GIVE_UP, low_open=True),
            )
        )
        t.done()
    total = sum(s.share for s in found)
    if abs(total - 1.0) > 1e-6:
        raise WorkloadError(f"senders: the shares must add up to 1, not {total:g}")
    return tuple(found)


def _scenario(raw: Any, i: int, peak: float, constant: bool) -> Scenario:
    t = _Table(raw, f"scenarios[{i}]")
    name = t.text("name", f"scenario {i + 1}")
    at_hour = t.optional("at_hour", high=24.0)
    at_seconds = t.optional("at_seconds")
    if at_hour is not None and at_seconds is not None:
        raise WorkloadError(f"scenarios[{i}]: give at_hour or at_seconds, not both")
    if at_hour is not None and constant:
        raise WorkloadError(f"scenarios[{i}].at_hour needs a diurnal workload; use at_seconds")
    at = at_hour * HOUR if at_hour is not None else at_seconds
    warmup = t.number("warmup_seconds", 1800.0)
    horizon_hours = t.optional("horizon_hours", low=0.0, low_open=True, high=72.0)
    horizon_seconds = t.optional("horizon_seconds", low=0.0, low_open=True, high=72 * HOUR)
    if horizon_hours is not None and horizon_seconds is not None:
        raise WorkloadError(f"scenarios[{i}]: give horizon_hours or horizon_seconds, not both")
    scenario = Scenario(
        name=name,
        at_seconds=(peak if at is None else at),
        nodes_lost=t.integer("nodes_lost", 0),
        backlog=t.integer("backlog", 0),
        database_down_seconds=t.number("database_down_seconds", 0.0),
        remote_down_seconds=t.number("remote_down_hours", 0.0) * HOUR,
        remote_down_share=t.number("remote_down_share", 0.0, high=1.0),
        warmup_seconds=warmup,
        horizon_seconds=(
            horizon_seconds if horizon_seconds is not None else (horizon_hours or 12.0) * HOUR
        ),
    )
    t.done()
    if scenario.remote_down_seconds and not scenario.remote_down_share:
        raise WorkloadError(f"scenarios[{i}]: remote_down_hours needs remote_down_share > 0")
    return scenario


def workload_from_dict(data: Mapping[str, Any]) -> Workload:
    top = _Table(dict(data), "")
    boxes = top.table("mailboxes")
    mailboxes = boxes.integer("count", low=1)
    boxes.done()

    msg = top.table("messages")
    per_second = msg.optional("per_second")
    per_day = msg.optional("per_mailbox_per_day")
    if (per_second is None) == (per_day is None):
        raise WorkloadError("messages: give per_mailbox_per_day or per_second (one of them)")
    diurnal = _diurnal(msg.numbers("diurnal"), msg.optional("peak_factor", low=1.0), "messages")
    remote_share = msg.number("remote_share", 0.0, high=1.0)
    sizes_raw = msg._get("sizes")
    if sizes_raw is None:
        sizes: dict[str, float] = {"small": 1.0}
    else:
        st = _Table(sizes_raw, "messages.sizes")
        sizes = {k: st.number(k, high=1.0) for k in sizes_raw}
        if abs(sum(sizes.values()) - 1.0) > 1e-6:
            raise WorkloadError(
                f"messages.sizes: the shares must add up to 1, not {sum(sizes.values()):g}"
            )
    msg.done()

    logins = top.table("logins")
    imap = logins.number("imap", 0.0)
    pop3 = logins.number("pop3", 0.0)
    fetch = logins.integer("header_fetch_messages", 50)
    logins.done()

    senders = _senders(top._get("senders"))

    cluster = top.table("cluster")
    nodes = cluster.data.get("nodes")
    deployed = None if nodes is None else cluster.integer("nodes", low=1)
    cluster.seen.add("nodes")
    node_cpus = cluster.optional("node_cpus", low=0.0, low_open=True)
    concurrency = cluster.integer("delivery_concurrency", 100, low=1)
    network = cluster.number("remote_delivery_seconds", 1.0)
    lease = cluster.number("lease_seconds", 30.0)
    retry_base = cluster.number("retry_base_seconds", 300.0, low_open=True)
    retry_max = cluster.number("retry_max_seconds", 4000.0, low_open=True)
    db_cpus = cluster.optional("database_cpus", low=0.0, low_open=True)
    cluster.done()

    targets = top.table("targets")
    p99_250 = targets.number("p99_time_to_250_seconds", 2.0, low_open=True)
    p99_mailbox = targets.number("p99_time_to_mailbox_seconds", 300.0, low_open=True)
    max_util = targets.number("max_utilisation", 0.75, low_open=True, high=1.0)
    spare = targets.integer("spare_nodes", 1)
    targets.done()

    constant = per_second is not None
    peak = 0.0 if constant else max(range(24), key=lambda h: diurnal[h]) * HOUR
    raw_scenarios = top._get("scenarios") or []
    if not isinstance(raw_scenarios, list):
        raise WorkloadError("scenarios must be a list of tables ([[scenarios]])")
    scenarios = tuple(_scenario(s, i, peak, constant) for i, s in enumerate(raw_scenarios))
    top.done()
    for s in scenarios:
        if deployed is not None and s.nodes_lost >= deployed:
            raise WorkloadError(
                f"scenario {s.name!r}: nodes_lost {s.nodes_lost} leaves no node of {deployed}"
            )
    return Workload(
        mailboxes=mailboxes,
        per_mailbox_per_day=per_day or 0.0,
        per_second=per_second,
        diurnal=diurnal,
        remote_share=remote_share,
        sizes=sizes,
        imap_logins_per_hour=imap,
        pop3_logins_per_hour=pop3,
        header_fetch_messages=fetch,
        senders=senders,
        nodes=deployed,
        node_cpus=node_cpus,
        delivery_concurrency=concurrency,
        remote_delivery_seconds=network,
        lease_seconds=lease,
        retry_base_seconds=retry_base,
        retry_max_seconds=retry_max,
        database_cpus=db_cpus,
        p99_time_to_250=p99_250,
        p99_time_to_mailbox=p99_mailbox,
        max_utilisation=max_util,
        spare_nodes=spare,
        scenarios=scenarios,
    )


def load_workload(path: str | Path) -> Workload:
    """Read a workload file; every fault is a WorkloadError naming the file."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise WorkloadError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise WorkloadError(f"{path}: not TOML: {exc}") from None
    try:
        return workload_from_dict(data)
    except WorkloadError as exc:
        raise WorkloadError(f"{path}: {exc}") from None
