"""Mailboxes and messages on SQLite (role `Mailboxes`); each write is one writer transaction.

Every change bumps the mailbox's HIGHESTMODSEQ once per transaction and stamps the changed rows
with it; expunged UIDs are kept with their MODSEQ in `expunged`, so any session can compute what
changed since the MODSEQ it last saw (RFC 7162). Every new message row, whichever path brings it
(acceptance, queued delivery, a status notice, APPEND, COPY/MOVE), is numbered by `place`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence

from mailfort.errors import AlreadyExists, NotFound, OverQuota
from mailfort.store import rows
from mailfort.store.flags import flags_text, plan_flag_changes
from mailfort.store.records import (
    JUNK,
    JUNK_USE,
    AppendItem,
    AppendResult,
    CopyResult,
    FlagMode,
    Mailbox,
    MailboxChanges,
    MailboxStatus,
    MessageRow,
    StoredMessage,
)
from mailfort.store.rows import MessageCopy
from mailfort.store.sqlite.engine import SqliteEngine, exists, next_id


def next_uidvalidity(conn: sqlite3.Connection) -> int:
    """A UIDVALIDITY never handed out before in this store, even for a re-created name."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'uidvalidity'").fetchone()
    value = max(int(time.time()), int(row[0]) + 1 if row else 0)
    conn.execute(
        "INSERT INTO meta(key, value) VALUES ('uidvalidity', ?)"
        " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (str(value),),
    )
    return value


def insert_mailbox(
    conn: sqlite3.Connection, account_id: int, name: str, special_use: str | None
) -> int:
    # Sessions address a selected mailbox by id (and the hub wakes them by id): after DELETE and
    # CREATE, a stale id must find nothing, not the new mailbox.
    mailbox_id = next_id(conn, "mailbox_id", "mailboxes")
    conn.execute(
        "INSERT INTO mailboxes(id, account_id, name, special_use, uidvalidity)"
        " VALUES (?, ?, ?, ?, ?)",
        (mailbox_id, account_id, name, special_use, next_uidvalidity(conn)),
    )
    # A new mailbox starts subscribed (clients then list it without asking).
    conn.execute(
        "INSERT OR IGNORE INTO subscriptions(account_id, name) VALUES (?, ?)", (account_id, name)
    )
    return mailbox_id


# SQLite limits host parameters per statement; chunk IN (...) lists well below it.
_CHUNK = 500


def chunks(values: list[int]) -> Iterable[list[int]]:
    for i in range(0, len(values), _CHUNK):
        yield values[i : i + _CHUNK]


def _marks(values: list[int]) -> str:
    return ",".join("?" * len(values))


def bump_modseq(c: sqlite3.Connection, mailbox_id: int) -> int:
    r = c.execute(
        "UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = ?"
        " RETURNING highestmodseq",
        (mailbox_id,),
    ).fetchone()
    if r is None:
        raise NotFound("mailbox no longer exists")
    return int(r[0])


def messages(c: sqlite3.Connection, account_id: int, mailbox_id: int) -> list[MessageRow]:
    return [
        rows.message(r)
        for r in c.execute(
            f"SELECT {rows.MESSAGE_COLS} FROM messages WHERE mailbox_id = ? AND mailbox_id IN"
            " (SELECT id FROM mailboxes WHERE account_id = ?) ORDER BY uid",
            (mailbox_id, account_id),
        )
    ]


def changed_since(
    c: sqlite3.Connection, mailbox_id: int, since: int
) -> tuple[list[MessageRow], list[int]]:
    changed = [
        rows.message(r)
        for r in c.execute(
            f"SELECT {rows.MESSAGE_COLS} FROM messages WHERE mailbox_id = ? AND modseq > ?"
            " ORDER BY uid",
            (mailbox_id, since),
        )
    ]
    expunged = [
        r[0]
        for r in c.execute(
            "SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ? ORDER BY uid",
            (mailbox_id, since),
        )
    ]
    return changed, expunged


