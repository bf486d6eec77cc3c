"""Telling customers where they already look: the one-line notice for logins and 4xx texts.

CONTRACT: `NoticeBoard` keeps, in memory, the open customer-facing incidents and
in-progress maintenance, refreshed from the store every few seconds by `run()`, so a login never
waits on a store read for it and the notice survives a store outage with its last known text.

- `line(component, lang)` — one line (no CR/LF, ASCII-safe for IMAP/POP3/SMTP), e.g.
  "Incoming mail: degraded performance since 14:02 UTC - https://status.example/" or None when
  nothing touches that component. Used by IMAP `[ALERT]`, POP3 `+OK`, submission 4xx texts.

A component is touched by an open incident that holds it in a state other than operational (an
automatic incident keeps a recovered component in its map as operational until all recover), and
by a maintenance window in progress that names it. An incident without components touches none:
a notice in every login of every customer is a price only a named component justifies.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import unicodedata
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from mailfort.errors import StoreError
from mailfort.status.components import Component, ComponentState
from mailfort.status.i18n import SUPPORTED, catalog
from mailfort.status.incidents import Incident, Maintenance, MaintenanceStatus
from mailfort.status.repository import StatusRepository

log = logging.getLogger("mailfort.status.notices")

# RFC 1939 §3 caps a POP3 response line at 512 octets and SMTP replies are read by people in
# one line of a dialog; a notice longer than this is cut (the URL tells the rest).
MAX_LINE = 200
_TRANSLITERATE = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue",
                                "ß": "ss", "–": "-", "—": "-"})  # fmt: skip
_UNSAFE = re.compile(r"[^\x20-\x7e]")


def ascii_line(text: str, limit: int = MAX_LINE) -> str:
    """One printable ASCII line: umlauts spelt out, other marks dropped, controls removed.

    IMAP text outside UTF8=ACCEPT, POP3 and SMTP replies are ASCII; a CR or LF in a notice would
    let incident text inject protocol lines."""
    spelt = unicodedata.normalize("NFKD", text.translate(_TRANSLITERATE))
    plain = _UNSAFE.sub("", " ".join(spelt.split()))
    return plain if len(plain) <= limit else plain[: limit - 3].rstrip() + "..."


def _clock_time(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M")


def _entered(incident: Incident, component: Component) -> float:
    """When the incident last moved `component` (its timeline), else when it opened."""
    for entry in reversed(incident.timeline):
        if entry.change is not None and entry.change.component is component:
            return entry.at
    return incident.opened_at


def compose_lines(
    incidents: Iterable[Incident],
    maintenance: Iterable[Maintenance],
    now: float,
    url: str,
    languages: Iterable[str] = SUPPORTED,
) -> dict[tuple[Component, str], str]:
    """The notice line per (component, language) for what is open at `now` (pure)."""
    worst: dict[Component, tuple[ComponentState, float]] = {}
    for incident in incidents:
        if not incident.open:
            continue
        for component, state in incident.components.items():
            if state is ComponentState.OPERATIONAL:
                continue
            held = worst.get(component)
            if held is None or state.severity > held[0].severity:
                worst[component] = (state, _entered(incident, component))
    ending: dict[Component, float] = {}
    for window in maintenance:
        if window.status(now) is not MaintenanceStatus.IN_PROGRESS:
            continue
        for component in window.components:
            ending[component] = max(ending.get(component, 0.0), window.ends_at)
    texts = catalog()
    lines: dict[tuple[Component, str], str] = {}
    for lang in languages:
        for component in Component:
            name = texts.text(lang, f"notice.component.{component.value}")
            if component in worst:
                state, since = worst[component]
                text = texts.text(
                    lang,
                    "notice.line",
                    component=name,
                    state=texts.text(lang, f"notice.state.{state.value}"),
                    time=_clock_time(since),
                    url=url,
                )
            elif component in ending:
                text = texts.text(
                    lang,
                    "notice.maintenance",
                    component=name,
                    time=_clock_time(ending[component]),
                    url=url,
                )
            else:
                continue
            lines[(component, lang)] = ascii_line(text)
    return lines


class NoticeBoard:
    """The notices of the moment, held in memory; `run()` keeps them fresh on every node."""

    def __init__(
        self,
        repository: StatusRepository | None = None,
        *,
        url: str = "",
        refresh_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.repository = repository
        self.url = url
        self.refresh_seconds = refresh_seconds
        self.clock = clock
        self._lines: dict[tuple[Component, str], str] = {}
        self.refreshed_at: float | None = None

    def line(self, component: Component, lang: str = "en") -> str | None:
        return self._lines.get((component, lang)) or self._lines.get((component, "en"))

    def affected(self, component: Component) -> bool:
        return (component, "en") in self._lines

    def show(self, incidents: Iterable[Incident], maintenance: Iterable[Maintenance]) -> None:
        """Replace the notices with those for these incidents and windows."""
        self._lines = compose_lines(incidents, maintenance, self.clock(), self.url)

    async def refresh(self) -> None:
        """Read open incidents and maintenance from the store; on failure keep the last lines."""
        if self.repository is None:
            return
        incidents = await self.repository.incidents(open_only=True)
        maintenance = await self.repository.maintenance(self.clock())
        self.show(incidents, maintenance)
        self.refreshed_at = self.clock()

    async def run(self) -> None:
        """Refresh every `refresh_seconds` until cancelled; a store outage is logged once."""
        failing = False
        while True:
            try:
                await self.refresh()
                failing = False
            except (StoreError, OSError) as exc:
                # The last known notices stay up: an outage of the store is exactly when
                # customers most need them.
                if not failing:
                    log.warning("event=notices_refresh_failed error=%r", exc)
                failing = True
            except Exception:
                log.exception("event=notices_refresh_error")
            await asyncio.sleep(self.refresh_seconds)
