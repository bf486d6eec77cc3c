"""The status engine of a running node: signals → component states → incidents → webhooks, notices.

Every node runs a :class:`StatusService`. The node holding the named store lease
``status-leader`` evaluates every ``[status] evaluate_seconds``:

1. collect the cluster's health signals from the store (:mod:`mailfort.status.collector`);
2. run the :class:`StatusEvaluator` (hysteresis) whose published states it loaded from the store
   when it became leader, so a new leader continues where the old one stopped instead of
   reopening everything from "operational";
3. save the published components and add the elapsed time to the day's history;
4. apply the state changes to the open incidents (read fresh each time, so operator updates from
   the CLI are respected) and save the incidents that changed;
5. POST webhooks for component and incident changes (never waiting for them);
6. when an automatic incident resolves, put one notice into the INBOX of every account whose mail
   it delayed (``deliver_notice`` is idempotent per incident and account, so a retry or a new
   leader never sends a second one).

A node that does not hold the lease only refreshes its `/metrics` gauges. The lease runs for a few
evaluation intervals and is renewed at each, so a dead leader is replaced within that time.
Store trouble is logged and retried at the next tick; it never ends the loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.policy
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from mailfort.config import StatusConfig
from mailfort.errors import ConfigError, StoreError
from mailfort.metrics import NodeMetrics
from mailfort.status.collector import SignalCollector
from mailfort.status.components import (
    ALL_COMPONENTS,
    Component,
    ComponentState,
    Hysteresis,
    StateChange,
    StatusEvaluator,
)
from mailfort.status.i18n import catalog
from mailfort.status.incidents import Incident, IncidentBook, Origin
from mailfort.status.margin import MarginWatch
from mailfort.status.repository import DelayedAccount, PublishedComponent, StatusRepository
from mailfort.status.signals import Ceiling, Finding, Floor, LoginThresholds, StatusThresholds
from mailfort.status.webhooks import (
    WebhookSender,
    component_payload,
    incident_payload,
    page_info,
)
from mailfort.store.roles import StatusLeader

log = logging.getLogger("mailfort.status")

LEADER_LEASE = "status-leader"
# The lease outlives this many evaluation intervals: one missed renewal (a slow store) does not
# hand leadership over, three do.
LEASE_INTERVALS = 3
# A new leader looks this far back for resolved incidents whose notices may not have gone out.
NOTICE_LOOKBACK = 3600.0
_LOGIN_PROTOCOLS = ("imap", "pop3", "http", "submission")


# -- thresholds from config ------------------------------------------------------------------
def thresholds_from(settings: StatusConfig) -> StatusThresholds:
    """`StatusThresholds` with `[status] thresholds` overrides and the min-attempt settings.

    Keys are the field names of `StatusThresholds` (``store_commit_p95``, ``queue_depth`` …) and,
    per login protocol, ``<protocol>_login_success_rate`` / ``<protocol>_login_p95_latency``
    (``imap``, ``pop3``, ``http``, ``submission``)."""
    base = StatusThresholds()
    top: dict[str, object] = {"remote_min_attempts": settings.remote_min_attempts}
    logins: dict[str, dict[str, object]] = {
        p: {"min_attempts": settings.login_min_attempts} for p in _LOGIN_PROTOCOLS
    }
    for name, values in settings.thresholds.items():
        key = f"status.thresholds.{name}"
        login_key = next((p for p in _LOGIN_PROTOCOLS if name.startswith(f"{p}_login_")), None)
        if login_key is not None:
            field_name = name.removeprefix(f"{login_key}_login_")
            current = getattr(LoginThresholds(), field_name, None)
            target = logins[login_key]
        else:
            field_name = name
            current = getattr(base, name, None)
            target = top
        if not isinstance(current, Ceiling | Floor):
            raise ConfigError(key, "not a threshold name")
        try:
            target[field_name] = type(current)(*values)
        except (TypeError, ValueError) as exc:
            raise ConfigError(key, str(exc)) from None
    for protocol, fields in logins.items():
        login = dataclasses.replace(getattr(base, f"{protocol}_login"), **fields)
        top[f"{protocol}_login"] = login
    return dataclasses.replace(base, **top)  # type: ignore[arg-type]


# -- the delayed-mail notice -------------------------------------------------------------------
def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M")


def _duration(lang: str, seconds: float) -> str:
    texts = catalog()
    minutes = max(1, math.ceil(seconds / 60))
    if minutes == 1:
        return texts.text(lang, "notice.delayed.minute")
    if minutes < 120:
        return texts.text(lang, "notice.delayed.minutes", n=minutes)
    return texts.text(lang, "notice.delayed.hours", h=minutes // 60, m=minutes % 60)


def _notice_text(
    lang: str,
    delayed: DelayedAccount,
    incident: Incident,
    start: float,
    end: float,
    provider: str,
    url: str,
) -> str:
    texts = catalog()
    names = ", ".join(texts.text(lang, f"notice.component.{c.value}") for c in incident.components)
    key = "notice.delayed.body" if delayed.count > 1 else "notice.delayed.body_one"
    return "\n\n".join(
        [
            texts.text(lang, "notice.delayed.greeting"),
            texts.text(
                lang,
                key,
                start=_when(start),
                end=_when(end),
                components=names,
                count=delayed.count,
                duration=_duration(lang, delayed.max_delay),
            ),
            texts.text(lang, "notice.delayed.details", url=url),
            texts.text(lang, "notice.delayed.apology"),
            texts.text(lang, "notice.delayed.signature", provider=provider),
        ]
    )


def notice_message(
    delayed: DelayedAccount,
    incident: Incident,
    *,
    start: float,
    end: float,
    now: float,
    provider: str,
    url: str,
    hostname: str,
    languages: Iterable[str] = ("en", "de"),
) -> bytes:
    """The one notice for one account: plain text, every language one after the other.

    From the postmaster of the account's own domain (who customers know and may answer to);
    ``Auto-Submitted`` keeps vacation responders from answering it (RFC 3834 §5)."""
    texts = catalog()
    langs = tuple(languages)
    domain = delayed.address.rpartition("@")[2] or hostname
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = Address(display_name=provider, username="postmaster", domain=domain)
    msg["To"] = delayed.address
    msg["Subject"] = " / ".join(texts.text(lang, "notice.delayed.subject") for lang in langs)
    msg["Date"] = format_datetime(datetime.fromtimestamp(now, UTC))
    msg["Message-ID"] = make_msgid("status", domain=hostname)
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Mailfort-Incident"] = incident.id
    divider = "\n\n" + "-" * 60 + "\n\n"
    body = divider.join(
        _notice_text(lang, delayed, incident, start, end, provider, url) for lang in langs
    )
    msg.set_content(body + "\n", charset="utf-8", cte="quoted-printable")
    return msg.as_bytes()


# -- the service -------------------------------------------------------------------------------
class StatusService:
    def __init__(
        self,
        store: StatusLeader,
        *,
        node_name: str,
        settings: StatusConfig,
        heartbeat_seconds: float,
        url: str,
        hostname: str,
        repository: StatusRepository | None = None,
        metrics: NodeMetrics | None = None,
        webhooks: WebhookSender | None = None,
        clock: Callable[[], float] = time.time,
        network_share: float = 0.25,
        margin: MarginWatch | None = None,
    ) -> None:
        self.store = store
        # The capacity margin rides along with each collection; it feeds no component.
        self.margin = margin
        self.node_name = node_name
        self.settings = settings
        self.url = url
        self.hostname = hostname
        self.repository = repository or StatusRepository(store, history_days=settings.history_days)
        self.metrics = metrics
        self.webhooks = webhooks or WebhookSender(
            timeout=settings.webhook_timeout, allow_private=settings.webhook_allow_private
        )
        self.clock = clock
        self.thresholds = thresholds_from(settings)
        self.hysteresis = Hysteresis(settings.worsen_after, settings.recover_after)
        self.collector = SignalCollector(
            store,
            heartbeat_seconds=heartbeat_seconds,
            window_seconds=settings.window_seconds,
            metrics=metrics,
            # One destination network's silence is its own outage (`collector.py`).
            network_share=network_share,
        )
        self.interval = max(0.1, settings.evaluate_seconds)
        self.lease_seconds = LEASE_INTERVALS * self.interval
        self.evaluator: StatusEvaluator | None = None  # set while this node leads
        self.published: dict[Component, PublishedComponent] = {}
        self._last_evaluation: float | None = None
        self._notices_due: dict[str, Incident] = {}
        # Published changes not yet applied to the incidents (the step that made them failed).
        self._pending: list[StateChange] = []
        self._failing = False

    @property
    def leader(self) -> bool:
        return self.evaluator is not None

    async def run(self) -> None:
        """Evaluate (or follow) every `evaluate_seconds` until cancelled."""
        while True:
            await self.tick()
            await asyncio.sleep(self.interval)

    async def tick(self) -> None:
        """One step; errors are logged (the first of a run of store errors), never raised."""
        try:
            await self.step()
            self._failing = False
        except (StoreError, OSError) as exc:
            # The evaluator is kept: a flaky store is itself a fault to report, and starting
            # over at every error would keep hysteresis from ever publishing it. Changes not
            # yet carried into incidents stay pending for the next step.
            if not self._failing:
                log.warning("event=status_step_failed node=%s error=%r", self.node_name, exc)
            self._failing = True
        except Exception:
            log.exception("event=status_step_error node=%s", self.node_name)
            # A bug, not the store: start over from what the store holds.
            self.evaluator = None
            self._pending.clear()

    async def stop(self) -> None:
        """Hand the lease back (the next node leads at once, not after it expires)."""
        await self.webhooks.close()
        if self.evaluator is not None:
            self.evaluator = None
            try:
                await self.store.release_lease(LEADER_LEASE, self.node_name)
            except (StoreError, OSError) as exc:
                log.warning("event=status_release_failed node=%s error=%r", self.node_name, exc)

    async def step(self) -> None:
        now = self.clock()
        held = await self.store.acquire_lease(
            LEADER_LEASE, self.node_name, now + self.lease_seconds, now
        )
        if not held:
            if self.evaluator is not None:
                log.info("event=status_leadership_lost node=%s", self.node_name)
                self.evaluator = None
                self._pending.clear()  # the new leader derives its own from the store
            await self._follow(now)
            return
        if self.evaluator is None:
            await self._take_over(now)
        await self._evaluate(now)

    # -- follower ------------------------------------------------------------------------------
    async def _follow(self, now: float) -> None:
        await self.collector.collect(now)
        if self.margin is not None:
            self.margin.update(self.collector.nodes, now, leading=False)
        if self.metrics is None:
            return
        components = await self.repository.components()
        self._set_gauges(
            {c: p.state for c, p in components.items()},
            len(await self.repository.incidents(open_only=True)),
        )

    # -- leader --------------------------------------------------------------------------------
    async def _take_over(self, now: float) -> None:
        self.published = dict(await self.repository.components())
        self.evaluator = StatusEvaluator(
            self.thresholds,
            self.hysteresis,
            initial={c: p.state for c, p in self.published.items()},
        )
        for component, tracker in self.evaluator.trackers.items():
            held = self.published.get(component)
            tracker.since = held.since if held is not None else None
        self._last_evaluation = None
        # Notices of incidents resolved shortly before: the last leader may have died first.
        for incident in await self.repository.incidents(since=now - NOTICE_LOOKBACK):
            if incident.origin is Origin.AUTOMATIC and not incident.open:
                self._notices_due.setdefault(incident.id, incident)
        log.info("event=status_leader node=%s", self.node_name)

    async def _evaluate(self, now: float) -> None:
        assert self.evaluator is not None
        signals = await self.collector.collect(now)
        if self.margin is not None:
            self.margin.update(self.collector.nodes, now, leading=True)
        self._pending.extend(self.evaluator.evaluate(now, signals))
        changes = list(self._pending)
        published = self._published(now, changes)
        await self.repository.save_components(published)
        self.published = published
        states = {c: p.state for c, p in published.items()}
        if self._last_evaluation is not None:
            # Bounded: after a pause (store away, node frozen) nobody knows what the state was.
            elapsed = min(now - self._last_evaluation, 2 * self.interval)
            if elapsed > 0:
                await self.repository.record_history(now, elapsed, states)
        self._last_evaluation = now
        touched = await self._incidents(changes)
        self._pending.clear()
        hooks = await self.repository.webhooks() if changes or touched else []
        if hooks:
            page = page_info(self.settings.provider_name, self.url, states)
            for change in changes:
                self.webhooks.publish(hooks, component_payload(change, page), [change.component])
            for incident in touched:
                self.webhooks.publish(hooks, incident_payload(incident, page), incident.components)
        for change in changes:
            log.info(
                "event=component_state component=%s old=%s new=%s findings=%s",
                change.component.value,
                change.old.value,
                change.new.value,
                ",".join(f.signal for f in change.findings) or "-",
            )
        await self._send_notices(now)

    def _published(
        self, now: float, changes: list[StateChange]
    ) -> dict[Component, PublishedComponent]:
        assert self.evaluator is not None
        changed = {c.component: c for c in changes}
        result: dict[Component, PublishedComponent] = {}
        for component in ALL_COMPONENTS:
            tracker = self.evaluator.trackers[component]
            before = self.published.get(component)
            raw = self.evaluator.last.get(component)
            change = changed.get(component)
            if tracker.state is ComponentState.OPERATIONAL:
                findings: tuple[Finding, ...] = ()
            elif change is not None:
                findings = change.findings
            elif raw is not None and raw.findings:
                findings = raw.findings
            else:
                findings = before.findings if before is not None else ()
            since = change.at if change is not None else (before.since if before else None)
            result[component] = PublishedComponent(component, tracker.state, since, findings, now)
        return result

    async def _incidents(self, changes: list[StateChange]) -> list[Incident]:
        open_now = await self.repository.incidents(open_only=True, limit=1000)
        book = IncidentBook(incidents={i.id: i for i in open_now})
        if changes:
            reserved: list[str] = []
            if book.open_automatic() is None and any(
                c.new is not ComponentState.OPERATIONAL for c in changes
            ):
                reserved.append(await self.repository.new_id("inc"))
            # IncidentBook asks for ids synchronously; the one a batch can need is fetched first.
            book.new_id = lambda: reserved.pop() if reserved else f"inc-{int(self.clock())}"
        touched = book.apply(changes) if changes else []
        for incident in touched:
            await self.repository.save_incident(incident)
            log.info(
                "event=incident id=%s status=%s impact=%s components=%s",
                incident.id,
                incident.status.value,
                incident.impact.value,
                ",".join(c.value for c in incident.components),
            )
            if incident.origin is Origin.AUTOMATIC and not incident.open:
                self._notices_due[incident.id] = incident
        self._set_gauges(
            {c: p.state for c, p in self.published.items()}, len(book.open_incidents())
        )
        return touched

    def _set_gauges(self, states: Mapping[Component, ComponentState], open_incidents: int) -> None:
        if self.metrics is None:
            return
        for component in ALL_COMPONENTS:
            state = states.get(component, ComponentState.OPERATIONAL)
            self.metrics.component_state.labels(component.value).set(int(state.severity))
        self.metrics.incidents_open.set(open_incidents)

    async def _send_notices(self, now: float) -> None:
        """One message per account whose mail a resolved automatic incident delayed."""
        for incident_id, incident in list(self._notices_due.items()):
            # The delay began before the incident opened: signals trail the fault by the
            # window, and the state by `worsen_after`.
            start = incident.opened_at - self.settings.window_seconds - self.settings.worsen_after
            end = incident.resolved_at or now
            accounts = await self.repository.delayed_accounts(
                start, end, now, self.settings.notice_delay
            )
            sent = 0
            for delayed in accounts:
                message = notice_message(
                    delayed,
                    incident,
                    start=incident.opened_at,
                    end=end,
                    now=now,
                    provider=self.settings.provider_name,
                    url=self.url,
                    hostname=self.hostname,
                )
                if await self.repository.deliver_notice(incident_id, delayed.address, message, now):
                    sent += 1
            del self._notices_due[incident_id]
            log.info(
                "event=delay_notices incident=%s accounts=%d sent=%d",
                incident_id,
                len(accounts),
                sent,
            )