def status(c: sqlite3.Connection, account_id: int, mailbox_id: int) -> MailboxStatus | None:
    box = c.execute(
        "SELECT uidnext, uidvalidity, highestmodseq FROM mailboxes WHERE id = ? AND account_id = ?",
        (mailbox_id, account_id),
    ).fetchone()
    if box is None:
        return None
    counts = c.execute(
        "SELECT count(*), coalesce(sum(size), 0),"
        " coalesce(sum(instr(' ' || flags || ' ', ' \\Seen ') = 0), 0),"
        " coalesce(sum(instr(' ' || flags || ' ', ' \\Deleted ') > 0), 0)"
        " FROM messages WHERE mailbox_id = ?",
        (mailbox_id,),
    ).fetchone()
    return rows.mailbox_status(box, counts)


def _mailbox_for(c: sqlite3.Connection, account_id: int, name: str) -> tuple[int, int, int]:
    r = c.execute(
        "SELECT id, uidnext, uidvalidity FROM mailboxes WHERE account_id = ? AND name = ?",
        (account_id, name),
    ).fetchone()
    if r is None:
        raise NotFound(f"no mailbox {name}")
    return int(r[0]), int(r[1]), int(r[2])


def _check_quota(c: sqlite3.Connection, account_id: int, adding: int) -> None:
    r = c.execute(
        "SELECT quota_bytes, used_bytes FROM accounts WHERE id = ?", (account_id,)
    ).fetchone()
    if r is None:
        raise NotFound("no such account")
    if r[0] > 0 and r[1] + adding > r[0]:
        raise OverQuota(f"quota of {r[0]} bytes exceeded")


def place(
    c: sqlite3.Connection, account_id: int, mailbox: str, copies: Sequence[MessageCopy]
) -> tuple[int, int] | None:
    """Insert new messages into a mailbox by the numbering rule (DESIGN.md "Mailbox numbering").

    The copies take the next UIDs in order, all stamped with one new MODSEQ; UIDNEXT,
    HIGHESTMODSEQ and the account's quota use advance in the same transaction. Every insert path
    comes through here. Returns (mailbox id, first UID), or None when there is no such mailbox."""
    row = c.execute(
        "SELECT id, uidnext, highestmodseq FROM mailboxes WHERE account_id = ? AND name = ?",
        (account_id, mailbox),
    ).fetchone()
    if row is None:
        return None
    mailbox_id, first, modseq = int(row[0]), int(row[1]), int(row[2]) + 1
    c.execute(
        "UPDATE mailboxes SET uidnext = ?, highestmodseq = ? WHERE id = ?",
        (first + len(copies), modseq, mailbox_id),
    )
    c.executemany(
        "INSERT INTO messages(mailbox_id, uid, modseq, flags, internal_date, size, blob_id, prefix)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (mailbox_id, first + i, modseq, m.flags, m.internal_date, m.size, m.blob_id, m.prefix)
            for i, m in enumerate(copies)
        ],
    )
    c.execute(
        "UPDATE accounts SET used_bytes = used_bytes + ? WHERE id = ?",
        (sum(m.size for m in copies), account_id),
    )
    return mailbox_id, first


def junk_mailbox(c: sqlite3.Connection, account_id: int) -> str | None:
    """The name of the account's Junk mailbox (special use \\Junk, else one named Junk), made
    when it has none; None when there is no such account."""
    row = c.execute(
        "SELECT name FROM mailboxes WHERE account_id = ? AND special_use = ? ORDER BY id LIMIT 1",
        (account_id, JUNK_USE),
    ).fetchone()
    if row is not None:
        return str(row[0])
    if exists(c, "SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?", account_id, JUNK):
        return JUNK
    if not exists(c, "SELECT 1 FROM accounts WHERE id = ?", account_id):
        return None
    insert_mailbox(c, account_id, JUNK, JUNK_USE)
    return JUNK


