"""Everything a reader sees, in their language: catalog lookups, times, durations, and the
sentences for automatic timeline entries (which carry a StateChange with findings, not text)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from mailfort.status.components import Component, ComponentState, StateChange
from mailfort.status.i18n import catalog
from mailfort.status.incidents import Incident, TimelineEntry
from mailfort.status.signals import Finding

# How each signal's value reads; keys are Finding.signal (status/signals.py).
_DURATION = {
    "store_commit_p95",
    "accept_to_mailbox_p95",
    "oldest_queue_age",
    "login_p95_latency",
}
_RATIO = {"live_node_fraction", "remote_success_rate", "login_success_rate"}
_RATE = {"admission_refusals_per_minute"}


def iso(at: float | None) -> str | None:
    """ISO 8601 in UTC with a Z, as the Statuspage API and Atom (RFC 3339) want."""
    if at is None:
        return None
    moment = dt.datetime.fromtimestamp(at, dt.UTC).replace(microsecond=0)
    return moment.isoformat().replace("+00:00", "Z")


class Texts:
    """Catalog text for one language; templates call it as `t("web.key", name=value)`."""

    def __init__(self, lang: str, provider: str) -> None:
        self.lang = lang
        self.provider = provider
        self._catalog = catalog()

    def __call__(self, key: str, **params: object) -> str:
        return self._catalog.text(self.lang, key, **params)

    # ---- names ---------------------------------------------------------------------------------

    def component(self, component: Component | str) -> str:
        return self(f"web.component.{component}")

    def state(self, state: ComponentState | str) -> str:
        return self(f"web.state.{state}")

    def overall(self, state: ComponentState | str) -> str:
        return self(f"web.overall.{state}")

    # ---- times ---------------------------------------------------------------------------------

    def _strftime(self, key: str, at: float) -> str:
        return dt.datetime.fromtimestamp(at, dt.UTC).strftime(self(key))

    def datetime(self, at: float | None) -> str:
        return "" if at is None else self._strftime("web.format.datetime", at)

    def date(self, at: float) -> str:
        return self._strftime("web.format.date", at)

    def day(self, day: str) -> str:
        """A history day ("YYYY-MM-DD") in the reader's date format."""
        try:
            moment = dt.datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=dt.UTC)
        except ValueError:
            return day
        return moment.strftime(self("web.format.date"))

    def time(self, at: float) -> str:
        return self._strftime("web.format.time", at)

    def window(self, start: float, end: float) -> str:
        """A maintenance window; the end shows only its time when it is on the same UTC day."""
        same_day = self.date(start) == self.date(end)
        return self(
            "web.window",
            start=self.datetime(start),
            end=self.time(end) if same_day else self.datetime(end),
        )

    def duration(self, seconds: float) -> str:
        seconds = max(0.0, seconds)
        if seconds < 1:
            return self("web.format.milliseconds", n=round(seconds * 1000))
        if seconds < 10:
            return self("web.format.seconds", n=self._number(f"{seconds:.1f}".removesuffix(".0")))
        if seconds < 90:
            return self("web.format.seconds", n=round(seconds))
        if seconds < 90 * 60:
            return self("web.format.minutes", n=round(seconds / 60))
        if seconds < 48 * 3600:
            return self("web.format.hours", n=self._number(f"{seconds / 3600:.1f}"))
        return self("web.format.days", n=self._number(f"{seconds / 86400:.1f}"))

    def percent(self, ratio: float, digits: int = 0) -> str:
        return self("web.format.percent", n=self._number(f"{ratio * 100:.{digits}f}"))

    def _number(self, text: str) -> str:
        # German writes a decimal comma; the catalog's "number" format cannot express that.
        return text.replace(".", ",") if self.lang == "de" else text

    # ---- timeline ------------------------------------------------------------------------------

    def finding(self, finding: Finding) -> str:
        signal = finding.signal
        if signal in _DURATION:
            value, limit = self.duration(finding.value), self.duration(finding.limit)
        elif signal in _RATIO:
            value, limit = self.percent(finding.value), self.percent(finding.limit)
        elif signal in _RATE:
            value, limit = (
                self._number(f"{finding.value:.0f}"),
                self._number(f"{finding.limit:.0f}"),
            )
        else:
            value, limit = f"{finding.value:.0f}", f"{finding.limit:.0f}"
        protocol = self(f"web.protocol.{finding.protocol}") if finding.protocol else ""
        key = f"web.signal.{signal}"
        if not self._catalog.has("en", key):
            return self("web.signal.other", signal=signal, value=value, limit=limit)
        return self(key, value=value, limit=limit, protocol=protocol)

    def change(self, change: StateChange) -> str:
        key = "web.change.worse" if change.worse else "web.change.better"
        text = self(
            key,
            component=self.component(change.component),
            new=self.state(change.new),
            old=self.state(change.old),
        )
        if change.findings:
            causes = "; ".join(self.finding(f) for f in change.findings)
            text += " " + self("web.change.because", findings=causes)
        return text

    def entry(self, entry: TimelineEntry) -> str:
        """Operator entries say what the operator wrote; automatic ones are rendered here."""
        if entry.text:
            return entry.text
        if entry.change is not None:
            return self.change(entry.change)
        return self(f"web.incident_status.{entry.status}")

    def latest(self, incident: Incident) -> str:
        """The newest entry's text: the line a banner or the phone announcement reads out."""
        return self.entry(incident.timeline[-1]) if incident.timeline else ""

    def affected(self, components: Iterable[Component | str]) -> str:
        return ", ".join(self.component(c) for c in components)
