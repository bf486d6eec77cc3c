"""The status data the pages, feeds, CLI and notices read and write, kept in the store.

`StatusRepository` is the seam between the status backend (leader loop, CLI) and its readers
(web pages, JSON, Atom, banner, WAV, protocol notices). It converts between the pure-logic types of
`status.components` / `status.incidents` and the store's rows; every node can read it, so the page
is served by every node and survives the loss of any of them.

CONTRACT: method names, arguments and return types below are fixed. Incidents and
maintenance windows are stored whole as JSON (`status.records`); operator writes are
read-modify-write with a version check, so concurrent writers never lose each other's entries.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

from mailfort.errors import AlreadyExists, NotFound, StoreUnavailable
from mailfort.status import records, webhook_url
from mailfort.status.components import ALL_COMPONENTS, Component, ComponentState
from mailfort.status.incidents import (
    Author,
    Incident,
    IncidentBook,
    IncidentStatus,
    Maintenance,
)
from mailfort.status.signals import Finding, Severity
from mailfort.store.records import ComponentRow, HistoryRow, RecordRow, WebhookOutcome, WebhookRow
from mailfort.store.roles import StatusStore


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
class Subscribed:
    """What `StatusRepository.subscribe` did: `hook` is the new or existing subscription."""

    outcome: WebhookOutcome
    hook: Webhook | None  # None when a cap refused it


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
    """Status records in the store (works on both engines).

    `history_days` is [status] history_days: `record_history` drops rows older than that.
    """

    def __init__(self, store: StatusStore, *, history_days: int = 90) -> None:
        self.store = store
        self.history_days = history_days

    # ---- reads (web, notices) ----------------------------------------------------------------

    async def page(self, now: float, days: int = 90, recent_days: int = 14) -> StatusPage:
        # Independent reads, side by side: the page is one wait, not five.
        components, open_incidents, recent, maintenance, history = await asyncio.gather(
            self.components(),
            self.incidents(open_only=True, limit=_OPEN_LIMIT),
            self.store.status_incidents(resolved_since=now - recent_days * _DAY, limit=_OPEN_LIMIT),
            self.maintenance(now),
            self.history(now, days),
        )
        return StatusPage(
            components=components,
            open_incidents=tuple(open_incidents),
            recent_incidents=tuple(records.incident_from_text(r.data) for r in recent),
            maintenance=tuple(maintenance),
            history=history,
            generated_at=now,
        )

    async def components(self) -> dict[Component, PublishedComponent]:
        """Every component; one without a stored row is operational since records began."""
        stored: dict[Component, PublishedComponent] = {}
        for row in await self.store.status_components():
            if row.component not in _COMPONENT_KEYS:
                continue  # written by a newer node that knows more components
            component = Component(row.component)
            stored[component] = PublishedComponent(
                component=component,
                state=ComponentState(row.state),
                since=row.since,
                findings=records.findings_from_text(row.findings),
                updated_at=row.updated_at,
            )
        return {
            c: stored.get(c, PublishedComponent(c, ComponentState.OPERATIONAL, None))
            for c in ALL_COMPONENTS
        }

    async def incidents(
        self, *, open_only: bool = False, since: float | None = None, limit: int = 50
    ) -> list[Incident]:
        """Newest first (by last update); `since`: only those updated at or after it."""
        rows = await self.store.status_incidents(open_only=open_only, since=since, limit=limit)
        return [records.incident_from_text(r.data) for r in rows]

    async def incident(self, incident_id: str) -> Incident | None:
        row = await self.store.status_incident(incident_id)
        return None if row is None else records.incident_from_text(row.data)

    async def maintenance(self, now: float, *, include_past: bool = False) -> list[Maintenance]:
        """Scheduled and in-progress windows (with `include_past` also completed and cancelled
        ones), soonest start first."""
        rows = await self.store.status_maintenance(None if include_past else now)
        return [records.maintenance_from_text(r.data) for r in rows]

    async def history(self, now: float, days: int = 90) -> dict[Component, tuple[DayStatus, ...]]:
        """Exactly `days` entries per component, oldest first, ending with today (UTC).

        A day without a stored row was not measured (before records began, or no leader ran
        that day): it comes back `measured=False` rather than as a green day nobody saw."""
        today = _utc_day(now)
        wanted = [(today - timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]
        found = {
            (r.component, r.day): r
            for r in await self.store.status_history(wanted[0] if wanted else today.isoformat())
        }
        result: dict[Component, tuple[DayStatus, ...]] = {}
        for component in ALL_COMPONENTS:
            entries = []
            for day in wanted:
                row = found.get((component.value, day))
                if row is None:
                    entries.append(DayStatus(day, ComponentState.OPERATIONAL, measured=False))
                else:
                    entries.append(
                        DayStatus(
                            day,
                            _state(row.worst),
                            degraded_seconds=row.degraded_seconds,
                            outage_seconds=row.outage_seconds,
                        )
                    )
            result[component] = tuple(entries)
        return result

    async def account_status(self, address: str, now: float) -> AccountStatus | None:
        """None for an unknown address.

        `incidents` holds every open incident: every component is one customers use, and the
        store does not know which protocols an account uses, so an IMAP incident cannot be
        ruled out for anyone; telling a POP3-only customer too much beats hiding their outage.
        `delayed`: the oldest of their queued mail has waited longer than the store's
        `delay_threshold` ([status] notice_delay)."""
        account = await self.store.get_account(address)
        if account is None:
            return None
        queue, incidents = await asyncio.gather(
            self.store.account_queue(account.id, account.address),
            self.incidents(open_only=True, limit=_OPEN_LIMIT),
        )
        oldest = queue.oldest_queued_at
        return AccountStatus(
            address=account.address,
            queued_from=queue.queued_from,
            queued_for=queue.queued_for,
            oldest_queued_at=oldest,
            last_inbox_delivery=queue.last_inbox_delivery,
            incidents=tuple(incidents),
            delayed=oldest is not None and now - oldest > self.store.delay_threshold,
        )

    async def webhooks(self) -> list[Webhook]:
        """Oldest subscription first."""
        return [_webhook(r) for r in await self.store.status_webhooks()]

    # ---- writes (CLI, web subscriptions) -----------------------------------------------------

    async def add_webhook(
        self, url: str, components: tuple[Component, ...] = (), *, now: float | None = None
    ) -> Webhook:
        """The operator's subscription (CLI): ValueError for a URL that is not
        http(s)://host/..., AlreadyExists for one that is subscribed already."""
        added = await self.subscribe(check_webhook_url(url), components, now=now)
        if added.outcome is WebhookOutcome.EXISTS:
            raise AlreadyExists(f"webhook {url} already exists")
        assert added.hook is not None  # no caps given: only CREATED or EXISTS
        return added.hook

    async def subscribe(
        self,
        url: str,
        components: tuple[Component, ...] = (),
        *,
        network: str = "",
        max_total: int | None = None,
        max_per_network: int | None = None,
        now: float | None = None,
    ) -> Subscribed:
        """Store a subscription of `url` (checked by the caller) unless the URL has one already
        (EXISTS: that one, unchanged) or a cap is reached (`StatusRecords.add_status_webhook`)."""
        hook = Webhook(
            # The id is what lets a subscriber unsubscribe over the public API: it must not be
            # guessable, or anyone could delete everyone's subscriptions.
            id="whk-" + secrets.token_urlsafe(18),
            url=url,
            created_at=time.time() if now is None else now,
            components=tuple(dict.fromkeys(components)),
        )
        added = await self.store.add_status_webhook(
            WebhookRow(
                id=hook.id,
                url=hook.url,
                components=records.components_to_text(hook.components),
                created_at=hook.created_at,
                network=network,
            ),
            max_total=max_total,
            max_per_network=max_per_network,
        )
        row = added.row
        return Subscribed(added.outcome, None if row is None else _webhook(row))

    async def remove_webhook(self, webhook_id: str) -> bool:
        return await self.store.remove_status_webhook(webhook_id)

    async def open_incident(
        self,
        now: float,
        title: str,
        text: str,
        components: Mapping[Component, ComponentState] | None = None,
        status: IncidentStatus = IncidentStatus.INVESTIGATING,
    ) -> Incident:
        """An operator incident (never closed automatically). ValueError when it would open
        resolved or without a title."""
        if not title.strip():
            raise ValueError("an incident needs a title")
        if status is IncidentStatus.RESOLVED:
            raise ValueError("an incident cannot open resolved")
        incident_id = await self.new_id("inc")
        book = IncidentBook(new_id=lambda: incident_id)
        incident = book.open_incident(now, title, text, components, status)
        await self._put_incident(incident, expect=0)
        return incident

    async def update_incident(
        self,
        now: float,
        incident_id: str,
        text: str,
        status: IncidentStatus | None = None,
        components: Mapping[Component, ComponentState] | None = None,
    ) -> Incident:
        """Raises NotFound for an unknown id, ValueError for a resolved incident.

        Read, change, write back only if nobody wrote in between (else read again), so an
        operator's entry and the leader's automatic one never overwrite each other."""
        for _ in range(_ATTEMPTS):
            row = await self.store.status_incident(incident_id)
            if row is None:
                raise NotFound(f"no incident {incident_id}")
            book = IncidentBook(incidents={incident_id: records.incident_from_text(row.data)})
            incident = book.update_incident(now, incident_id, text, status, components)
            if await self._put_incident(incident, expect=row.version):
                return incident
        raise StoreUnavailable(f"incident {incident_id} keeps changing; try again")

    async def add_maintenance(
        self,
        title: str,
        text: str,
        starts_at: float,
        ends_at: float,
        components: tuple[Component, ...] = (),
    ) -> Maintenance:
        """ValueError unless it ends after it starts."""
        if ends_at <= starts_at:
            raise ValueError("maintenance must end after it starts")
        if not title.strip():
            raise ValueError("maintenance needs a title")
        window_id = await self.new_id("mnt")
        book = IncidentBook(new_id=lambda: window_id)
        window = book.add_maintenance(title, text, starts_at, ends_at, components)
        await self._put_maintenance(window, expect=0)
        return window

    async def cancel_maintenance(self, now: float, maintenance_id: str, text: str) -> Maintenance:
        """NotFound for an unknown id, ValueError for a window cancelled already."""
        for _ in range(_ATTEMPTS):
            row = await self.store.status_maintenance_window(maintenance_id)
            if row is None:
                raise NotFound(f"no maintenance {maintenance_id}")
            book = IncidentBook(
                maintenance={maintenance_id: records.maintenance_from_text(row.data)}
            )
            window = book.update_maintenance(now, maintenance_id, text, cancel=True)
            if await self._put_maintenance(window, expect=row.version):
                return window
        raise StoreUnavailable(f"maintenance {maintenance_id} keeps changing; try again")

    # ---- writes by the status leader (status/service.py) ---------------------------------------

    async def save_components(self, states: Mapping[Component, PublishedComponent]) -> None:
        """Replace the published state of the given components."""
        await self.store.save_status_components(
            [
                ComponentRow(
                    component=component.value,
                    state=p.state.value,
                    since=p.since,
                    findings=records.findings_to_text(p.findings),
                    updated_at=p.updated_at,
                )
                for component, p in states.items()
            ]
        )

    async def record_history(
        self, now: float, elapsed: float, states: Mapping[Component, ComponentState]
    ) -> None:
        """Add `elapsed` seconds in `states` to the history rows of the UTC days they fall on
        (an interval across midnight is split); keep the worst state of each day. Rows older
        than `history_days` are pruned here."""
        elapsed = min(max(elapsed, 0.0), self.history_days * _DAY)
        rows = []
        for day, seconds in _split_by_day(now - elapsed, now):
            for component, state in states.items():
                severity = state.severity
                rows.append(
                    HistoryRow(
                        component=component.value,
                        day=day,
                        worst=state.value,
                        rank=int(severity),
                        degraded_seconds=seconds if severity == Severity.DEGRADED else 0.0,
                        outage_seconds=seconds if severity > Severity.DEGRADED else 0.0,
                    )
                )
        keep_from = (_utc_day(now) - timedelta(days=self.history_days - 1)).isoformat()
        await self.store.add_status_history(rows, keep_from)

    async def save_incident(self, incident: Incident) -> None:
        """Insert or replace an incident (with its whole timeline); ids come from `new_id()`.

        An operator entry stored meanwhile (the leader's copy may be older than an operator's
        update) is kept: automatic logic never removes an operator's entry. Such an entry also
        decides the status when it is the latest one."""
        for _ in range(_ATTEMPTS):
            row = await self.store.status_incident(incident.id)
            merged = incident
            if row is not None:
                merged = _keep_operator_entries(incident, records.incident_from_text(row.data))
            if await self._put_incident(merged, expect=0 if row is None else row.version):
                return
        raise StoreUnavailable(f"incident {incident.id} keeps changing; try again")

    async def new_id(self, prefix: str) -> str:
        """A cluster-unique id such as "inc-7" or "mnt-3"."""
        return await self.store.new_id(prefix)

    async def delayed_accounts(
        self, since: float, until: float, now: float, threshold: float
    ) -> list[DelayedAccount]:
        """Accounts whose mail was held longer than `threshold` seconds within [since, until]:
        settled items recorded by the store as delayed, plus items still queued that have waited
        longer than `threshold` at `now`. Counted per local account (sender of outbound mail,
        local recipient of queued local mail), one per message; by address.

        The store records settled mail only past its own `delay_threshold`, so a `threshold`
        below that finds no more settled mail than the store's threshold did."""
        counted: dict[str, dict[str, float]] = {}
        for d in await self.store.delayed_mail(since, until, now, threshold):
            delay = (now if d.settled_at is None else d.settled_at) - d.accepted_at
            messages = counted.setdefault(d.account, {})
            messages[d.queue_id] = max(delay, messages.get(d.queue_id, 0.0))
        return [
            DelayedAccount(address, len(messages), max(messages.values()))
            for address, messages in sorted(counted.items())
        ]

    async def deliver_notice(self, key: str, address: str, message: bytes, now: float) -> bool:
        """Put `message` into the account's INBOX once per `key` (e.g. incident id): False when
        it was already delivered for that key (idempotent across leaders and retries).

        Delivered like any message (UID, MODSEQ, IDLE wake-ups) and marked in one transaction.
        NotFound for an unknown address."""
        account = await self.store.get_account(address)
        if account is None:
            raise NotFound(f"no user {address}")
        return await self.store.deliver_status_notice(key, account.id, message, now)

    # ---- helpers --------------------------------------------------------------------------------

    async def _put_incident(self, incident: Incident, expect: int | None) -> bool:
        row = RecordRow(
            id=incident.id,
            data=records.incident_to_text(incident),
            origin=incident.origin.value,
            opened_at=incident.opened_at,
            updated_at=incident.updated_at,
            resolved_at=None if incident.open else (incident.resolved_at or incident.updated_at),
        )
        return await self.store.put_status_incident(row, expect) is not None

    async def _put_maintenance(self, window: Maintenance, expect: int | None) -> bool:
        row = RecordRow(
            id=window.id,
            data=records.maintenance_to_text(window),
            starts_at=window.starts_at,
            ends_at=window.ends_at,
            cancelled_at=window.cancelled_at,
        )
        return await self.store.put_status_maintenance(row, expect) is not None


