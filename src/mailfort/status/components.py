"""Customer-facing components and their states, derived from health signals with hysteresis.

:func:`assess` turns one :class:`HealthSignals` snapshot into a *raw* state per component. Raw
states may jump at every evaluation; :class:`ComponentTracker` smooths them into the *published*
state: it moves to a worse state only after the raw state has been at least that bad at every
evaluation for ``worsen_after`` seconds (default 30 s), and to a better state only after it has been
at least that good for ``recover_after`` seconds (default 5 min). A signal that flaps around a limit
therefore never makes the published state flap, and a real fault is published within
``worsen_after`` plus one evaluation interval.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from mailfort.status.signals import (
    Finding,
    HealthSignals,
    Protocol,
    Severity,
    StatusThresholds,
)


class Component(StrEnum):
    """A part of the service as customers see it; the value is a stable key."""

    INCOMING = "incoming"
    OUTGOING = "outgoing"
    IMAP = "imap"
    POP3 = "pop3"
    WEBMAIL = "webmail"

    @property
    def display_name(self) -> str:
        """English display name (pages translate through catalogs keyed by the value)."""
        return _TITLES[self]


_TITLES = {
    Component.INCOMING: "Incoming mail (SMTP)",
    Component.OUTGOING: "Outgoing mail",
    Component.IMAP: "IMAP",
    Component.POP3: "POP3",
    Component.WEBMAIL: "Webmail/API",
}


class ComponentState(StrEnum):
    """Published state of a component; values are those of the Statuspage API."""

    OPERATIONAL = "operational"
    DEGRADED = "degraded_performance"
    PARTIAL_OUTAGE = "partial_outage"
    MAJOR_OUTAGE = "major_outage"

    @property
    def severity(self) -> Severity:
        return Severity(_ORDER.index(self))

    @classmethod
    def of(cls, severity: Severity) -> ComponentState:
        return _ORDER[int(severity)]


_ORDER = (
    ComponentState.OPERATIONAL,
    ComponentState.DEGRADED,
    ComponentState.PARTIAL_OUTAGE,
    ComponentState.MAJOR_OUTAGE,
)

ALL_COMPONENTS: tuple[Component, ...] = tuple(Component)


@dataclass(frozen=True, slots=True)
class Assessment:
    """Raw state of one component for one snapshot, with the findings that are not normal."""

    component: Component
    state: ComponentState
    findings: tuple[Finding, ...] = ()


def _login_findings(
    signals: HealthSignals, thresholds: StatusThresholds, protocol: Protocol
) -> list[Finding]:
    login = signals.login(protocol)
    limits = thresholds.login(protocol)
    if login.attempts < limits.min_attempts:
        # Too few to judge: a rate of three logins, or a p95 that is the slowest of three, would
        # turn one slow or failed login into a public state.
        return []
    return [
        limits.p95_latency.judge("login_p95_latency", login.p95_latency, protocol),
        limits.success_rate.judge("login_success_rate", login.success_rate, protocol),
    ]


def _findings(component: Component, signals: HealthSignals, t: StatusThresholds) -> list[Finding]:
    shared = [
        t.store_commit_p95.judge("store_commit_p95", signals.store_commit_p95),
        t.live_node_fraction.judge("live_node_fraction", signals.live_node_fraction),
    ]
    protocol = {
        Component.INCOMING: Protocol.SMTP,
        Component.OUTGOING: Protocol.SUBMISSION,
        Component.IMAP: Protocol.IMAP,
        Component.POP3: Protocol.POP3,
        Component.WEBMAIL: Protocol.HTTP,
    }[component]
    refusals = t.admission_refusals_per_minute.judge(
        "admission_refusals_per_minute", signals.refusals(protocol), protocol
    )
    found = [*shared, refusals]
    if component is Component.INCOMING:
        found.append(
            t.accept_to_mailbox_p95.judge("accept_to_mailbox_p95", signals.accept_to_mailbox_p95)
        )
    elif component is Component.OUTGOING:
        found.append(t.queue_depth.judge("queue_depth", float(signals.queue_depth)))
        found.append(t.oldest_queue_age.judge("oldest_queue_age", signals.oldest_queue_age))
        if signals.remote_attempts >= t.remote_min_attempts:
            found.append(
                t.remote_success_rate.judge("remote_success_rate", signals.remote_success_rate)
            )
        found.extend(_login_findings(signals, t, protocol))
    else:
        found.extend(_login_findings(signals, t, protocol))
    return found


def assess(
    signals: HealthSignals,
    thresholds: StatusThresholds | None = None,
    components: Iterable[Component] = ALL_COMPONENTS,
) -> dict[Component, Assessment]:
    """Raw state of each component: the worst severity among the signals that concern it.

    - Incoming mail: ``250``→mailbox p95, SMTP refusals, store commit p95, live nodes.
    - Outgoing mail: queue depth, oldest due item, remote success rate, submission logins and
      refusals, store commit p95, live nodes.
    - IMAP / POP3 / Webmail/API: that protocol's login success rate and p95 latency and refusals,
      store commit p95, live nodes.
    """
    t = thresholds or StatusThresholds()
    result: dict[Component, Assessment] = {}
    for component in components:
        bad = tuple(
            f for f in _findings(component, signals, t) if f.severity is not Severity.NORMAL
        )
        worst = max((f.severity for f in bad), default=Severity.NORMAL)
        result[component] = Assessment(component, ComponentState.of(worst), bad)
    return result


@dataclass(frozen=True, slots=True)
class Hysteresis:
    """How long a raw state must hold before the published state follows it.

    - ``worsen_after`` — 30 s: with 15-s evaluations a fault is published 30–45 s after it shows in
      the signals, inside the promised minute.
    - ``recover_after`` — 5 min: a recovery must hold five times longer than a fault, so a component
      that limps along does not flip back and forth and spam subscribers.
    """

    worsen_after: float = 30.0
    recover_after: float = 300.0

    def __post_init__(self) -> None:
        if self.worsen_after < 0 or self.recover_after < 0:
            raise ValueError("hysteresis times must not be negative")


@dataclass(frozen=True, slots=True)
class StateChange:
    """The published state of ``component`` changed at ``at``; ``findings`` explain why."""

    component: Component
    old: ComponentState
    new: ComponentState
    at: float
    findings: tuple[Finding, ...] = ()

    @property
    def worse(self) -> bool:
        return self.new.severity > self.old.severity


@dataclass(slots=True)
class ComponentTracker:
    """Hysteresis for one component.

    For every severity level it remembers since when the raw state has been continuously at least
    that bad (``_bad_since``) and continuously at most that bad (``_good_since``). The published
    state moves to the worst level bad for ``worsen_after``; failing that, to the best level good
    for ``recover_after``. The clock only comes in through :meth:`observe`.
    """

    component: Component
    hysteresis: Hysteresis = field(default_factory=Hysteresis)
    state: ComponentState = ComponentState.OPERATIONAL
    since: float | None = None
    _bad_since: dict[Severity, float] = field(default_factory=dict)
    _good_since: dict[Severity, float] = field(default_factory=dict)
    _last: float | None = None

    def observe(
        self, now: float, raw: ComponentState, findings: tuple[Finding, ...] = ()
    ) -> StateChange | None:
        """Feed one raw state observed at ``now``; return the change of published state, if any."""
        if self._last is not None and now < self._last:
            raise ValueError("observations must not go back in time")
        self._last = now
        level = raw.severity
        for s in Severity:
            if level >= s:
                self._bad_since.setdefault(s, now)
            else:
                self._bad_since.pop(s, None)
            if level <= s:
                self._good_since.setdefault(s, now)
            else:
                self._good_since.pop(s, None)
        current = self.state.severity
        target = current
        for s in sorted(Severity, reverse=True):
            start = self._bad_since.get(s)
            if s > current and start is not None and now - start >= self.hysteresis.worsen_after:
                target = s
                break
        else:
            for s in sorted(Severity):
                start = self._good_since.get(s)
                if s >= current:
                    break
                if start is not None and now - start >= self.hysteresis.recover_after:
                    target = s
                    break
        if target == current:
            return None
        change = StateChange(self.component, self.state, ComponentState.of(target), now, findings)
        self.state = change.new
        self.since = now
        return change


class StatusEvaluator:
    """Assess a snapshot and run every component's tracker; returns the published changes."""

    def __init__(
        self,
        thresholds: StatusThresholds | None = None,
        hysteresis: Hysteresis | None = None,
        components: Iterable[Component] = ALL_COMPONENTS,
        initial: Mapping[Component, ComponentState] | None = None,
    ) -> None:
        self.thresholds = thresholds or StatusThresholds()
        self.hysteresis = hysteresis or Hysteresis()
        self.trackers = {
            c: ComponentTracker(
                c, self.hysteresis, (initial or {}).get(c, ComponentState.OPERATIONAL)
            )
            for c in components
        }
        self.last: dict[Component, Assessment] = {}

    @property
    def states(self) -> dict[Component, ComponentState]:
        return {c: t.state for c, t in self.trackers.items()}

    def evaluate(self, now: float, signals: HealthSignals) -> list[StateChange]:
        self.last = assess(signals, self.thresholds, self.trackers)
        changes = []
        for component, tracker in self.trackers.items():
            raw = self.last[component]
            change = tracker.observe(now, raw.state, raw.findings)
            if change is not None:
                changes.append(change)
        return changes
