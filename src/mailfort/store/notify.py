"""In-process change notification: a session waits on a mailbox, a commit wakes it.

The store publishes the ids of mailboxes it changed after each commit. Sessions on this node (IDLE,
and NOOP-free clients) wake within milliseconds. Changes made by another process (the CLI, another
node) are not seen here; sessions also poll at a slow interval, and a cluster engine feeds this hub
from the database's own notifications.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class ChangeHub:
    def __init__(self) -> None:
        self._waiters: dict[int, set[asyncio.Event]] = {}

    def publish(self, mailbox_ids: Iterable[int]) -> None:
        for mailbox_id in mailbox_ids:
            for event in self._waiters.get(mailbox_id, ()):
                event.set()

    def subscribe(self, mailbox_id: int) -> asyncio.Event:
        """An event set at the next change of the mailbox; `unsubscribe` it when done."""
        event = asyncio.Event()
        self._waiters.setdefault(mailbox_id, set()).add(event)
        return event

    def unsubscribe(self, mailbox_id: int, event: asyncio.Event) -> None:
        waiters = self._waiters.get(mailbox_id)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._waiters[mailbox_id]