def append(
    c: sqlite3.Connection, account_id: int, mailbox: str, items: Sequence[AppendItem]
) -> AppendResult:
    mailbox_id, _, uidvalidity = _mailbox_for(c, account_id, mailbox)
    if not items:  # nothing appended, nothing changed: no MODSEQ bump
        return AppendResult(mailbox_id=mailbox_id, uidvalidity=uidvalidity, uids=())
    _check_quota(c, account_id, sum(len(item.data) for item in items))
    copies = []
    for item in items:
        cur = c.execute("INSERT INTO blobs(data, size) VALUES (?, ?)", (item.data, len(item.data)))
        assert cur.lastrowid is not None
        copies.append(
            MessageCopy(
                blob_id=cur.lastrowid,
                size=len(item.data),
                internal_date=item.internal_date,
                flags=flags_text(item.flags),
            )
        )
    placed = place(c, account_id, mailbox, copies)
    assert placed is not None  # found above, in this same transaction
    uids = tuple(range(placed[1], placed[1] + len(copies)))
    return AppendResult(mailbox_id=mailbox_id, uidvalidity=uidvalidity, uids=uids)


def _owned(c: sqlite3.Connection, account_id: int, mailbox_id: int) -> None:
    if (
        c.execute(
            "SELECT 1 FROM mailboxes WHERE id = ? AND account_id = ?", (mailbox_id, account_id)
        ).fetchone()
        is None
    ):
        raise NotFound("mailbox no longer exists")


def set_flags(
    c: sqlite3.Connection,
    account_id: int,
    mailbox_id: int,
    uids: list[int],
    mode: FlagMode,
    flags: frozenset[str],
    unchanged_since: int | None,
) -> tuple[list[MessageRow], list[int]]:
    _owned(c, account_id, mailbox_id)
    current: list[tuple[int, int, str]] = []
    for part in chunks(uids):
        current.extend(
            c.execute(
                f"SELECT uid, modseq, flags FROM messages WHERE mailbox_id = ?"
                f" AND uid IN ({_marks(part)})",
                (mailbox_id, *part),
            )
        )
    updates, failed = plan_flag_changes(current, mode, flags, unchanged_since)
    if not updates:
        return [], sorted(failed)
    modseq = bump_modseq(c, mailbox_id)
    c.executemany(
        "UPDATE messages SET flags = ?, modseq = ? WHERE mailbox_id = ? AND uid = ?",
        [(text, modseq, mailbox_id, uid) for uid, text in updates],
    )
    changed: list[MessageRow] = []
    for part in chunks(sorted(uid for uid, _ in updates)):
        changed.extend(
            rows.message(r)
            for r in c.execute(
                f"SELECT {rows.MESSAGE_COLS} FROM messages"
                f" WHERE mailbox_id = ? AND uid IN ({_marks(part)}) ORDER BY uid",
                (mailbox_id, *part),
            )
        )
    return changed, sorted(failed)


def _remove(c: sqlite3.Connection, account_id: int, mailbox_id: int, uids: list[int]) -> None:
    """Delete messages, record them as expunged, release quota and orphaned bodies."""
    if not uids:
        return
    modseq = bump_modseq(c, mailbox_id)
    freed = 0
    blobs: set[int] = set()
    for part in chunks(uids):
        for size, blob_id in c.execute(
            f"SELECT size, blob_id FROM messages WHERE mailbox_id = ? AND uid IN ({_marks(part)})",
            (mailbox_id, *part),
        ):
            freed += size
            blobs.add(blob_id)
        c.execute(
            f"DELETE FROM messages WHERE mailbox_id = ? AND uid IN ({_marks(part)})",
            (mailbox_id, *part),
        )
    c.executemany(
        "INSERT OR REPLACE INTO expunged(mailbox_id, uid, modseq) VALUES (?, ?, ?)",
        [(mailbox_id, uid, modseq) for uid in uids],
    )
    c.execute(
        "UPDATE accounts SET used_bytes = max(0, used_bytes - ?) WHERE id = ?", (freed, account_id)
    )
    c.executemany(
        "DELETE FROM blobs WHERE id = ? AND NOT EXISTS (SELECT 1 FROM messages WHERE blob_id = ?)"
        " AND NOT EXISTS (SELECT 1 FROM envelopes WHERE blob_id = ?)",
        [(b, b, b) for b in blobs],
    )


