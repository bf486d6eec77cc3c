"""The whole store: every role together, with its lifecycle, for the code that opens and wires one.

`node.py`, `cli.py` and tests hold a `Store`; everything else takes only the roles it uses
(`store.roles`) and speaks in `store.records`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable

from mailfort.store.notify import ChangeHub
from mailfort.store.roles import (
    Acceptance,
    AccountAdmin,
    Accounts,
    Certificates,
    Cluster,
    CommitLoad,
    DkimKeys,
    Locks,
    LoginNetworks,
    Mailboxes,
    MailHealth,
    Queue,
    Secrets,
    StatusRecords,
    SubmissionCounts,
    TlsReports,
)


class Store(
    AccountAdmin,
    Accounts,
    LoginNetworks,
    Mailboxes,
    Acceptance,
    Queue,
    Cluster,
    Locks,
    StatusRecords,
    MailHealth,
    CommitLoad,
    DkimKeys,
    Secrets,
    Certificates,
    SubmissionCounts,
    TlsReports,
    abc.ABC,
):
    """Async store: every role, opened and closed. Every write is durable when its coroutine
    returns."""

    hub: ChangeHub
    commit_observer: Callable[[float], None] | None = None
    delay_threshold: float = 900.0

    @property
    def pending_commits(self) -> int:
        return 0

    def _changed(self, mailbox_ids: Iterable[int]) -> None:
        """After a commit: wake the sessions waiting on these mailboxes."""
        self.hub.publish(mailbox_ids)

    def _delivered(self, mailbox_id: int | None) -> bool:
        """After a delivery's commit: False when it delivered nothing, else wake its mailbox."""
        if mailbox_id is None:
            return False
        self._changed((mailbox_id,))
        return True

    def _commit_done(self, seconds: float) -> None:
        observer = self.commit_observer
        if observer is not None:
            observer(seconds)

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def schema_version(self) -> int: ...
