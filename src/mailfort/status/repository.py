"""The status data the pages, feeds, CLI and notices read and write, kept in the store.

`StatusRepository` is the seam between the status backend (leader loop, CLI) and its readers
(web pages, JSON, Atom, banner, WAV, protocol notices). It converts between the pure-logic types of
`status.components` / `status.incidents` and the store's rows; every node can read it, so the page
is served by every node and survives the loss of any of them.

CONTRACT (issue 6): method names, arguments and return types below are fixed; the backend
implements the bodies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mailfort.status.components import Component, ComponentState
from mailfort.status.incidents import Incident, IncidentStatus, Maintenance
from mailfort.status.signals import Finding
from mailfort.store.api import Store


@dataclass(frozen=True, slots=True)
class PublishedComponent:
    """A component's published state (after hysteresis) and why."""

    component: Component
    state: ComponentState
    since: float | None  # when it entered this state; None: operational since records began
    findings: tuple[Finding, ...] = ()
    updated_at: float | None = None  # last evaluation that confirmed it


@dataclass(frozen=True, slots=True)
class DayStatus:
    """One UTC day of one component: the worst state it was in and for how long it was not ok."""

    day: str  # YYYY-MM-DD (UTC)
    worst: ComponentState
    degraded_seconds: float = 0.0
    outage_seconds: float = 0.0  # partial or major outage
    measured: bool = True  # False for days before records began (rendered grey, not green)


@dataclass(frozen=True, slots=True)
class Webhook:
    id: str
    url: str
    created_at: float
    components: tuple[Component, ...] = ()  # empty: all


@dataclass(frozen=True, slots=True)
class AccountStatus:
    """What one customer sees about their own mail."""

    address: str
    queued_from: int  # messages they sent that still wait in the queue
    queued_for: int  # messages to them that still wait (local retries)
    oldest_queued_at: float | None  # accepted-at of the oldest of those
    last_inbox_delivery: float | None  # when the newest message in their INBOX arrived
    incidents: tuple[Incident, ...]  # open incidents that touch them
    delayed: bool  # some of their mail has waited longer than [status] notice_delay


@dataclass(frozen=True, slots=True)
class StatusPage:
    """Everything the public page shows, read in one go (the web caches this object)."""

    components: Mapping[Component, PublishedComponent]
    open_incidents: tuple[Incident, ...]
    recent_incidents: tuple[Incident, ...]  # resolved within the last `recent_days`, newest first
    maintenance: tuple[Maintenance, ...]  # scheduled or in progress, soonest first
    history: Mapping[Component, tuple[DayStatus, ...]]  # oldest day first, `days` entries
    generated_at: float

    @property
    def overall(self) -> ComponentState:
        return max(
            (c.state for c in self.components.values()),
            key=lambda s: s.severity,
            default=ComponentState.OPERATIONAL,
        )


class StatusRepository:
    """Status records in the store (works on both engines)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # ---- reads (web, notices) ----------------------------------------------------------------

    async def page(self, now: float, days: int = 90, recent_days: int = 14) -> StatusPage:
        raise NotImplementedError

    async def components(self) -> dict[Component, PublishedComponent]:
        raise NotImplementedError

    async def incidents(
        self, *, open_only: bool = False, since: float | None = None, limit: int = 50
    ) -> list[Incident]:
        """Newest first (by last update)."""
        raise NotImplementedError

    async def incident(self, incident_id: str) -> Incident | None:
        raise NotImplementedError

    async def maintenance(self, now: float, *, include_past: bool = False) -> list[Maintenance]:
        raise NotImplementedError

    async def history(self, now: float, days: int = 90) -> dict[Component, tuple[DayStatus, ...]]:
        raise NotImplementedError

    async def account_status(self, address: str, now: float) -> AccountStatus | None:
        """None for an unknown address."""
        raise NotImplementedError

    async def webhooks(self) -> list[Webhook]:
        raise NotImplementedError

    # ---- writes (CLI, web subscriptions) -----------------------------------------------------

    async def add_webhook(self, url: str, components: tuple[Component, ...] = ()) -> Webhook:
        raise NotImplementedError

    async def remove_webhook(self, webhook_id: str) -> bool:
        raise NotImplementedError

    async def open_incident(
        self,
        now: float,
        title: str,
        text: str,
        components: Mapping[Component, ComponentState] | None = None,
        status: IncidentStatus = IncidentStatus.INVESTIGATING,
    ) -> Incident:
        raise NotImplementedError

    async def update_incident(
        self,
        now: float,
        incident_id: str,
        text: str,
        status: IncidentStatus | None = None,
        components: Mapping[Component, ComponentState] | None = None,
    ) -> Incident:
        """Raises NotFound for an unknown id, ValueError for a resolved incident."""
        raise NotImplementedError

    async def add_maintenance(
        self,
        title: str,
        text: str,
        starts_at: float,
        ends_at: float,
        components: tuple[Component, ...] = (),
    ) -> Maintenance:
        raise NotImplementedError

    async def cancel_maintenance(self, now: float, maintenance_id: str, text: str) -> Maintenance:
        raise NotImplementedError

    # ---- writes by the status leader (status/service.py) ---------------------------------------

    async def save_components(self, states: Mapping[Component, PublishedComponent]) -> None:
        """Replace the published state of the given components."""
        raise NotImplementedError

    async def record_history(
        self, now: float, elapsed: float, states: Mapping[Component, ComponentState]
    ) -> None:
        """Add `elapsed` seconds in `states` to today's (UTC) history rows; keep the worst state.
        Rows older than [status] history_days may be pruned here."""
        raise NotImplementedError

    async def save_incident(self, incident: Incident) -> None:
        """Insert or replace an incident (with its whole timeline); ids come from `new_id()`."""
        raise NotImplementedError

    async def new_id(self, prefix: str) -> str:
        """A cluster-unique id such as "inc-7" or "mnt-3"."""
        raise NotImplementedError

    async def delayed_accounts(
        self, since: float, until: float, now: float, threshold: float
    ) -> list[DelayedAccount]:
        """Accounts whose mail was held longer than `threshold` seconds within [since, until]:
        settled items recorded by the store as delayed, plus items still queued that have waited
        longer than `threshold` at `now`. Counted per local account (sender of outbound mail,
        local recipient of queued local mail)."""
        raise NotImplementedError

    async def deliver_notice(self, key: str, address: str, message: bytes, now: float) -> bool:
        """Put `message` into the account's INBOX once per `key` (e.g. incident id): False when
        it was already delivered for that key (idempotent across leaders and retries)."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class DelayedAccount:
    address: str
    count: int
    max_delay: float  # seconds