def expunge(
    c: sqlite3.Connection, account_id: int, mailbox_id: int, uids: list[int] | None
) -> list[int]:
    _owned(c, account_id, mailbox_id)
    found = [
        r[0]
        for r in c.execute(
            "SELECT uid FROM messages WHERE mailbox_id = ?"
            " AND instr(' ' || flags || ' ', ' \\Deleted ') > 0 ORDER BY uid",
            (mailbox_id,),
        )
    ]
    if uids is not None:
        wanted = set(uids)
        found = [uid for uid in found if uid in wanted]
    _remove(c, account_id, mailbox_id, found)
    return found


def delete_messages(
    c: sqlite3.Connection, account_id: int, mailbox_id: int, uids: list[int]
) -> list[int]:
    _owned(c, account_id, mailbox_id)
    found: list[int] = []
    for part in chunks(sorted(set(uids))):
        found.extend(
            r[0]
            for r in c.execute(
                f"SELECT uid FROM messages WHERE mailbox_id = ? AND uid IN ({_marks(part)})",
                (mailbox_id, *part),
            )
        )
    found.sort()
    _remove(c, account_id, mailbox_id, found)
    return found


def copy(
    c: sqlite3.Connection,
    account_id: int,
    mailbox_id: int,
    uids: list[int],
    target: str,
    move: bool,
) -> CopyResult:
    _owned(c, account_id, mailbox_id)
    target_id, _, uidvalidity = _mailbox_for(c, account_id, target)
    sources: list[tuple[int, str, float, int, int, bytes]] = []
    for part in chunks(uids):
        sources.extend(
            c.execute(
                "SELECT uid, flags, internal_date, size, blob_id, prefix FROM messages"
                f" WHERE mailbox_id = ? AND uid IN ({_marks(part)})",
                (mailbox_id, *part),
            )
        )
    sources.sort()
    if not sources:
        return CopyResult(mailbox_id=target_id, uidvalidity=uidvalidity, pairs=[])
    if target_id == mailbox_id and move:
        return CopyResult(mailbox_id=target_id, uidvalidity=uidvalidity, pairs=[])
    if not move:
        _check_quota(c, account_id, sum(s[3] for s in sources))
    # Copies share the bodies but count against the quota like any message; a move's _remove
    # takes the sources' share off again, so a move leaves usage unchanged.
    placed = place(
        c,
        account_id,
        target,
        [
            MessageCopy(blob_id=s[4], size=s[3], internal_date=s[2], flags=s[1], prefix=s[5])
            for s in sources
        ],
    )
    assert placed is not None  # found above, in this same transaction
    pairs = [(s[0], placed[1] + i) for i, s in enumerate(sources)]
    if move:
        _remove(c, account_id, mailbox_id, [s[0] for s in sources])
    return CopyResult(mailbox_id=target_id, uidvalidity=uidvalidity, pairs=pairs)


def bodies(
    c: sqlite3.Connection, account_id: int, mailbox_id: int, uids: list[int]
) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    for part in chunks(uids):
        for uid, prefix, data in c.execute(
            "SELECT m.uid, m.prefix, b.data FROM messages m JOIN blobs b ON b.id = m.blob_id"
            f" WHERE m.mailbox_id = ? AND m.uid IN ({_marks(part)}) AND m.mailbox_id IN"
            " (SELECT id FROM mailboxes WHERE account_id = ?)",
            (mailbox_id, *part, account_id),
        ):
            found[uid] = bytes(prefix) + bytes(data) if prefix else bytes(data)
    return found


def rename(c: sqlite3.Connection, account_id: int, old: str, new: str, delimiter: str) -> list[int]:
    """Returns the ids of mailboxes whose messages changed (INBOX and its new sibling)."""
    source_id, _, _ = _mailbox_for(c, account_id, old)
    if c.execute(
        "SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?", (account_id, new)
    ).fetchone():
        raise AlreadyExists(f"mailbox {new} already exists")
    if old == "INBOX":
        # RFC 9051 6.3.6: renaming INBOX moves its messages to the new name; INBOX stays, empty,
        # and keeps its children. So "INBOX/old" is a fine new name (no hierarchy moves).
        target_id = insert_mailbox(c, account_id, new, None)
        uids = [
            r[0] for r in c.execute("SELECT uid FROM messages WHERE mailbox_id = ?", (source_id,))
        ]
        copy(c, account_id, source_id, uids, new, True)
        return [source_id, target_id] if uids else []
    if new.startswith(old + delimiter):
        raise NotFound(f"cannot rename {old} into itself")
    children = c.execute(
        "SELECT id, name FROM mailboxes WHERE account_id = ? AND substr(name, 1, ?) = ?",
        (account_id, len(old) + len(delimiter), old + delimiter),
    ).fetchall()
    c.execute("UPDATE mailboxes SET name = ? WHERE id = ?", (new, source_id))
    for child_id, name in children:
        c.execute("UPDATE mailboxes SET name = ? WHERE id = ?", (new + name[len(old) :], child_id))
    return []


