"""Telling customers where they already look: the one-line notice for logins and 4xx texts.

CONTRACT (issue 6): `NoticeBoard` keeps, in memory, the open customer-facing incidents and
in-progress maintenance, refreshed from the store every few seconds by `run()`, so a login never
waits on a store read for it and the notice survives a store outage with its last known text.

- `line(component, lang)` — one line (no CR/LF, ASCII-safe for IMAP/POP3/SMTP), e.g.
  "Incoming mail: degraded performance since 14:02 UTC - https://status.example/" or None when
  nothing touches that component. Used by IMAP `[ALERT]`, POP3 `+OK`, submission 4xx texts.
"""

from __future__ import annotations

from mailfort.status.components import Component


class NoticeBoard:
    def __init__(self) -> None:
        self._lines: dict[tuple[Component, str], str] = {}

    def line(self, component: Component, lang: str = "en") -> str | None:
        return self._lines.get((component, lang)) or self._lines.get((component, "en"))