def _webhook(row: WebhookRow) -> Webhook:
    return Webhook(
        id=row.id,
        url=row.url,
        created_at=row.created_at,
        components=records.components_from_text(row.components),
    )


def check_webhook_url(url: str) -> str:
    """The URL, stripped, if it is an absolute http(s) URL with a host (`webhook_url.parse`);
    else ValueError."""
    return webhook_url.parse(url.strip()).url


_DAY = 86400.0
_ATTEMPTS = 5
_OPEN_LIMIT = 200
_COMPONENT_KEYS = frozenset(c.value for c in Component)


def _state(value: str) -> ComponentState:
    try:
        return ComponentState(value)
    except ValueError:  # a state a newer node wrote: show it as the worst we know
        return ComponentState.MAJOR_OUTAGE


def _utc_day(t: float) -> date:
    return datetime.fromtimestamp(t, UTC).date()


def _split_by_day(start: float, end: float) -> list[tuple[str, float]]:
    """[(YYYY-MM-DD, seconds)] covering [start, end], cut at UTC midnights; at least one entry
    (the day of `end`), so a zero-length interval still records the state."""
    pieces: list[tuple[str, float]] = []
    day = _utc_day(end)
    cursor = end
    while True:
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
        lower = max(start, midnight)
        pieces.append((day.isoformat(), max(0.0, cursor - lower)))
        if lower <= start:
            break
        cursor, day = midnight, day - timedelta(days=1)
    return pieces[::-1]


def _keep_operator_entries(incoming: Incident, stored: Incident) -> Incident:
    known = set(incoming.timeline)
    missing = [e for e in stored.timeline if e.author is Author.OPERATOR and e not in known]
    if not missing:
        return incoming
    timeline = tuple(sorted((*incoming.timeline, *missing), key=lambda e: e.at))
    last = timeline[-1]
    if last.author is not Author.OPERATOR:
        return replace(incoming, timeline=timeline)
    # The operator spoke last: their status stands (a resolve stays resolved).
    resolved_at = last.at if last.status is IncidentStatus.RESOLVED else None
    return replace(incoming, timeline=timeline, status=last.status, resolved_at=resolved_at)


@dataclass(frozen=True, slots=True)
class DelayedAccount:
    address: str
    count: int
    max_delay: float  # seconds
