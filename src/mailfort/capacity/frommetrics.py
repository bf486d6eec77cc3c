"""A profile from running nodes' `/metrics` instead of a benchmark.

Two scrapes of each node, `interval` seconds apart, show what the nodes did meanwhile and what
it cost them: their CPU (`process_cpu_seconds_total`), the messages they accepted, the store
commits they timed. That is one CPU figure for all the work together, so the CPU per accepted
message is what is left after the other work the counters show (logins, remote deliveries) is
charged at a base profile's costs, or, without one, all of it (an upper bound). Logins, FETCH,
POP3, memory per connection and the limit at saturation cannot be told apart this way: they are
taken from the base profile, and without one no profile is written.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from mailfort import __version__
from mailfort.capacity import promtext
from mailfort.capacity.profile import Profile

CPU = "process_cpu_seconds_total"
ACCEPTED = "mailfort_messages_accepted_total"
COMMITS = "mailfort_store_commit_duration_seconds"
NOT_FROM_METRICS = (
    "remote_delivery_cpu",
    "imap_login_cpu",
    "header_fetch_cpu",
    "header_fetch_per_message_cpu",
    "pop3_session_cpu",
    "db_cpu_per_message",
    "memory_base_bytes",
    "memory_per_connection_bytes",
    "saturation_limit",
    "saturation_messages_per_second",
    "saturation_refused_share",
    "node_cpus",
    "machine",
)


class FromMetricsError(Exception):
    """The nodes' metrics cannot make a profile; one line saying why."""


def _delta(
    before: promtext.Scrape, after: promtext.Scrape, name: str, url: str, **labels: str
) -> float:
    old, new = before.total(name, **labels), after.total(name, **labels)
    if new is None:
        why = " (a node of several worker processes does not export it)" if name == CPU else ""
        raise FromMetricsError(f"{url}: its /metrics has no {name}{why}")
    return new - (old or 0.0)


def _counted(before: promtext.Scrape, after: promtext.Scrape, name: str, **labels: str) -> float:
    """A counter's growth; 0 when the node has not counted any yet (no sample)."""
    new = after.total(name, **labels)
    return 0.0 if new is None else new - (before.total(name, **labels) or 0.0)


def profile_from_metrics(
    urls: Sequence[str],
    *,
    interval: float,
    base: Profile | None,
    progress: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
) -> Profile:
    if not interval > 0:
        raise FromMetricsError(f"interval must be > 0 seconds, not {interval}")
    first = [promtext.scrape(u) for u in urls]
    progress(f"scraped {len(urls)} node(s); again in {interval:g} s")
    sleep(interval)
    second = [promtext.scrape(u) for u in urls]
    cpu = accepted = logins_imap = logins_pop3 = delivered = 0.0
    commits: list[tuple[float, float]] = []
    for url, a, b in zip(urls, first, second, strict=True):
        cpu += _delta(a, b, CPU, url)
        accepted += _delta(a, b, ACCEPTED, url)
        logins_imap += _counted(a, b, "mailfort_logins_total", protocol="imap", result="ok")
        logins_pop3 += _counted(a, b, "mailfort_logins_total", protocol="pop3", result="ok")
        delivered += _counted(a, b, "mailfort_remote_deliveries_total", result="delivered")
        node_commits = promtext.bucket_delta(a.buckets(COMMITS), b.buckets(COMMITS))
        merged = dict(commits)
        for le, count in node_commits:
            merged[le] = merged.get(le, 0.0) + count
        commits = sorted(merged.items())
    progress(f"{accepted:.0f} messages accepted, {cpu:.2f} s CPU in {interval:g} s")
    if accepted <= 0:
        raise FromMetricsError(
            f"no message was accepted in {interval:g} s: nothing to divide the CPU by; scrape"
            " under load or over a longer --interval"
        )
    if base is None:
        raise FromMetricsError(
            "/metrics shows the CPU per accepted message and the commit latency, not: "
            + ", ".join(NOT_FROM_METRICS)
            + "; pass --base PROFILE (a measured one) to take those from it"
        )
    others = (
        logins_imap * base.imap_login_cpu
        + logins_pop3 * base.pop3_session_cpu
        + delivered * base.remote_delivery_cpu
    )
    per_message = (cpu - others) / accepted
    notes = [
        f"from the /metrics of {len(urls)} node(s) over {interval:g} s: {accepted:.0f} messages"
        f" accepted, {cpu:.2f} s CPU; the CPU of {logins_imap:.0f} IMAP logins, {logins_pop3:.0f}"
        f" POP3 logins and {delivered:.0f} remote deliveries charged at the base profile's costs"
        " and the rest apportioned to the accepted messages",
        "every other figure (and the machine) is the base profile's: /metrics cannot tell them"
        " apart",
    ]
    if per_message <= 0:
        raise FromMetricsError(
            f"the base profile's costs for logins and deliveries ({others:.2f} s) exceed the CPU"
            f" the nodes used ({cpu:.2f} s): the base does not fit these nodes"
        )
    # /metrics has no message sizes: the base's classes keep their ratios, scaled so that its
    # smallest costs what a message cost here on average (conservative for larger mixes).
    scale = per_message / base.accept[0].cpu_seconds
    notes.append(
        f"accept classes: the base profile's, scaled by {scale:.3f} so that its smallest class"
        f" costs the {per_message * 1000:.3f} ms a message cost on average here (the size mix is"
        " not in /metrics: conservative when it holds larger messages)"
    )
    p50 = promtext.quantile(0.5, commits) if commits else None
    p99 = promtext.quantile(0.99, commits) if commits else None
    if not p50 or not p99:
        p50, p99 = base.commit_p50_seconds, base.commit_p99_seconds
        notes.append("commit latency: no commit observed, the base profile's")
    return replace(
        base,
        mailfort_version=__version__,
        measured_at=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        source="metrics",
        accept=tuple(replace(c, cpu_seconds=c.cpu_seconds * scale) for c in base.accept),
        commit_p50_seconds=p50,
        commit_p99_seconds=p99,
        notes=tuple(notes),
    )