def delete(c: sqlite3.Connection, account_id: int, name: str) -> int:
    """Returns the id of the deleted mailbox (sessions that selected it must learn it is gone)."""
    mailbox_id, _, _ = _mailbox_for(c, account_id, name)
    uids = [r[0] for r in c.execute("SELECT uid FROM messages WHERE mailbox_id = ?", (mailbox_id,))]
    _remove(c, account_id, mailbox_id, uids)
    c.execute("DELETE FROM mailboxes WHERE id = ?", (mailbox_id,))
    return mailbox_id


def _changes(
    c: sqlite3.Connection, account_id: int, mailbox_id: int, since: int
) -> MailboxChanges | None:
    r = c.execute(
        f"SELECT {rows.MAILBOX_COLS} FROM mailboxes WHERE id = ? AND account_id = ?",
        (mailbox_id, account_id),
    ).fetchone()
    if r is None:
        return None
    box = rows.mailbox(r)
    if box.highestmodseq <= since:
        return MailboxChanges(mailbox=box, changed=[], expunged=[])
    changed, expunged = changed_since(c, mailbox_id, since)
    return MailboxChanges(mailbox=box, changed=changed, expunged=expunged)


def _create(c: sqlite3.Connection, account_id: int, name: str, special_use: str | None) -> Mailbox:
    if not exists(c, "SELECT 1 FROM accounts WHERE id = ?", account_id):
        raise NotFound(f"no account with id {account_id}")
    if exists(c, "SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?", account_id, name):
        raise AlreadyExists(f"mailbox {name} already exists")
    mailbox_id = insert_mailbox(c, account_id, name, special_use)
    r = c.execute(f"SELECT {rows.MAILBOX_COLS} FROM mailboxes WHERE id = ?", (mailbox_id,))
    return rows.mailbox(r.fetchone())


def _subscribe(c: sqlite3.Connection, account_id: int, name: str, subscribed: bool) -> None:
    if subscribed:
        c.execute(
            "INSERT OR IGNORE INTO subscriptions(account_id, name) VALUES (?, ?)",
            (account_id, name),
        )
    else:
        c.execute("DELETE FROM subscriptions WHERE account_id = ? AND name = ?", (account_id, name))


