"""What a POP3 session holds of a maildrop: the lock on it, and its snapshot at login.

The maildrop is the account's INBOX. At login the session takes a snapshot (`load_maildrop`):
UIDs in order, each message's size as RETR will send it, and its UIDL value.

UIDL. `"<UIDVALIDITY>.<UID>"` of the INBOX, the same numbers an IMAP client sees for the same
message, so they are stable across sessions (UIDs are never reused, UIDVALIDITY is fixed when
the mailbox is created) and a client that uses both protocols can match them up. They are at
most 21 digits, well inside RFC 1939's 70 characters.

Sizes. LIST and STAT must give the exact octets RETR sends (`protocol.pop3.response`), which
differ from the stored size when a message holds bare LFs, so the stored bytes are read once
and measured. A message never changes once stored and (mailbox id, UID) is never reused, so the
measurement is cached for the life of the process (`SizeCache`): a client that polls a large
maildrop with `--keep` costs one read of each message, not one per poll.

Locks. RFC 1939 §8: one session per maildrop at a time; a second login gets `-ERR [IN-USE]`.
`LocalMaildropLocks` is an in-process registry (this node only), behind the `MaildropLocks`
protocol so that a cluster-wide lock (a lease row in the store, renewed while the session
lives) can replace it without touching the session.
"""

from __future__ import annotations

from typing import Final, Protocol

from mailfort.protocol.pop3.maildrop import Entry, Maildrop
from mailfort.protocol.pop3.response import wire_size
from mailfort.store.records import MessageRow
from mailfort.store.roles import Mailboxes

INBOX: Final = "INBOX"
# Bodies are read in batches of about this many stored octets, to measure them.
READ_BATCH_OCTETS: Final = 8 * 1024 * 1024


class MaildropLocks(Protocol):
    async def acquire(self, account_id: int, owner: object) -> bool:
        """Take the account's maildrop for `owner`; False when another session holds it."""

    async def release(self, account_id: int, owner: object) -> None:
        """Give it back; a no-op unless `owner` holds it."""


class LocalMaildropLocks:
    """Maildrop locks of this process. Lost with the process, like the sessions holding them."""

    def __init__(self) -> None:
        self._owners: dict[int, object] = {}

    async def acquire(self, account_id: int, owner: object) -> bool:
        if account_id in self._owners:
            return self._owners[account_id] is owner
        self._owners[account_id] = owner
        return True

    async def release(self, account_id: int, owner: object) -> None:
        if self._owners.get(account_id) is owner:
            del self._owners[account_id]

    def held(self) -> int:
        return len(self._owners)


class SizeCache:
    """Wire sizes by (mailbox id, UID); the oldest entries go first when it is full."""

    def __init__(self, max_entries: int = 200_000) -> None:
        self._sizes: dict[tuple[int, int], int] = {}
        self._max = max_entries

    def get(self, mailbox_id: int, uid: int) -> int | None:
        return self._sizes.get((mailbox_id, uid))

    def put(self, mailbox_id: int, uid: int, size: int) -> None:
        if len(self._sizes) >= self._max:
            self._sizes.pop(next(iter(self._sizes)))
        self._sizes[(mailbox_id, uid)] = size


def unique_id(uidvalidity: int, uid: int) -> str:
    return f"{uidvalidity}.{uid}"


def _batches(rows: list[MessageRow]) -> list[list[MessageRow]]:
    batches: list[list[MessageRow]] = [[]]
    octets = 0
    for row in rows:
        if batches[-1] and octets + row.size > READ_BATCH_OCTETS:
            batches.append([])
            octets = 0
        batches[-1].append(row)
        octets += row.size
    return [b for b in batches if b]


async def load_maildrop(
    store: Mailboxes, account_id: int, sizes: SizeCache
) -> tuple[int, Maildrop] | None:
    """(INBOX mailbox id, its snapshot); None when the account has no INBOX."""
    box = await store.get_mailbox(account_id, INBOX)
    if box is None:
        return None
    rows = await store.messages(account_id, box.id)
    measured: dict[int, int] = {}
    unknown: list[MessageRow] = []
    for row in rows:
        size = sizes.get(box.id, row.uid)
        if size is None:
            unknown.append(row)
        else:
            measured[row.uid] = size
    for batch in _batches(unknown):
        found = await store.bodies(account_id, box.id, [r.uid for r in batch])
        for uid, data in found.items():
            measured[uid] = size = wire_size(data)
            sizes.put(box.id, uid, size)
    # A message expunged (by IMAP) between the two reads is simply not in the snapshot.
    entries = [
        Entry(uid=r.uid, size=measured[r.uid], unique_id=unique_id(box.uidvalidity, r.uid))
        for r in rows
        if r.uid in measured
    ]
    return box.id, Maildrop(entries)