class SqliteMailboxes(SqliteEngine):
    async def list_mailboxes(self, account_id: int) -> list[Mailbox]:
        return await self._read(
            lambda c: [
                rows.mailbox(r)
                for r in c.execute(
                    f"SELECT {rows.MAILBOX_COLS} FROM mailboxes WHERE account_id = ? ORDER BY id",
                    (account_id,),
                )
            ]
        )

    async def get_mailbox(self, account_id: int, name: str) -> Mailbox | None:
        def fn(c: sqlite3.Connection) -> Mailbox | None:
            row = c.execute(
                f"SELECT {rows.MAILBOX_COLS} FROM mailboxes WHERE account_id = ? AND name = ?",
                (account_id, name),
            ).fetchone()
            return rows.mailbox(row) if row else None

        return await self._read(fn)

    async def create_mailbox(
        self, account_id: int, name: str, special_use: str | None = None
    ) -> Mailbox:
        return await self._write(lambda c: _create(c, account_id, name, special_use))

    async def rename_mailbox(self, account_id: int, old: str, new: str, delimiter: str) -> None:
        changed = await self._write(lambda c: rename(c, account_id, old, new, delimiter))
        self._changed(changed)

    async def delete_mailbox(self, account_id: int, name: str) -> None:
        mailbox_id = await self._write(lambda c: delete(c, account_id, name))
        self._changed((mailbox_id,))

    async def subscriptions(self, account_id: int) -> set[str]:
        return await self._read(
            lambda c: {
                r[0]
                for r in c.execute(
                    "SELECT name FROM subscriptions WHERE account_id = ?", (account_id,)
                )
            }
        )

    async def subscribe(self, account_id: int, name: str, subscribed: bool) -> None:
        await self._write(lambda c: _subscribe(c, account_id, name, subscribed))

    async def messages(self, account_id: int, mailbox_id: int) -> list[MessageRow]:
        return await self._read(lambda c: messages(c, account_id, mailbox_id))

    async def changes(self, account_id: int, mailbox_id: int, since: int) -> MailboxChanges | None:
        # One read transaction, so the mailbox row and the changes agree.
        return await self._snapshot(lambda c: _changes(c, account_id, mailbox_id, since))

    async def mailbox_status(self, account_id: int, mailbox_id: int) -> MailboxStatus | None:
        # One read transaction, so UIDNEXT and MESSAGES describe the same commit.
        return await self._snapshot(lambda c: status(c, account_id, mailbox_id))

    async def list_messages(self, account_id: int, mailbox: str) -> list[StoredMessage]:
        def fn(c: sqlite3.Connection) -> list[StoredMessage]:
            found = c.execute(
                "SELECT m.uid, m.modseq, m.flags, m.internal_date, m.size FROM messages m"
                " JOIN mailboxes b ON b.id = m.mailbox_id"
                " WHERE b.account_id = ? AND b.name = ? ORDER BY m.uid",
                (account_id, mailbox),
            )
            return [rows.message(r) for r in found]

        return await self._read(fn)

    async def message_bytes(self, account_id: int, mailbox: str, uid: int) -> bytes | None:
        def fn(c: sqlite3.Connection) -> bytes | None:
            row = c.execute(
                "SELECT m.prefix, bl.data FROM messages m"
                " JOIN mailboxes b ON b.id = m.mailbox_id JOIN blobs bl ON bl.id = m.blob_id"
                " WHERE b.account_id = ? AND b.name = ? AND m.uid = ?",
                (account_id, mailbox, uid),
            ).fetchone()
            return bytes(row[0]) + bytes(row[1]) if row else None

        return await self._read(fn)

    async def bodies(self, account_id: int, mailbox_id: int, uids: list[int]) -> dict[int, bytes]:
        return await self._read(lambda c: bodies(c, account_id, mailbox_id, uids))

    async def append(
        self, account_id: int, mailbox: str, items: Sequence[AppendItem]
    ) -> AppendResult:
        result = await self._write(lambda c: append(c, account_id, mailbox, items))
        self._changed((result.mailbox_id,))
        return result

    async def set_flags(
        self,
        account_id: int,
        mailbox_id: int,
        uids: list[int],
        mode: FlagMode,
        flags: frozenset[str],
        unchanged_since: int | None = None,
    ) -> tuple[list[MessageRow], list[int]]:
        result = await self._write(
            lambda c: set_flags(c, account_id, mailbox_id, uids, mode, flags, unchanged_since)
        )
        if result[0]:
            self._changed((mailbox_id,))
        return result

    async def expunge(self, account_id: int, mailbox_id: int, uids: list[int] | None) -> list[int]:
        result = await self._write(lambda c: expunge(c, account_id, mailbox_id, uids))
        if result:
            self._changed((mailbox_id,))
        return result

    async def delete_messages(self, account_id: int, mailbox_id: int, uids: list[int]) -> list[int]:
        result = await self._write(lambda c: delete_messages(c, account_id, mailbox_id, uids))
        if result:
            self._changed((mailbox_id,))
        return result

    async def copy(
        self, account_id: int, mailbox_id: int, uids: list[int], target: str, *, move: bool
    ) -> CopyResult:
        result = await self._write(lambda c: copy(c, account_id, mailbox_id, uids, target, move))
        self._changed((result.mailbox_id, mailbox_id) if move else (result.mailbox_id,))
        return result
